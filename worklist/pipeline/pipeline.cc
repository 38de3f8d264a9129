#include "worklist/pipeline/pipeline.h"

#include <pqxx/pqxx>

#include "common/log.h"
#include "scp/pixels/pixel_decoder.h"

namespace secondread::worklist {

constexpr char kSweepDeadExports[] = R"SQL(
UPDATE exports e SET state = 'dead', last_error = COALESCE(e.last_error, 'lease expired on the last attempt')
FROM jobs j
WHERE j.queue = 'export' AND j.state = 'discarded' AND e.state = 'pending'
  AND (j.args->>'export_id')::bigint = e.id
  AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.queue = 'export' AND k.state NOT IN ('completed', 'discarded')
                  AND (k.args->>'export_id')::bigint = e.id)
)SQL";

absl::StatusOr<Pipeline::Ptr> Pipeline::Start(const PipelineOptions& options, const DatabaseOptions& db,
                                              const scp::Spool* spool, metrics::MetricsRegistry& registry,
                                              FileLocator* locator, audit::AuditSink* audit) {
  Ptr p(new Pipeline());
  p->options_ = options;
  p->metrics_ = std::make_unique<PipelineMetrics>(registry);
  p->pool_ = std::make_unique<PgPool>(db, nullptr);
  p->queue_ = std::make_unique<JobQueue>(p->pool_.get(), options.queue);
  ASSIGN_OR_RETURN(auto results, ResultFiles::Open(spool->options().dir));
  p->results_ = std::make_unique<ResultFiles>(std::move(results));
  scp::RegisterDecoders();

  p->tracker_ = std::make_unique<StudyTracker>(db, p->pool_.get(), options.tracker, p->metrics_.get());
  p->tracker_->Start();
  if (!options.inference.endpoints.empty()) {
    ASSIGN_OR_RETURN(p->inference_, InferenceClient::Create(options.inference));
    for (const auto& e : options.inference.endpoints) p->metrics_->EndpointUp(e);
    p->dispatcher_ = std::make_unique<Dispatcher>(options.dispatch, db, p->pool_.get(), p->queue_.get(),
                                                  p->inference_.get(), spool, p->results_.get(), locator,
                                                  p->metrics_.get());
    p->dispatcher_->Start();
    if (options.volume_enabled) {
      p->volume_dispatcher_ = std::make_unique<VolumeDispatcher>(options.volume, db, p->pool_.get(), p->queue_.get(),
                                                                 p->inference_.get(), spool, p->results_.get(),
                                                                 locator, p->metrics_.get());
      p->volume_dispatcher_->Start();
    }
  } else {
    log::Warn("dispatch_disabled", {{"reason", "no inference.endpoints configured; reads stay queued"}});
  }
  p->exporter_ = std::make_unique<Exporter>(options.exporter, db, p->pool_.get(), p->queue_.get(),
                                            p->results_.get(), locator, p->metrics_.get(), audit);
  p->exporter_->Start();
  Pipeline* raw = p.get();
  p->maintenance_ = std::thread([raw] { raw->Maintain(); });
  log::Info("pipeline_started", {{"rules", options.tracker.rules.size()},
                                 {"inference_endpoints", options.inference.endpoints.size()},
                                 {"destinations", options.exporter.destinations.size()}});
  return p;
}

Pipeline::~Pipeline() { Stop(); }

void Pipeline::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (maintenance_.joinable()) maintenance_.join();
  if (tracker_) tracker_->Stop();
  if (dispatcher_) dispatcher_->Stop();
  if (volume_dispatcher_) volume_dispatcher_->Stop();
  if (exporter_) exporter_->Stop();
}

void Pipeline::Maintain() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    auto reaped = queue_->ReapExpired([](pqxx::transaction_base& tx, const Job& job, const std::string& reason) {
      if (job.queue == kDispatchQueue || job.queue == kVolumeQueue) ReadStore::DiscardInTx(tx, job, reason);
      if (job.queue == kExportQueue) Exporter::DiscardInTx(tx, job, reason);
    });
    if (reaped.ok() && *reaped > 0) log::Warn("jobs_reaped", {{"jobs", *reaped}});
    if (auto counts = queue_->Counts(); counts.ok()) {
      for (const char* q : {kDispatchQueue, kVolumeQueue, kExportQueue}) {
        for (const char* s : {"available", "running", "retryable", "completed", "discarded"}) {
          metrics_->Jobs(q, s).Set(0);
        }
      }
      for (const auto& c : *counts) metrics_->Jobs(c.queue, c.state).Set(static_cast<double>(c.count));
    }
    int64_t dead = -1;
    absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
      pqxx::work tx(c);
      tx.exec(kSweepDeadExports);
      dead = tx.exec("SELECT count(*) FROM exports WHERE state = 'dead'")[0][0].as<int64_t>();
      tx.commit();
    });
    if (st.ok()) metrics_->dead_letters.Set(static_cast<double>(dead));
    if (inference_) {
      for (const auto& e : inference_->Endpoints()) metrics_->EndpointUp(e.endpoint).Set(e.healthy ? 1 : 0);
    }
    lock.lock();
    cv_.wait_for(lock, options_.maintenance_interval, [this] { return stop_; });
  }
}

}  // namespace secondread::worklist
