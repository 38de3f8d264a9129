#include "scp/receive/store_processor.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "scp/receive/dataset_reader.h"
#include "scp/receive/recovery.h"

namespace secondread::scp {
namespace {

class FakeSink : public InstanceSink {
 public:
  absl::Status Accept(const ReceivedInstance& instance) override {
    if (!fail.ok()) return fail;
    accepted.push_back(instance);
    return absl::OkStatus();
  }
  void AssociationEnded(const AssociationSummary&) override {}
  absl::StatusOr<std::vector<std::string>> Unregistered(const std::vector<std::string>& names) override {
    return names;
  }
  absl::Status fail = absl::OkStatus();
  std::vector<ReceivedInstance> accepted;
};

constexpr char kSop[] = "1.2.826.0.1.3680043.10.1139.1";

class StoreProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/storeproctestXXXXXX";
    dir_ = mkdtemp(tmpl);
    spool_ = std::move(*Spool::Open({dir_, 0}));
    processor_ = std::make_unique<StoreProcessor>(1 << 20, spool_.get(), &sink_, &metrics_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  TempFile WriteInstance(const std::string& sop_instance, const std::string& study = "1.2.3.4") {
    auto t = spool_->CreateTemp();
    EXPECT_TRUE(t.ok());
    DcmFileFormat ff;
    DcmDataset* ds = ff.getDataset();
    ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    ds->putAndInsertString(DCM_SOPInstanceUID, sop_instance.c_str());
    if (!study.empty()) ds->putAndInsertString(DCM_StudyInstanceUID, study.c_str());
    ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.3.4.5");
    ds->putAndInsertString(DCM_PatientID, "PID-1");
    ds->putAndInsertString(DCM_PatientName, "Doe^Jane");
    ds->putAndInsertString(DCM_Modality, "CT");
    ds->putAndInsertUint16(DCM_Rows, 2);
    ds->putAndInsertUint16(DCM_Columns, 2);
    EXPECT_TRUE(ff.saveFile(t->path().c_str(), EXS_LittleEndianExplicit).good());
    return std::move(*t);
  }

  StoreRequest Request(const std::string& sop_instance = kSop) {
    return {UID_CTImageStorage, sop_instance, UID_LittleEndianExplicitTransferSyntax};
  }

  std::string dir_;
  metrics::MetricsRegistry registry_;
  ScpMetrics metrics_{registry_};
  FakeSink sink_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<StoreProcessor> processor_;
  AssociationInfo assoc_{"a1", "STORESCU", "SECONDREAD", "127.0.0.1"};
};

TEST_F(StoreProcessorTest, StoresRegistersAndCounts) {
  DimseOutcome out = processor_->Complete(Request(), assoc_, WriteInstance(kSop), ReceiveStats{100, false, 0});
  EXPECT_TRUE(out.ok()) << out.comment;
  ASSERT_EQ(sink_.accepted.size(), 1u);
  const auto& got = sink_.accepted[0];
  EXPECT_EQ(got.record.sop_instance_uid, kSop);
  EXPECT_EQ(got.record.patient_id, "PID-1");
  EXPECT_EQ(got.record.rows, 2);
  EXPECT_EQ(got.record.transfer_syntax_uid, UID_LittleEndianExplicitTransferSyntax);
  EXPECT_EQ(got.spool_name, Spool::NameForSopInstanceUid(kSop));
  EXPECT_TRUE(std::filesystem::exists(spool_->PathFor(got.spool_name)));
  EXPECT_GT(got.size_bytes, 0u);
  EXPECT_EQ(metrics_.instances_stored.Value(), 1);
}

// CVE-2026-44031: DCMTK 3.6.7 parses nested sequences by recursion, so this
// data set, 200,000 levels deep, overflows any thread's stack once parsed.
// It is refused before the parser sees it, and nothing is kept.
TEST_F(StoreProcessorTest, DeeplyNestedDataSetIsRefusedBeforeParsing) {
  auto t = spool_->CreateTemp();
  ASSERT_TRUE(t.ok());
  auto le16 = [](uint16_t v) { return std::string{static_cast<char>(v & 0xff), static_cast<char>(v >> 8)}; };
  auto le32 = [&](uint32_t v) { return le16(static_cast<uint16_t>(v & 0xffff)) + le16(static_cast<uint16_t>(v >> 16)); };
  auto ui = [&](uint16_t g, uint16_t e, std::string v) {
    if (v.size() % 2) v += '\0';
    return le16(g) + le16(e) + "UI" + le16(static_cast<uint16_t>(v.size())) + v;
  };
  std::string file(128, '\0');
  file += "DICM" + ui(0x0002, 0x0010, UID_LittleEndianExplicitTransferSyntax);
  file += ui(0x0008, 0x0016, UID_CTImageStorage) + ui(0x0008, 0x0018, kSop);
  const std::string open = le16(0x0008) + le16(0x1140) + "SQ" + std::string(2, '\0') + le32(0xFFFFFFFF) +
                           le16(0xFFFE) + le16(0xE000) + le32(0xFFFFFFFF);
  const std::string close = le16(0xFFFE) + le16(0xE00D) + le32(0) + le16(0xFFFE) + le16(0xE0DD) + le32(0);
  constexpr int kLevels = 200000;
  for (int i = 0; i < kLevels; ++i) file += open;
  for (int i = 0; i < kLevels; ++i) file += close;
  ASSERT_EQ(::pwrite(t->fd(), file.data(), file.size(), 0), static_cast<ssize_t>(file.size()));
  const std::string temp_path = t->path();

  DimseOutcome out = processor_->Complete(Request(), assoc_, std::move(*t), ReceiveStats{file.size(), false, 0});
  EXPECT_EQ(out.status, dimse_status::kCannotUnderstand);
  EXPECT_EQ(out.reason, "nesting_too_deep");
  EXPECT_LE(out.comment.size(), 64u);
  EXPECT_TRUE(sink_.accepted.empty());
  EXPECT_FALSE(std::filesystem::exists(temp_path));
  EXPECT_FALSE(std::filesystem::exists(spool_->PathFor(Spool::NameForSopInstanceUid(kSop))));
  EXPECT_EQ(metrics_.Refused("nesting_too_deep").Value(), 1);
}

// Archives hold UIDs that break PS3.5 9.1 harmlessly; they are stored,
// registered as the PACS knows them, logged and counted.
TEST_F(StoreProcessorTest, LegacyUidsAreAcceptedAndCounted) {
  const std::string sop = "1.2.826.0.1.3680043.10.1139.01.5";
  DimseOutcome out = processor_->Complete(Request(sop), assoc_, WriteInstance(sop, "1.2.840.113619.2.1.1.0322.12"),
                                          ReceiveStats{100, false, 0});
  EXPECT_TRUE(out.ok()) << out.comment;
  ASSERT_EQ(sink_.accepted.size(), 1u);
  EXPECT_EQ(sink_.accepted[0].record.study_instance_uid, "1.2.840.113619.2.1.1.0322.12");
  EXPECT_EQ(sink_.accepted[0].record.sop_instance_uid, sop);
  EXPECT_EQ(sink_.accepted[0].spool_name, Spool::NameForSopInstanceUid(sop));
  EXPECT_EQ(metrics_.LegacyUid("study", "leading_zero").Value(), 1);
  EXPECT_EQ(metrics_.LegacyUid("sop_instance", "leading_zero").Value(), 1);
  EXPECT_EQ(metrics_.LegacyUid("series", "leading_zero").Value(), 0);
  // The request's copy of a legacy UID, space-padded, still matches.
  ASSERT_FALSE(processor_->Precheck(Request(sop + " ")).has_value());
}

TEST_F(StoreProcessorTest, RegistersLatin1TextAsUtf8) {
  auto t = spool_->CreateTemp();
  ASSERT_TRUE(t.ok());
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  ds->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100");
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, kSop);
  ds->putAndInsertString(DCM_StudyInstanceUID, "1.2.3.4");
  ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.3.4.5");
  ds->putAndInsertString(DCM_PatientName, "M\xfcller^J\xfcrgen");
  ASSERT_TRUE(ff.saveFile(t->path().c_str(), EXS_LittleEndianExplicit).good());
  ASSERT_TRUE(processor_->Complete(Request(), assoc_, std::move(*t), ReceiveStats{100, false, 0}).ok());
  ASSERT_EQ(sink_.accepted.size(), 1u);
  EXPECT_EQ(sink_.accepted[0].record.patient_name, "M\xc3\xbcller^J\xc3\xbcrgen");
}

TEST_F(StoreProcessorTest, NonTransientRegistryErrorIsProcessingFailure) {
  sink_.fail = absl::InternalError("SQLSTATE 22021");
  DimseOutcome out = processor_->Complete(Request(), assoc_, WriteInstance(kSop), ReceiveStats{100, false, 0});
  EXPECT_EQ(out.status, dimse_status::kProcessingFailure);
  EXPECT_EQ(out.reason, "registry_error");
  EXPECT_LE(out.comment.size(), 64u);
}

TEST_F(StoreProcessorTest, RefusesMismatchedInstanceUid) {
  DimseOutcome out =
      processor_->Complete(Request("1.2.999"), assoc_, WriteInstance(kSop), ReceiveStats{100, false, 0});
  EXPECT_EQ(out.status, dimse_status::kDataSetDoesNotMatchSopClass);
  EXPECT_EQ(out.reason, "uid_mismatch");
  EXPECT_LE(out.comment.size(), 64u);
  EXPECT_TRUE(sink_.accepted.empty());
  EXPECT_TRUE(spool_->ListObjects()->empty());
  EXPECT_EQ(metrics_.Refused("uid_mismatch").Value(), 1);
}

TEST_F(StoreProcessorTest, RefusesMissingStudyUid) {
  DimseOutcome out = processor_->Complete(Request(), assoc_, WriteInstance(kSop, ""), ReceiveStats{100, false, 0});
  EXPECT_EQ(out.status, dimse_status::kCannotUnderstand);
  EXPECT_TRUE(sink_.accepted.empty());
}

TEST_F(StoreProcessorTest, RefusesGarbage) {
  auto t = spool_->CreateTemp();
  ASSERT_TRUE(t.ok());
  std::string junk(4000, '\x5a');
  ASSERT_EQ(::write(t->fd(), junk.data(), junk.size()), (ssize_t)junk.size());
  DimseOutcome out = processor_->Complete(Request(), assoc_, std::move(*t), ReceiveStats{4000, false, 0});
  EXPECT_EQ(out.status, dimse_status::kCannotUnderstand);
  EXPECT_EQ(out.reason, "unparsable");
  EXPECT_TRUE(spool_->ListObjects()->empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/tmp"));
}

TEST_F(StoreProcessorTest, RefusesOversizeAndWriteErrors) {
  DimseOutcome big = processor_->Complete(Request(), assoc_, WriteInstance(kSop), ReceiveStats{5 << 20, true, 0});
  EXPECT_EQ(big.status, dimse_status::kOutOfResources);
  EXPECT_EQ(big.reason, "too_large");
  DimseOutcome full = processor_->Complete(Request(), assoc_, WriteInstance(kSop), ReceiveStats{10, false, ENOSPC});
  EXPECT_EQ(full.status, dimse_status::kOutOfResources);
  EXPECT_EQ(full.reason, "disk_floor");
  EXPECT_TRUE(sink_.accepted.empty());
  EXPECT_TRUE(spool_->ListObjects()->empty());
}

TEST_F(StoreProcessorTest, DatabaseDownIsAFailureAndLeavesNothing) {
  sink_.fail = absl::UnavailableError("down");
  DimseOutcome out = processor_->Complete(Request(), assoc_, WriteInstance(kSop), ReceiveStats{100, false, 0});
  EXPECT_EQ(out.status, dimse_status::kOutOfResources);
  EXPECT_EQ(out.reason, "database");
  EXPECT_TRUE(spool_->ListObjects()->empty());
}

// The connection broke while the registration was in flight: its row may
// exist, so the file stays (the rescan registers it if the row did not land).
TEST_F(StoreProcessorTest, RegistrationInDoubtKeepsTheFile) {
  absl::Status in_doubt = absl::UnavailableError("database connection lost");
  in_doubt.SetPayload(kRegistrationInDoubtPayload, absl::Cord("1"));
  sink_.fail = in_doubt;
  DimseOutcome out = processor_->Complete(Request(), assoc_, WriteInstance(kSop), ReceiveStats{100, false, 0});
  EXPECT_EQ(out.status, dimse_status::kOutOfResources);
  EXPECT_EQ(out.reason, "database");
  ASSERT_EQ(spool_->ListObjects()->size(), 1u) << "a file whose row may exist was removed";

  sink_.fail = absl::OkStatus();
  auto report = RescanSpool(*spool_, sink_, "test");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->registered, 1);
}

TEST_F(StoreProcessorTest, DatabaseDownKeepsAnEarlierRegisteredCopy) {
  ASSERT_TRUE(processor_->Complete(Request(), assoc_, WriteInstance(kSop), ReceiveStats{100, false, 0}).ok());
  sink_.fail = absl::UnavailableError("down");
  DimseOutcome out = processor_->Complete(Request(), assoc_, WriteInstance(kSop), ReceiveStats{100, false, 0});
  EXPECT_FALSE(out.ok());
  EXPECT_EQ(spool_->ListObjects()->size(), 1u);
}

TEST_F(StoreProcessorTest, PrecheckRefusesHostileUidsAndFullDisk) {
  auto bad = processor_->Precheck(Request("1.2.3/../../x"));
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->status, dimse_status::kCannotUnderstand);
  EXPECT_EQ(bad->reason, "invalid_uid");
  EXPECT_FALSE(processor_->Precheck(Request()).has_value());

