#include "scp/receive/audited_sink.h"

namespace secondread::scp {

absl::Status AuditedSink::Accept(const ReceivedInstance& instance) {
  absl::Status st = inner_->Accept(instance);
  // Only what was registered counts as transferred: a refused instance was
  // answered with a failure status and is not held by the node.
  if (!st.ok()) return st;
  const InstanceRecord& r = instance.record;
  std::lock_guard<std::mutex> lock(mu_);
  audit::StudyRef& study = open_[instance.association.id][r.study_instance_uid];
  study.study_uid = r.study_instance_uid;
  study.patient_id = r.patient_id;
  study.patient_name = r.patient_name;
  study.accession = r.accession_number;
  ++study.sop_classes[r.sop_class_uid];
  return st;
}

void AuditedSink::AssociationEnded(const AssociationSummary& summary) {
  inner_->AssociationEnded(summary);
  std::map<std::string, audit::StudyRef> studies;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = open_.find(summary.association.id);
    if (it == open_.end()) return;
    studies = std::move(it->second);
    open_.erase(it);
  }
  // An association that did not end with a release may have left the
  // sender believing some of its instances were not stored.
  const audit::Outcome outcome =
      summary.outcome == "released" ? audit::Outcome::kSuccess : audit::Outcome::kMinorFailure;
  const audit::Party sender{summary.association.calling_ae, summary.association.peer_host};
  for (const auto& [uid, study] : studies) {
    audit_->Record(audit::InstancesTransferred(audit_->node(), audit::Direction::kReceived, sender, study, outcome));
  }
}

}  // namespace secondread::scp
