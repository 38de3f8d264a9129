// The exporter runs the export queue: it sends a read's result objects to
// one destination by C-STORE, with the queue's retries and exponential
// backoff, and records the outcome on the export row. Out of attempts, or
// refused for good by the destination, an export becomes a dead letter
// (state 'dead'), counted in metrics. The objects' UIDs are deterministic,
// so a re-send after a crash replaces rather than duplicates them. The lease
// is kept alive while the PACS takes its time; a holder that lost its claim
// sends no further object and records nothing, and the export row moves
// only from pending.
#pragma once

#include <chrono>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "audit/audit_sink.h"
#include "scp/send/store_scu.h"
#include "worklist/db/job_queue.h"
#include "worklist/pipeline/job_runner.h"
#include "worklist/pipeline/pipeline_metrics.h"
#include "worklist/pipeline/file_locator.h"
#include "worklist/pipeline/result_files.h"

namespace secondread::worklist {

struct ExporterOptions {
  int concurrency = 1;
  std::string node_id;
  std::map<std::string, scp::StoreDestination> destinations;  // by name
  std::chrono::milliseconds idle_wait{1000};
};

class Exporter {
 public:
  // `locator` (may be null: every file is this node's) finds result files
  // another node replica holds.
  Exporter(ExporterOptions options, DatabaseOptions db, PgPool* pool, JobQueue* queue, const ResultFiles* results,
           FileLocator* locator, PipelineMetrics* metrics, audit::AuditSink* audit = nullptr);
  ~Exporter();

  void Start();
  void Stop();
  void Process(Lease& lease);

  // For the reaper: an export job discarded when its lease expired on the
  // last attempt leaves its export dead with the reason.
  static void DiscardInTx(pqxx::transaction_base& tx, const Job& job, const std::string& reason);

 private:

  ExporterOptions options_;
  DatabaseOptions db_;
  PgPool* pool_;
  JobQueue* queue_;
  const ResultFiles* results_;
  FileLocator* locator_;
  PipelineMetrics* metrics_;
  audit::AuditSink* audit_;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace secondread::worklist
