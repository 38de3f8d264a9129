#include "scp/store_processor.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

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

}  // namespace
}  // namespace secondread::scp