  auto full_spool = std::move(*Spool::Open({dir_, ~0ull}));
  StoreProcessor full(1 << 20, full_spool.get(), &sink_, &metrics_);
  auto floor = full.Precheck(Request());
  ASSERT_TRUE(floor.has_value());
  EXPECT_EQ(floor->status, dimse_status::kOutOfResources);
  EXPECT_EQ(floor->reason, "disk_floor");
}


// A registry whose Accept calls wait until the test decides each outcome, so
// the interleavings of associations storing one SOP Instance UID can be laid
// out step by step.
class GatedSink : public InstanceSink {
 public:
  absl::Status Accept(const ReceivedInstance& in) override {
    std::unique_lock<std::mutex> lock(mu_);
    entered_.push_back(in.association.id);
    cv_.notify_all();
    cv_.wait(lock, [&] { return outcome_.count(in.association.id) > 0; });
    absl::Status st = outcome_[in.association.id];
    if (st.ok()) {
      registered_.insert(in.spool_name);
      ++accepted_[in.spool_name];
    }
    return st;
  }
  void AssociationEnded(const AssociationSummary&) override {}
  absl::StatusOr<std::vector<std::string>> Unregistered(const std::vector<std::string>& names) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++unregistered_calls_;
    cv_.notify_all();
    std::vector<std::string> missing;
    for (const auto& n : names) {
      if (!registered_.count(n)) missing.push_back(n);
    }
    return missing;
  }
  void Decide(const std::string& association, absl::Status outcome) {
    std::lock_guard<std::mutex> lock(mu_);
    outcome_[association] = std::move(outcome);
    cv_.notify_all();
  }
  bool WaitEntered(const std::string& association, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      return std::find(entered_.begin(), entered_.end(), association) != entered_.end();
    });
  }
  bool WaitUnregisteredCalls(int n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return unregistered_calls_ >= n; });
  }
  int Accepted(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return accepted_[name];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> entered_;
  std::map<std::string, absl::Status> outcome_;
  std::set<std::string> registered_;
  std::map<std::string, int> accepted_;
  int unregistered_calls_ = 0;
};

