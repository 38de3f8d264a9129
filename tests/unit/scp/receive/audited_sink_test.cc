#include "scp/receive/audited_sink.h"

#include <gtest/gtest.h>

namespace secondread::scp {
namespace {

class FakeSink : public InstanceSink {
 public:
  absl::Status Accept(const ReceivedInstance& i) override {
    return i.record.sop_instance_uid == "refused" ? absl::UnavailableError("db") : absl::OkStatus();
  }
  void AssociationEnded(const AssociationSummary&) override { ++ended; }
  absl::StatusOr<std::vector<std::string>> Unregistered(const std::vector<std::string>&) override {
    return std::vector<std::string>{};
  }
  int ended = 0;
};

class RecordingAudit : public audit::AuditSink {
 public:
  void Record(const audit::AuditMessage& m) override { messages.push_back(m); }
  const audit::NodeIdentity& node() const override { return node_; }
  std::vector<audit::AuditMessage> messages;

 private:
  audit::NodeIdentity node_;
};

ReceivedInstance Instance(const std::string& assoc, const std::string& study, const std::string& sop_class,
                          const std::string& uid) {
  ReceivedInstance i;
  i.association = {assoc, "MODALITY", "SECONDREAD", "10.0.0.7"};
  i.record.study_instance_uid = study;
  i.record.sop_class_uid = sop_class;
  i.record.sop_instance_uid = uid;
  i.record.patient_id = "P-" + study;
  i.record.patient_name = "Doe^" + study;
  return i;
}

TEST(AuditedSinkTest, OneTransferredMessagePerStudyOfTheAssociationWhenItEnds) {
  FakeSink inner;
  RecordingAudit audit;
  AuditedSink sink(&inner, &audit);
  ASSERT_TRUE(sink.Accept(Instance("a1", "1.1", "1.2.840.10008.5.1.4.1.1.2", "i1")).ok());
  ASSERT_TRUE(sink.Accept(Instance("a1", "1.1", "1.2.840.10008.5.1.4.1.1.2", "i2")).ok());
  ASSERT_TRUE(sink.Accept(Instance("a1", "1.1", "1.2.840.10008.5.1.4.1.1.4", "i3")).ok());
  ASSERT_TRUE(sink.Accept(Instance("a1", "2.2", "1.2.840.10008.5.1.4.1.1.2", "i4")).ok());
  EXPECT_FALSE(sink.Accept(Instance("a1", "3.3", "1.2.840.10008.5.1.4.1.1.2", "refused")).ok());
  ASSERT_TRUE(sink.Accept(Instance("a2", "9.9", "1.2.840.10008.5.1.4.1.1.2", "i5")).ok());
  EXPECT_TRUE(audit.messages.empty());

  AssociationSummary summary;
  summary.association = {"a1", "MODALITY", "SECONDREAD", "10.0.0.7"};
  summary.outcome = "released";
  sink.AssociationEnded(summary);
  EXPECT_EQ(inner.ended, 1);
  ASSERT_EQ(audit.messages.size(), 2u);  // 1.1 and 2.2; the refused study is not there
  const auto& m = audit.messages[0];
  EXPECT_EQ(m.event_id.code, "110104");
  EXPECT_EQ(m.action, 'C');
  EXPECT_EQ(m.outcome, audit::Outcome::kSuccess);
  EXPECT_EQ(m.participants[0].user_id, "MODALITY");
  EXPECT_EQ(m.participants[0].network_access_point, "10.0.0.7");
  EXPECT_TRUE(m.participants[0].is_requestor);
  EXPECT_EQ(m.objects[0].id, "1.1");
  EXPECT_EQ(m.objects[0].sop_classes,
            (std::map<std::string, int64_t>{{"1.2.840.10008.5.1.4.1.1.2", 2}, {"1.2.840.10008.5.1.4.1.1.4", 1}}));
  EXPECT_EQ(m.objects[1].id, "P-1.1");
  EXPECT_EQ(audit.messages[1].objects[0].id, "2.2");

  // Ended once only; an aborted association is a minor failure.
  sink.AssociationEnded(summary);
  EXPECT_EQ(audit.messages.size(), 2u);
  summary.association.id = "a2";
  summary.outcome = "aborted";
  sink.AssociationEnded(summary);
  ASSERT_EQ(audit.messages.size(), 3u);
  EXPECT_EQ(audit.messages[2].outcome, audit::Outcome::kMinorFailure);
}

}  // namespace
}  // namespace secondread::scp
