#include "inference/model_config.h"

#include <algorithm>
#include <regex>

#include "common/config.h"

namespace secondread::inference {

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kUint8: return 1;
    case DType::kUint16:
    case DType::kInt16:
    case DType::kFloat16: return 2;
    case DType::kFloat32: return 4;
  }
  return 0;
}

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kUint8: return "uint8";
    case DType::kUint16: return "uint16";
    case DType::kInt16: return "int16";
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
  }
  return "?";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  for (DType t : {DType::kUint8, DType::kUint16, DType::kInt16, DType::kFloat16, DType::kFloat32}) {
    if (DTypeName(t) == name) return t;
  }
  return absl::InvalidArgumentError("unknown dtype '" + std::string(name) + "'");
}

std::string_view ScalingName(Scaling s) {
  switch (s) {
    case Scaling::kMinMax: return "minmax";
    case Scaling::kRange: return "range";
    case Scaling::kWindow: return "window";
  }
  return "?";
}

std::string_view PixelValuesName(PixelValues v) {
  switch (v) {
    case PixelValues::kDisplay: return "display";
    case PixelValues::kModality: return "modality";
  }
  return "?";
}

std::string_view PrecisionName(Precision p) {
  switch (p) {
    case Precision::kFp32: return "fp32";
    case Precision::kFp16: return "fp16";
    case Precision::kBf16: return "bf16";
  }
  return "?";
}

namespace {

absl::StatusOr<Activation> ParseActivation(config::ConfigTree& t, const std::string& key) {
  ASSIGN_OR_RETURN(std::string v, t.String(key, "sigmoid"));
  if (v == "sigmoid") return Activation::kSigmoid;
  if (v == "none") return Activation::kNone;
  return absl::InvalidArgumentError("config key '" + key + "': expected sigmoid or none, got '" + v + "'");
}

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(what); }

absl::Status ParseInput(config::ConfigTree& t, InputConfig& in) {
  ASSIGN_OR_RETURN(int64_t channels, t.Int("input.channels", 1, 1, 4));
  ASSIGN_OR_RETURN(int64_t height, t.Int("input.height", 0, 1, 8192));
  ASSIGN_OR_RETURN(int64_t width, t.Int("input.width", 0, 1, 8192));
  in.channels = static_cast<int>(channels);
  in.height = static_cast<int>(height);
  in.width = static_cast<int>(width);
  if (!t.Has("input.height") || !t.Has("input.width")) return Bad("input.height and input.width are required");

  ASSIGN_OR_RETURN(std::string scaling, t.String("input.scaling", "minmax"));
  if (scaling == "minmax") {
    in.scaling = Scaling::kMinMax;
  } else if (scaling == "range") {
    in.scaling = Scaling::kRange;
    ASSIGN_OR_RETURN(auto range, t.DoubleList("input.range", {}));
    if (range.size() != 2 || !(range[1] > range[0])) return Bad("input.range must be [low, high] with high > low");
    in.range_low = range[0];
    in.range_high = range[1];
  } else if (scaling == "window") {
    in.scaling = Scaling::kWindow;
    ASSIGN_OR_RETURN(in.window_center, t.Double("input.window.center", 0, -1e9, 1e9));
    ASSIGN_OR_RETURN(in.window_width, t.Double("input.window.width", 0, 0, 1e9));
    if (!(in.window_width >= 1)) return Bad("input.window.width must be at least 1");
  } else {
    return Bad("input.scaling must be minmax, range or window, got '" + scaling + "'");
  }
  // A window is defined on modality values (a CT window is in Hounsfield
  // units), so that is the default there; a VOI rendering would make any
  // window meaningless.
  const bool window = in.scaling == Scaling::kWindow;
  ASSIGN_OR_RETURN(std::string values, t.String("input.values", window ? "modality" : "display"));
  if (values == "display") {
    if (window) return Bad("input.values display cannot go with scaling window: a window needs modality values");
    in.values = PixelValues::kDisplay;
  } else if (values == "modality") {
    in.values = PixelValues::kModality;
  } else {
    return Bad("input.values must be display or modality, got '" + values + "'");
  }

  ASSIGN_OR_RETURN(in.mean, t.DoubleList("input.mean", {0.0}));
  ASSIGN_OR_RETURN(in.std, t.DoubleList("input.std", {1.0}));
  for (auto* v : {&in.mean, &in.std}) {
    if (v->size() != 1 && v->size() != static_cast<size_t>(in.channels)) {
      return Bad("input.mean and input.std need one value or one per channel");
    }
  }
  for (double s : in.std) {
    if (!(s > 0)) return Bad("input.std values must be positive");
  }

  ASSIGN_OR_RETURN(auto dtypes, t.StringList("input.accepted_dtypes", {"uint8", "uint16", "int16", "float16", "float32"}));
  for (const auto& name : dtypes) {
    ASSIGN_OR_RETURN(DType d, ParseDType(name));
    in.accepted_dtypes.push_back(d);
  }
  return absl::OkStatus();
}

