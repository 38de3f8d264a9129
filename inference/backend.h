// The seam between scheduling and compute. The batcher, repository and gRPC
// service know only these types; LibTorch lives behind ModelBackend in
// inference/torch/, so everything else builds and tests without it.
#pragma once

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

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // Runs one batch. Must not throw; a failure fails this batch only.
  virtual absl::StatusOr<std::vector<ImageOutput>> Execute(const std::vector<const ImageView*>& images) = 0;
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

}  // namespace secondread::inference
