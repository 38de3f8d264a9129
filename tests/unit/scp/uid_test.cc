#include "scp/uid.h"

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

}  // namespace
}  // namespace secondread::scp
