// The dispatcher runs the dispatch queue: for each read it decodes the source
// images, sends only their pixels and physical facts to the inference tier,
// stores the findings, writes the SR and Secondary Capture objects, queues
// their export (clinical mode) and updates the radiologist worklist. All
// database effects of a read commit in one transaction fenced on the job's
// claim (read_store.h), and a read that is already done is not redone, so a
// job re-run after a crash, or a holder that outlived its lease, changes
// nothing.
//
// A read runs in stages, each a function below in dispatcher.cc, with the
// claim checked between them: load (ReadStore::Start) -> describe the model
// -> select applicable sources -> decode -> infer -> collect findings ->
// build objects -> write files -> commit (ReadStore::Commit).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "scp/pixels/pixel_decoder.h"
#include "scp/receive/spool.h"
#include "worklist/pipeline/file_locator.h"
#include "worklist/pipeline/inference_client.h"
#include "worklist/db/job_queue.h"
#include "worklist/pipeline/job_runner.h"
#include "worklist/pipeline/pipeline_metrics.h"
#include "worklist/db/read_store.h"
#include "worklist/pipeline/result_files.h"

namespace secondread::worklist {

struct DispatcherOptions {
  int concurrency = 2;
  std::string node_id;                    // claimed_by in the queue
  std::vector<std::string> destinations;  // export destination names for clinical reads
  int export_max_attempts = 12;
  std::string software_version;
  std::chrono::milliseconds idle_wait{1000};
  scp::DecoderLimits decoder;  // the process each compressed image decodes in
};

class Dispatcher {
 public:
  Dispatcher(DispatcherOptions options, DatabaseOptions db, PgPool* pool, JobQueue* queue,
             InferenceClient* inference, const scp::Spool* spool, const ResultFiles* results, FileLocator* locator,
             PipelineMetrics* metrics);
  ~Dispatcher();

  void Start();
  void Stop();

  // Runs one claimed dispatch job to its end (complete or failed) while its
  // lease is kept alive; exposed for tests.
  void Process(Lease& lease);

 private:

  DispatcherOptions options_;
  DatabaseOptions db_;
  PgPool* pool_;
  JobQueue* queue_;
  InferenceClient* inference_;
  const scp::Spool* spool_;
  FileLocator* locator_;
  const ResultFiles* results_;
  PipelineMetrics* metrics_;
  ReadStore store_;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace secondread::worklist
