#include "worklist/db/read_store.h"

#include <pqxx/pqxx>

namespace secondread::worklist {
namespace {

// Each store serves one kind of read (ReadStoreOptions::input): a read of the
// other kind is invisible to it and never changed by it, even if a job named
// one.
constexpr char kLoadRead[] = R"SQL(
SELECT r.state, r.study_ref, st.study_instance_uid, r.rule_name, r.model_name, r.model_version, r.mode,
       r.priority, extract(epoch FROM r.triggered_at)::float8, r.trigger, r.generation, r.resample
FROM reads r JOIN studies st ON st.id = r.study_ref
WHERE r.id = $1 AND r.input = $2
FOR UPDATE OF r
)SQL";

constexpr char kLoadSources[] = R"SQL(
SELECT i.id, i.sop_instance_uid, i.sop_class_uid, se.series_instance_uid, i.spool_name,
       se.modality, se.body_part_examined, COALESCE(i.number_of_frames, 1), COALESCE(i.holder, ''),
       -- Only a per-instance read ($2) needs the source's arrival position.
       CASE WHEN $2 THEN (SELECT count(*) FROM instances i2 JOIN series s2 ON s2.id = i2.series_ref
                          WHERE s2.study_ref = se.study_ref AND i2.id <= i.id)
            ELSE 1 END
FROM read_instances ri
JOIN instances i ON i.id = ri.instance_ref
JOIN series se ON se.id = i.series_ref
-- A purged instance has no file; retention never purges a study with a read
-- to do, so this only keeps a read from a tombstone.
WHERE ri.read_ref = $1 AND i.purged_at IS NULL
ORDER BY se.series_number NULLS LAST, se.id, i.instance_number NULLS LAST, i.id
)SQL";

// The objects of the earlier generations of the same study read (for a
// volume read, of the same series): the newest generation's SR is the one a
// changed re-read replaces, never the report on another series of the study.
constexpr char kPriorObjects[] = R"SQL(
SELECT p.generation, ro.kind, st.study_instance_uid, ro.series_instance_uid, ro.sop_class_uid, ro.sop_instance_uid
FROM reads r
JOIN reads p ON p.candidate_ref = r.candidate_ref AND p.rule_name = r.rule_name AND p.model_name = r.model_name
            AND p.model_version = r.model_version AND p.generation < r.generation AND p.state = 'done'
            AND p.series_ref IS NOT DISTINCT FROM r.series_ref
JOIN result_objects ro ON ro.read_ref = p.id
JOIN studies st ON st.id = p.study_ref
WHERE r.id = $1 AND r.candidate_ref IS NOT NULL
ORDER BY p.generation DESC, ro.kind, ro.id
)SQL";

constexpr char kMarkRunning[] = R"SQL(
UPDATE reads SET state = 'running', started_at = clock_timestamp()
WHERE id = $1 AND state IN ('queued', 'running') AND input = $2
)SQL";

constexpr char kLockRead[] = "SELECT state FROM reads WHERE id = $1 FOR UPDATE";

constexpr char kInsertFinding[] = R"SQL(
INSERT INTO findings (read_ref, instance_ref, frame, label, code_scheme, code_value, code_meaning, score, threshold,
                      above, peak_row, peak_column)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
)SQL";

// An object's UID names the read that made it, so a conflict is a re-run of
// this read or an object an earlier generation already holds: either way the
// existing row stays with its read.
constexpr char kInsertResult[] = R"SQL(
INSERT INTO result_objects (read_ref, kind, sop_class_uid, sop_instance_uid, series_instance_uid,
                            source_instance_ref, file_name, size_bytes, holder)
VALUES ($1, $2, $3, $4, $5, NULLIF($6::bigint, 0), $7, $8, NULLIF($9, ''))
ON CONFLICT ON CONSTRAINT result_objects_uid_key DO NOTHING
RETURNING id
)SQL";

// Burned-in images were recorded when the read was created; these are the
// ones whose pixels did not decode, never the same instances.
constexpr char kInsertSkipped[] = R"SQL(
INSERT INTO read_skipped_instances (read_ref, instance_ref, reason) VALUES ($1, $2, $3)
ON CONFLICT (read_ref, instance_ref) DO NOTHING
)SQL";

constexpr char kReadDone[] = R"SQL(
UPDATE reads SET state = $2, flagged = $3, served_version = $4, images_read = $5, decode_ms = $6,
                 inference_ms = $7, results_ms = $8, done_at = clock_timestamp(), error = NULL
WHERE id = $1 AND state = 'running'
)SQL";

// A read commits once, so its exports are new; an existing row (sent or
// dead) is never reset to send everything again.
constexpr char kInsertExport[] = R"SQL(
INSERT INTO exports (read_ref, destination) VALUES ($1, $2)
ON CONFLICT ON CONSTRAINT exports_key DO NOTHING
RETURNING id
)SQL";

