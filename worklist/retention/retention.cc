#include "worklist/retention/retention.h"

#include <sys/stat.h>

#include <algorithm>

#include "common/log.h"

namespace secondread::worklist {
namespace {

// Names locked at once while checking that their rows are still tombstones:
// one registry round trip per chunk. A receiver holds one name at a time, so
// holding many here cannot deadlock with it.
constexpr size_t kUnlinkChunk = 256;

DatabaseOptions RetentionDb(DatabaseOptions db) {
  db.max_connections = 2;
  return db;
}

}  // namespace

Retention::Retention(RetentionOptions options, const DatabaseOptions& db, scp::Spool* spool,
                     metrics::MetricsRegistry* metrics, audit::AuditSink* audit)
    : options_(std::move(options)),
      pool_(std::make_unique<PgPool>(RetentionDb(db), nullptr)),
      store_(pool_.get(), options_.node_id),
      spool_(spool),
      audit_(audit) {
  auto results = ResultFiles::Open(spool_->options().dir);
  if (results.ok()) results_ = std::make_unique<ResultFiles>(std::move(*results));
  if (metrics) {
    purged_ = &metrics->CounterFamily("secondread_retention_purged_total",
                                      "Files removed by retention, by kind (instance: received, result: written)");
    purged_bytes_ = &metrics->CounterFamily("secondread_retention_purged_bytes_total",
                                            "Bytes of the files removed by retention, by kind");
    studies_ = &metrics->CounterFamily("secondread_retention_studies_purged_total",
                                       "Studies whose files retention purged, by kind (source, results)");
    runs_ = &metrics->CounterFamily("secondread_retention_runs_total", "Retention runs, by result");
    last_run_ = &metrics->GaugeFamily("secondread_retention_last_run_timestamp_seconds",
                                      "When the last retention run ended (Unix time)")
                     .Add({});
    for (const char* kind : {"instance", "result"}) {
      purged_->Add({{"kind", kind}});
      purged_bytes_->Add({{"kind", kind}});
    }
    for (const char* kind : {"source", "results"}) studies_->Add({{"kind", kind}});
  }
}

Retention::~Retention() { Stop(); }

void Retention::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Retention::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Retention::Loop() {
  log::Info("retention_started", {{"source_grace_s", options_.source_grace.count()},
                                  {"result_age_s", options_.result_age.count()},
                                  {"interval_s", options_.interval.count()}});
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    auto run = RunOnce();
    if (runs_) runs_->Add({{"result", run.ok() ? "ok" : "error"}}).Increment();
    if (!run.ok()) log::Warn("retention_failed", {{"error", run.status().ToString()}});
    lock.lock();
    cv_.wait_for(lock, options_.interval, [this] { return stop_; });
  }
}

void Retention::Audit(const PurgedStudy& purged, const char* what) {
  if (!audit_) return;
  audit::AuditMessage m = audit::StudyDeleted(audit_->node(), audit::Party{}, purged.study, audit::Outcome::kSuccess);
  m.outcome_description = what;
  audit_->Record(m);
}

void Retention::UnlinkSources(std::vector<std::string> names, RetentionRun& run) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  for (size_t off = 0; off < names.size(); off += kUnlinkChunk) {
    std::vector<std::string> chunk(names.begin() + off, names.begin() + std::min(names.size(), off + kUnlinkChunk));
    // A re-sent copy is renamed into place and registered under its name's
    // lock, and its registration revives the row; so with the lock held, a
    // row still marked purged means the file there is the purged one, or a
    // copy whose registration did not commit (its sender was not told it
    // was stored).
    std::vector<scp::SpoolNameLock> locks;
    locks.reserve(chunk.size());
    for (const auto& name : chunk) locks.push_back(spool_->LockName(name));
    auto still = store_.StillPurged(chunk);
    if (!still.ok()) {
      log::Warn("retention_unlink_deferred", {{"files", chunk.size()}, {"error", still.status().ToString()}});
      unlink_later_.insert(unlink_later_.end(), chunk.begin(), chunk.end());
      continue;
    }
    for (const auto& name : chunk) {
      if (!still->count(name)) {
        ++run.instances_kept;
        continue;
      }
      struct stat st {};
      const std::string path = spool_->PathFor(name);
      const bool present = ::stat(path.c_str(), &st) == 0;
      absl::Status removed = spool_->Remove(name);
      if (!removed.ok()) {
        log::Warn("retention_unlink_failed", {{"error", removed.ToString()}});
        unlink_later_.push_back(name);
        continue;
      }
      if (present) {
        ++run.instances;
        run.instance_bytes += static_cast<uint64_t>(st.st_size);
      }
    }
  }
}

