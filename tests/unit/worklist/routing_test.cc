#include "worklist/routing.h"

#include <gtest/gtest.h>

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
