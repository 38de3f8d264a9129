#include "worklist/pipeline/routing.h"

#include <gtest/gtest.h>

#include <functional>
#include <limits>

namespace secondread::worklist {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

RoutingRule ChestRule() {
  RoutingRule r;
  r.name = "chest";
  r.modalities = {"CR", "DX"};
  r.body_parts = {"CHEST"};
  r.image_types = {"ORIGINAL"};
  r.calling_aes = {"ORTHANC"};
  r.series_description = "(?i)pa|chest";
  r.models = {{"synthetic-nodule-demo", 0}};
  return r;
}

InstanceFacts ChestFacts() {
  return {"CR", "CHEST ", "1.2.840.10008.5.1.4.1.1.1", "ORIGINAL\\PRIMARY", "ORTHANC", "SECONDREAD", "Chest PA"};
}

TEST(RoutingTest, MatchesEveryCriterion) {
  std::vector<RoutingRule> rules{ChestRule()};
  ASSERT_TRUE(ValidateRules(rules).ok());
  EXPECT_TRUE(MatchesInstance(rules[0], ChestFacts()));

  auto f = ChestFacts();
  f.modality = "CT";
  EXPECT_FALSE(MatchesInstance(rules[0], f));
  f = ChestFacts();
  f.body_part = "ABDOMEN";
  EXPECT_FALSE(MatchesInstance(rules[0], f));
  f = ChestFacts();
  f.image_type = "DERIVED\\SECONDARY";
  EXPECT_FALSE(MatchesInstance(rules[0], f));
  f = ChestFacts();
  f.calling_ae = "MODALITY1";
  EXPECT_FALSE(MatchesInstance(rules[0], f));
  f = ChestFacts();
  f.series_description = "Lateral";
  EXPECT_FALSE(MatchesInstance(rules[0], f));
}

TEST(RoutingTest, SopClassAndCalledAe) {
  RoutingRule r = ChestRule();
  r.sop_classes = {"1.2.840.10008.5.1.4.1.1.1.1"};
  r.called_aes = {"SECONDREAD"};
  std::vector<RoutingRule> rules{r};
  ASSERT_TRUE(ValidateRules(rules).ok());
  auto f = ChestFacts();
  EXPECT_FALSE(MatchesInstance(rules[0], f));
  f.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.1";
  EXPECT_TRUE(MatchesInstance(rules[0], f));
  f.called_ae = "OTHER";
  EXPECT_FALSE(MatchesInstance(rules[0], f));
}

TEST(RoutingTest, EmptyCriteriaMatchAnything) {
  RoutingRule r;
  r.name = "all";
  r.models = {{"m", 0}};
  std::vector<RoutingRule> rules{r};
  ASSERT_TRUE(ValidateRules(rules).ok());
  EXPECT_TRUE(MatchesInstance(rules[0], InstanceFacts{}));
}

TEST(RoutingTest, ImageCountBounds) {
  RoutingRule r = ChestRule();
  r.min_images = 2;
  r.max_images = 4;
  EXPECT_FALSE(MatchesImageCount(r, 1));
  EXPECT_TRUE(MatchesImageCount(r, 2));
  EXPECT_TRUE(MatchesImageCount(r, 4));
  EXPECT_FALSE(MatchesImageCount(r, 5));
  r.max_images = 0;
  EXPECT_TRUE(MatchesImageCount(r, 500));
}

TEST(RoutingTest, RefusesBadRules) {
  std::vector<RoutingRule> rules{ChestRule(), ChestRule()};
  EXPECT_FALSE(ValidateRules(rules).ok());  // duplicate names
  RoutingRule bad = ChestRule();
  bad.series_description = "(unclosed";
  rules = {bad};
  auto st = ValidateRules(rules);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("chest"), std::string::npos);
  RoutingRule no_models = ChestRule();
  no_models.models.clear();
  rules = {no_models};
  EXPECT_FALSE(ValidateRules(rules).ok());
  RoutingRule bounds = ChestRule();
  bounds.min_images = 5;
  bounds.max_images = 2;
  rules = {bounds};
  EXPECT_FALSE(ValidateRules(rules).ok());
}

