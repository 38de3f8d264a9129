// The results pipeline of the node: study tracker, dispatcher, exporter and a
// maintenance loop (lease reaper, queue gauges, dead-letter bookkeeping),
// sharing one connection pool and one job queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "audit/audit_sink.h"
#include "common/metrics.h"
#include "scp/receive/spool.h"
#include "worklist/pipeline/dispatcher.h"
#include "worklist/pipeline/volume_dispatcher.h"
#include "worklist/pipeline/exporter.h"
#include "worklist/pipeline/inference_client.h"
#include "worklist/db/job_queue.h"
#include "worklist/pipeline/pipeline_metrics.h"
#include "worklist/pipeline/tracker.h"

namespace secondread::worklist {

struct PipelineOptions {
  bool enabled = true;
  TrackerOptions tracker;
  InferenceClientOptions inference;
  DispatcherOptions dispatch;
  // Volume reads; off on a node that should leave them to others.
  bool volume_enabled = true;
  VolumeDispatcherOptions volume;
  ExporterOptions exporter;
  QueueOptions queue;
  std::chrono::milliseconds maintenance_interval{2000};
};

class Pipeline {
 public:
  using Ptr = std::unique_ptr<Pipeline>;
  // `locator`: where jobs find files another node replica holds; null for
  // a node that runs alone.
  static absl::StatusOr<Ptr> Start(const PipelineOptions& options, const DatabaseOptions& db,
                                   const scp::Spool* spool, metrics::MetricsRegistry& registry,
                                   FileLocator* locator = nullptr, audit::AuditSink* audit = nullptr);
  ~Pipeline();
  void Stop();

 private:
  Pipeline() = default;
  void Maintain();

  PipelineOptions options_;
  std::unique_ptr<PipelineMetrics> metrics_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<JobQueue> queue_;
  std::unique_ptr<ResultFiles> results_;
  InferenceClient::Ptr inference_;
  std::unique_ptr<StudyTracker> tracker_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<VolumeDispatcher> volume_dispatcher_;
  std::unique_ptr<Exporter> exporter_;
  std::thread maintenance_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace secondread::worklist
