// Retention (docs/architecture.md, "Retention"): a thread that purges the
// spool's source instances once every read and export of their study has
// finished and a grace period has passed, and result files once they are
// delivered and old enough. Rows stay as tombstones (purged_at); each purge
// is audited (audit_log and the ATNA DICOM Study Deleted message).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "audit/audit_sink.h"
#include "common/metrics.h"
#include "scp/receive/spool.h"
#include "worklist/db/pg_pool.h"
#include "worklist/pipeline/result_files.h"
#include "worklist/retention/retention_store.h"

namespace secondread::worklist {

struct RetentionOptions {
  bool enabled = false;
  // After the last instance of a finished study arrived.
  std::chrono::seconds source_grace{std::chrono::hours(72)};
  // After a result object was written; zero keeps result files.
  std::chrono::seconds result_age{std::chrono::hours(24 * 30)};
  std::chrono::seconds interval{std::chrono::hours(1)};
  // Studies (and result objects) purged per run at most.
  int batch = 500;
  // The replica whose files this node holds (cluster.node_id); empty alone.
  std::string node_id;
};

struct RetentionRun {
  int64_t studies = 0;            // studies whose source instances were purged
  int64_t instances = 0;          // source files removed
  int64_t instances_kept = 0;     // marked, but received again before the unlink
  uint64_t instance_bytes = 0;
  int64_t result_studies = 0;
  int64_t results = 0;            // result files removed
  uint64_t result_bytes = 0;
};

class Retention {
 public:
  // `spool` and `audit` outlive the Retention; `metrics` may be null.
  Retention(RetentionOptions options, const DatabaseOptions& db, scp::Spool* spool,
            metrics::MetricsRegistry* metrics, audit::AuditSink* audit);
  ~Retention();

  // The first run starts at once, then one every interval.
  void Start();
  void Stop();

  // One pass; what the thread runs. For tests.
  absl::StatusOr<RetentionRun> RunOnce();
  // For tests: called after a study's purge committed, before its unlinks.
  void SetAfterCommitForTest(std::function<void(const PurgedStudy&)> hook) { after_commit_ = std::move(hook); }

 private:
  void Loop();
  // Removes the files of purged instances under their spool-name locks,
  // only where the row is still a tombstone. Names it could not check stay
  // for the next run.
  void UnlinkSources(std::vector<std::string> names, RetentionRun& run);
  void Audit(const PurgedStudy& purged, const char* what);

  RetentionOptions options_;
  std::unique_ptr<PgPool> pool_;
  RetentionStore store_;
  scp::Spool* spool_;
  std::unique_ptr<ResultFiles> results_;
  audit::AuditSink* audit_;
  std::vector<std::string> unlink_later_;
  std::function<void(const PurgedStudy&)> after_commit_;

  prometheus::Family<metrics::Counter>* purged_ = nullptr;
  prometheus::Family<metrics::Counter>* purged_bytes_ = nullptr;
  prometheus::Family<metrics::Counter>* studies_ = nullptr;
  prometheus::Family<metrics::Counter>* runs_ = nullptr;
  metrics::Gauge* last_run_ = nullptr;

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace secondread::worklist
