// A model's manifest, <repo>/<model>/model.yaml, parsed once at load into a
// plain struct. Everything the worker does with a model (preprocessing,
// batching, placement, thresholds) is decided here and nowhere else.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace secondread::inference {

enum class DType { kUint8, kUint16, kInt16, kFloat16, kFloat32 };
size_t DTypeSize(DType t);
std::string_view DTypeName(DType t);
absl::StatusOr<DType> ParseDType(std::string_view name);

enum class Scaling {
  kMinMax,  // per image, to [0, 1]
  kRange,   // fixed [low, high] to [0, 1], clamped
  kWindow,  // window centre/width to [0, 1], clamped
};
std::string_view ScalingName(Scaling s);

// What the node sends: its VOI rendering, or physical (modality) values.
enum class PixelValues { kDisplay, kModality };
std::string_view PixelValuesName(PixelValues v);

enum class Precision { kFp32, kFp16, kBf16 };
std::string_view PrecisionName(Precision p);

enum class Activation { kNone, kSigmoid };

struct CodedConcept {
  std::string scheme;
  std::string value;
  std::string meaning;
};

struct LabelConfig {
  std::string name;
  CodedConcept code;
  double threshold = 0.5;
};

struct InputConfig {
  int channels = 1;
  int height = 0;
  int width = 0;
  Scaling scaling = Scaling::kMinMax;
  PixelValues values = PixelValues::kDisplay;
  double range_low = 0;
  double range_high = 1;
  double window_center = 0;
  double window_width = 0;
  std::vector<double> mean;  // one per channel, or one for all
  std::vector<double> std;
  std::vector<DType> accepted_dtypes;
};

struct OutputConfig {
  Activation scores_activation = Activation::kSigmoid;
  bool heatmap = false;
  Activation heatmap_activation = Activation::kSigmoid;
  std::vector<LabelConfig> labels;
};

struct BatchingConfig {
  int max_batch_size = 1;
  int64_t max_queue_delay_us = 0;
  std::vector<int> preferred_batch_sizes;  // ascending
  int max_queue_size = 256;                // pending requests
  int priority_levels = 2;
};

struct PlacementConfig {
  bool cuda = false;
  std::vector<int> devices;  // CUDA ordinals; empty means device 0
  int count = 1;             // instances per device
};

struct VersionPolicy {
  int latest = 1;                 // used when specific is empty
  std::vector<int64_t> specific;  // explicit versions
};

struct ModelConfig {
  std::string name;
  std::string description;
  std::string intended_use;
  InputConfig input;
  OutputConfig output;
  std::vector<std::string> modalities;
  std::vector<std::string> body_parts;
  std::vector<std::string> sop_classes;
  BatchingConfig batching;
  PlacementConfig placement;
  Precision precision = Precision::kFp32;
  VersionPolicy version_policy;
};

// Model names become directory names and metric labels, and arrive over the
// network: letters, digits, '.', '_' and '-', not starting with '.'.
bool IsValidModelName(std::string_view name);

// `directory_name` must equal the manifest's name: the directory is what an
// operator sees and the name is what clients ask for, and they must not drift.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view yaml, std::string_view directory_name);

// Which of the version directories found on disk the policy selects,
// newest first.
std::vector<int64_t> SelectVersions(const VersionPolicy& policy, std::vector<int64_t> available);

}  // namespace secondread::inference
