// The study tracker: consumes the intake log (new instances, released
// associations), applies the routing rules, keeps each matching study's
// completeness state, and creates reads plus their dispatch jobs once a
// study is complete. One transaction per cycle, under a transaction-scoped
// advisory lock, so several nodes on one database track each study once.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "common/status.h"
#include "worklist/db/pg_pool.h"
#include "worklist/pipeline/pipeline_metrics.h"
#include "worklist/pipeline/routing.h"

namespace secondread::worklist {

// Held by each tracker cycle (pg_try_advisory_xact_lock), and by a retention
// purge (worklist/retention/retention.h) so that no cycle creates a read of
// a study while its files are being marked purged. Any constant shared by
// every node of one database.
inline constexpr int64_t kTrackerLockKey = 0x5ec0d7ac;

struct TrackerOptions {
  std::vector<RoutingRule> rules;
  int intake_batch = 500;
  int dispatch_max_attempts = 8;
  // Longest sleep between cycles when no notification arrives.
  std::chrono::milliseconds max_sleep{1000};
};

class StudyTracker {
 public:
  StudyTracker(DatabaseOptions db, PgPool* pool, TrackerOptions options, PipelineMetrics* metrics);
  ~StudyTracker();

  void Start();
  void Stop();

  struct CycleResult {
    int intake_rows = 0;
    int reads_created = 0;
    // Volume reads recorded for a later volume dispatcher, not dispatched.
    int volume_reads_recorded = 0;
    // Time until the next collecting study is due (max_sleep when none).
    std::chrono::milliseconds next_due{0};
  };
  // One cycle; exposed for tests.
  absl::StatusOr<CycleResult> RunOnce();

 private:
  void Loop();

  DatabaseOptions db_;
  PgPool* pool_;
  TrackerOptions options_;
  PipelineMetrics* metrics_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace secondread::worklist