class SpoolRaceTest : public StoreProcessorTest {
 protected:
  void SetUp() override {
    StoreProcessorTest::SetUp();
    gated_ = std::make_unique<StoreProcessor>(1 << 20, spool_.get(), &gate_, &metrics_);
  }
  std::thread Store(const std::string& association, TempFile file, DimseOutcome* out,
                    const std::string& sop = kSop) {
    return std::thread([this, association, sop, out, f = std::move(file)]() mutable {
      *out = gated_->Complete(Request(sop), {association, "STORESCU", "SECONDREAD", "127.0.0.1"}, std::move(f),
                              ReceiveStats{100, false, 0});
    });
  }
  std::string StudyInSpool(const std::string& sop = kSop) {
    auto record = ReadInstanceRecord(spool_->PathFor(Spool::NameForSopInstanceUid(sop)));
    return record.ok() ? record->study_instance_uid : "";
  }

  GatedSink gate_;
  std::unique_ptr<StoreProcessor> gated_;
};

// A's registration waits on a locked row; B re-sends the same instance; A
// times out and is refused; B registers and is answered Success. B's bytes
// must still be in the spool.
TEST_F(SpoolRaceTest, ResendDuringAPendingRegistrationKeepsTheResentCopy) {
  DimseOutcome a, b;
  std::thread ta = Store("A", WriteInstance(kSop, "1.2.3.4"), &a);
  ASSERT_TRUE(gate_.WaitEntered("A", std::chrono::seconds(10)));
  std::thread tb = Store("B", WriteInstance(kSop, "1.2.3.5"), &b);
  // While A's outcome is open, B must not touch the spool name.
  EXPECT_FALSE(gate_.WaitEntered("B", std::chrono::seconds(1)));
  gate_.Decide("A", absl::UnavailableError("canceling statement due to statement timeout"));
  ta.join();
  EXPECT_EQ(a.status, dimse_status::kOutOfResources);
  gate_.Decide("B", absl::OkStatus());
  tb.join();
  ASSERT_TRUE(b.ok()) << b.comment;
  ASSERT_TRUE(std::filesystem::exists(spool_->PathFor(Spool::NameForSopInstanceUid(kSop))))
      << "B was answered Success but its spool file is gone";
  EXPECT_EQ(StudyInSpool(), "1.2.3.5");
}

