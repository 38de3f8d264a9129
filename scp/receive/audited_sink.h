// An InstanceSink that also reports received studies to the audit trail:
// one DICOM Instances Transferred message per association and study, sent
// when the association ends, with the SOP classes and instance counts
// registered on it. Everything else passes through to the wrapped sink.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "audit/audit_sink.h"
#include "scp/receive/instance_sink.h"

namespace secondread::scp {

class AuditedSink : public InstanceSink {
 public:
  AuditedSink(InstanceSink* inner, audit::AuditSink* audit) : inner_(inner), audit_(audit) {}

  absl::Status Accept(const ReceivedInstance& instance) override;
  void AssociationEnded(const AssociationSummary& summary) override;
  absl::StatusOr<std::vector<std::string>> Unregistered(const std::vector<std::string>& spool_names) override {
    return inner_->Unregistered(spool_names);
  }

 private:
  InstanceSink* inner_;
  audit::AuditSink* audit_;
  std::mutex mu_;
  // association id -> study UID -> what was registered
  std::map<std::string, std::map<std::string, audit::StudyRef>> open_;
};

}  // namespace secondread::scp