absl::Status ParseOutput(config::ConfigTree& t, OutputConfig& out) {
  ASSIGN_OR_RETURN(out.scores_activation, ParseActivation(t, "output.scores_activation"));
  ASSIGN_OR_RETURN(out.heatmap, t.Bool("output.heatmap", false));
  ASSIGN_OR_RETURN(out.heatmap_activation, ParseActivation(t, "output.heatmap_activation"));
  ASSIGN_OR_RETURN(size_t n, t.ListSize("output.labels"));
  if (n == 0) return Bad("output.labels must list at least one label");
  for (size_t i = 0; i < n; ++i) {
    const std::string k = "output.labels." + std::to_string(i) + ".";
    LabelConfig label;
    ASSIGN_OR_RETURN(label.name, t.String(k + "name", ""));
    ASSIGN_OR_RETURN(label.code.scheme, t.String(k + "code.scheme", ""));
    ASSIGN_OR_RETURN(label.code.value, t.String(k + "code.value", ""));
    ASSIGN_OR_RETURN(label.code.meaning, t.String(k + "code.meaning", ""));
    ASSIGN_OR_RETURN(label.threshold, t.Double(k + "threshold", -1, 0, 1));
    if (label.name.empty()) return Bad(k + "name is required");
    if (label.code.scheme.empty() || label.code.value.empty() || label.code.meaning.empty()) {
      return Bad(k + "code needs scheme, value and meaning");
    }
    if (label.threshold < 0) return Bad(k + "threshold is required");
    for (const auto& other : out.labels) {
      if (other.name == label.name) return Bad("label '" + label.name + "' appears twice");
    }
    out.labels.push_back(std::move(label));
  }
  return absl::OkStatus();
}

absl::Status ParseBatching(config::ConfigTree& t, BatchingConfig& b) {
  ASSIGN_OR_RETURN(int64_t max_batch, t.Int("max_batch_size", 1, 1, 4096));
  b.max_batch_size = static_cast<int>(max_batch);
  ASSIGN_OR_RETURN(b.max_queue_delay_us, t.Int("dynamic_batching.max_queue_delay_us", 0, 0, 10'000'000));
  ASSIGN_OR_RETURN(int64_t queue, t.Int("dynamic_batching.max_queue_size", 256, 1, 1'000'000));
  b.max_queue_size = static_cast<int>(queue);
  ASSIGN_OR_RETURN(int64_t levels, t.Int("dynamic_batching.priority_levels", 2, 1, 2));
  b.priority_levels = static_cast<int>(levels);
  ASSIGN_OR_RETURN(auto preferred, t.IntList("dynamic_batching.preferred_batch_sizes", {}));
  for (int64_t p : preferred) {
    if (p < 1 || p > b.max_batch_size) {
      return Bad("dynamic_batching.preferred_batch_sizes must lie between 1 and max_batch_size");
    }
    b.preferred_batch_sizes.push_back(static_cast<int>(p));
  }
  std::sort(b.preferred_batch_sizes.begin(), b.preferred_batch_sizes.end());
  b.preferred_batch_sizes.erase(std::unique(b.preferred_batch_sizes.begin(), b.preferred_batch_sizes.end()),
                                b.preferred_batch_sizes.end());
  return absl::OkStatus();
}

