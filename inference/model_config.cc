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

std::string_view InputKindName(InputKind k) { return k == InputKind::kVolume ? "volume" : "image"; }
std::string_view OrientationName(Orientation o) { return o == Orientation::kRas ? "RAS" : "LPS"; }
std::string_view InterpolationName(Interpolation i) { return i == Interpolation::kNearest ? "nearest" : "linear"; }
std::string_view BlendingName(Blending b) { return b == Blending::kConstant ? "constant" : "gaussian"; }
std::string_view VolumeOutputKindName(VolumeOutputKind k) {
  return k == VolumeOutputKind::kProbabilities ? "probabilities" : "label_map";
}

std::string_view IntensityName(Intensity i) {
  switch (i) {
    case Intensity::kNone: return "none";
    case Intensity::kWindow: return "window";
    case Intensity::kRange: return "range";
    case Intensity::kZScore: return "zscore";
    case Intensity::kSuvRange: return "suv_range";
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

absl::Status ParseDTypes(config::ConfigTree& t, InputConfig& in) {
  ASSIGN_OR_RETURN(auto dtypes, t.StringList("input.accepted_dtypes", {"uint8", "uint16", "int16", "float16", "float32"}));
  for (const auto& name : dtypes) {
    ASSIGN_OR_RETURN(DType d, ParseDType(name));
    in.accepted_dtypes.push_back(d);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::array<double, 3>> Triple(config::ConfigTree& t, const std::string& key, const char* what) {
  ASSIGN_OR_RETURN(auto v, t.DoubleList(key, {}));
  if (v.size() != 3) return Bad(key + " must be three numbers (" + what + ")");
  return std::array<double, 3>{v[0], v[1], v[2]};
}

// The volume half of input, plus sliding_window. Spacing, ROI and the
// intensity transform live in the manifest rather than the network because
// that is where model bundles keep them, and the worker must reproduce them
// exactly.
absl::Status ParseVolumeInput(config::ConfigTree& t, InputConfig& in, VolumeConfig& v) {
  ASSIGN_OR_RETURN(int64_t channels, t.Int("input.channels", 1, 1, 16));
  in.channels = static_cast<int>(channels);
  // Physical values only: an intensity transform on a display rendering
  // would mean nothing.
  ASSIGN_OR_RETURN(std::string values, t.String("input.values", "modality"));
  if (values != "modality") return Bad("input.values must be modality for a volume model, got '" + values + "'");
  in.values = PixelValues::kModality;
  in.scaling = Scaling::kRange;

  ASSIGN_OR_RETURN(v.axes, t.String("input.axes", "DHW"));
  {
    std::string sorted = v.axes;
    std::sort(sorted.begin(), sorted.end());
    if (sorted != "DHW") return Bad("input.axes must be a permutation of D, H and W, got '" + v.axes + "'");
  }
  ASSIGN_OR_RETURN(std::string orientation, t.String("input.orientation", "LPS"));
  if (orientation == "LPS") v.orientation = Orientation::kLps;
  else if (orientation == "RAS") v.orientation = Orientation::kRas;
  else return Bad("input.orientation must be LPS or RAS, got '" + orientation + "'");

  if (t.Has("input.spacing")) {
    ASSIGN_OR_RETURN(v.spacing, Triple(t, "input.spacing", "z y x in mm"));
    for (double s : v.spacing) {
      if (!(s > 0 && s <= 100)) return Bad("input.spacing values must lie in (0, 100] mm");
    }
  }
  ASSIGN_OR_RETURN(std::string interpolation, t.String("input.interpolation", "linear"));
  if (interpolation == "linear") v.interpolation = Interpolation::kLinear;
  else if (interpolation == "nearest") v.interpolation = Interpolation::kNearest;
  else return Bad("input.interpolation must be linear or nearest, got '" + interpolation + "'");

  ASSIGN_OR_RETURN(std::string kind, t.String("input.intensity.kind", "none"));
  if (kind == "none") {
    v.intensity = Intensity::kNone;
  } else if (kind == "window") {
    v.intensity = Intensity::kWindow;
    if (!t.Has("input.intensity.center") || !t.Has("input.intensity.width")) {
      return Bad("input.intensity window needs center and width");
    }
    ASSIGN_OR_RETURN(v.window_center, t.Double("input.intensity.center", 0, -1e9, 1e9));
    ASSIGN_OR_RETURN(v.window_width, t.Double("input.intensity.width", 0, 0, 1e9));
    if (!(v.window_width > 0)) return Bad("input.intensity.width must be positive");
  } else if (kind == "range" || kind == "suv_range") {
    v.intensity = kind == "range" ? Intensity::kRange : Intensity::kSuvRange;
    if (!t.Has("input.intensity.low") || !t.Has("input.intensity.high")) {
      return Bad("input.intensity " + kind + " needs low and high");
    }
    ASSIGN_OR_RETURN(v.low, t.Double("input.intensity.low", 0, -1e9, 1e9));
    ASSIGN_OR_RETURN(v.high, t.Double("input.intensity.high", 0, -1e9, 1e9));
    if (!(v.high > v.low)) return Bad("input.intensity needs high > low");
    if (v.intensity == Intensity::kSuvRange && v.low < 0) return Bad("input.intensity suv_range needs low >= 0");
    ASSIGN_OR_RETURN(v.clip, t.Bool("input.intensity.clip", true));
  } else if (kind == "zscore") {
    v.intensity = Intensity::kZScore;
    ASSIGN_OR_RETURN(std::string over, t.String("input.intensity.over", "all"));
    if (over == "all") v.zscore_nonzero = false;
    else if (over == "nonzero") v.zscore_nonzero = true;
    else return Bad("input.intensity.over must be all or nonzero, got '" + over + "'");
  } else {
    return Bad("input.intensity.kind must be none, window, range, zscore or suv_range, got '" + kind + "'");
  }
  RETURN_IF_ERROR(ParseDTypes(t, in));

  ASSIGN_OR_RETURN(auto roi, t.IntList("sliding_window.roi", {}));
  if (roi.size() != 3) return Bad("sliding_window.roi is required: three sizes d, h, w in voxels");
  for (size_t i = 0; i < 3; ++i) {
    if (roi[i] < 1 || roi[i] > 1024) return Bad("sliding_window.roi sizes must lie between 1 and 1024");
    v.roi[i] = roi[i];
  }
  ASSIGN_OR_RETURN(v.overlap, t.Double("sliding_window.overlap", 0.25, 0, 1));
  if (!(v.overlap < 1)) return Bad("sliding_window.overlap must be at least 0 and below 1");
  ASSIGN_OR_RETURN(std::string blending, t.String("sliding_window.blending", "gaussian"));
  if (blending == "gaussian") v.blending = Blending::kGaussian;
  else if (blending == "constant") v.blending = Blending::kConstant;
  else return Bad("sliding_window.blending must be gaussian or constant, got '" + blending + "'");
  ASSIGN_OR_RETURN(v.sigma_scale, t.Double("sliding_window.sigma_scale", 0.125, 0, 10));
  if (!(v.sigma_scale > 0)) return Bad("sliding_window.sigma_scale must be positive");
  if (v.blending == Blending::kConstant && t.Has("sliding_window.sigma_scale")) {
    return Bad("sliding_window.sigma_scale applies to gaussian blending only");
  }
  ASSIGN_OR_RETURN(int64_t batch, t.Int("sliding_window.batch_size", 1, 1, 256));
  v.sw_batch_size = static_cast<int>(batch);
  return absl::OkStatus();
}

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

  return ParseDTypes(t, in);
}

absl::Status ParseCode(config::ConfigTree& t, const std::string& key, CodedConcept& code) {
  ASSIGN_OR_RETURN(code.scheme, t.String(key + ".scheme", ""));
  ASSIGN_OR_RETURN(code.value, t.String(key + ".value", ""));
  ASSIGN_OR_RETURN(code.meaning, t.String(key + ".meaning", ""));
  if (code.scheme.empty() || code.value.empty() || code.meaning.empty()) {
    return Bad(key + " needs scheme, value and meaning");
  }
  return absl::OkStatus();
}

absl::Status ParseOutput(config::ConfigTree& t, bool volume, OutputConfig& out, VolumeConfig& v) {
  if (volume) {
    ASSIGN_OR_RETURN(std::string kind, t.String("output.kind", "label_map"));
    if (kind == "label_map") v.output = VolumeOutputKind::kLabelMap;
    else if (kind == "probabilities") v.output = VolumeOutputKind::kProbabilities;
    else return Bad("output.kind must be label_map or probabilities, got '" + kind + "'");
    ASSIGN_OR_RETURN(v.resample_back, t.Bool("output.resample_back", true));
  } else {
    ASSIGN_OR_RETURN(out.scores_activation, ParseActivation(t, "output.scores_activation"));
    ASSIGN_OR_RETURN(out.heatmap, t.Bool("output.heatmap", false));
    ASSIGN_OR_RETURN(out.heatmap_activation, ParseActivation(t, "output.heatmap_activation"));
  }
  ASSIGN_OR_RETURN(size_t n, t.ListSize("output.labels"));
  // A uint8 label map numbers labels 1..255, 0 being background.
  if (volume && n > 255) return Bad("output.labels: a volume model has at most 255 labels");
  if (n == 0) return Bad("output.labels must list at least one label");
  for (size_t i = 0; i < n; ++i) {
    const std::string k = "output.labels." + std::to_string(i) + ".";
    LabelConfig label;
    ASSIGN_OR_RETURN(label.name, t.String(k + "name", ""));
    ASSIGN_OR_RETURN(label.threshold, t.Double(k + "threshold", -1, 0, 1));
    if (label.name.empty()) return Bad(k + "name is required");
    if (volume) {
      // A segment is described by its category and type; the finding code
      // defaults to the type so that image-level consumers still get one.
      RETURN_IF_ERROR(ParseCode(t, k + "category", label.category));
      RETURN_IF_ERROR(ParseCode(t, k + "type", label.type));
      if (t.Has(k + "code")) {
        RETURN_IF_ERROR(ParseCode(t, k + "code", label.code));
      } else {
        label.code = label.type;
      }
    } else {
      RETURN_IF_ERROR(ParseCode(t, k + "code", label.code));
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

  ASSIGN_OR_RETURN(std::string kind, t.String("input.kind", "image"));
  if (kind == "image") c.input.kind = InputKind::kImage;
  else if (kind == "volume") c.input.kind = InputKind::kVolume;
  else return Bad("input.kind must be image or volume, got '" + kind + "'");
  const bool volume = c.input.kind == InputKind::kVolume;
  if (volume) {
    RETURN_IF_ERROR(ParseVolumeInput(t, c.input, c.volume));
  } else {
    RETURN_IF_ERROR(ParseInput(t, c.input));
  }
  RETURN_IF_ERROR(ParseOutput(t, volume, c.output, c.volume));
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
                          "training.validation.localization", "training.notes", "training.train_volumes",
                          "training.steps", "training.sha256", "training.validation.volumes",
                          "training.validation.dice", "training.validation.false_positives_per_volume"}) {
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
