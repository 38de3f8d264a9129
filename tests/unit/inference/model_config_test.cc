#include "inference/model_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace secondread::inference {
namespace {

constexpr char kGood[] = R"(
name: demo
description: test model
intended_use: testing only
platform: torchscript
input:
  channels: 3
  height: 224
  width: 192
  scaling: window
  window: {center: 40, width: 400}
  mean: [0.485, 0.456, 0.406]
  std: [0.229, 0.224, 0.225]
  accepted_dtypes: [uint16, int16]
output:
  scores_activation: none
  heatmap: true
  labels:
    - name: nodule
      code: {scheme: SCT, value: "27925004", meaning: Nodule}
      threshold: 0.4
    - name: effusion
      code: {scheme: SCT, value: "60046008", meaning: Pleural effusion}
      threshold: 0.6
applicability:
  modalities: [CR, DX]
  body_parts: [CHEST]
  sop_classes: ["1.2.840.10008.5.1.4.1.1.1"]
max_batch_size: 16
dynamic_batching:
  max_queue_delay_us: 500
  preferred_batch_sizes: [16, 4, 8]
  max_queue_size: 64
  priority_levels: 2
instance_group: {kind: cuda, devices: [0, 1], count: 2}
precision: bf16
version_policy: {specific: [1, 3]}
)";

TEST(ModelConfigTest, ParsesEveryField) {
  auto c = ParseModelConfig(kGood, "demo");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->input.channels, 3);
  EXPECT_EQ(c->input.height, 224);
  EXPECT_EQ(c->input.width, 192);
  EXPECT_EQ(c->input.scaling, Scaling::kWindow);
  EXPECT_DOUBLE_EQ(c->input.window_width, 400);
  EXPECT_EQ(c->input.values, PixelValues::kModality);  // a window's default
  EXPECT_EQ(c->input.mean.size(), 3u);
  EXPECT_EQ(c->input.accepted_dtypes, (std::vector<DType>{DType::kUint16, DType::kInt16}));
  EXPECT_EQ(c->output.scores_activation, Activation::kNone);
  ASSERT_EQ(c->output.labels.size(), 2u);
  EXPECT_EQ(c->output.labels[1].code.meaning, "Pleural effusion");
  EXPECT_DOUBLE_EQ(c->output.labels[0].threshold, 0.4);
  EXPECT_EQ(c->modalities, (std::vector<std::string>{"CR", "DX"}));
  EXPECT_EQ(c->batching.preferred_batch_sizes, (std::vector<int>{4, 8, 16}));
  EXPECT_EQ(c->batching.max_queue_delay_us, 500);
  EXPECT_TRUE(c->placement.cuda);
  EXPECT_EQ(c->placement.devices, (std::vector<int>{0, 1}));
  EXPECT_EQ(c->placement.count, 2);
  EXPECT_EQ(c->precision, Precision::kBf16);
  EXPECT_EQ(c->version_policy.specific, (std::vector<int64_t>{1, 3}));
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return text.replace(pos, from.size(), to);
}