absl::StatusOr<RetentionRun> Retention::RunOnce() {
  RetentionRun run;
  const auto t0 = std::chrono::steady_clock::now();
  if (!unlink_later_.empty()) {
    std::vector<std::string> again;
    again.swap(unlink_later_);
    UnlinkSources(std::move(again), run);
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> studies, store_.EligibleStudies(options_.source_grace, options_.batch));
  for (int64_t study_ref : studies) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    ASSIGN_OR_RETURN(std::optional<PurgedStudy> purged, store_.PurgeStudy(study_ref, options_.source_grace));
    if (!purged) continue;  // something arrived or was queued since the listing
    Audit(*purged, "retention: source instances purged");
    if (after_commit_) after_commit_(*purged);
    RetentionRun one;
    std::vector<std::string> names;
    for (const auto& f : purged->files) names.push_back(f.name);
    UnlinkSources(std::move(names), one);
    ++run.studies;
    run.instances += one.instances;
    run.instances_kept += one.instances_kept;
    run.instance_bytes += one.instance_bytes;
    if (studies_) studies_->Add({{"kind", "source"}}).Increment();
    log::Info("retention_study_purged", {{"study_id", study_ref},
                                         {"kind", "source"},
                                         {"instances", purged->files.size()},
                                         {"files_removed", one.instances},
                                         {"files_kept", one.instances_kept},
                                         {"bytes", one.instance_bytes}});
  }
  if (options_.result_age.count() > 0 && results_) {
    ASSIGN_OR_RETURN(std::vector<PurgedStudy> purged, store_.PurgeResults(options_.result_age, options_.batch));
    for (const auto& p : purged) {
      Audit(p, "retention: result objects purged");
      int64_t removed = 0;
      uint64_t bytes = 0;
      for (const auto& f : p.files) {
        auto freed = results_->Purge(f.name);
        if (!freed.ok()) {
          log::Warn("retention_unlink_failed", {{"error", freed.status().ToString()}});
          continue;
        }
        if (*freed > 0) ++removed;
        bytes += *freed;
      }
      ++run.result_studies;
      run.results += removed;
      run.result_bytes += bytes;
      if (studies_) studies_->Add({{"kind", "results"}}).Increment();
      log::Info("retention_study_purged",
                {{"study_id", p.study_ref}, {"kind", "results"}, {"objects", p.files.size()},
                 {"files_removed", removed}, {"bytes", bytes}});
    }
    if (!purged.empty()) {
      if (absl::Status synced = results_->SyncDirectory(); !synced.ok()) {
        log::Warn("retention_sync_failed", {{"error", synced.ToString()}});
      }
    }
  }
  if (purged_) {
    purged_->Add({{"kind", "instance"}}).Increment(static_cast<double>(run.instances));
    purged_->Add({{"kind", "result"}}).Increment(static_cast<double>(run.results));
    purged_bytes_->Add({{"kind", "instance"}}).Increment(static_cast<double>(run.instance_bytes));
    purged_bytes_->Add({{"kind", "result"}}).Increment(static_cast<double>(run.result_bytes));
  }
  if (last_run_) {
    last_run_->Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  }
  if (run.studies > 0 || run.result_studies > 0 || run.instances_kept > 0) {
    log::Info("retention_run",
              {{"studies", run.studies},
               {"instances", run.instances},
               {"instances_kept", run.instances_kept},
               {"instance_bytes", run.instance_bytes},
               {"result_studies", run.result_studies},
               {"results", run.results},
               {"result_bytes", run.result_bytes},
               {"run_ms", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()}});
  }
  return run;
}

}  // namespace secondread::worklist
