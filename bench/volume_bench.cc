// Times reading a series into a volume (scp/pixels/series_reader.h) against
// decoding the same files alone through scp/pixels/pixel_decoder.h, which every read
// includes. A measuring tool, not a test.
//
//   volume_bench SERIES_DIR [REPEATS]
//
// Reads every *.dcm file of SERIES_DIR; prints one JSON line with the median
// of each over REPEATS runs (default 3).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "scp/pixels/pixel_decoder.h"
#include "scp/pixels/series_reader.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: volume_bench SERIES_DIR [REPEATS]\n");
    return 2;
  }
  const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;
  std::vector<std::string> paths;
  for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
    if (e.path().extension() == ".dcm") paths.push_back(e.path().string());
  }
  std::sort(paths.begin(), paths.end());
  using secondread::scp::DecodeImageFile;
  using secondread::scp::DecodeOptions;
  secondread::scp::RegisterDecoders();
  std::vector<double> volume_s, decode_s;
  uint32_t depth = 0, rows = 0, columns = 0;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    auto volumes = secondread::scp::ReadSeriesVolumes(paths, {});
    volume_s.push_back(Seconds(t0));
    if (!volumes.ok()) {
      std::fprintf(stderr, "%s\n", volumes.status().ToString().c_str());
      return 1;
    }
    depth = (*volumes)[0].depth;
    rows = (*volumes)[0].rows;
    columns = (*volumes)[0].columns;
    DecodeOptions options;
    options.apply_voi = false;
    options.modality_values = true;
    options.max_frames = 4096;
    t0 = std::chrono::steady_clock::now();
    for (const std::string& p : paths) {
      if (!DecodeImageFile(p, options).ok()) return 1;
    }
    decode_s.push_back(Seconds(t0));
  }
  std::printf("{\"files\": %zu, \"depth\": %u, \"rows\": %u, \"columns\": %u, \"volume_s\": %.3f, \"decode_only_s\": %.3f}\n",
              paths.size(), depth, rows, columns, Median(volume_s), Median(decode_s));
  return 0;
}
