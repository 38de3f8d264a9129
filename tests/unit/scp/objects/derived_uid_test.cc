#include "scp/objects/derived_uid.h"

#include <gtest/gtest.h>

#include <string>

namespace secondread::scp {
namespace {

bool ValidUidSyntax(const std::string& uid) {
  if (uid.empty() || uid.size() > 64 || uid.front() == '.' || uid.back() == '.') return false;
  size_t component_start = 0;
  for (size_t i = 0; i <= uid.size(); ++i) {
    if (i == uid.size() || uid[i] == '.') {
      const size_t length = i - component_start;
      if (length == 0) return false;
      if (length > 1 && uid[component_start] == '0') return false;  // PS3.5 9.1: no leading zero
      component_start = i + 1;
    } else if (uid[i] < '0' || uid[i] > '9') {
      return false;
    }
  }
  return true;
}

TEST(DerivedUidTest, IsDeterministic) {
  EXPECT_EQ(DerivedUid({"1.2.3", "model", "1", "sr"}), DerivedUid({"1.2.3", "model", "1", "sr"}));
}

TEST(DerivedUidTest, DiffersPerPart) {
  const std::string base = DerivedUid({"1.2.3", "model", "1", "sr"});
  EXPECT_NE(base, DerivedUid({"1.2.4", "model", "1", "sr"}));
  EXPECT_NE(base, DerivedUid({"1.2.3", "other", "1", "sr"}));
  EXPECT_NE(base, DerivedUid({"1.2.3", "model", "2", "sr"}));
  EXPECT_NE(base, DerivedUid({"1.2.3", "model", "1", "sc"}));
  EXPECT_NE(base, DerivedUid({"1.2.3", "model", "1"}));
}

TEST(DerivedUidTest, LengthPrefixSeparatesParts) {
  EXPECT_NE(DerivedUid({"ab", "c"}), DerivedUid({"a", "bc"}));
  EXPECT_NE(DerivedUid({"abc"}), DerivedUid({"ab", "c"}));
  EXPECT_NE(DerivedUid({""}), DerivedUid({}));
}

TEST(DerivedUidTest, HasValidUidSyntax) {
  for (int i = 0; i < 200; ++i) {
    const std::string uid = DerivedUid({"study", std::to_string(i)});
    EXPECT_TRUE(ValidUidSyntax(uid)) << uid;
    EXPECT_LE(uid.size(), 44u) << uid;
    EXPECT_EQ(uid.rfind("2.25.", 0), 0u) << uid;
  }
  EXPECT_TRUE(ValidUidSyntax(DerivedUid({})));
}

TEST(DerivedUidTest, MatchesKnownValue) {
  // Pins the encoding (decimal length, ':', bytes per part) so a change
  // cannot silently re-identify every object the node has written.
  // Expected: first 32 hex digits of sha256("1:a") as a decimal.
  EXPECT_EQ(DerivedUid({"a"}), "2.25.86913813795048362173353983044502758271");
}

// The three ways two reads of one study used to name different content
// with one UID, and the re-send that must keep its UID.
class ReadUidTest : public ::testing::Test {
 protected:
  ReadIdentity Study(const std::string& rule) const { return {"1.2.3", rule, "nodule", "2", ""}; }
  ReadIdentity Instance(const std::string& rule, const std::string& sop) const {
    return {"1.2.3", rule, "nodule", "2", sop};
  }
  const ImageKey a_{"1.2.3.1", 0};
  const ImageKey b_{"1.2.3.2", 0};
};

TEST_F(ReadUidTest, TwoRulesWithOneModelOnOneStudyDiffer) {
  EXPECT_NE(ReadSrUid(Study("chest"), {a_}), ReadSrUid(Study("chest-stat"), {a_}));
  EXPECT_NE(ReadScUid(Study("chest"), a_), ReadScUid(Study("chest-stat"), a_));
  EXPECT_NE(ReadSeriesUid(Study("chest"), "sr"), ReadSeriesUid(Study("chest-stat"), "sr"));
}

TEST_F(ReadUidTest, ReReadOfAGrownStudyGetsANewSrAndKeepsTheScsOfItsImages) {
  const ReadIdentity read = Study("late");
  EXPECT_NE(ReadSrUid(read, {a_}), ReadSrUid(read, {a_, b_}));
  EXPECT_EQ(ReadScUid(read, a_), ReadScUid(read, a_));
  EXPECT_NE(ReadScUid(read, a_), ReadScUid(read, b_));
}

TEST_F(ReadUidTest, PerInstanceAndStudyReadOfOneImageDiffer) {
  // Even under one rule name (a rule renamed between the two reads).
  EXPECT_NE(ReadSrUid(Instance("cr", a_.sop_instance_uid), {a_}), ReadSrUid(Study("cr"), {a_}));
  EXPECT_NE(ReadScUid(Instance("cr", a_.sop_instance_uid), a_), ReadScUid(Study("cr"), a_));
  EXPECT_NE(ReadSrUid(Instance("cr", a_.sop_instance_uid), {a_}), ReadSrUid(Study("cr-study"), {a_}));
  EXPECT_NE(ReadScUid(Instance("cr", a_.sop_instance_uid), a_), ReadScUid(Study("cr-study"), a_));
}

TEST_F(ReadUidTest, SameReadOfSameImagesKeepsItsUids) {
  EXPECT_EQ(ReadSrUid(Study("chest"), {a_, b_}), ReadSrUid(Study("chest"), {b_, a_}));
  EXPECT_EQ(ReadScUid(Study("chest"), b_), ReadScUid(Study("chest"), b_));
  EXPECT_NE(ReadSrUid(Study("chest"), {a_}), ReadSrUid(Study("chest"), {{"1.2.3.1", 2}}));
  const std::string uid = ReadSrUid(Study("chest"), {a_, b_});
  EXPECT_TRUE(ValidUidSyntax(uid)) << uid;
  EXPECT_LE(uid.size(), 44u);
}

TEST_F(ReadUidTest, ModelVersionAndStudyStillCount) {
  ReadIdentity other = Study("chest");
  other.version = "3";
  EXPECT_NE(ReadSrUid(Study("chest"), {a_}), ReadSrUid(other, {a_}));
  other = Study("chest");
  other.study_uid = "1.2.4";
  EXPECT_NE(ReadScUid(Study("chest"), a_), ReadScUid(other, a_));
}

}  // namespace
}  // namespace secondread::scp
