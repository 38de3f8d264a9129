#include "worklist/pipeline/tracker.h"

#include <pqxx/pqxx>

#include <map>
#include <set>

#include "common/log.h"
#include "nlohmann/json.hpp"
#include "worklist/db/job_queue.h"
#include "worklist/db/pg_listener.h"

namespace secondread::worklist {
namespace {

using Clock = std::chrono::system_clock;

constexpr char kIntakeBatch[] = R"SQL(
SELECT it.id, it.kind, COALESCE(it.association_ref, 0),
       COALESCE(i.id, 0), COALESCE(i.sop_class_uid, ''), COALESCE(i.image_type, ''),
       COALESCE(se.modality, ''), COALESCE(se.body_part_examined, ''), COALESCE(se.series_description, ''),
       COALESCE(a.calling_ae, ''), COALESCE(a.called_ae, ''), COALESCE(st.id, 0),
       COALESCE(st.expected_instances, -1), COALESCE(extract(epoch FROM it.created_at)::float8, 0),
       COALESCE(i.burned_in_annotation, '')
FROM intake it
LEFT JOIN instances i ON i.id = it.instance_ref
LEFT JOIN series se ON se.id = i.series_ref
LEFT JOIN studies st ON st.id = se.study_ref
LEFT JOIN associations a ON a.id = i.association_ref
ORDER BY it.id
LIMIT $1
)SQL";

constexpr char kEnsureCandidate[] = R"SQL(
INSERT INTO study_candidates (study_ref, rule_name, due_at, due_reason)
VALUES ($1, $2, clock_timestamp(), 'silence')
ON CONFLICT ON CONSTRAINT study_candidates_key DO NOTHING
)SQL";

constexpr char kLockCandidate[] = R"SQL(
SELECT id, state, generation, instance_count,
       extract(epoch FROM first_at)::float8, extract(epoch FROM clock_timestamp())::float8
FROM study_candidates WHERE study_ref = $1 AND rule_name = $2 FOR UPDATE
)SQL";

constexpr char kAddCandidateInstance[] = R"SQL(
INSERT INTO candidate_instances (candidate_ref, instance_ref, generation, skip_reason)
VALUES ($1, $2, $3, NULLIF($4, ''))
ON CONFLICT DO NOTHING
)SQL";

constexpr char kUpdateCandidate[] = R"SQL(
UPDATE study_candidates
SET state = 'collecting', generation = $2, instance_count = $3, first_at = to_timestamp($4),
    last_at = clock_timestamp(), due_at = to_timestamp($5), due_reason = $6
WHERE id = $1
)SQL";

constexpr char kRoutingMatched[] = R"SQL(
INSERT INTO study_routing (study_ref, status, reason) VALUES ($1, 'matched', $2)
ON CONFLICT (study_ref) DO UPDATE SET status = 'matched', reason = EXCLUDED.reason, updated_at = now()
)SQL";

constexpr char kRoutingUnmatched[] = R"SQL(
INSERT INTO study_routing (study_ref, status, reason) VALUES ($1, 'unmatched', $2)
ON CONFLICT (study_ref) DO UPDATE SET reason = EXCLUDED.reason, updated_at = now()
  WHERE study_routing.status = 'unmatched'
RETURNING (xmax = 0)
)SQL";

// A study whose only matching rules failed at completion (image count) is
// unmatched after all, unless another rule read it. The result says whether
// the study became unmatched just now, so a study that several rules refuse
// is counted once; the CTE sees the row as it was before this statement.
constexpr char kRoutingRejected[] = R"SQL(
WITH before AS (SELECT status FROM study_routing WHERE study_ref = $1)
INSERT INTO study_routing (study_ref, status, reason) VALUES ($1, 'unmatched', $2)
ON CONFLICT (study_ref) DO UPDATE SET status = 'unmatched', reason = EXCLUDED.reason, updated_at = now()
  WHERE NOT EXISTS (SELECT 1 FROM reads r WHERE r.study_ref = EXCLUDED.study_ref)
RETURNING (SELECT status FROM before) IS DISTINCT FROM 'unmatched'
)SQL";

