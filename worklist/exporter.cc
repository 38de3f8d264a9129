#include "worklist/exporter.h"

#include <pqxx/pqxx>

#include "common/log.h"

namespace secondread::worklist {
namespace {

using Clock = std::chrono::system_clock;

constexpr char kLoadExport[] = R"SQL(
SELECT e.read_ref, e.destination, e.state, extract(epoch FROM r.done_at)::float8,
       extract(epoch FROM r.last_instance_at)::float8
FROM exports e JOIN reads r ON r.id = e.read_ref
WHERE e.id = $1
)SQL";

constexpr char kLoadObjects[] = R"SQL(
SELECT file_name FROM result_objects WHERE read_ref = $1 ORDER BY kind DESC, id
)SQL";

}  // namespace

Exporter::Exporter(ExporterOptions options, DatabaseOptions db, PgPool* pool, JobQueue* queue,
                   const ResultFiles* results, PipelineMetrics* metrics)
    : options_(std::move(options)),
      db_(std::move(db)),
      pool_(pool),
      queue_(queue),
      results_(results),
      metrics_(metrics) {}

Exporter::~Exporter() { Stop(); }

void Exporter::Start() {
  JobRunnerOptions runner;
  runner.queue = kExportQueue;
  runner.concurrency = options_.concurrency;
  runner.node_id = options_.node_id;
  runner.idle_wait = options_.idle_wait;
  runner_ = std::make_unique<JobRunner>(runner, db_, queue_, [this](const Job& job) { Process(job); });
  runner_->Start();
}

void Exporter::Stop() {
  if (runner_) runner_->Stop();
}

void Exporter::Process(const Job& job) {
  const int64_t export_id = job.args.value("export_id", int64_t{0});
  int64_t read_id = 0;
  std::string destination, state;
  double done_at = 0, last_instance_at = 0;
  std::vector<std::string> files;
  bool found = false;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    auto r = tx.exec_params(kLoadExport, export_id);
    found = !r.empty();
    if (!found) return;
    read_id = r[0][0].as<int64_t>();
    destination = r[0][1].as<std::string>();
    state = r[0][2].as<std::string>();
    done_at = r[0][3].is_null() ? 0 : r[0][3].as<double>();
    last_instance_at = r[0][4].is_null() ? 0 : r[0][4].as<double>();
    files.clear();
    for (const auto& row : tx.exec_params(kLoadObjects, read_id)) files.push_back(row[0].as<std::string>());
    tx.commit();
  });

  auto record = [&](const std::string& new_state, const std::string& error) {
    return pool_->Run([&](pqxx::connection_base& c) {
      pqxx::work tx(c);
      if (new_state == "sent") {
        tx.exec_params("UPDATE exports SET state = 'sent', sent_at = clock_timestamp(), attempts = attempts + 1, "
                       "last_error = NULL WHERE id = $1",
                       export_id);
      } else {
        tx.exec_params("UPDATE exports SET state = $2, attempts = attempts + 1, last_error = $3 WHERE id = $1",
                       export_id, new_state, error);
      }
      tx.commit();
    });
  };
  auto fail = [&](const absl::Status& failure, bool permanent) {
    const bool last = permanent || job.attempt >= job.max_attempts;
    std::string error(failure.message());
    (void)record(last ? "dead" : "pending", error);
    (void)queue_->Fail(job, error, permanent);
    if (metrics_) metrics_->Exports(last ? "dead" : "retry").Increment();
    log::Warn(last ? "export_dead_letter" : "export_retry", {{"export_id", export_id},
                                                              {"destination", destination},
                                                              {"attempt", job.attempt},
                                                              {"error", error}});
  };

  if (!st.ok()) return fail(st, false);
  if (!found) return fail(absl::NotFoundError("export " + std::to_string(export_id) + " does not exist"), true);
  if (state == "sent") {
    (void)queue_->Complete(job);
    return;
  }
  auto dest = options_.destinations.find(destination);
  if (dest == options_.destinations.end()) {
    return fail(absl::FailedPreconditionError("destination " + destination + " is not configured"), true);
  }
  if (files.empty()) return fail(absl::FailedPreconditionError("the read has no result objects"), true);
  std::vector<std::string> paths;
  for (const auto& f : files) paths.push_back(results_->PathFor(f));

  const auto t0 = std::chrono::steady_clock::now();
  auto sent = scp::SendFiles(dest->second, paths);
  const double export_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!sent.ok()) {
    const auto code = sent.status().code();
    return fail(sent.status(), code == absl::StatusCode::kFailedPrecondition ||
                                   code == absl::StatusCode::kInvalidArgument);
  }
  st = record("sent", "");
  if (!st.ok()) return fail(st, false);
  (void)queue_->Complete(job);
  if (metrics_) {
    metrics_->Exports("sent").Increment();
    metrics_->Stage("export").Observe(export_s);
  }
  double now_s = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  log::Info("export_sent", {{"export_id", export_id},
                            {"read_id", read_id},
                            {"destination", destination},
                            {"objects", paths.size()},
                            {"export_ms", export_s * 1000},
                            {"since_last_instance_ms", last_instance_at > 0 ? (now_s - last_instance_at) * 1000 : 0},
                            {"since_read_done_ms", done_at > 0 ? (now_s - done_at) * 1000 : 0}});
}

}  // namespace secondread::worklist