TEST(RoutingTest, PatternIsLinearTimeOnHostileInput) {
  RoutingRule r = ChestRule();
  r.series_description = "(a+)+b";  // catastrophic for a backtracking engine
  std::vector<RoutingRule> rules{r};
  ASSERT_TRUE(ValidateRules(rules).ok());
  auto f = ChestFacts();
  f.series_description = std::string(10000, 'a');
  auto start = Clock::now();
  EXPECT_FALSE(MatchesInstance(rules[0], f));
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST(RoutingTest, BurnedInTextIsLeftOutUnlessTheRuleAllowsIt) {
  RoutingRule rule = ChestRule();
  InstanceFacts us{"US", "ABDOMEN", "1.2.840.10008.5.1.4.1.1.6.1", "ORIGINAL\\PRIMARY", "ORTHANC", "SECONDREAD", ""};

  us.burned_in_annotation = "YES";
  EXPECT_EQ(BurnedInTextSkipReason(rule, us), "burned_in_annotation");
  us.burned_in_annotation = "YES ";  // CS padding
  EXPECT_EQ(BurnedInTextSkipReason(rule, us), "burned_in_annotation");
  us.burned_in_annotation = "NO";
  EXPECT_EQ(BurnedInTextSkipReason(rule, us), "");
  // Silence from an ultrasound is not a NO.
  us.burned_in_annotation = "";
  EXPECT_EQ(BurnedInTextSkipReason(rule, us), "burned_in_annotation_unknown");
  us.burned_in_annotation = "MAYBE";
  EXPECT_EQ(BurnedInTextSkipReason(rule, us), "burned_in_annotation_unknown");

  // A radiograph that says YES is left out; one that does not say is read.
  InstanceFacts dx = ChestFacts();
  dx.burned_in_annotation = "YES";
  EXPECT_EQ(BurnedInTextSkipReason(rule, dx), "burned_in_annotation");
  dx.burned_in_annotation = "";
  EXPECT_EQ(BurnedInTextSkipReason(rule, dx), "");

  // A screen capture stored as CT is still a screen capture.
  InstanceFacts capture{"CT", "", "1.2.840.10008.5.1.4.1.1.7", "DERIVED\\SECONDARY", "ORTHANC", "SECONDREAD", ""};
  EXPECT_EQ(BurnedInTextSkipReason(rule, capture), "burned_in_annotation_unknown");
  capture.sop_class_uid = "1.2.840.10008.5.1.4.1.1.7.4";  // Multi-frame True Color SC
  EXPECT_EQ(BurnedInTextSkipReason(rule, capture), "burned_in_annotation_unknown");
  InstanceFacts photo{"XC", "", "1.2.840.10008.5.1.4.1.1.77.1.4", "", "ORTHANC", "SECONDREAD", ""};
  EXPECT_EQ(BurnedInTextSkipReason(rule, photo), "burned_in_annotation_unknown");
  EXPECT_FALSE(UsuallyCarriesBurnedInText("CT", "1.2.840.10008.5.1.4.1.1.2"));
  EXPECT_FALSE(UsuallyCarriesBurnedInText("MR", "1.2.840.10008.5.1.4.1.1.4"));
  EXPECT_TRUE(UsuallyCarriesBurnedInText("US ", "1.2.840.10008.5.1.4.1.1.6.1"));

  rule.burned_in_text = BurnedInText::kAllow;
  us.burned_in_annotation = "YES";
  EXPECT_EQ(BurnedInTextSkipReason(rule, us), "");
  us.burned_in_annotation = "";
  EXPECT_EQ(BurnedInTextSkipReason(rule, us), "");
}

// A volume rule for axial CT of 50 to 600 slices, 0.5 to 2.5 mm, original
// primary axial images, one object per slice.
RoutingRule VolumeRule() {
  RoutingRule r;
  r.name = "ct-volume";
  r.modalities = {"CT"};
  r.input = ReadInput::kVolume;
  r.series.min_slices = 50;
  r.series.max_slices = 600;
  r.series.slice_thickness_lo_mm = 0.5;
  r.series.slice_thickness_hi_mm = 2.5;
  r.series.orientations = {"axial"};
  r.series.image_types = {"ORIGINAL", "PRIMARY", "AXIAL"};
  r.series.multiframe = false;
  r.models = {{"ct-volume-demo", 0}};
  return r;
}

SeriesFacts AxialSeries() {
  SeriesFacts f;
  f.series_id = 7;
  f.series_instance_uid = "1.2.3.7";
  f.instances = 120;
  f.slices = 120;
  f.orientations = {"axial"};
  f.min_thickness_mm = 1.0;
  f.max_thickness_mm = 1.25;
  f.image_types = {"ORIGINAL\\PRIMARY\\AXIAL", "ORIGINAL\\PRIMARY\\AXIAL\\HELICAL "};
  return f;
}

RoutingRule Validated(RoutingRule r) {
  std::vector<RoutingRule> rules{std::move(r)};
  EXPECT_TRUE(ValidateRules(rules).ok()) << ValidateRules(rules);
  return rules[0];
}

TEST(SeriesMatchTest, MatchesEveryKey) {
  const RoutingRule rule = Validated(VolumeRule());
  EXPECT_TRUE(MatchesSeries(rule, AxialSeries()));
  // With no series criteria beyond the slice count, anything that long matches.
  RoutingRule loose;
  loose.name = "loose";
  loose.input = ReadInput::kVolume;
  loose.series.min_slices = 2;
  loose.models = {{"m", 0}};
  loose = Validated(loose);
  SeriesFacts bare;
  bare.instances = 2;
  bare.slices = 2;
  EXPECT_TRUE(MatchesSeries(loose, bare));
  bare.slices = 1;
  EXPECT_FALSE(MatchesSeries(loose, bare));
  bare.instances = 0;
  bare.slices = 5;
  EXPECT_FALSE(MatchesSeries(loose, bare)) << "a series with no matching instance";
}

TEST(SeriesMatchTest, SliceCountBoundsAreInclusive) {
  const RoutingRule rule = Validated(VolumeRule());
  auto f = AxialSeries();
  for (int64_t n : {49, 50, 51, 599, 600, 601}) {
    f.instances = f.slices = n;
    EXPECT_EQ(MatchesSeries(rule, f), n >= 50 && n <= 600) << n;
  }
  RoutingRule open = VolumeRule();
  open.series.max_slices = 0;  // no upper bound
  open = Validated(open);
  f.instances = f.slices = 100000;
  EXPECT_TRUE(MatchesSeries(open, f));
}

TEST(SeriesMatchTest, MultiframeSlicesAreItsFrames) {
  RoutingRule rule = VolumeRule();
  rule.series.multiframe = true;
  rule = Validated(rule);
  auto f = AxialSeries();
  f.instances = 1;
  f.multiframe_instances = 1;
  f.slices = 49;  // one enhanced object of 49 frames
  EXPECT_FALSE(MatchesSeries(rule, f));
  f.slices = 50;
  EXPECT_TRUE(MatchesSeries(rule, f));
  // Multi-frame wanted: every object must be multi-frame.
  f.instances = 2;
  EXPECT_FALSE(MatchesSeries(rule, f));
  // Single-frame wanted: none may be.
  const RoutingRule single = Validated(VolumeRule());
  f = AxialSeries();
  EXPECT_TRUE(MatchesSeries(single, f));
  f.multiframe_instances = 1;
  EXPECT_FALSE(MatchesSeries(single, f));
  // Not set: either.
  RoutingRule either = VolumeRule();
  either.series.multiframe.reset();
  either = Validated(either);
  EXPECT_TRUE(MatchesSeries(either, f));
}

TEST(SeriesMatchTest, SliceThicknessRangeIsInclusiveAndNeedsEveryImage) {
  const RoutingRule rule = Validated(VolumeRule());
  auto f = AxialSeries();
  f.min_thickness_mm = 0.5;
  f.max_thickness_mm = 2.5;
  EXPECT_TRUE(MatchesSeries(rule, f)) << "both bounds are inside";
  f.min_thickness_mm = 0.49;
  EXPECT_FALSE(MatchesSeries(rule, f));
  f.min_thickness_mm = 1.0;
  f.max_thickness_mm = 2.51;
  EXPECT_FALSE(MatchesSeries(rule, f)) << "one thick image spoils the series";
  // Decimal text read as binary: "2.5" written differently still matches.
  f.max_thickness_mm = 2.5000000001;
  EXPECT_TRUE(MatchesSeries(rule, f));
  f.min_thickness_mm.reset();
  f.max_thickness_mm.reset();
  EXPECT_FALSE(MatchesSeries(rule, f)) << "an image without Slice Thickness";
}

TEST(SeriesMatchTest, OrientationEveryImageInTheList) {
  const RoutingRule rule = Validated(VolumeRule());
  auto f = AxialSeries();
  for (const char* o : {"coronal", "sagittal", "oblique", ""}) {
    f.orientations = {o};
    EXPECT_FALSE(MatchesSeries(rule, f)) << o;
  }
  f.orientations = {"axial", "coronal"};
  EXPECT_FALSE(MatchesSeries(rule, f)) << "a series of mixed planes";
  f.orientations = {};
  EXPECT_FALSE(MatchesSeries(rule, f));
  RoutingRule both = VolumeRule();
  both.series.orientations = {"axial", "coronal"};
  both = Validated(both);
  f.orientations = {"axial", "coronal"};
  EXPECT_TRUE(MatchesSeries(both, f));
  f.orientations = {"coronal"};
  EXPECT_TRUE(MatchesSeries(both, f));
}

TEST(SeriesMatchTest, ImageTypeValuesInEveryImage) {
  const RoutingRule rule = Validated(VolumeRule());
  auto f = AxialSeries();
  f.image_types = {"ORIGINAL\\PRIMARY\\AXIAL"};
  EXPECT_TRUE(MatchesSeries(rule, f));
  f.image_types = {"ORIGINAL\\PRIMARY\\AXIAL", "DERIVED\\SECONDARY\\AXIAL"};
  EXPECT_FALSE(MatchesSeries(rule, f)) << "one derived image";
  f.image_types = {"ORIGINAL\\PRIMARY"};
  EXPECT_FALSE(MatchesSeries(rule, f)) << "a value missing";
  f.image_types = {"ORIGINAL\\PRIMARY\\AXIALX"};
  EXPECT_FALSE(MatchesSeries(rule, f)) << "values compare whole, not as prefixes";
  f.image_types = {};
  EXPECT_FALSE(MatchesSeries(rule, f));
}

TEST(SeriesMatchTest, PlanIsOneVolumeReadPerMatchingSeriesAndModel) {
  RoutingRule rule = VolumeRule();
  rule.models = {{"a", 0}, {"b", 3}};
  rule.priority = 0;
  rule.mode = ReadMode::kShadow;
  rule = Validated(rule);
  auto axial = AxialSeries();
  auto coronal = AxialSeries();
  coronal.series_id = 8;
  coronal.series_instance_uid = "1.2.3.8";
  coronal.orientations = {"coronal"};
  auto short_series = AxialSeries();
  short_series.series_id = 9;
  short_series.instances = short_series.slices = 20;
  auto plan = PlanVolumeReads(rule, {coronal, axial, short_series});
  ASSERT_EQ(plan.size(), 2u);
  for (size_t k = 0; k < plan.size(); ++k) {
    EXPECT_EQ(plan[k].series_id, 7);
    EXPECT_EQ(plan[k].series_instance_uid, "1.2.3.7");
    EXPECT_EQ(plan[k].rule, "ct-volume");
    EXPECT_EQ(plan[k].priority, 0);
    EXPECT_EQ(plan[k].mode, ReadMode::kShadow);
    EXPECT_EQ(plan[k].queue, kVolumeQueue);
  }
  EXPECT_EQ(plan[0].model.name, "a");
  EXPECT_EQ(plan[1].model.name, "b");
  EXPECT_EQ(plan[1].model.version, 3);
  // An image rule plans no volume read, whatever the series.
  RoutingRule image = ChestRule();
  image = Validated(image);
  EXPECT_TRUE(PlanVolumeReads(image, {axial}).empty());
  EXPECT_STREQ(InputName(ReadInput::kVolume), "volume");
  EXPECT_STREQ(InputName(ReadInput::kImage), "image");
}

// series.resample is no criterion: it matches what the rule matches without
// it, and every read the rule plans carries it to the volume dispatcher.
TEST(SeriesMatchTest, ResampleTravelsOnEveryVolumeReadAndOnlyVolumeRulesTakeIt) {
  RoutingRule plain = Validated(VolumeRule());
  RoutingRule resampling = VolumeRule();
  resampling.series.resample = true;
  resampling.models = {{"a", 0}, {"b", 3}};
  resampling = Validated(resampling);
  const SeriesFacts axial = AxialSeries();
  EXPECT_EQ(MatchesSeries(resampling, axial), MatchesSeries(plain, axial));
  const auto with = PlanVolumeReads(resampling, {axial});
  ASSERT_EQ(with.size(), 2u);
  for (const auto& r : with) EXPECT_TRUE(r.resample) << r.model.name;
  const auto without = PlanVolumeReads(plain, {axial});
  ASSERT_EQ(without.size(), 1u);
  EXPECT_FALSE(without[0].resample);

  RoutingRule image = ChestRule();
  image.series.resample = true;
  std::vector<RoutingRule> rules{image};
  const absl::Status st = ValidateRules(rules);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("series.resample needs input: volume"), std::string::npos) << st;
}

