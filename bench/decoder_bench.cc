// What decoding in a child process (scp/pixels/internals/decoder_sandbox.cc: fork,
// limits, seccomp, pixels back through a memfd) adds to each decode, against
// the same codecs in the calling process, on the same files in the same run:
// DecodeImageFile with DecoderLimits::isolate on and off, alternately.
//
//   decoder_bench [--repeat N] [--ballast-mib M] FILE...
//
// --ballast-mib touches M MiB in this process first: fork copies the page
// tables of everything the caller has mapped, so its cost grows with the
// caller's size, and the node is larger than this tool.
//
// Prints one JSON line per file: the median and 90th percentile wall-clock
// microseconds of each way over N repetitions (files in the page cache), the
// median CPU microseconds (user and system, of this process and of the
// reaped decoder children), and the ratios. On a shared machine the CPU
// time is the steadier figure: each isolated decode blocks twice and may
// wait for a CPU each time.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "scp/pixels/pixel_decoder.h"

namespace {

// CPU microseconds used so far by this process and its reaped children.
double CpuUs() {
  double us = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    struct rusage u = {};
    ::getrusage(who, &u);
    us += u.ru_utime.tv_sec * 1e6 + u.ru_utime.tv_usec + u.ru_stime.tv_sec * 1e6 + u.ru_stime.tv_usec;
  }
  return us;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 100;
  size_t ballast_mib = 0;
  int first = 1;
  while (first + 1 < argc && argv[first][0] == '-') {
    if (std::strcmp(argv[first], "--repeat") == 0) {
      repeat = std::max(1, std::atoi(argv[first + 1]));
    } else if (std::strcmp(argv[first], "--ballast-mib") == 0) {
      ballast_mib = static_cast<size_t>(std::atol(argv[first + 1]));
    } else {
      break;
    }
    first += 2;
  }
  if (first >= argc) {
    std::fprintf(stderr, "usage: %s [--repeat N] [--ballast-mib M] FILE...\n", argv[0]);
    return 2;
  }
  std::unique_ptr<char[]> ballast;
  if (ballast_mib > 0) {
    ballast.reset(new char[ballast_mib << 20]);
    std::memset(ballast.get(), 1, ballast_mib << 20);
  }
  using Clock = std::chrono::steady_clock;
  secondread::scp::RegisterDecoders();
  secondread::scp::DecodeOptions isolated;
  secondread::scp::DecodeOptions in_process;
  in_process.decoder.isolate = false;
  for (int i = first; i < argc; ++i) {
    const std::string path = argv[i];
    std::vector<double> in_us, iso_us, in_cpu, iso_cpu;
    uint32_t rows = 0, columns = 0;
    for (int r = 0; r < repeat + 1; ++r) {
      const double c0 = CpuUs();
      auto t0 = Clock::now();
      auto a = secondread::scp::DecodeImageFile(path, in_process);
      auto t1 = Clock::now();
      const double c1 = CpuUs();
      auto b = secondread::scp::DecodeImageFile(path, isolated);
      auto t2 = Clock::now();
      const double c2 = CpuUs();
      if (!a.ok() || !b.ok()) {
        std::fprintf(stderr, "%s: %s / %s\n", path.c_str(), a.status().ToString().c_str(),
                     b.status().ToString().c_str());
        return 1;
      }
      if (a->frames[0].pixels != b->frames[0].pixels) {
        std::fprintf(stderr, "%s: the two decodes differ\n", path.c_str());
        return 1;
      }
      rows = a->frames[0].rows;
      columns = a->frames[0].columns;
      if (r == 0) continue;  // warm-up
      in_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      iso_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
      in_cpu.push_back(c1 - c0);
      iso_cpu.push_back(c2 - c1);
    }
    const double in_med = Percentile(in_us, 0.5), iso_med = Percentile(iso_us, 0.5);
    const double in_cpu_med = Percentile(in_cpu, 0.5), iso_cpu_med = Percentile(iso_cpu, 0.5);
    std::printf(
        "{\"file\":\"%s\",\"rows\":%u,\"columns\":%u,\"repeat\":%d,\"ballast_mib\":%zu,"
        "\"in_process_us\":{\"median\":%.0f,\"p90\":%.0f,\"cpu\":%.0f},"
        "\"isolated_us\":{\"median\":%.0f,\"p90\":%.0f,\"cpu\":%.0f},"
        "\"added_us\":%.0f,\"ratio\":%.2f,\"added_cpu_us\":%.0f,\"cpu_ratio\":%.2f}\n",
        path.c_str(), rows, columns, repeat, ballast_mib, in_med, Percentile(in_us, 0.9), in_cpu_med, iso_med,
        Percentile(iso_us, 0.9), iso_cpu_med, iso_med - in_med, in_med > 0 ? iso_med / in_med : 0.0,
        iso_cpu_med - in_cpu_med, in_cpu_med > 0 ? iso_cpu_med / in_cpu_med : 0.0);
    std::fflush(stdout);
  }
  return 0;
}
