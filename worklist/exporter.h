// The exporter runs the export queue: it sends a read's result objects to
// one destination by C-STORE, with the queue's retries and exponential
// backoff, and records the outcome on the export row. Out of attempts, or
// refused for good by the destination, an export becomes a dead letter
// (state 'dead'), counted in metrics. The objects' UIDs are deterministic,
// so a re-send after a crash replaces rather than duplicates them.
#pragma once

#include <chrono>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "scp/store_scu.h"
#include "worklist/job_queue.h"
#include "worklist/job_runner.h"
#include "worklist/pipeline_metrics.h"
#include "worklist/result_files.h"

namespace secondread::worklist {

struct ExporterOptions {
  int concurrency = 1;
  std::string node_id;
  std::map<std::string, scp::StoreDestination> destinations;  // by name
  std::chrono::milliseconds idle_wait{1000};
};

class Exporter {
 public:
  Exporter(ExporterOptions options, DatabaseOptions db, PgPool* pool, JobQueue* queue, const ResultFiles* results,
           PipelineMetrics* metrics);
  ~Exporter();

  void Start();
  void Stop();
  void Process(const Job& job);

 private:

  ExporterOptions options_;
  DatabaseOptions db_;
  PgPool* pool_;
  JobQueue* queue_;
  const ResultFiles* results_;
  PipelineMetrics* metrics_;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace secondread::worklist