TEST(ModelConfigTest, RefusesBrokenManifestsWithAReason) {
  struct Case {
    std::string yaml;
    std::string expect;
  };
  const std::string good = kGood;
  const std::vector<Case> cases = {
      {good, "differs from its directory"},  // parsed under another name below
      {Replace(good, "precision: bf16", "precision: int4"), "precision"},
      {Replace(good, "threshold: 0.4", "threshold: 1.4"), "threshold"},
      {Replace(good, "preferred_batch_sizes: [16, 4, 8]", "preferred_batch_sizes: [32]"), "preferred_batch_sizes"},
      {Replace(good, "scaling: window", "scaling: magic"), "input.scaling"},
      {Replace(good, "intended_use: testing only", "intended_use: \"\""), "intended_use"},
      {Replace(good, "mean: [0.485, 0.456, 0.406]", "mean: [0.4, 0.5]"), "input.mean"},
      {Replace(good, "platform: torchscript", "platform: onnx"), "platform"},
      {Replace(good, "max_queue_size: 64", "max_queue_size: 64\n  max_queue_dealy_us: 1"), "unknown configuration key"},
      {Replace(good, "accepted_dtypes: [uint16, int16]", "accepted_dtypes: [uint32]"), "dtype"},
      {Replace(good, "code: {scheme: SCT, value: \"27925004\", meaning: Nodule}", "code: {scheme: SCT}"), "code"},
      {"name: demo\ninput: [", "YAML"},
      {Replace(good, "scaling: window", "scaling: window\n  values: display"), "window needs modality values"},
      {Replace(good, "scaling: window", "scaling: window\n  values: hounsfield"), "input.values"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto c = ParseModelConfig(cases[i].yaml, i == 0 ? "other" : "demo");
    ASSERT_FALSE(c.ok()) << "case " << i;
    EXPECT_NE(c.status().message().find(cases[i].expect), std::string::npos)
        << "case " << i << ": " << c.status().message();
  }
}

TEST(ModelConfigTest, PixelValuesFollowTheScalingUnlessSet) {
  const std::string good = kGood;
  const std::string minmax = Replace(good, "scaling: window\n  window: {center: 40, width: 400}", "scaling: minmax");
  auto c = ParseModelConfig(minmax, "demo");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->input.values, PixelValues::kDisplay);

  c = ParseModelConfig(Replace(minmax, "scaling: minmax", "scaling: minmax\n  values: modality"), "demo");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->input.values, PixelValues::kModality);

  c = ParseModelConfig(
      Replace(minmax, "scaling: minmax", "scaling: range\n  range: [-1024, 3071]\n  values: modality"), "demo");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->input.values, PixelValues::kModality);
  EXPECT_DOUBLE_EQ(c->input.range_low, -1024);

  c = ParseModelConfig(Replace(good, "scaling: window", "scaling: window\n  values: modality"), "demo");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->input.values, PixelValues::kModality);
  EXPECT_EQ(PixelValuesName(PixelValues::kModality), "modality");
  EXPECT_EQ(PixelValuesName(PixelValues::kDisplay), "display");
}

constexpr char kVolume[] = R"(
name: spleen
intended_use: testing only
input:
  kind: volume
  channels: 1
  axes: WHD
  orientation: RAS
  spacing: [1.5, 1.0, 0.8]
  interpolation: linear
  intensity: {kind: range, low: -57, high: 164, clip: true}
  accepted_dtypes: [int16, float32]
sliding_window:
  roi: [96, 128, 112]
  overlap: 0.5
  blending: gaussian
  sigma_scale: 0.2
  batch_size: 4
output:
  kind: label_map
  resample_back: false
  labels:
    - name: spleen
      category: {scheme: SCT, value: "123037004", meaning: Anatomical Structure}
      type: {scheme: SCT, value: "78961009", meaning: Spleen}
      threshold: 0.5
instance_group: {kind: cuda}
)";

TEST(ModelConfigTest, ParsesAVolumeModel) {
  auto c = ParseModelConfig(kVolume, "spleen");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->input.kind, InputKind::kVolume);
  EXPECT_EQ(c->input.values, PixelValues::kModality);
  EXPECT_EQ(c->volume.axes, "WHD");
  EXPECT_EQ(c->volume.orientation, Orientation::kRas);
  EXPECT_EQ(c->volume.spacing, (std::array<double, 3>{1.5, 1.0, 0.8}));
  EXPECT_EQ(c->volume.interpolation, Interpolation::kLinear);
  EXPECT_EQ(c->volume.intensity, Intensity::kRange);
  EXPECT_DOUBLE_EQ(c->volume.low, -57);
  EXPECT_DOUBLE_EQ(c->volume.high, 164);
  EXPECT_TRUE(c->volume.clip);
  EXPECT_EQ(c->volume.roi, (std::array<int64_t, 3>{96, 128, 112}));
  EXPECT_DOUBLE_EQ(c->volume.overlap, 0.5);
  EXPECT_EQ(c->volume.blending, Blending::kGaussian);
  EXPECT_DOUBLE_EQ(c->volume.sigma_scale, 0.2);
  EXPECT_EQ(c->volume.sw_batch_size, 4);
  EXPECT_EQ(c->volume.output, VolumeOutputKind::kLabelMap);
  EXPECT_FALSE(c->volume.resample_back);
  ASSERT_EQ(c->output.labels.size(), 1u);
  EXPECT_EQ(c->output.labels[0].category.value, "123037004");
  EXPECT_EQ(c->output.labels[0].type.meaning, "Spleen");
  EXPECT_EQ(c->output.labels[0].code.value, "78961009");  // the type, when no code is given
  EXPECT_TRUE(c->placement.cuda);
}

