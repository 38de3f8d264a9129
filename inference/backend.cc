#include "inference/backend.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace secondread::inference {

absl::Status ValidateImage(const ModelConfig& config, const ImageView& image, uint64_t max_pixels) {
  const auto& accepted = config.input.accepted_dtypes;
  if (std::find(accepted.begin(), accepted.end(), image.dtype) == accepted.end()) {
    return absl::InvalidArgumentError("model '" + config.name + "' does not accept dtype " +
                                      std::string(DTypeName(image.dtype)));
  }
  if (image.shape.size() != 2 && image.shape.size() != 3) {
    return absl::InvalidArgumentError("image shape must be [rows, cols] or [channels, rows, cols]");
  }
  uint64_t count = 1;
  for (int64_t d : image.shape) {
    if (d <= 0 || d > 65536) return absl::InvalidArgumentError("image dimensions must be between 1 and 65536");
    count *= static_cast<uint64_t>(d);
    if (count > max_pixels) {
      return absl::InvalidArgumentError("image has more than " + std::to_string(max_pixels) + " samples");
    }
  }
  const uint64_t expected = count * DTypeSize(image.dtype);
  if (expected != image.data.size()) {
    return absl::InvalidArgumentError("image data has " + std::to_string(image.data.size()) + " bytes; shape and dtype need " +
                                      std::to_string(expected));
  }
  const int64_t channels = image.shape.size() == 3 ? image.shape[0] : 1;
  if (image.photometric == PhotometricKind::kRgb && channels != 3) {
    return absl::InvalidArgumentError("an RGB image needs shape [3, rows, cols]");
  }
  if (channels != 1 && channels != 3 && channels != config.input.channels) {
    return absl::InvalidArgumentError("image has " + std::to_string(channels) + " channels; model '" + config.name +
                                      "' takes " + std::to_string(config.input.channels));
  }
  if (channels == 3 && config.input.channels != 1 && config.input.channels != 3) {
    return absl::InvalidArgumentError("model '" + config.name + "' cannot take a 3-channel image");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ValidateVolumeHeader(const ModelConfig& config, const VolumeView& volume,
                                              uint64_t max_bytes) {
  if (config.input.kind != InputKind::kVolume) {
    return absl::FailedPreconditionError("model '" + config.name + "' takes images, not volumes; use Infer");
  }
  const auto& accepted = config.input.accepted_dtypes;
  if (std::find(accepted.begin(), accepted.end(), volume.dtype) == accepted.end()) {
    return absl::InvalidArgumentError("model '" + config.name + "' does not accept dtype " +
                                      std::string(DTypeName(volume.dtype)));
  }
  if (volume.shape.size() != 4) return absl::InvalidArgumentError("volume shape must be [D, H, W] or [C, D, H, W]");
  if (volume.shape[0] != config.input.channels) {
    return absl::InvalidArgumentError("volume has " + std::to_string(volume.shape[0]) + " channels; model '" +
                                      config.name + "' takes " + std::to_string(config.input.channels));
  }
  // Computed in steps with a bound on each so that a hostile shape cannot
  // overflow the product and slip under the limit.
  uint64_t bytes = DTypeSize(volume.dtype);
  for (int64_t d : volume.shape) {
    if (d <= 0 || d > 65536) return absl::InvalidArgumentError("volume dimensions must be between 1 and 65536");
    bytes *= static_cast<uint64_t>(d);
    if (bytes > max_bytes) {
      return absl::ResourceExhaustedError("volume exceeds this worker's limit of " + std::to_string(max_bytes) +
                                          " bytes");
    }
  }
  for (double s : volume.spacing) {
    if (!std::isfinite(s) || !(s > 0) || s > 1000) {
      return absl::InvalidArgumentError("volume spacing must be three positive numbers of mm");
    }
  }
  for (double c : volume.direction) {
    if (!std::isfinite(c) || std::abs(c) > 1.0001) {
      return absl::InvalidArgumentError("volume direction must be nine cosines");
    }
  }
  return bytes;
}

}  // namespace secondread::inference
