#include "scp/derived_uid.h"

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

}  // namespace
}  // namespace secondread::scp