TEST(ModelConfigTest, VolumeIntensityKindsAndDefaults) {
  const std::string v = kVolume;
  const std::string range = "intensity: {kind: range, low: -57, high: 164, clip: true}";
  auto c = ParseModelConfig(Replace(v, range, "intensity: {kind: window, center: 40, width: 400}"), "spleen");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->volume.intensity, Intensity::kWindow);
  EXPECT_DOUBLE_EQ(c->volume.window_width, 400);
  c = ParseModelConfig(Replace(v, range, "intensity: {kind: zscore, over: nonzero}"), "spleen");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->volume.intensity, Intensity::kZScore);
  EXPECT_TRUE(c->volume.zscore_nonzero);
  c = ParseModelConfig(Replace(v, range, "intensity: {kind: suv_range, low: 0, high: 20, clip: false}"), "spleen");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->volume.intensity, Intensity::kSuvRange);
  EXPECT_FALSE(c->volume.clip);
  // Without the optional keys: LPS, DHW, the source spacing, gaussian 0.125,
  // results on the source grid.
  c = ParseModelConfig(R"(
name: minimal
intended_use: testing only
input: {kind: volume}
sliding_window: {roi: [32, 32, 32]}
output:
  labels:
    - name: liver
      category: {scheme: SCT, value: "123037004", meaning: Anatomical Structure}
      type: {scheme: SCT, value: "10200004", meaning: Liver}
      threshold: 0.5
)",
                       "minimal");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->volume.orientation, Orientation::kLps);
  EXPECT_EQ(c->volume.axes, "DHW");
  EXPECT_EQ(c->volume.spacing, (std::array<double, 3>{0, 0, 0}));
  EXPECT_EQ(c->volume.intensity, Intensity::kNone);
  EXPECT_EQ(c->volume.blending, Blending::kGaussian);
  EXPECT_DOUBLE_EQ(c->volume.sigma_scale, 0.125);
  EXPECT_DOUBLE_EQ(c->volume.overlap, 0.25);
  EXPECT_EQ(c->volume.output, VolumeOutputKind::kLabelMap);
  EXPECT_TRUE(c->volume.resample_back);
}

