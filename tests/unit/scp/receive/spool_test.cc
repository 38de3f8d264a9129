#include "scp/receive/spool.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace secondread::scp {
namespace {

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spooltestXXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

void WriteAll(int fd, const std::string& s) { ASSERT_EQ(::write(fd, s.data(), s.size()), (ssize_t)s.size()); }

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST_F(SpoolTest, NamesAreHashesNeverReceivedStrings) {
  std::string name = Spool::NameForSopInstanceUid("1.2.3/../../x");
  EXPECT_TRUE(IsSpoolName(name));
  EXPECT_EQ(name.find('/'), std::string::npos);
  EXPECT_EQ(name.size(), 64u);
  EXPECT_NE(name, Spool::NameForSopInstanceUid("1.2.3"));
  EXPECT_FALSE(IsSpoolName("../etc/passwd"));
}

TEST_F(SpoolTest, CommitMakesFileVisibleAndReplaces) {
  auto spool = Spool::Open({dir_, 0});
  ASSERT_TRUE(spool.ok()) << spool.status();
  std::string name = Spool::NameForSopInstanceUid("1.2.3");
  {
    auto t = (*spool)->CreateTemp();
    ASSERT_TRUE(t.ok());
    WriteAll(t->fd(), "first");
    auto r = (*spool)->Commit(*t, name);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->replaced);
  }
  EXPECT_EQ(Slurp((*spool)->PathFor(name)), "first");
  {
    auto t = (*spool)->CreateTemp();
    ASSERT_TRUE(t.ok());
    WriteAll(t->fd(), "second");
    auto r = (*spool)->Commit(*t, name);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->replaced);
  }
  EXPECT_EQ(Slurp((*spool)->PathFor(name)), "second");
  auto names = (*spool)->ListObjects();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{name});
  EXPECT_TRUE((*spool)->Remove(name).ok());
  EXPECT_TRUE((*spool)->ListObjects()->empty());
  auto t = (*spool)->CreateTemp();
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE((*spool)->Commit(*t, "../../x").ok());
}

TEST_F(SpoolTest, UncommittedTempFilesVanish) {
  auto spool = Spool::Open({dir_, 0});
  ASSERT_TRUE(spool.ok());
  std::string path;
  {
    auto t = (*spool)->CreateTemp();
    ASSERT_TRUE(t.ok());
    path = t->path();
    struct stat st;
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
  }
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  // A crash leaves temp files behind; start-up removes them.
  std::ofstream(dir_ + "/tmp/leftover.part") << "partial";
  EXPECT_EQ((*spool)->CleanTemp(), 1);
}

TEST_F(SpoolTest, FreeSpaceFloor) {
  auto ok = Spool::Open({dir_, 0});
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE((*ok)->CheckFreeSpace().ok());
  EXPECT_TRUE((*ok)->CheckWritable().ok());
  auto full = Spool::Open({dir_, ~0ull});
  ASSERT_TRUE(full.ok());
  EXPECT_EQ((*full)->CheckFreeSpace().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace secondread::scp