constexpr char kReleased[] = R"SQL(
UPDATE study_candidates sc
SET due_at = LEAST(sc.due_at, clock_timestamp()), due_reason = 'association'
WHERE sc.state = 'collecting' AND sc.rule_name = $2
  AND EXISTS (SELECT 1 FROM candidate_instances ci JOIN instances i ON i.id = ci.instance_ref
              WHERE ci.candidate_ref = sc.id AND i.association_ref = $1)
  -- A study sent over several associations at once (to this node or to
  -- other node replicas) is complete when the last of them is released. An
  -- association that has stored nothing for the rule's silence no longer
  -- holds it back (a sender or a replica that died with it open).
  AND NOT EXISTS (SELECT 1 FROM candidate_instances ci JOIN instances i ON i.id = ci.instance_ref
                  JOIN associations a ON a.id = i.association_ref
                  WHERE ci.candidate_ref = sc.id AND i.association_ref <> $1 AND a.outcome IS NULL
                    AND i.received_at > clock_timestamp() - make_interval(secs => $3))
)SQL";

constexpr char kDue[] = R"SQL(
SELECT sc.id, sc.study_ref, sc.rule_name, sc.generation, COALESCE(sc.due_reason, 'silence'),
       (SELECT count(*) FROM candidate_instances ci WHERE ci.candidate_ref = sc.id),
       extract(epoch FROM sc.last_at)::float8
FROM study_candidates sc
WHERE sc.state = 'collecting' AND sc.due_at <= clock_timestamp()
ORDER BY sc.due_at
LIMIT 200
)SQL";

constexpr char kTriggered[] = R"SQL(
UPDATE study_candidates SET state = 'triggered', triggered_at = clock_timestamp(), due_at = NULL
WHERE id = $1
)SQL";

constexpr char kInsertRead[] = R"SQL(
INSERT INTO reads (read_key, study_ref, candidate_ref, rule_name, model_name, model_version, mode, priority,
                   trigger, generation, last_instance_at)
VALUES ($1, $2, NULLIF($3::bigint, 0), $4, $5, $6, $7, $8, $9, $10, to_timestamp($11))
ON CONFLICT ON CONSTRAINT reads_key DO NOTHING
RETURNING id
)SQL";

// An image whose file retention purged (a re-read of a study that grew
// after its purge) cannot be read again.
constexpr char kReadInstancesFromCandidate[] = R"SQL(
INSERT INTO read_instances (read_ref, instance_ref)
SELECT $1, ci.instance_ref FROM candidate_instances ci JOIN instances i ON i.id = ci.instance_ref
WHERE ci.candidate_ref = $2 AND ci.skip_reason IS NULL AND i.purged_at IS NULL
ON CONFLICT DO NOTHING
)SQL";

// The images the rule leaves out, and those purged, are the read's record of
// what it did not send, and why.
constexpr char kSkippedFromCandidate[] = R"SQL(
INSERT INTO read_skipped_instances (read_ref, instance_ref, reason)
SELECT $1, ci.instance_ref, COALESCE(ci.skip_reason, 'purged')
FROM candidate_instances ci JOIN instances i ON i.id = ci.instance_ref
WHERE ci.candidate_ref = $2 AND (ci.skip_reason IS NOT NULL OR i.purged_at IS NOT NULL)
ON CONFLICT DO NOTHING
RETURNING reason
)SQL";

constexpr char kSkippedInstance[] = R"SQL(
INSERT INTO read_skipped_instances (read_ref, instance_ref, reason) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING reason
)SQL";

constexpr char kReadInstance[] = R"SQL(
INSERT INTO read_instances (read_ref, instance_ref) VALUES ($1, $2) ON CONFLICT DO NOTHING
)SQL";

// A volume rule's view of a complete study: its matching images (those the
// rule may send), one row per series.
constexpr char kCandidateSeries[] = R"SQL(
SELECT se.id, se.series_instance_uid, count(*), sum(GREATEST(COALESCE(i.number_of_frames, 1), 1)),
       count(*) FILTER (WHERE i.number_of_frames > 1),
       json_agg(DISTINCT COALESCE(i.orientation, ''))::text,
       min(i.slice_thickness_mm), max(i.slice_thickness_mm), count(i.slice_thickness_mm),
       json_agg(DISTINCT i.image_type)::text
FROM candidate_instances ci
JOIN instances i ON i.id = ci.instance_ref
JOIN series se ON se.id = i.series_ref
WHERE ci.candidate_ref = $1 AND ci.skip_reason IS NULL AND i.purged_at IS NULL
GROUP BY se.id, se.series_instance_uid, se.series_number
ORDER BY se.series_number NULLS LAST, se.id
)SQL";

