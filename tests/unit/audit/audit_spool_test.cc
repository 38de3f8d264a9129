#include "audit/audit_spool.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace secondread::audit {
namespace {

class AuditSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/audit_spool_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(AuditSpoolTest, OldestFirstAndSurvivesReopen) {
  {
    auto spool = AuditSpool::Open(dir_, 1 << 20);
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append("one").ok());
    ASSERT_TRUE((*spool)->Append("two").ok());
    EXPECT_EQ((*spool)->bytes(), 6u);
  }
  // A half-written file from a crash is discarded.
  std::ofstream(dir_ + "/tmp-00000000000000000003.msg") << "half";
  auto spool = AuditSpool::Open(dir_, 1 << 20);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->count(), 2u);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/tmp-00000000000000000003.msg"));
  ASSERT_TRUE((*spool)->Append("three").ok());
  std::vector<std::string> seen;
  while (true) {
    auto e = (*spool)->Oldest();
    ASSERT_TRUE(e.ok());
    if (!e->has_value()) break;
    seen.push_back((*e)->message);
    ASSERT_TRUE((*spool)->Remove((*e)->name).ok());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ((*spool)->bytes(), 0u);
}

TEST_F(AuditSpoolTest, FullSpoolRefusesTheNewMessageAndKeepsTheOld) {
  auto spool = AuditSpool::Open(dir_, 10);
  ASSERT_TRUE(spool.ok());
  ASSERT_TRUE((*spool)->Append("12345678").ok());
  absl::Status st = (*spool)->Append("abc");
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  auto e = (*spool)->Oldest();
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->message, "12345678");
  EXPECT_EQ((*spool)->count(), 1u);
}

}  // namespace
}  // namespace secondread::audit
