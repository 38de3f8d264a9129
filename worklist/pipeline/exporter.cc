#include "worklist/pipeline/exporter.h"

#include <pqxx/pqxx>

#include "common/log.h"

namespace secondread::worklist {
namespace {

using Clock = std::chrono::system_clock;

constexpr char kLoadExport[] = R"SQL(
SELECT e.read_ref, e.destination, e.state, extract(epoch FROM r.done_at)::float8,
       extract(epoch FROM r.last_instance_at)::float8,
       st.study_instance_uid, st.accession_number, p.patient_id, p.patient_name
FROM exports e JOIN reads r ON r.id = e.read_ref
JOIN studies st ON st.id = r.study_ref JOIN patients p ON p.id = st.patient_ref
WHERE e.id = $1
)SQL";

constexpr char kLoadObjects[] = R"SQL(
SELECT file_name, COALESCE(holder, ''), sop_class_uid, purged_at IS NOT NULL FROM result_objects WHERE read_ref = $1 ORDER BY CASE kind WHEN 'seg' THEN 0 WHEN 'sr' THEN 1 ELSE 2 END, id
)SQL";

constexpr char kSent[] = R"SQL(
UPDATE exports SET state = 'sent', sent_at = clock_timestamp(), attempts = attempts + 1, last_error = NULL
WHERE id = $1 AND state = 'pending'
)SQL";

constexpr char kFailed[] = R"SQL(
UPDATE exports SET state = $2, attempts = attempts + 1, last_error = $3 WHERE id = $1 AND state = 'pending'
)SQL";

}  // namespace

Exporter::Exporter(ExporterOptions options, DatabaseOptions db, PgPool* pool, JobQueue* queue,
                   const ResultFiles* results, FileLocator* locator, PipelineMetrics* metrics,
                   audit::AuditSink* audit)
    : options_(std::move(options)),
      db_(std::move(db)),
      pool_(pool),
      queue_(queue),
      results_(results),
      locator_(locator),
      metrics_(metrics),
      audit_(audit) {}

Exporter::~Exporter() { Stop(); }

void Exporter::Start() {
  runner_ = JobRunner::Started({kExportQueue, options_.concurrency, options_.node_id, options_.idle_wait}, db_, queue_,
                               [this](Lease& lease) { Process(lease); });
}

void Exporter::Stop() {
  if (runner_) runner_->Stop();
}

void Exporter::DiscardInTx(pqxx::transaction_base& tx, const Job& job, const std::string& reason) {
  tx.exec_params(kFailed, job.args.value("export_id", int64_t{0}), std::string("dead"), reason);
}