// A volume read, queued with a job on the volume queue (the image dispatcher
// never sees it).
constexpr char kInsertVolumeRead[] = R"SQL(
INSERT INTO reads (read_key, study_ref, candidate_ref, rule_name, model_name, model_version, mode, priority,
                   trigger, generation, last_instance_at, input, series_ref, resample)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11), 'volume', $12, $13)
ON CONFLICT ON CONSTRAINT reads_key DO NOTHING
RETURNING id
)SQL";

constexpr char kVolumeReadInstances[] = R"SQL(
INSERT INTO read_instances (read_ref, instance_ref)
SELECT $1, ci.instance_ref FROM candidate_instances ci JOIN instances i ON i.id = ci.instance_ref
WHERE ci.candidate_ref = $2 AND i.series_ref = $3 AND ci.skip_reason IS NULL AND i.purged_at IS NULL
ON CONFLICT DO NOTHING
)SQL";

constexpr char kNextDue[] = R"SQL(
SELECT COALESCE(extract(epoch FROM min(due_at) - clock_timestamp()) * 1000, -1)::float8
FROM study_candidates WHERE state = 'collecting'
)SQL";

double Seconds(Clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}
Clock::time_point FromSeconds(double s) {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)));
}

}  // namespace

StudyTracker::StudyTracker(DatabaseOptions db, PgPool* pool, TrackerOptions options, PipelineMetrics* metrics)
    : db_(std::move(db)), pool_(pool), options_(std::move(options)), metrics_(metrics) {}

StudyTracker::~StudyTracker() { Stop(); }

void StudyTracker::Start() { thread_ = std::thread([this] { Loop(); }); }

void StudyTracker::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void StudyTracker::Loop() {
  PgListener listener(db_, "secondread_intake");
  listener.Wait(std::chrono::milliseconds(0));  // connect and LISTEN before the first cycle
  bool warned = false;
  while (!stop_) {
    auto result = RunOnce();
    std::chrono::milliseconds sleep = options_.max_sleep;
    if (!result.ok()) {
      if (!warned) log::Warn("tracker_cycle_failed", {{"error", std::string(result.status().message())}});
      warned = true;
    } else {
      warned = false;
      if (result->intake_rows >= options_.intake_batch) continue;  // more waiting
      sleep = std::min(sleep, std::max(result->next_due, std::chrono::milliseconds(0)));
      if (sleep.count() == 0) continue;
    }
    // Short slices so Stop() is prompt.
    listener.Wait(std::min(sleep, std::chrono::milliseconds(250)));
  }
}