constexpr char kUpsertWorklist[] = R"SQL(
INSERT INTO worklist_entries (study_ref, flagged, priority, top_model, top_label, top_score, flagged_at)
VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $2 THEN now() END)
ON CONFLICT (study_ref) DO UPDATE SET
  flagged = worklist_entries.flagged OR EXCLUDED.flagged,
  priority = LEAST(worklist_entries.priority, EXCLUDED.priority),
  top_model = CASE WHEN EXCLUDED.top_score > COALESCE(worklist_entries.top_score, -1)
                   THEN EXCLUDED.top_model ELSE worklist_entries.top_model END,
  top_label = CASE WHEN EXCLUDED.top_score > COALESCE(worklist_entries.top_score, -1)
                   THEN EXCLUDED.top_label ELSE worklist_entries.top_label END,
  top_score = GREATEST(worklist_entries.top_score, EXCLUDED.top_score),
  flagged_at = COALESCE(worklist_entries.flagged_at, EXCLUDED.flagged_at),
  updated_at = now(),
  -- A new result changes what a reviewer saw: a review made against the
  -- earlier version is refused as a conflict.
  version = worklist_entries.version + 1
)SQL";

// A volume read that failed for good puts its study on the worklist, so the
// radiologist sees that the series was not read and why (the read's error),
// instead of finding nothing and taking silence for a negative.
constexpr char kWorklistForFailure[] = R"SQL(
INSERT INTO worklist_entries (study_ref, flagged, priority)
SELECT r.study_ref, false, r.priority FROM reads r WHERE r.id = $1 AND r.mode = 'clinical'
ON CONFLICT (study_ref) DO UPDATE SET updated_at = now(), version = worklist_entries.version + 1
)SQL";

constexpr char kReadRequeued[] = R"SQL(
UPDATE reads SET state = 'queued', error = $2 WHERE id = $1 AND state IN ('queued', 'running') AND input = $3
)SQL";

constexpr char kReadFailed[] = R"SQL(
UPDATE reads SET state = 'failed', error = $2, done_at = clock_timestamp()
WHERE id = $1 AND state IN ('queued', 'running') AND input = $3
)SQL";

bool Finished(const std::string& state) { return state == "done" || state == "not_applicable" || state == "failed"; }

// After a lost claim: a job this same attempt completed means an earlier try
// of this transaction committed and only its answer was lost (PgPool retries
// a call once on a broken connection).
Fence LostOrFinished(pqxx::transaction_base& tx, const Job& job) {
  auto r = tx.exec_params("SELECT state::text FROM jobs WHERE id = $1 AND attempt = $2", job.id, job.attempt);
  return !r.empty() && r[0][0].as<std::string>() == "completed" ? Fence::kFinished : Fence::kClaimLost;
}

}  // namespace

ReadStore::ReadStore(PgPool* pool, JobQueue* queue, ReadStoreOptions options)
    : pool_(pool), queue_(queue), options_(std::move(options)) {}

absl::StatusOr<LoadedRead> ReadStore::Start(const Job& job, int64_t read_id) {
  LoadedRead out;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    out = LoadedRead{};
    pqxx::work tx(c);
    if (!JobQueue::HoldInTx(tx, job)) {
      out.fence = Fence::kClaimLost;
      return;
    }
    auto r = tx.exec_params(kLoadRead, read_id, options_.input);
    out.found = !r.empty();
    if (!out.found) return;
    ReadRow& read = out.read;
    read.id = read_id;
    read.state = r[0][0].as<std::string>();
    read.study_ref = r[0][1].as<int64_t>();
    read.study_uid = r[0][2].as<std::string>();
    read.rule = r[0][3].as<std::string>();
    read.model = r[0][4].as<std::string>();
    read.version = r[0][5].as<int64_t>();
    read.mode = r[0][6].as<std::string>();
    read.priority = r[0][7].as<int>();
    read.triggered_at = r[0][8].as<double>();
    read.trigger = r[0][9].as<std::string>();
    read.generation = r[0][10].as<int>();
    read.resample = r[0][11].as<bool>();
    if (Finished(read.state)) {
      // Finished by an earlier attempt whose completion was lost.
      JobQueue::CompleteInTx(tx, job);
      tx.commit();
      out.fence = Fence::kFinished;
      return;
    }
    for (const auto& row : tx.exec_params(kLoadSources, read_id, read.trigger == "instance")) {
      SourceRow s;
      s.instance_id = row[0].as<int64_t>();
      s.sop_instance_uid = row[1].as<std::string>();
      s.sop_class_uid = row[2].as<std::string>();
      s.series_uid = row[3].as<std::string>();
      s.spool_name = row[4].as<std::string>();
      s.modality = row[5].as<std::string>();
      s.body_part = row[6].as<std::string>();
      s.frames = std::max<int64_t>(1, row[7].as<int64_t>());
      s.holder = row[8].as<std::string>();
      s.arrival = row[9].as<int64_t>();
      out.sources.push_back(std::move(s));
    }
    for (const auto& row : tx.exec_params(kPriorObjects, read_id)) {
      PriorObject p;
      p.generation = row[0].as<int>();
      p.kind = row[1].as<std::string>();
      p.object = {row[2].as<std::string>(), row[3].as<std::string>(), row[4].as<std::string>(),
                  row[5].as<std::string>()};
      out.prior.push_back(std::move(p));
    }
    tx.exec_params(kMarkRunning, read_id, options_.input);
    tx.commit();
  }));
  return out;
}

