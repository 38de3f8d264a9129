// Turns a received C-STORE into a DIMSE status. Knows nothing about the
// network: the server receives the dataset into a TempFile and hands it here,
// which keeps the refusal rules testable without an association.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "scp/receive/dataset_limits.h"
#include "scp/receive/instance_sink.h"
#include "scp/receive/scp_metrics.h"
#include "scp/receive/spool.h"
#include "scp/receive/uid.h"

namespace secondread::scp {

// PS3.4 Annex B.2.3 / PS3.7 Annex C status codes we answer with.
namespace dimse_status {
inline constexpr uint16_t kSuccess = 0x0000;
inline constexpr uint16_t kProcessingFailure = 0x0110;
inline constexpr uint16_t kOutOfResources = 0xA700;
inline constexpr uint16_t kDataSetDoesNotMatchSopClass = 0xA900;
inline constexpr uint16_t kCannotUnderstand = 0xC000;
}  // namespace dimse_status

struct StoreRequest {
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string transfer_syntax_uid;
};

struct ReceiveStats {
  uint64_t bytes = 0;
  bool over_limit = false;
  int write_errno = 0;
};

struct DimseOutcome {
  uint16_t status = dimse_status::kSuccess;
  std::string reason;   // metric label; empty on success
  std::string comment;  // Error Comment (0000,0902), at most 64 characters; never holds PHI
  bool ok() const { return status == dimse_status::kSuccess; }
};

class StoreProcessor {
 public:
  StoreProcessor(uint64_t max_instance_bytes, Spool* spool, InstanceSink* sink, ScpMetrics* metrics,
                 DatasetLimits limits = {})
      : max_instance_bytes_(max_instance_bytes), spool_(spool), sink_(sink), metrics_(metrics), limits_(limits) {}

  uint64_t max_instance_bytes() const { return max_instance_bytes_; }
  Spool* spool() const { return spool_; }

  // Refusals decided before the dataset is read: bad request UIDs, disk floor.
  std::optional<DimseOutcome> Precheck(const StoreRequest& request) const;

  // Validates the received file, makes it durable and registers it.
  DimseOutcome Complete(const StoreRequest& request, const AssociationInfo& association, TempFile file,
                        const ReceiveStats& stats);

  // Counts and logs a UID accepted in a legacy form.
  void NoteLegacyUid(const UidCheck& check, const char* attribute, const AssociationInfo& association) const;

  // Counts and logs a refusal.
  DimseOutcome Refuse(uint16_t status, const std::string& reason, const std::string& comment,
                      const AssociationInfo& association) const;

 private:
  uint64_t max_instance_bytes_;
  Spool* spool_;
  InstanceSink* sink_;
  ScpMetrics* metrics_;
  DatasetLimits limits_;
};

}  // namespace secondread::scp
