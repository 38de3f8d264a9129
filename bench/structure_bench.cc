// Cost of the structural scan that every received data set goes through
// before DCMTK parses it (scp/receive/dataset_limits.cc), against the parse that
// follows it on the C-STORE path (ReadInstanceRecord: DCMTK with values over
// 4 KiB left unloaded), measured on the same files in the same run.
//
//   structure_bench [--repeat N] FILE TRANSFER_SYNTAX_UID [FILE UID]...
//
// Prints one JSON line per file: sizes, element count, and the median
// microseconds of each step over N repetitions (files in the page cache).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "scp/receive/dataset_limits.h"
#include "scp/receive/dataset_reader.h"

namespace {

double MedianUs(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 200;
  int first = 1;
  if (argc > 2 && std::strcmp(argv[1], "--repeat") == 0) {
    repeat = std::max(1, std::atoi(argv[2]));
    first = 3;
  }
  if ((argc - first) < 2 || (argc - first) % 2 != 0) {
    std::fprintf(stderr, "usage: %s [--repeat N] FILE TRANSFER_SYNTAX_UID [FILE UID]...\n", argv[0]);
    return 2;
  }
  using Clock = std::chrono::steady_clock;
  for (int i = first; i + 1 < argc; i += 2) {
    const std::string path = argv[i];
    const std::string ts = argv[i + 1];
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      std::perror(path.c_str());
      return 1;
    }
    std::vector<double> scan_us, parse_us;
    int64_t elements = 0;
    for (int r = 0; r < repeat; ++r) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      auto t0 = Clock::now();
      auto report = secondread::scp::CheckDatasetStructure(fd, ts, {});
      auto t1 = Clock::now();
      ::close(fd);
      if (!report.ok() || !report->ok()) {
        std::fprintf(stderr, "%s: refused by the scan\n", path.c_str());
        return 1;
      }
      elements = report->elements;
      auto t2 = Clock::now();
      auto record = secondread::scp::ReadInstanceRecord(path);
      auto t3 = Clock::now();
      if (!record.ok()) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), std::string(record.status().message()).c_str());
        return 1;
      }
      scan_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      parse_us.push_back(std::chrono::duration<double, std::micro>(t3 - t2).count());
    }
    const double scan = MedianUs(scan_us), parse = MedianUs(parse_us);
    std::printf("{\"file\":\"%s\",\"bytes\":%lld,\"elements\":%lld,\"scan_us\":%.1f,\"parse_us\":%.1f,"
                "\"scan_over_parse\":%.3f}\n",
                path.substr(path.find_last_of('/') + 1).c_str(), static_cast<long long>(st.st_size),
                static_cast<long long>(elements), scan, parse, parse > 0 ? scan / parse : 0);
  }
  return 0;
}