TEST(SeriesMatchTest, ValidationRefusesSeriesRulesThatMakeNoSense) {
  struct Case {
    const char* why;
    std::function<void(RoutingRule&)> spoil;
    const char* message;
  };
  const Case cases[] = {
      {"series keys on an image rule", [](RoutingRule& r) { r.input = ReadInput::kImage; }, "need input: volume"},
      {"volume rule without min_slices", [](RoutingRule& r) { r.series.min_slices = 0; }, "min_slices of 2"},
      {"one slice", [](RoutingRule& r) { r.series.min_slices = 1; }, "min_slices of 2"},
      {"max below min", [](RoutingRule& r) { r.series.max_slices = 49; }, "max_slices is below"},
      {"thickness low above high", [](RoutingRule& r) { r.series.slice_thickness_lo_mm = 3; }, "empty range"},
      {"thickness half a range", [](RoutingRule& r) { r.series.slice_thickness_hi_mm.reset(); }, "low and a high"},
      {"negative thickness", [](RoutingRule& r) { r.series.slice_thickness_lo_mm = -1; }, "finite"},
      {"zero high thickness",
       [](RoutingRule& r) {
         r.series.slice_thickness_lo_mm = 0;
         r.series.slice_thickness_hi_mm = 0;
       },
       "finite"},
      {"infinite thickness", [](RoutingRule& r) { r.series.slice_thickness_hi_mm = std::numeric_limits<double>::infinity(); }, "finite"},
      {"unknown orientation", [](RoutingRule& r) { r.series.orientations = {"axial", "transverse"}; }, "transverse"},
      {"oblique is not a plane to ask for", [](RoutingRule& r) { r.series.orientations = {"oblique"}; }, "oblique"},
      {"empty image type value", [](RoutingRule& r) { r.series.image_types = {"ORIGINAL", " "}; }, "empty value"},
      {"per-instance trigger", [](RoutingRule& r) { r.completeness.trigger = Trigger::kInstance; }, "instance"},
  };
  for (const Case& c : cases) {
    RoutingRule r = VolumeRule();
    c.spoil(r);
    std::vector<RoutingRule> rules{r};
    absl::Status st = ValidateRules(rules);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.why;
    EXPECT_NE(std::string(st.message()).find(c.message), std::string::npos) << c.why << ": " << st;
    EXPECT_NE(std::string(st.message()).find("ct-volume"), std::string::npos) << c.why << ": " << st;
  }
  // Equal bounds are a range of one value, not an empty one.
  RoutingRule point = VolumeRule();
  point.series.slice_thickness_lo_mm = point.series.slice_thickness_hi_mm = 1.0;
  point.series.min_slices = point.series.max_slices = 64;
  std::vector<RoutingRule> rules{point};
  EXPECT_TRUE(ValidateRules(rules).ok()) << ValidateRules(rules);
  auto f = AxialSeries();
  f.instances = f.slices = 64;
  f.min_thickness_mm = f.max_thickness_mm = 1.0;
  EXPECT_TRUE(MatchesSeries(rules[0], f));
}