absl::StatusOr<Fence> ReadStore::Commit(const Job& job, const ReadRow& read, const ReadOutcome& outcome) {
  Fence fence = Fence::kApplied;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    fence = Fence::kApplied;
    pqxx::work tx(c);
    // The job row first, then the read: the same order as Start and Fail.
    if (!JobQueue::HoldInTx(tx, job)) {
      fence = LostOrFinished(tx, job);
      return;
    }
    auto state = tx.exec_params(kLockRead, read.id);
    if (state.empty() || state[0][0].as<std::string>() != "running") {
      JobQueue::CompleteInTx(tx, job);
      tx.commit();
      fence = Fence::kFinished;
      return;
    }
    tx.exec_params("DELETE FROM findings WHERE read_ref = $1", read.id);
    for (const auto& row : outcome.findings) {
      const scp::Finding& f = row.finding;
      if (f.has_peak) {
        tx.exec_params(kInsertFinding, read.id, row.instance_ref, row.frame, f.label, f.code.scheme, f.code.value,
                       f.code.meaning, f.score, f.threshold, f.above_threshold, f.peak_row, f.peak_column);
      } else {
        tx.exec_params(kInsertFinding, read.id, row.instance_ref, row.frame, f.label, f.code.scheme, f.code.value,
                       f.code.meaning, f.score, f.threshold, f.above_threshold, nullptr, nullptr);
      }
    }
    for (const auto& skip : outcome.skipped) tx.exec_params(kInsertSkipped, read.id, skip.instance_ref, skip.reason);
    int stored = 0;
    for (const auto& o : outcome.objects) {
      stored += static_cast<int>(tx.exec_params(kInsertResult, read.id, o.kind, o.sop_class_uid, o.sop_instance_uid,
                                                o.series_instance_uid, o.source_instance_ref, o.file_name,
                                                o.size_bytes, options_.holder)
                                     .size());
    }
    tx.exec_params(kReadDone, read.id, std::string("done"), outcome.flagged, outcome.served_version, outcome.images,
                   outcome.decode_ms, outcome.inference_ms, outcome.results_ms);
    // A re-read that found nothing new to send leaves the PACS and the
    // worklist (and a review open on it) as they are.
    if (read.mode == "clinical" && stored > 0) {
      for (const auto& dest : options_.destinations) {
        auto inserted = tx.exec_params(kInsertExport, read.id, dest);
        if (inserted.empty()) continue;
        const int64_t export_id = inserted[0][0].as<int64_t>();
        NewJob ej;
        ej.queue = kExportQueue;
        ej.priority = read.priority;
        ej.args = {{"export_id", export_id}};
        ej.max_attempts = options_.export_max_attempts;
        ej.unique_key = "export:" + std::to_string(export_id);
        JobQueue::EnqueueInTx(tx, ej);
      }
      tx.exec_params(kUpsertWorklist, read.study_ref, outcome.flagged, read.priority, read.model, outcome.top_label,
                     outcome.top_score);
    }
    JobQueue::CompleteInTx(tx, job);
    tx.commit();
  }));
  return fence;
}

absl::StatusOr<Fence> ReadStore::FinishEmpty(const Job& job, int64_t read_id, const std::string& state,
                                             int64_t served_version) {
  Fence fence = Fence::kApplied;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    fence = Fence::kApplied;
    pqxx::work tx(c);
    if (!JobQueue::HoldInTx(tx, job)) {
      fence = LostOrFinished(tx, job);
      return;
    }
    if (tx.exec_params(kReadDone, read_id, state, false, served_version, 0, 0.0, 0.0, 0.0).affected_rows() == 0) {
      fence = Fence::kFinished;
    }
    JobQueue::CompleteInTx(tx, job);
    tx.commit();
  }));
  return fence;
}

absl::StatusOr<Fence> ReadStore::Fail(const Job& job, int64_t read_id, const std::string& error, bool permanent,
                                      bool* discarded, const std::vector<SkippedImage>& skipped) {
  Fence fence = Fence::kApplied;
  bool gone = false;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    fence = Fence::kApplied;
    gone = false;
    pqxx::work tx(c);
    if (!queue_->FailInTx(tx, job, error, permanent, &gone)) {
      fence = Fence::kClaimLost;
      return;
    }
    if (tx.exec_params(gone ? kReadFailed : kReadRequeued, read_id, error, options_.input).affected_rows() > 0 && gone) {
      for (const auto& skip : skipped) tx.exec_params(kInsertSkipped, read_id, skip.instance_ref, skip.reason);
      if (options_.input == "volume") tx.exec_params(kWorklistForFailure, read_id);
    }
    tx.commit();
  }));
  if (discarded) *discarded = gone;
  return fence;
}

void ReadStore::DiscardInTx(pqxx::transaction_base& tx, const Job& job, const std::string& reason) {
  const int64_t read_id = job.args.value("read_id", int64_t{0});
  tx.exec_params(kReadFailed, read_id, reason, job.queue == kVolumeQueue ? "volume" : "image");
}

}  // namespace secondread::worklist