absl::Status ParsePlacement(config::ConfigTree& t, PlacementConfig& p) {
  ASSIGN_OR_RETURN(std::string kind, t.String("instance_group.kind", "cpu"));
  if (kind == "cpu") {
    p.cuda = false;
  } else if (kind == "cuda") {
    p.cuda = true;
  } else {
    return Bad("instance_group.kind must be cpu or cuda, got '" + kind + "'");
  }
  ASSIGN_OR_RETURN(int64_t count, t.Int("instance_group.count", 1, 1, 64));
  p.count = static_cast<int>(count);
  ASSIGN_OR_RETURN(auto devices, t.IntList("instance_group.devices", {}));
  for (int64_t d : devices) {
    if (d < 0 || d > 255) return Bad("instance_group.devices must be CUDA ordinals");
    p.devices.push_back(static_cast<int>(d));
  }
  if (!p.cuda && !p.devices.empty()) return Bad("instance_group.devices applies to kind cuda only");
  return absl::OkStatus();
}

}  // namespace

bool IsValidModelName(std::string_view name) {
  static const std::regex kName("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
  return std::regex_match(name.begin(), name.end(), kName);
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view yaml, std::string_view directory_name) {
  ASSIGN_OR_RETURN(config::ConfigTree t, config::ConfigTree::FromString(yaml));
  ModelConfig c;
  ASSIGN_OR_RETURN(c.name, t.String("name", ""));
  if (c.name != directory_name) {
    return Bad("model.yaml name '" + c.name + "' differs from its directory '" + std::string(directory_name) + "'");
  }
  if (!IsValidModelName(c.name)) return Bad("model name '" + c.name + "' is not a valid name");
  ASSIGN_OR_RETURN(c.description, t.String("description", ""));
  ASSIGN_OR_RETURN(c.intended_use, t.String("intended_use", ""));
  if (c.intended_use.empty()) return Bad("intended_use is required: every model states what it is for");
  ASSIGN_OR_RETURN(std::string platform, t.String("platform", "torchscript"));
  if (platform != "torchscript") return Bad("platform must be torchscript, got '" + platform + "'");

  RETURN_IF_ERROR(ParseInput(t, c.input));
  RETURN_IF_ERROR(ParseOutput(t, c.output));
  ASSIGN_OR_RETURN(c.modalities, t.StringList("applicability.modalities", {}));
  ASSIGN_OR_RETURN(c.body_parts, t.StringList("applicability.body_parts", {}));
  ASSIGN_OR_RETURN(c.sop_classes, t.StringList("applicability.sop_classes", {}));
  RETURN_IF_ERROR(ParseBatching(t, c.batching));
  RETURN_IF_ERROR(ParsePlacement(t, c.placement));

  ASSIGN_OR_RETURN(std::string precision, t.String("precision", "fp32"));
  if (precision == "fp32") c.precision = Precision::kFp32;
  else if (precision == "fp16") c.precision = Precision::kFp16;
  else if (precision == "bf16") c.precision = Precision::kBf16;
  else return Bad("precision must be fp32, fp16 or bf16, got '" + precision + "'");

  ASSIGN_OR_RETURN(int64_t latest, t.Int("version_policy.latest", 1, 1, 1000));
  c.version_policy.latest = static_cast<int>(latest);
  ASSIGN_OR_RETURN(c.version_policy.specific, t.IntList("version_policy.specific", {}));
  if (t.Has("version_policy.latest") && !c.version_policy.specific.empty()) {
    return Bad("version_policy takes either latest or specific, not both");
  }
  for (int64_t v : c.version_policy.specific) {
    if (v < 1) return Bad("version_policy.specific versions must be positive");
  }

  // Training provenance is informational; it is accepted and not interpreted.
  for (const char* key : {"training.seed", "training.script", "training.train_images", "training.validation.auc",
                          "training.validation.sensitivity", "training.validation.specificity",
                          "training.validation.localization", "training.notes"}) {
    (void)t.String(key, "");
  }
  RETURN_IF_ERROR(t.CheckNoUnknownKeys());
  return c;
}

std::vector<int64_t> SelectVersions(const VersionPolicy& policy, std::vector<int64_t> available) {
  std::sort(available.begin(), available.end(), std::greater<>());
  std::vector<int64_t> out;
  if (!policy.specific.empty()) {
    for (int64_t v : available) {
      if (std::find(policy.specific.begin(), policy.specific.end(), v) != policy.specific.end()) out.push_back(v);
    }
    return out;
  }
  for (int64_t v : available) {
    if (static_cast<int>(out.size()) >= policy.latest) break;
    out.push_back(v);
  }
  return out;
}

}  // namespace secondread::inference
