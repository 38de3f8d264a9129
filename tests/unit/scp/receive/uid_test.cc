#include "scp/receive/uid.h"

#include <gtest/gtest.h>

namespace secondread::scp {
namespace {

TEST(UidTest, AcceptsValidUids) {
  EXPECT_TRUE(IsValidUid("1.2.840.10008.5.1.4.1.1.2"));
  EXPECT_TRUE(IsValidUid("0"));
  EXPECT_TRUE(IsValidUid("1.0.3"));
  EXPECT_TRUE(IsValidUid(std::string(64, '1')));
}

TEST(UidTest, RefusesHostileAndMalformedUids) {
  EXPECT_FALSE(IsValidUid(""));
  EXPECT_FALSE(IsValidUid(".."));
  EXPECT_FALSE(IsValidUid("1.2.3/../../x"));
  EXPECT_FALSE(IsValidUid("1..2"));
  EXPECT_FALSE(IsValidUid(".1.2"));
  EXPECT_FALSE(IsValidUid("1.2."));
  EXPECT_FALSE(IsValidUid("1.02.3"));
  EXPECT_FALSE(IsValidUid("1.2.3 "));
  EXPECT_FALSE(IsValidUid(std::string("1.2\0.3", 6)));
  EXPECT_FALSE(IsValidUid(std::string(65, '1')));
}

TEST(UidTest, LegacyFormsAreAcceptedAndNamed) {
  // A 1990s XA Study Instance UID with a leading-zero component.
  UidCheck xa = CheckUid("1.2.840.113619.2.1.1.0322.12");
  EXPECT_EQ(xa.verdict, UidVerdict::kLegacy);
  EXPECT_EQ(xa.quirk, "leading_zero");
  EXPECT_EQ(xa.value, "1.2.840.113619.2.1.1.0322.12");  // kept as the PACS knows it

  UidCheck padded = CheckUid("1.2.3.4 ");
  EXPECT_EQ(padded.verdict, UidVerdict::kLegacy);
  EXPECT_EQ(padded.quirk, "space_padding");
  EXPECT_EQ(padded.value, "1.2.3.4");

  UidCheck empty_part = CheckUid("1.2..3");
  EXPECT_EQ(empty_part.verdict, UidVerdict::kLegacy);
  EXPECT_EQ(empty_part.quirk, "empty_component");
  EXPECT_EQ(CheckUid("1.2.3.").verdict, UidVerdict::kLegacy);

  // NUL is the standard pad: valid, not legacy.
  UidCheck nul = CheckUid(std::string("1.2.3\0", 6));
  EXPECT_EQ(nul.verdict, UidVerdict::kValid);
  EXPECT_EQ(nul.value, "1.2.3");
  EXPECT_EQ(CheckUid("1.2.840.10008.5.1.4.1.1.2").verdict, UidVerdict::kValid);
  // 64 characters after the pad is trimmed is still a UID.
  EXPECT_EQ(CheckUid(std::string(64, '1') + "  ").verdict, UidVerdict::kLegacy);
}

TEST(UidTest, RefusesOnlyWhatCouldHurt) {
  for (std::string_view bad : {std::string_view(""), std::string_view("  "), std::string_view(".."),
                               std::string_view("1.2.3/../../x"), std::string_view("1.2.3\\4"),
                               std::string_view("1.2.3'; DROP"), std::string_view("1.2\n3"),
                               std::string_view("1.2.3a")}) {
    EXPECT_EQ(CheckUid(bad).verdict, UidVerdict::kRefused) << bad;
  }
  EXPECT_EQ(CheckUid(std::string("1.2\0.3", 6)).verdict, UidVerdict::kRefused);  // an inner NUL
  EXPECT_EQ(CheckUid(std::string(65, '1')).verdict, UidVerdict::kRefused);
  EXPECT_TRUE(CheckUid(std::string(65, '1')).value.empty());
}

}  // namespace
}  // namespace secondread::scp
