// A model's manifest, <repo>/<model>/model.yaml, parsed once at load into a
// plain struct. Everything the worker does with a model (preprocessing,
// batching, placement, thresholds) is decided here and nowhere else.
#pragma once

#include <array>
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
  // Segment Property Category and Type (CID 7150, CID 7151), for volume
  // models whose output becomes a segmentation; empty otherwise.
  CodedConcept category;
  CodedConcept type;
};

// A model takes single images (the batched Infer path) or whole volumes (the
// streamed InferVolume path, with its own preprocessing and sliding window).
enum class InputKind { kImage, kVolume };
std::string_view InputKindName(InputKind k);

// The patient coordinate convention a volume model was trained in. DICOM is
// LPS; many research pipelines (NIfTI, MONAI defaults) are RAS.
enum class Orientation { kLps, kRas };
std::string_view OrientationName(Orientation o);

enum class Interpolation { kLinear, kNearest };
std::string_view InterpolationName(Interpolation i);

enum class Intensity {
  kNone,      // values as received
  kWindow,    // [center - width/2, center + width/2] to [0, 1], clamped
  kRange,     // [low, high] to [0, 1], clamped when clip
  kZScore,    // (x - mean) / std over the volume (or its nonzero voxels)
  kSuvRange,  // like range, on SUV values the node computed
};
std::string_view IntensityName(Intensity i);

enum class Blending { kGaussian, kConstant };
std::string_view BlendingName(Blending b);

enum class VolumeOutputKind {
  kLabelMap,       // channel 0 is background, channel i label i; softmax, argmax
  kProbabilities,  // one channel per label; sigmoid, threshold per label
};
std::string_view VolumeOutputKindName(VolumeOutputKind k);

// Everything outside the network that a volume model was trained with.
// Spatial triples are in patient-axis order (z, y, x), which is the order of
// the array axes D, H and W after reorientation; `axes` says how the network
// itself wants them ordered.
struct VolumeConfig {
  std::string axes = "DHW";  // a permutation of D, H, W
  Orientation orientation = Orientation::kLps;
  std::array<double, 3> spacing{0, 0, 0};  // mm; 0 keeps the source spacing
  Interpolation interpolation = Interpolation::kLinear;
  Intensity intensity = Intensity::kNone;
  double window_center = 0;
  double window_width = 0;
  double low = 0;
  double high = 1;
  bool clip = true;
  bool zscore_nonzero = false;
  std::array<int64_t, 3> roi{0, 0, 0};  // d, h, w voxels
  double overlap = 0.25;                // 0 <= overlap < 1
  Blending blending = Blending::kGaussian;
  double sigma_scale = 0.125;
  int sw_batch_size = 1;
  VolumeOutputKind output = VolumeOutputKind::kLabelMap;
  bool resample_back = true;
};

struct InputConfig {
  InputKind kind = InputKind::kImage;
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
  VolumeConfig volume;  // meaningful when input.kind is kVolume
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