// Several associations re-send one instance at once, so their renames race;
// the slow ones fail. Whoever was answered Success must find the file there,
// and a file is left only when some registration succeeded.
TEST_F(SpoolRaceTest, ConcurrentResendsRacingThroughTheRename) {
  constexpr int kRounds = 10;
  constexpr int kSenders = 6;
  for (int round = 0; round < kRounds; ++round) {
    std::string sop = std::string(kSop) + "." + std::to_string(round + 1);
    std::vector<DimseOutcome> outs(kSenders);
    std::vector<std::thread> threads;
    for (int i = 0; i < kSenders; ++i) {
      std::string id = "r" + std::to_string(round) + "-" + std::to_string(i);
      // Failures are decided late, after the successes behind them renamed.
      threads.push_back(Store(id, WriteInstance(sop, "1.2.3." + std::to_string(i + 1)), &outs[i], sop));
    }
    std::vector<std::thread> deciders;
    for (int i = 0; i < kSenders; ++i) {
      std::string id = "r" + std::to_string(round) + "-" + std::to_string(i);
      bool fails = i % 2 == 0;
      deciders.emplace_back([this, id, fails] {
        if (!gate_.WaitEntered(id, std::chrono::seconds(30))) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(fails ? 20 : 1));
        gate_.Decide(id, fails ? absl::UnavailableError("timeout") : absl::OkStatus());
      });
    }
    for (auto& t : threads) t.join();
    for (auto& t : deciders) t.join();
    int successes = 0;
    for (int i = 0; i < kSenders; ++i) {
      EXPECT_EQ(outs[i].ok(), i % 2 == 1) << "round " << round << " sender " << i;
      successes += outs[i].ok();
    }
    std::string name = Spool::NameForSopInstanceUid(sop);
    ASSERT_EQ(successes, kSenders / 2);
    ASSERT_TRUE(std::filesystem::exists(spool_->PathFor(name)))
        << "round " << round << ": senders got Success but the spool file is gone";
    EXPECT_EQ(gate_.Accepted(name), kSenders / 2);
  }
}