TEST(CompletenessTest, SilenceThenMaxWait) {
  Completeness c;
  c.silence = 30s;
  c.max_wait = 100s;
  auto t0 = Clock::now();
  CandidateProgress p{t0, t0 + 10s, 3, -1, false};
  Due d = ComputeDue(c, p);
  EXPECT_EQ(d.reason, "silence");
  EXPECT_EQ(d.at, t0 + 40s);
  p.last_at = t0 + 90s;  // instances keep trickling in
  d = ComputeDue(c, p);
  EXPECT_EQ(d.reason, "max_wait");
  EXPECT_EQ(d.at, t0 + 100s);
}

TEST(CompletenessTest, ExpectedCountTriggersAtOnce) {
  Completeness c;
  auto t0 = Clock::now();
  CandidateProgress p{t0, t0 + 2s, 3, 4, false};
  EXPECT_EQ(ComputeDue(c, p).reason, "silence");
  p.instances = 4;
  Due d = ComputeDue(c, p);
  EXPECT_EQ(d.reason, "expected_count");
  EXPECT_EQ(d.at, t0 + 2s);
  c.use_expected_count = false;
  EXPECT_EQ(ComputeDue(c, p).reason, "silence");
}

TEST(CompletenessTest, AssociationReleaseAndFallback) {
  Completeness c;
  c.trigger = Trigger::kAssociation;
  auto t0 = Clock::now();
  CandidateProgress p{t0, t0 + 1s, 2, -1, false};
  EXPECT_EQ(ComputeDue(c, p).reason, "silence");  // a sender that never releases is still read
  p.released = true;
  Due d = ComputeDue(c, p);
  EXPECT_EQ(d.reason, "association");
  EXPECT_EQ(d.at, t0 + 1s);
}

TEST(CompletenessTest, PerInstanceIsImmediate) {
  Completeness c;
  c.trigger = Trigger::kInstance;
  auto t0 = Clock::now();
  CandidateProgress p{t0, t0, 1, -1, false};
  EXPECT_EQ(ComputeDue(c, p).at, t0);
}

}  // namespace
}  // namespace secondread::worklist
