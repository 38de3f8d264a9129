// The seam between scheduling and compute. The batcher, repository and gRPC
// service know only these types; LibTorch lives behind ModelBackend in
// inference/torch/, so everything else builds and tests without it.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "inference/model_config.h"

namespace secondread::inference {

enum class PhotometricKind { kMonochrome1, kMonochrome2, kRgb };

// One image as received. `data` points into the request message, which
// outlives the job; the backend copies it straight to the model's device.
struct ImageView {
  std::vector<int64_t> shape;  // [rows, cols] or [channels, rows, cols]
  DType dtype = DType::kUint8;
  std::string_view data;
  PhotometricKind photometric = PhotometricKind::kMonochrome2;
};

struct ImageOutput {
  std::vector<float> scores;  // one per label, after the activation
  // Present when the model produces heatmaps: one per label, row-major.
  int heatmap_height = 0;
  int heatmap_width = 0;
  std::vector<std::vector<float>> heatmaps;
};

// One volume as received, with the geometry the worker needs to put it into
// the model's convention and to bring the result back.
struct VolumeView {
  std::vector<int64_t> shape;  // [channels, D, H, W]
  DType dtype = DType::kInt16;
  std::string_view data;
  std::array<double, 3> spacing{1, 1, 1};  // mm along D, H, W
  // LPS cosines: row direction (along W), column direction (along H), normal.
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};
};

// The result in the source's orientation: on the source grid when the model
// resamples back, else on the model's spacing over the same extent.
struct VolumeOutput {
  std::array<int64_t, 3> shape{0, 0, 0};  // D, H, W
  std::array<double, 3> spacing{0, 0, 0};
  std::string label_map;                   // uint8, 0 background, i = label i
  std::vector<std::string> probabilities;  // per label, uint8 0..255; probability models only
  std::vector<float> max_probability;      // per label
  std::vector<uint64_t> voxel_count;       // per label, in the label map
  // Where the compute time went, in microseconds; zero when a backend does
  // not measure (VolumeTimings in the contract says what each step covers).
  int64_t resample_us = 0;
  int64_t inference_us = 0;
  int64_t resample_back_us = 0;
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // Runs one batch. Must not throw; a failure fails this batch only.
  virtual absl::StatusOr<std::vector<ImageOutput>> Execute(const std::vector<const ImageView*>& images) = 0;
  // Runs one whole volume for a volume model. Must not throw.
  virtual absl::StatusOr<VolumeOutput> ExecuteVolume(const VolumeView& volume) {
    (void)volume;
    return absl::UnimplementedError("this backend does not run volumes");
  }
  // "cpu" or "cuda:N", for descriptions and metrics.
  virtual std::string Device() const = 0;
};

class BackendFactory {
 public:
  virtual ~BackendFactory() = default;
  // One backend per model instance the placement asks for, each loaded,
  // converted to the configured precision and warmed up.
  virtual absl::StatusOr<std::vector<std::unique_ptr<ModelBackend>>> Create(
      const ModelConfig& config, const std::filesystem::path& model_file) = 0;
};

// Checks an image against the model's input contract before it is queued,
// so a bad image is refused with INVALID_ARGUMENT and never reaches compute.
absl::Status ValidateImage(const ModelConfig& config, const ImageView& image, uint64_t max_pixels);

// Checks a volume header (everything but the data) against the model and the
// worker's memory bound, before any data is received: RESOURCE_EXHAUSTED when
// the samples would exceed `max_bytes`, INVALID_ARGUMENT for anything else.
// Returns the number of bytes the data must have.
absl::StatusOr<uint64_t> ValidateVolumeHeader(const ModelConfig& config, const VolumeView& volume, uint64_t max_bytes);

}  // namespace secondread::inference
