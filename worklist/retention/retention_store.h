// The registry side of retention (docs/architecture.md, "Retention"): which
// studies' source instances may be purged, and the transactions that mark
// instances and result objects purged and append their audit_log rows. The
// files themselves are removed by Retention after these commit.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "audit/audit_message.h"
#include "common/status.h"
#include "worklist/db/pg_pool.h"

namespace secondread::worklist {

// What one purge transaction marked for one study.
struct PurgedStudy {
  int64_t study_ref = 0;
  audit::StudyRef study;  // for the audit record only: holds patient data
  struct File {
    std::string name;  // a spool name or a result file name (64 hex digits)
    int64_t size_bytes = 0;
  };
  std::vector<File> files;
};

class RetentionStore {
 public:
  // `holder`: the replica whose files this node removes (instances.holder,
  // result_objects.holder); empty for a node that runs alone (NULL holder).
  RetentionStore(PgPool* pool, std::string holder);

  // Studies that have source files this node holds and whose every read and
  // export is finished: no read queued or running, no export pending, no
  // live job for a read or an export of the study, no candidate of a rule
  // still collecting it, no instance of it waiting in intake, and nothing
  // received for it within `grace`. Least recently received first.
  absl::StatusOr<std::vector<int64_t>> EligibleStudies(std::chrono::seconds grace, int limit);

  // One transaction: takes the tracker's lock and the study's row (which
  // every registration into the study updates), checks eligibility again,
  // marks the study's instances this node holds purged and appends an
  // audit_log row. nullopt when the study is no longer eligible.
  absl::StatusOr<std::optional<PurgedStudy>> PurgeStudy(int64_t study_ref, std::chrono::seconds grace);

  // Of these spool names, those whose instance row is still a tombstone. The
  // caller holds each name's spool lock, so a copy received again after the
  // purge (its row revived) is never removed.
  absl::StatusOr<std::set<std::string>> StillPurged(const std::vector<std::string>& spool_names);

  // One transaction: marks purged the result objects this node holds that
  // were created more than `age` ago and whose read has no export pending
  // and no live export job (never before delivery), at most `limit`, and
  // appends one audit_log row per study. Grouped by study.
  absl::StatusOr<std::vector<PurgedStudy>> PurgeResults(std::chrono::seconds age, int limit);

 private:
  PgPool* pool_;
  std::string holder_;
};

}  // namespace secondread::worklist
