#include "common/config.h"

#include <gtest/gtest.h>

namespace secondread::config {
namespace {

TEST(ConfigTreeTest, ReadsValuesAndDefaults) {
  auto t = ConfigTree::FromString("dicom:\n  port: 104\n  ae_title: NODE\n");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t->Int("dicom.port", 1, 1, 65535), 104);
  EXPECT_EQ(*t->String("dicom.ae_title", "X"), "NODE");
  EXPECT_EQ(*t->String("dicom.missing", "fallback"), "fallback");
  EXPECT_TRUE(t->CheckNoUnknownKeys().ok());
}

TEST(ConfigTreeTest, OverridesWinAndCreatePaths) {
  auto t = ConfigTree::FromString("dicom:\n  port: 104\n");
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->Override("dicom.port=11112").ok());
  ASSERT_TRUE(t->Override("storage.spool_dir=/var/spool/x").ok());
  ASSERT_TRUE(t->Override("dicom.allowed_callers=[A, B@10.0.0.1]").ok());
  EXPECT_EQ(*t->Int("dicom.port", 1, 1, 65535), 11112);
  EXPECT_EQ(*t->String("storage.spool_dir", ""), "/var/spool/x");
  auto list = t->StringList("dicom.allowed_callers", {});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, (std::vector<std::string>{"A", "B@10.0.0.1"}));
}

TEST(ConfigTreeTest, RefusesUnknownKeysAndBadValues) {
  auto t = ConfigTree::FromString("dicom:\n  prot: 104\n  port: banana\n");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->Int("dicom.port", 1, 1, 65535).ok());
  absl::Status st = t->CheckNoUnknownKeys();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("dicom.prot"), std::string::npos);
  EXPECT_FALSE(t->Override("novalue").ok());
}

TEST(ConfigTreeTest, RangeIsEnforced) {
  auto t = ConfigTree::FromString("a: 70000\n");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->Int("a", 1, 1, 65535).ok());
}

TEST(ConfigTreeTest, RejectsInvalidYaml) {
  EXPECT_FALSE(ConfigTree::FromString("a: [1, 2").ok());
  EXPECT_FALSE(ConfigTree::FromString("- just\n- a list\n").ok());
}

TEST(ParseBytesTest, Units) {
  EXPECT_EQ(*ParseBytes("512"), 512u);
  EXPECT_EQ(*ParseBytes("128KiB"), 131072u);
  EXPECT_EQ(*ParseBytes("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseBytes("1 MB"), 1000000u);
  EXPECT_FALSE(ParseBytes("12 parsecs").ok());
  EXPECT_FALSE(ParseBytes("MiB").ok());
  EXPECT_FALSE(ParseBytes("99999999999999999999TiB").ok());
}

}  // namespace
}  // namespace secondread::config