TEST(ModelConfigTest, RefusesBrokenVolumeManifestsWithAReason) {
  const std::string v = kVolume;
  const std::string range = "intensity: {kind: range, low: -57, high: 164, clip: true}";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {Replace(v, "kind: volume", "kind: hologram"), "input.kind"},
      {Replace(v, "axes: WHD", "axes: DHH"), "input.axes"},
      {Replace(v, "orientation: RAS", "orientation: LPI"), "input.orientation"},
      {Replace(v, "spacing: [1.5, 1.0, 0.8]", "spacing: [1.5, 1.0]"), "input.spacing"},
      {Replace(v, "spacing: [1.5, 1.0, 0.8]", "spacing: [1.5, 0, 0.8]"), "input.spacing"},
      {Replace(v, "interpolation: linear", "interpolation: cubic"), "input.interpolation"},
      {Replace(v, range, "intensity: {kind: range, low: 164, high: -57}"), "high > low"},
      {Replace(v, range, "intensity: {kind: window, center: 40}"), "center and width"},
      {Replace(v, range, "intensity: {kind: zscore, over: some}"), "input.intensity.over"},
      {Replace(v, range, "intensity: {kind: suv_range, low: -1, high: 5}"), "suv_range"},
      {Replace(v, range, "intensity: {kind: histogram}"), "input.intensity.kind"},
      {Replace(v, "  channels: 1\n", "  channels: 1\n  values: display\n"), "input.values"},
      {Replace(v, "  channels: 1\n", "  channels: 1\n  height: 256\n"), "unknown configuration key"},
      {Replace(v, "roi: [96, 128, 112]", "roi: [96, 128]"), "sliding_window.roi"},
      {Replace(v, "roi: [96, 128, 112]", "roi: [96, 0, 112]"), "sliding_window.roi"},
      {Replace(v, "overlap: 0.5", "overlap: 1"), "sliding_window.overlap"},
      {Replace(v, "overlap: 0.5", "overlap: -0.1"), "sliding_window.overlap"},
      {Replace(v, "blending: gaussian", "blending: median"), "sliding_window.blending"},
      {Replace(v, "blending: gaussian", "blending: constant"), "sigma_scale applies to gaussian"},
      {Replace(v, "sigma_scale: 0.2", "sigma_scale: 0"), "sigma_scale"},
      {Replace(v, "batch_size: 4", "batch_size: 0"), "sliding_window.batch_size"},
      {Replace(v, "kind: label_map", "kind: mesh"), "output.kind"},
      {Replace(v, "resample_back: false", "resample_back: maybe"), "resample_back"},
      {Replace(v, "      category: {scheme: SCT, value: \"123037004\", meaning: Anatomical Structure}\n", ""),
       "category"},
      {Replace(v, "type: {scheme: SCT, value: \"78961009\", meaning: Spleen}", "type: {scheme: SCT}"), "type"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto c = ParseModelConfig(cases[i].first, "spleen");
    ASSERT_FALSE(c.ok()) << "case " << i;
    EXPECT_NE(c.status().message().find(cases[i].second), std::string::npos)
        << "case " << i << ": " << c.status().message();
  }
  // sliding_window is required: a volume model without a ROI cannot run.
  auto c = ParseModelConfig(Replace(v, "sliding_window:\n  roi: [96, 128, 112]\n", "sliding_window:\n"), "spleen");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("sliding_window.roi is required"), std::string::npos) << c.status().message();
}

TEST(ModelConfigTest, ModelNamesCannotEscapeTheRepository) {
  EXPECT_TRUE(IsValidModelName("synthetic-nodule-demo"));
  EXPECT_TRUE(IsValidModelName("densenet121.v2_b"));
  for (const char* bad : {"", "..", ".hidden", "a/b", "../etc", "a b", "x\n"}) {
    EXPECT_FALSE(IsValidModelName(bad)) << bad;
  }
}

TEST(ModelConfigTest, VersionPolicySelectsNewestOrSpecific) {
  VersionPolicy latest2;
  latest2.latest = 2;
  EXPECT_EQ(SelectVersions(latest2, {1, 5, 3}), (std::vector<int64_t>{5, 3}));
  VersionPolicy specific;
  specific.specific = {1, 4};
  EXPECT_EQ(SelectVersions(specific, {1, 2, 3}), (std::vector<int64_t>{1}));
  EXPECT_TRUE(SelectVersions(latest2, {}).empty());
}

}  // namespace
}  // namespace secondread::inference

// Every model the project ships must load: a key the parser does not know
// would leave the model unavailable on every worker.
TEST(ModelConfigTest, EveryCommittedModelParses) {
  namespace fs = std::filesystem;
  const fs::path repository = fs::path(SECONDREAD_SOURCE_DIR) / "tools" / "models" / "repository";
  int parsed = 0;
  for (const auto& entry : fs::directory_iterator(repository)) {
    const fs::path yaml = entry.path() / "model.yaml";
    if (!fs::exists(yaml)) continue;
    std::ifstream in(yaml);
    std::stringstream text;
    text << in.rdbuf();
    auto c = secondread::inference::ParseModelConfig(text.str(), entry.path().filename().string());
    EXPECT_TRUE(c.ok()) << yaml << ": " << c.status();
    ++parsed;
  }
  EXPECT_GE(parsed, 4);
}