absl::StatusOr<StudyTracker::CycleResult> StudyTracker::RunOnce() {
  CycleResult out;
  std::map<std::string, const RoutingRule*> by_name;
  std::vector<std::pair<std::string, double>> association_rules;  // name, silence in seconds
  for (const auto& r : options_.rules) {
    by_name[r.name] = &r;
    if (r.completeness.trigger == Trigger::kAssociation) association_rules.emplace_back(r.name, static_cast<double>(r.completeness.silence.count()));
  }
  int unmatched = 0;
  int triggered = 0;
  std::vector<double> waits;
  std::map<std::string, int64_t> skipped_images;  // reason -> images left out of new reads

  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    out = CycleResult{};
    skipped_images.clear();
    unmatched = 0;
    triggered = 0;
    waits.clear();
    pqxx::work tx(c);
    if (!tx.exec_params("SELECT pg_try_advisory_xact_lock($1)", kTrackerLockKey)[0][0].as<bool>()) {
      out.next_due = options_.max_sleep;
      return;  // another node's tracker holds this cycle
    }

    auto create_read = [&](const RoutingRule& rule, const ModelRef& model, int64_t study, int64_t candidate,
                           int64_t instance, int generation, const std::string& trigger, double last_at,
                           const std::string& skip_reason) {
      std::string key = (instance ? "i:" + std::to_string(instance) : "s:" + std::to_string(study)) + ":" +
                        rule.name + ":" + model.name + ":" + std::to_string(model.version) + ":g" +
                        std::to_string(generation);
      auto rows = tx.exec_params(kInsertRead, key, study, candidate, rule.name, model.name, model.version,
                                 std::string(ModeName(rule.mode)), rule.priority, trigger, generation, last_at);
      if (rows.empty()) return;  // this read exists already
      int64_t read_id = rows[0][0].as<int64_t>();
      pqxx::result skipped;
      if (instance) {
        if (skip_reason.empty()) {
          tx.exec_params(kReadInstance, read_id, instance);
        } else {
          skipped = tx.exec_params(kSkippedInstance, read_id, instance, skip_reason);
        }
      } else {
        tx.exec_params(kReadInstancesFromCandidate, read_id, candidate);
        skipped = tx.exec_params(kSkippedFromCandidate, read_id, candidate);
      }
      for (const auto& row : skipped) skipped_images[row[0].as<std::string>()] += 1;
      if (!skipped.empty()) {
        log::Info("images_skipped", {{"read_id", read_id}, {"images", skipped.size()}, {"rule", rule.name}});
      }
      NewJob job;
      job.queue = kDispatchQueue;
      job.priority = rule.priority;
      job.args = {{"read_id", read_id}};
      job.max_attempts = options_.dispatch_max_attempts;
      job.unique_key = "read:" + std::to_string(read_id);
      JobQueue::EnqueueInTx(tx, job);
      ++out.reads_created;
      ++triggered;
      waits.push_back(std::max(0.0, Seconds(Clock::now()) - last_at));
    };

    auto intake = tx.exec_params(kIntakeBatch, options_.intake_batch);
    std::string consumed = "{";
    for (const auto& row : intake) {
      int64_t intake_id = row[0].as<int64_t>();
      consumed += (consumed.size() > 1 ? "," : "") + std::to_string(intake_id);
      std::string kind = row[1].as<std::string>();
      int64_t association = row[2].as<int64_t>();
      if (kind == "association_released") {
        for (const auto& [name, silence_s] : association_rules) tx.exec_params(kReleased, association, name, silence_s);
        continue;
      }
      int64_t instance = row[3].as<int64_t>();
      int64_t study = row[11].as<int64_t>();
      if (instance == 0 || study == 0) continue;  // deleted since
      InstanceFacts facts{row[6].as<std::string>(), row[7].as<std::string>(), row[4].as<std::string>(),
                          row[5].as<std::string>(), row[9].as<std::string>(), row[10].as<std::string>(),
                          row[8].as<std::string>(), row[14].as<std::string>()};
      int64_t expected = row[12].as<int64_t>();
      std::string matched_rules;
      for (const auto& rule : options_.rules) {
        if (!MatchesInstance(rule, facts)) continue;
        matched_rules += (matched_rules.empty() ? "" : ",") + rule.name;
        double now_s = Seconds(Clock::now());
        if (rule.completeness.trigger == Trigger::kInstance) {
          // The wait is measured from the instance's registration.
          const double received_at = row[13].as<double>();
          const std::string skip = BurnedInTextSkipReason(rule, facts);
          for (const auto& m : rule.models) {
            create_read(rule, m, study, 0, instance, 1, "instance", received_at, skip);
          }
          continue;
        }
        tx.exec_params(kEnsureCandidate, study, rule.name);
        auto cand = tx.exec_params(kLockCandidate, study, rule.name);
        int64_t cand_id = cand[0][0].as<int64_t>();
        std::string state = cand[0][1].as<std::string>();
        int generation = cand[0][2].as<int>();
        int64_t count = cand[0][3].as<int64_t>();
        double first_at = cand[0][4].as<double>();
        now_s = cand[0][5].as<double>();
        if (state == "triggered") {
          if (rule.completeness.late == LatePolicy::kIgnore) {
            tx.exec_params("UPDATE study_candidates SET late_instances = late_instances + 1 WHERE id = $1", cand_id);
            continue;
          }
          ++generation;
          first_at = now_s;
        }
        auto added =
            tx.exec_params(kAddCandidateInstance, cand_id, instance, generation, BurnedInTextSkipReason(rule, facts));
        if (added.affected_rows() > 0) ++count;
        CandidateProgress progress{FromSeconds(first_at), FromSeconds(now_s), count, expected, false};
        Due due = ComputeDue(rule.completeness, progress);
        tx.exec_params(kUpdateCandidate, cand_id, generation, count, first_at, Seconds(due.at), due.reason);
      }
      if (matched_rules.empty()) {
        // Counted once per study: the first unmatched instance inserts the row.
        auto r = tx.exec_params(kRoutingUnmatched, study, std::string("no routing rule matches"));
        if (!r.empty() && r[0][0].as<bool>()) ++unmatched;
      } else {
        tx.exec_params(kRoutingMatched, study, "rules " + matched_rules);
      }
    }
    consumed += "}";
    if (!intake.empty()) tx.exec_params("DELETE FROM intake WHERE id = ANY($1::bigint[])", consumed);
    out.intake_rows = static_cast<int>(intake.size());

    for (const auto& row : tx.exec_params(kDue)) {
      int64_t cand_id = row[0].as<int64_t>();
      int64_t study = row[1].as<int64_t>();
      std::string rule_name = row[2].as<std::string>();
      int generation = row[3].as<int>();
      std::string reason = row[4].as<std::string>();
      int64_t images = row[5].as<int64_t>();
      double last_at = row[6].as<double>();
      tx.exec_params(kTriggered, cand_id);
      auto it = by_name.find(rule_name);
      if (it == by_name.end()) {
        tx.exec_params(kRoutingRejected, study, "routing rule " + rule_name + " no longer configured");
        continue;
      }
      const RoutingRule& rule = *it->second;
      if (!MatchesImageCount(rule, images)) {
        auto r = tx.exec_params(kRoutingRejected, study,
                                "rule " + rule.name + ": " + std::to_string(images) + " matching images outside its bounds");
        if (!r.empty() && r[0][0].as<bool>()) ++unmatched;
        continue;
      }
      if (rule.input == ReadInput::kVolume) {
        std::vector<SeriesFacts> series;
        for (const auto& sr : tx.exec_params(kCandidateSeries, cand_id)) {
          SeriesFacts f;
          f.series_id = sr[0].as<int64_t>();
          f.series_instance_uid = sr[1].as<std::string>();
          f.instances = sr[2].as<int64_t>();
          f.slices = sr[3].as<int64_t>();
          f.multiframe_instances = sr[4].as<int64_t>();
          f.orientations = nlohmann::json::parse(sr[5].as<std::string>()).get<std::vector<std::string>>();
          if (sr[8].as<int64_t>() == f.instances) {
            f.min_thickness_mm = sr[6].as<double>();
            f.max_thickness_mm = sr[7].as<double>();
          }
          f.image_types = nlohmann::json::parse(sr[9].as<std::string>()).get<std::vector<std::string>>();
          series.push_back(std::move(f));
        }
        auto requests = PlanVolumeReads(rule, series);
        if (requests.empty()) {
          auto r = tx.exec_params(kRoutingRejected, study, "rule " + rule.name + ": no series meets its series criteria");
          if (!r.empty() && r[0][0].as<bool>()) ++unmatched;
          continue;
        }
        for (const auto& v : requests) {
          std::string key = "v:" + std::to_string(v.series_id) + ":" + rule.name + ":" + v.model.name + ":" +
                            std::to_string(v.model.version) + ":g" + std::to_string(generation);
          auto rows = tx.exec_params(kInsertVolumeRead, key, study, cand_id, rule.name, v.model.name, v.model.version,
                                     std::string(ModeName(v.mode)), v.priority, reason, generation, last_at,
                                     v.series_id, v.resample);
          if (rows.empty()) continue;
          const int64_t read_id = rows[0][0].as<int64_t>();
          tx.exec_params(kVolumeReadInstances, read_id, cand_id, v.series_id);
          NewJob job;
          job.queue = kVolumeQueue;
          job.priority = v.priority;
          job.args = {{"read_id", read_id}};
          job.max_attempts = options_.dispatch_max_attempts;
          job.unique_key = "read:" + std::to_string(read_id);
          JobQueue::EnqueueInTx(tx, job);
          ++out.volume_reads_recorded;
          waits.push_back(std::max(0.0, Seconds(Clock::now()) - last_at));
        }
        continue;
      }
      for (const auto& m : rule.models) create_read(rule, m, study, cand_id, 0, generation, reason, last_at, "");
    }
    double next_ms = tx.exec(kNextDue)[0][0].as<double>();
    out.next_due = next_ms < 0 ? options_.max_sleep
                               : std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, next_ms)) + 1);
    tx.commit();
  });
  if (!st.ok()) return st;
  if (metrics_) {
    metrics_->unmatched_studies.Increment(unmatched);
    metrics_->triggered_reads.Increment(triggered);
    for (double w : waits) metrics_->Stage("completeness_wait").Observe(w);
    for (const auto& [reason, n] : skipped_images) metrics_->ImagesSkipped(reason).Increment(static_cast<double>(n));
  }
  if (out.reads_created > 0) log::Info("reads_triggered", {{"reads", out.reads_created}});
  if (out.volume_reads_recorded > 0) log::Info("volume_reads_recorded", {{"reads", out.volume_reads_recorded}});
  return out;
}

}  // namespace secondread::worklist
