#include "scp/store_processor.h"

#include <sys/stat.h>

#include <cstring>

#include "common/log.h"
#include "scp/dataset_reader.h"
#include "scp/uid.h"

namespace secondread::scp {

DimseOutcome StoreProcessor::Refuse(uint16_t status, const std::string& reason, const std::string& comment,
                                    const AssociationInfo& association) const {
  metrics_->Refused(reason).Increment();
  char hex[8];
  std::snprintf(hex, sizeof hex, "%04X", status);
  log::Warn("store_refused", {{"association", association.id},
                              {"calling_ae", association.calling_ae},
                              {"status", hex},
                              {"reason", reason},
                              {"detail", comment}});
  return DimseOutcome{status, reason, comment};
}

std::optional<DimseOutcome> StoreProcessor::Precheck(const StoreRequest& request) const {
  // Checked before anything is written so that a hostile UID never meets
  // the file system, and a full disk costs nothing but draining the socket.
  if (!IsValidUid(request.sop_class_uid) || !IsValidUid(request.sop_instance_uid)) {
    return DimseOutcome{dimse_status::kCannotUnderstand, "invalid_uid",
                        "Affected SOP Class/Instance UID is not a valid UID"};
  }
  absl::Status space = spool_->CheckFreeSpace();
  if (!space.ok()) {
    return DimseOutcome{dimse_status::kOutOfResources, "disk_floor", "Storage below its free-space floor"};
  }
  return std::nullopt;
}

DimseOutcome StoreProcessor::Complete(const StoreRequest& request, const AssociationInfo& association,
                                      TempFile file, const ReceiveStats& stats) {
  if (stats.write_errno != 0) {
    bool full = stats.write_errno == ENOSPC || stats.write_errno == EDQUOT;
    return Refuse(dimse_status::kOutOfResources, full ? "disk_floor" : "storage_error",
                  std::string("Spool write failed: ") + std::strerror(stats.write_errno), association);
  }
  if (stats.over_limit) {
    return Refuse(dimse_status::kOutOfResources, "too_large",
                  "Instance exceeds the configured size limit",
                  association);
  }
  auto record = ReadInstanceRecord(file.path());
  if (!record.ok()) {
    log::Warn("dataset_unparsable", {{"association", association.id}, {"error", record.status().message()}});
    return Refuse(dimse_status::kCannotUnderstand, "unparsable", "Dataset could not be parsed", association);
  }
  if (record->sop_class_uid != request.sop_class_uid || record->sop_instance_uid != request.sop_instance_uid) {
    return Refuse(dimse_status::kDataSetDoesNotMatchSopClass, "uid_mismatch",
                  "Dataset SOP Class/Instance UID differs from the request", association);
  }
  if (!IsValidUid(record->study_instance_uid) || !IsValidUid(record->series_instance_uid)) {
    return Refuse(dimse_status::kCannotUnderstand, "invalid_uid",
                  "Study/Series Instance UID missing or not a valid UID", association);
  }
  record->transfer_syntax_uid = request.transfer_syntax_uid;

  ReceivedInstance instance;
  instance.spool_name = Spool::NameForSopInstanceUid(record->sop_instance_uid);
  struct stat st;
  instance.size_bytes = ::fstat(file.fd(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : stats.bytes;
  instance.association = association;
  instance.record = std::move(*record);

  auto committed = spool_->Commit(file, instance.spool_name);
  if (!committed.ok()) {
    bool full = committed.status().code() == absl::StatusCode::kResourceExhausted;
    log::Error("spool_commit_failed", {{"association", association.id}, {"error", committed.status().ToString()}});
    return Refuse(dimse_status::kOutOfResources, full ? "disk_floor" : "storage_error", "Spool write failed",
                  association);
  }
  absl::Status registered = sink_->Accept(instance);
  if (!registered.ok()) {
    // A fresh file without a row is withdrawn so nothing half-registered
    // stays behind; a replaced copy keeps serving the row that already exists.
    if (!committed->replaced) {
      absl::Status removed = spool_->Remove(instance.spool_name);
      if (!removed.ok()) log::Error("spool_remove_failed", {{"error", removed.ToString()}});
    }
    log::Error("registry_failed", {{"association", association.id}, {"error", registered.ToString()}});
    if (registered.code() == absl::StatusCode::kUnavailable) {
      return Refuse(dimse_status::kOutOfResources, "database", "Registry unavailable; retry later", association);
    }
    // Not transient: a retry would fail the same way.
    return Refuse(dimse_status::kProcessingFailure, "registry_error", "Registry refused the instance", association);
  }
  metrics_->instances_stored.Increment();
  if (log::Enabled(log::Level::kDebug)) {
    log::Debug("instance_stored", {{"association", association.id},
                                   {"spool_name", instance.spool_name},
                                   {"bytes", instance.size_bytes},
                                   {"replaced", committed->replaced}});
  }
  return DimseOutcome{};
}

}  // namespace secondread::scp