// The scan that runs while associations store lists a file whose registration
// is still pending; it must not register it a second time once the
// association's registration lands.
TEST_F(SpoolRaceTest, RecoveryDoesNotRegisterAPendingInstanceTwice) {
  DimseOutcome a;
  gate_.Decide("recovery", absl::OkStatus());
  std::thread ta = Store("A", WriteInstance(kSop), &a);
  ASSERT_TRUE(gate_.WaitEntered("A", std::chrono::seconds(10)));
  absl::StatusOr<RecoveryReport> report;
  std::thread tr([&] { report = RescanSpool(*spool_, gate_, "test"); });
  ASSERT_TRUE(gate_.WaitUnregisteredCalls(1, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  gate_.Decide("A", absl::OkStatus());
  ta.join();
  tr.join();
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(gate_.Accepted(Spool::NameForSopInstanceUid(kSop)), 1);
  EXPECT_EQ(report->registered, 0);
}

// The scan lists a fresh file whose registration then fails: the association
// withdraws the file, and the scan must neither register it (a row without a
// file) nor call it unreadable.
TEST_F(SpoolRaceTest, RecoveryLeavesAWithdrawnInstanceAlone) {
  DimseOutcome a;
  gate_.Decide("recovery", absl::OkStatus());
  std::thread ta = Store("A", WriteInstance(kSop), &a);
  ASSERT_TRUE(gate_.WaitEntered("A", std::chrono::seconds(10)));
  absl::StatusOr<RecoveryReport> report;
  std::thread tr([&] { report = RescanSpool(*spool_, gate_, "test"); });
  ASSERT_TRUE(gate_.WaitUnregisteredCalls(1, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  gate_.Decide("A", absl::UnavailableError("down"));
  ta.join();
  tr.join();
  EXPECT_EQ(a.status, dimse_status::kOutOfResources);
  ASSERT_TRUE(report.ok()) << report.status();
  std::string name = Spool::NameForSopInstanceUid(kSop);
  EXPECT_EQ(gate_.Accepted(name), 0) << "registered without its file";
  EXPECT_FALSE(std::filesystem::exists(spool_->PathFor(name)));
  EXPECT_EQ(report->unreadable, 0);
}

}  // namespace
}  // namespace secondread::scp