void Exporter::Process(Lease& lease) {
  const Job& job = lease.job();
  const int64_t export_id = job.args.value("export_id", int64_t{0});
  int64_t read_id = 0;
  std::string destination, state;
  double done_at = 0, last_instance_at = 0;
  std::vector<std::pair<std::string, std::string>> files;  // name, holder
  audit::StudyRef study;
  bool found = false;
  bool purged = false;
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
    study = audit::StudyRef{};
    study.study_uid = r[0][5].as<std::string>();
    study.accession = r[0][6].as<std::string>();
    study.patient_id = r[0][7].as<std::string>();
    study.patient_name = r[0][8].as<std::string>();
    files.clear();
    purged = false;
    for (const auto& row : tx.exec_params(kLoadObjects, read_id)) {
      purged = purged || row[3].as<bool>();
      files.emplace_back(row[0].as<std::string>(), row[1].as<std::string>());
      ++study.sop_classes[row[2].as<std::string>()];
    }
    tx.commit();
  });

  auto lost = [&](const char* stage) {
    log::Warn("export_claim_lost", {{"export_id", export_id}, {"job_id", job.id}, {"attempt", job.attempt},
                                    {"stage", stage}});
  };
  // The outcome and the job's end commit together, under the claim; a
  // holder whose lease ran out records nothing.
  auto fail = [&](const absl::Status& failure, bool permanent) {
    std::string error(failure.message());
    bool lost_claim = false, discarded = false;
    (void)pool_->Run([&](pqxx::connection_base& c) {
      lost_claim = false;
      pqxx::work tx(c);
      if (!queue_->FailInTx(tx, job, error, permanent, &discarded)) {
        lost_claim = true;
        return;
      }
      tx.exec_params(kFailed, export_id, std::string(discarded ? "dead" : "pending"), error);
      tx.commit();
    });
    if (lost_claim) return lost("fail");
    if (metrics_) metrics_->Exports(discarded ? "dead" : "retry").Increment();
    log::Warn(discarded ? "export_dead_letter" : "export_retry", {{"export_id", export_id},
                                                                  {"destination", destination},
                                                                  {"attempt", job.attempt},
                                                                  {"error", error}});
  };

  if (!st.ok()) return fail(st, false);
  if (!found) return fail(absl::NotFoundError("export " + std::to_string(export_id) + " does not exist"), true);
  if (state != "pending") {
    (void)queue_->Complete(job);  // finished by an earlier attempt whose completion was lost
    return;
  }
  auto dest = options_.destinations.find(destination);
  if (dest == options_.destinations.end()) {
    return fail(absl::FailedPreconditionError("destination " + destination + " is not configured"), true);
  }
  if (files.empty()) return fail(absl::FailedPreconditionError("the read has no result objects"), true);
  // Retention purges result files only after their exports ended, so this is
  // an export found again later (say, restored from a backup): nothing to send.
  if (purged) return fail(absl::FailedPreconditionError("the read's result files were purged"), true);
  // Result files another node replica wrote are fetched from it.
  std::vector<std::string> paths;
  std::unique_ptr<StagingDir> staging;
  for (const auto& [name, holder] : files) {
    if (!locator_ || holder.empty() || holder == locator_->self()) {
      paths.push_back(results_->PathFor(name));
      continue;
    }
    if (!staging) staging = std::make_unique<StagingDir>(locator_->staging_parent());
    auto dir = staging->Path();
    if (!dir.ok()) return fail(dir.status(), false);
    auto path = locator_->Locate(HeldKind::kResult, name, holder, *dir);
    if (!path.ok()) return fail(path.status(), false);
    if (lease.lost()) return lost("locate");
    paths.push_back(*path);
  }

  // Each attempt is audited: its beginning, and its end as transferred
  // with the attempt's outcome.
  const audit::Party peer{dest->second.ae_title, dest->second.host};
  if (audit_) audit_->Record(audit::BeginTransferring(audit_->node(), peer, study));
  const auto t0 = std::chrono::steady_clock::now();
  auto sent = scp::SendFiles(dest->second, paths, [&lease] { return !lease.lost(); });
  if (audit_) {
    audit_->Record(audit::InstancesTransferred(audit_->node(), audit::Direction::kExported, peer, study,
                                               sent.ok() ? audit::Outcome::kSuccess : audit::Outcome::kMinorFailure));
  }
  const double export_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (lease.lost()) return lost("send");
  if (!sent.ok()) {
    const auto code = sent.status().code();
    return fail(sent.status(), code == absl::StatusCode::kFailedPrecondition ||
                                   code == absl::StatusCode::kInvalidArgument);
  }
  bool lost_claim = false;
  st = pool_->Run([&](pqxx::connection_base& c) {
    lost_claim = false;
    pqxx::work tx(c);
    if (!JobQueue::HoldInTx(tx, job)) {
      // A retried commit whose first try went through finds its own attempt
      // completed.
      auto r = tx.exec_params("SELECT state::text FROM jobs WHERE id = $1 AND attempt = $2", job.id, job.attempt);
      lost_claim = r.empty() || r[0][0].as<std::string>() != "completed";
      return;
    }
    tx.exec_params(kSent, export_id);
    JobQueue::CompleteInTx(tx, job);
    tx.commit();
  });
  if (!st.ok()) return fail(st, false);
  if (lost_claim) return lost("record");
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
