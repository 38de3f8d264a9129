#include "scp/receive/recovery.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

namespace secondread::scp {
namespace {

using namespace std::chrono_literals;

class RecordingSink : public InstanceSink {
 public:
  absl::Status Accept(const ReceivedInstance& in) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_next > 0) {
      --fail_next;
      return absl::UnavailableError("database unreachable");
    }
    registered_.insert(in.spool_name);
    return absl::OkStatus();
  }
  void AssociationEnded(const AssociationSummary&) override {}
  absl::StatusOr<std::vector<std::string>> Unregistered(const std::vector<std::string>& names) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> missing;
    for (const auto& n : names) {
      if (!registered_.count(n)) missing.push_back(n);
    }
    return missing;
  }
  bool Registered(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return registered_.count(name) > 0;
  }
  bool WaitRegistered(const std::string& name, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Registered(name)) return true;
      std::this_thread::sleep_for(10ms);
    }
    return Registered(name);
  }
  int fail_next = 0;  // guarded by mu_

  std::mutex mu_;

 private:
  std::set<std::string> registered_;
};

// The database as the rescanner sees it: an incarnation, or unreachable.
struct FakeDatabase {
  std::mutex mu;
  std::string started = "t1";
  bool up = true;
  absl::StatusOr<std::string> Incarnation() {
    std::lock_guard<std::mutex> lock(mu);
    if (!up) return absl::UnavailableError("down");
    return started;
  }
  void Set(bool is_up, std::string at) {
    std::lock_guard<std::mutex> lock(mu);
    up = is_up;
    started = std::move(at);
  }
};

class RescanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/rescantestXXXXXX";
    dir_ = mkdtemp(tmpl);
    spool_ = std::move(*Spool::Open({dir_, 0}));
  }
  void TearDown() override {
    if (rescanner_) rescanner_->Stop();
    std::filesystem::remove_all(dir_);
  }

  // Puts an instance into the spool the way a C-STORE does, without a row.
  std::string Spooled(const std::string& sop) {
    auto t = spool_->CreateTemp();
    EXPECT_TRUE(t.ok());
    DcmFileFormat ff;
    DcmDataset* ds = ff.getDataset();
    ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    ds->putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
    ds->putAndInsertString(DCM_StudyInstanceUID, "1.2.3.4");
    ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.3.4.5");
    EXPECT_TRUE(ff.saveFile(t->path().c_str(), EXS_LittleEndianExplicit).good());
    std::string name = Spool::NameForSopInstanceUid(sop);
    auto lock = spool_->LockName(name);
    EXPECT_TRUE(spool_->Commit(*t, name).ok());
    return name;
  }

  void StartRescanner(std::chrono::milliseconds interval = 0ms) {
    RescanOptions o;
    o.check_interval = 20ms;
    o.interval = interval;
    rescanner_ = std::make_unique<SpoolRescanner>(o, spool_.get(), &sink_, [this] { return db_.Incarnation(); },
                                                  "t1");
    rescanner_->Start();
  }

  std::string dir_;
  std::unique_ptr<Spool> spool_;
  RecordingSink sink_;
  FakeDatabase db_;
  std::unique_ptr<SpoolRescanner> rescanner_;
};

TEST_F(RescanTest, RescansWhenTheDatabaseRestartedBetweenChecks) {
  std::string name = Spooled("1.2.826.0.1.3680043.10.1139.7.1");
  StartRescanner();
  EXPECT_FALSE(sink_.WaitRegistered(name, 300ms)) << "rescanned although nothing happened";
  db_.Set(true, "t2");  // restarted: rows may be lost
  EXPECT_TRUE(sink_.WaitRegistered(name, 10s));
}

TEST_F(RescanTest, RescansWhenTheDatabaseComesBack) {
  std::string name = Spooled("1.2.826.0.1.3680043.10.1139.7.2");
  StartRescanner();
  db_.Set(false, "t1");
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(sink_.Registered(name));
  db_.Set(true, "t1");
  EXPECT_TRUE(sink_.WaitRegistered(name, 10s));
}

TEST_F(RescanTest, RetriesARescanThatFailed) {
  std::string name = Spooled("1.2.826.0.1.3680043.10.1139.7.3");
  {
    std::lock_guard<std::mutex> lock(sink_.mu_);
    sink_.fail_next = 2;
  }
  StartRescanner();
  db_.Set(true, "t2");
  EXPECT_TRUE(sink_.WaitRegistered(name, 10s));
}

TEST_F(RescanTest, PeriodicRescanIsABackstop) {
  std::string name = Spooled("1.2.826.0.1.3680043.10.1139.7.4");
  StartRescanner(200ms);
  EXPECT_TRUE(sink_.WaitRegistered(name, 10s));
}

TEST_F(RescanTest, RescanLeavesLiveReceivesAlone) {
  auto live = spool_->CreateTemp();
  ASSERT_TRUE(live.ok());
  std::string name = Spooled("1.2.826.0.1.3680043.10.1139.7.5");
  auto report = RescanSpool(*spool_, sink_, "test");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->registered, 1);
  EXPECT_TRUE(std::filesystem::exists(live->path())) << "a receive in progress lost its temp file";
  // Registered once: a second rescan finds nothing to do.
  auto again = RescanSpool(*spool_, sink_, "test");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->registered, 0);
}

}  // namespace
}  // namespace secondread::scp
