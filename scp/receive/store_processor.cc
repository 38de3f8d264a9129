#include "scp/receive/store_processor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"
#include "scp/receive/dataset_reader.h"
#include "scp/receive/uid.h"

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

void StoreProcessor::NoteLegacyUid(const UidCheck& check, const char* attribute,
                                   const AssociationInfo& association) const {
  if (check.verdict != UidVerdict::kLegacy) return;
  metrics_->LegacyUid(attribute, check.quirk).Increment();
  // The UID itself stays out of the log, like every other identifier of the
  // data: the attribute and the quirk say what an administrator needs.
  log::Warn("legacy_uid_accepted",
            {{"association", association.id}, {"attribute", attribute}, {"quirk", check.quirk}});
}

std::optional<DimseOutcome> StoreProcessor::Precheck(const StoreRequest& request) const {
  // Checked before anything is written so that a hostile UID never meets
  // the file system, and a full disk costs nothing but draining the socket.
  if (CheckUid(request.sop_class_uid).verdict == UidVerdict::kRefused ||
      CheckUid(request.sop_instance_uid).verdict == UidVerdict::kRefused) {
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
  // Structure first: the parser below recurses per nested sequence and
  // allocates per element, so nothing it could not survive may reach it.
  // The temp file's own descriptor is write-only.
  absl::StatusOr<StructureReport> structure = absl::InternalError("unset");
  {
    const int fd = ::open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
    structure = fd < 0 ? absl::InternalError(std::string("open: ") + std::strerror(errno))
                       : CheckDatasetStructure(fd, request.transfer_syntax_uid, limits_);
    if (fd >= 0) ::close(fd);
  }
  if (!structure.ok()) {
    log::Error("structure_check_failed", {{"association", association.id}, {"error", structure.status().ToString()}});
    return Refuse(dimse_status::kOutOfResources, "storage_error", "Received data set could not be read back",
                  association);
  }
  if (!structure->ok()) {
    const StructureProblem p = structure->problem;
    // Resource bounds are A700 like the size limit; an encoding no parser
    // should be given is C000.
    const bool resource = p == StructureProblem::kTooManyElements || p == StructureProblem::kInflatesTooLarge;
    // Labels shared with the refusals they resemble: an inflated data set over
    // the size limit is too large, a broken encoding is unparsable.
    const std::string reason = p == StructureProblem::kInflatesTooLarge ? "too_large"
                               : p == StructureProblem::kMalformed      ? "unparsable"
                                                                        : StructureProblemName(p);
    log::Warn("dataset_structure_refused", {{"association", association.id},
                                            {"problem", StructureProblemName(p)},
                                            {"depth", structure->depth},
                                            {"elements", structure->elements},
                                            {"detail", structure->detail}});
    return Refuse(resource ? dimse_status::kOutOfResources : dimse_status::kCannotUnderstand, reason,
                  std::string("Data set refused: ") + StructureProblemName(p), association);
  }
  auto record = ReadInstanceRecord(file.path());
  if (!record.ok()) {
    log::Warn("dataset_unparsable", {{"association", association.id}, {"error", record.status().message()}});
    return Refuse(dimse_status::kCannotUnderstand, "unparsable", "Dataset could not be parsed", association);
  }
  // Compared and stored without their padding; legacy forms are accepted
  // (scp/receive/uid.h says which and why).
  const UidCheck sop_class = CheckUid(record->sop_class_uid);
  const UidCheck sop_instance = CheckUid(record->sop_instance_uid);
  if (sop_class.value != CheckUid(request.sop_class_uid).value ||
      sop_instance.value != CheckUid(request.sop_instance_uid).value || sop_instance.value.empty()) {
    return Refuse(dimse_status::kDataSetDoesNotMatchSopClass, "uid_mismatch",
                  "Dataset SOP Class/Instance UID differs from the request", association);
  }
  const UidCheck study = CheckUid(record->study_instance_uid);
  const UidCheck series = CheckUid(record->series_instance_uid);
  if (study.verdict == UidVerdict::kRefused || series.verdict == UidVerdict::kRefused) {
    return Refuse(dimse_status::kCannotUnderstand, "invalid_uid",
                  "Study/Series Instance UID missing or not a valid UID", association);
  }
  NoteLegacyUid(sop_class, "sop_class", association);
  NoteLegacyUid(sop_instance, "sop_instance", association);
  NoteLegacyUid(study, "study", association);
  NoteLegacyUid(series, "series", association);
  record->sop_class_uid = sop_class.value;
  record->sop_instance_uid = sop_instance.value;
  record->study_instance_uid = study.value;
  record->series_instance_uid = series.value;
  record->transfer_syntax_uid = request.transfer_syntax_uid;

  ReceivedInstance instance;
  instance.spool_name = Spool::NameForSopInstanceUid(record->sop_instance_uid);
  struct stat st;
  instance.size_bytes = ::fstat(file.fd(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : stats.bytes;
  instance.association = association;
  instance.record = std::move(*record);

  // Held until the registry has answered: another association storing the
  // same instance waits here, so the copy this one may withdraw below is
  // always its own, and a copy another association registered is never
  // removed.
  SpoolNameLock name_lock = spool_->LockName(instance.spool_name);
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
    // stays behind; a replaced copy keeps serving the row that already exists
    // (or that a database crash lost, which the spool scan puts back). Under
    // the name lock, "fresh" means no other association's copy is at stake.
    // A registration in doubt may have left a row, which must not lose its
    // file; if it did not, the rescan once the database is back registers it.
    bool in_doubt = RegistrationInDoubt(registered);
    if (!committed->replaced && !in_doubt) {
      absl::Status removed = spool_->Remove(instance.spool_name);
      if (!removed.ok()) log::Error("spool_remove_failed", {{"error", removed.ToString()}});
    }
    if (in_doubt && !committed->replaced) {
      log::Warn("registration_in_doubt", {{"association", association.id}, {"spool_name", instance.spool_name}});
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
