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

namespace secondread::config {
namespace {

TEST(ConfigTreeTest, ListsOfMappingsNumbersAndUnknownKeysInside) {
  auto tree = ConfigTree::FromString(R"(
labels:
  - {name: a, threshold: 0.25}
  - {name: b, threshold: 0.75, typo: 1}
mean: [0.5, 0.25]
sizes: [8, 16]
)");
  ASSERT_TRUE(tree.ok());
  ASSERT_EQ(*tree->ListSize("labels"), 2u);
  EXPECT_EQ(*tree->String("labels.1.name", ""), "b");
  EXPECT_DOUBLE_EQ(*tree->Double("labels.0.threshold", 0, 0, 1), 0.25);
  EXPECT_DOUBLE_EQ(*tree->Double("labels.1.threshold", 0, 0, 1), 0.75);
  EXPECT_FALSE(tree->Double("labels.1.name", 0, 0, 1).ok());
  EXPECT_EQ(*tree->DoubleList("mean", {}), (std::vector<double>{0.5, 0.25}));
  EXPECT_EQ(*tree->IntList("sizes", {}), (std::vector<int64_t>{8, 16}));
  EXPECT_TRUE(tree->Has("labels.0.name"));
  EXPECT_FALSE(tree->Has("labels.2.name"));
  EXPECT_DOUBLE_EQ(*tree->Double("missing", 1.5, 0, 2), 1.5);
  EXPECT_FALSE(tree->Double("labels.0.threshold", 0, 0.5, 1).ok());
  (void)tree->String("labels.0.name", "");
  auto unknown = tree->CheckNoUnknownKeys();
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.message().find("labels.1.typo"), std::string::npos);
}

// Found by fuzz/config_fuzzer: a mapping key that is itself a list or a
// mapping (YAML's "? " complex key) made the unknown-key check throw from
// yaml-cpp, and the node ended in std::terminate instead of naming the
// problem.
TEST(ConfigTreeTest, ComplexKeyIsAnErrorNotACrash) {
  for (const char* yaml : {"? [a, b]\n: 1\n", "api:\n  tokens:\n  ? - name: x\n", "dicom:\n  ? {a: 1}\n  : 2\n"}) {
    auto t = ConfigTree::FromString(yaml);
    ASSERT_TRUE(t.ok()) << yaml;
    absl::Status st = t->CheckNoUnknownKeys();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << yaml;
  }
}

}  // namespace
}  // namespace secondread::config
