#include "worklist/retention/retention_store.h"

#include <map>
#include <pqxx/pqxx>

#include "nlohmann/json.hpp"
#include "worklist/pipeline/tracker.h"

namespace secondread::worklist {
namespace {

// The eligibility of study st.id: $1 the grace in seconds, $2 the holder.
// Every condition is something that would still need the study's source
// files: a read to do, an export to send (whose objects were built from
// them; a re-read builds on the same images), a rule still collecting the
// study, an instance the tracker has not routed yet, or a sender that may
// still be sending.
#define SECONDREAD_ELIGIBLE_STUDY                                                                               \
  "st.last_received_at < clock_timestamp() - make_interval(secs => $1::float8) "                              \
  "AND EXISTS (SELECT 1 FROM series se JOIN instances i ON i.series_ref = se.id "                              \
  "            WHERE se.study_ref = st.id AND i.purged_at IS NULL "                                            \
  "              AND i.holder IS NOT DISTINCT FROM NULLIF($2, '')) "                                           \
  "AND NOT EXISTS (SELECT 1 FROM reads r WHERE r.study_ref = st.id AND r.state IN ('queued', 'running')) "     \
  "AND NOT EXISTS (SELECT 1 FROM reads r JOIN exports e ON e.read_ref = r.id "                                 \
  "                WHERE r.study_ref = st.id AND e.state = 'pending') "                                        \
  "AND NOT EXISTS (SELECT 1 FROM study_candidates sc WHERE sc.study_ref = st.id AND sc.state = 'collecting') " \
  "AND NOT EXISTS (SELECT 1 FROM reads r JOIN jobs j ON j.unique_key = 'read:' || r.id "                       \
  "                WHERE r.study_ref = st.id AND j.state IN ('available', 'running', 'retryable')) "           \
  "AND NOT EXISTS (SELECT 1 FROM reads r JOIN exports e ON e.read_ref = r.id "                                 \
  "                JOIN jobs j ON j.unique_key = 'export:' || e.id "                                           \
  "                WHERE r.study_ref = st.id AND j.state IN ('available', 'running', 'retryable')) "           \
  "AND NOT EXISTS (SELECT 1 FROM intake it JOIN instances i ON i.id = it.instance_ref "                        \
  "                JOIN series se ON se.id = i.series_ref WHERE se.study_ref = st.id)"

constexpr char kEligibleStudies[] =
    "SELECT st.id FROM studies st WHERE " SECONDREAD_ELIGIBLE_STUDY " ORDER BY st.last_received_at, st.id LIMIT $3";

constexpr char kStillEligible[] = "SELECT " SECONDREAD_ELIGIBLE_STUDY " FROM studies st WHERE st.id = $3";

// Taken after the tracker's lock, like a registration's upsert takes it
// after nothing else of ours: the same order everywhere.
constexpr char kLockStudy[] = "SELECT 1 FROM studies WHERE id = $1 FOR UPDATE";

constexpr char kMarkInstances[] = R"SQL(
UPDATE instances i SET purged_at = clock_timestamp()
FROM series se
WHERE se.id = i.series_ref AND se.study_ref = $1 AND i.purged_at IS NULL
  AND i.holder IS NOT DISTINCT FROM NULLIF($2, '')
RETURNING i.spool_name, i.size_bytes, i.sop_class_uid
)SQL";

constexpr char kStudyIdentity[] = R"SQL(
SELECT st.study_instance_uid, st.accession_number, p.patient_id, p.patient_name
FROM studies st JOIN patients p ON p.id = st.patient_ref WHERE st.id = $1
)SQL";

constexpr char kInsertAudit[] = R"SQL(
INSERT INTO audit_log (actor, role, action, study_ref, remote_addr, detail)
VALUES ($1, 'system', $2, $3, '', $4::jsonb)
)SQL";

constexpr char kStillPurged[] = R"SQL(
SELECT spool_name FROM instances WHERE spool_name = ANY($1::text[]) AND purged_at IS NOT NULL
)SQL";

// A read's result files go once its exports have ended (sent, or dead after
// their last attempt). Exports are created with the read's result objects,
// in one transaction, and never return to pending, so what is checked here
// cannot change after the commit.
constexpr char kMarkResults[] = R"SQL(
WITH picked AS (
  SELECT ro.id FROM result_objects ro
  WHERE ro.purged_at IS NULL AND ro.holder IS NOT DISTINCT FROM NULLIF($2, '')
    AND ro.created_at < clock_timestamp() - make_interval(secs => $1::float8)
    AND NOT EXISTS (SELECT 1 FROM exports e WHERE e.read_ref = ro.read_ref AND e.state = 'pending')
    AND NOT EXISTS (SELECT 1 FROM exports e JOIN jobs j ON j.unique_key = 'export:' || e.id
                    WHERE e.read_ref = ro.read_ref AND j.state IN ('available', 'running', 'retryable'))
  ORDER BY ro.created_at, ro.id
  LIMIT $3
  FOR UPDATE OF ro SKIP LOCKED)
UPDATE result_objects ro SET purged_at = clock_timestamp()
FROM picked, reads r
WHERE ro.id = picked.id AND r.id = ro.read_ref
RETURNING r.study_ref, ro.file_name, ro.size_bytes, ro.sop_class_uid
)SQL";

std::string Actor(const std::string& holder) { return holder.empty() ? "secondread" : "secondread:" + holder; }

void FillIdentity(pqxx::transaction_base& tx, int64_t study_ref, audit::StudyRef& study) {
  auto id = tx.exec_params(kStudyIdentity, study_ref);
  if (id.empty()) return;
  study.study_uid = id[0][0].as<std::string>();
  study.accession = id[0][1].as<std::string>();
  study.patient_id = id[0][2].as<std::string>();
  study.patient_name = id[0][3].as<std::string>();
}

int64_t Bytes(const PurgedStudy& p) {
  int64_t n = 0;
  for (const auto& f : p.files) n += f.size_bytes;
  return n;
}

}  // namespace

RetentionStore::RetentionStore(PgPool* pool, std::string holder) : pool_(pool), holder_(std::move(holder)) {}

absl::StatusOr<std::vector<int64_t>> RetentionStore::EligibleStudies(std::chrono::seconds grace, int limit) {
  std::vector<int64_t> out;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    out.clear();
    pqxx::nontransaction tx(c);
    for (const auto& row : tx.exec_params(kEligibleStudies, static_cast<double>(grace.count()), holder_, limit)) {
      out.push_back(row[0].as<int64_t>());
    }
  }));
  return out;
}

absl::StatusOr<std::optional<PurgedStudy>> RetentionStore::PurgeStudy(int64_t study_ref, std::chrono::seconds grace) {
  std::optional<PurgedStudy> out;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    out.reset();
    pqxx::work tx(c);
    // No tracker cycle runs while this transaction holds the lock, so none
    // can route an instance of the study or create a read of it between the
    // check below and the commit; a registration into the study waits for
    // the study's row, and its instance then counts as received after the
    // purge (and keeps its file).
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", kTrackerLockKey);
    if (tx.exec_params(kLockStudy, study_ref).empty()) return;
    auto ok = tx.exec_params(kStillEligible, static_cast<double>(grace.count()), holder_, study_ref);
    if (ok.empty() || !ok[0][0].as<bool>()) return;
    PurgedStudy p;
    p.study_ref = study_ref;
    for (const auto& row : tx.exec_params(kMarkInstances, study_ref, holder_)) {
      p.files.push_back({row[0].as<std::string>(), row[1].as<int64_t>()});
      ++p.study.sop_classes[row[2].as<std::string>()];
    }
    FillIdentity(tx, study_ref, p.study);
    nlohmann::json detail{{"kind", "source"}, {"instances", p.files.size()}, {"bytes", Bytes(p)}};
    if (!holder_.empty()) detail["holder"] = holder_;
    tx.exec_params(kInsertAudit, Actor(holder_), std::string("purge_study"), study_ref, detail.dump());
    tx.commit();
    out = std::move(p);
  }));
  return out;
}

absl::StatusOr<std::set<std::string>> RetentionStore::StillPurged(const std::vector<std::string>& names) {
  std::set<std::string> out;
  if (names.empty()) return out;
  // Spool names are 64 lower-case hex digits, so the array literal needs no quoting.
  std::string literal = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) literal += ',';
    literal += names[i];
  }
  literal += "}";
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    out.clear();
    pqxx::nontransaction tx(c);
    for (const auto& row : tx.exec_params(kStillPurged, literal)) out.insert(row[0].as<std::string>());
  }));
  return out;
}

absl::StatusOr<std::vector<PurgedStudy>> RetentionStore::PurgeResults(std::chrono::seconds age, int limit) {
  std::vector<PurgedStudy> out;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    out.clear();
    pqxx::work tx(c);
    std::map<int64_t, PurgedStudy> by_study;
    for (const auto& row : tx.exec_params(kMarkResults, static_cast<double>(age.count()), holder_, limit)) {
      PurgedStudy& p = by_study[row[0].as<int64_t>()];
      p.study_ref = row[0].as<int64_t>();
      p.files.push_back({row[1].as<std::string>(), row[2].as<int64_t>()});
      ++p.study.sop_classes[row[3].as<std::string>()];
    }
    for (auto& [study_ref, p] : by_study) {
      FillIdentity(tx, study_ref, p.study);
      nlohmann::json detail{{"kind", "results"}, {"objects", p.files.size()}, {"bytes", Bytes(p)}};
      if (!holder_.empty()) detail["holder"] = holder_;
      tx.exec_params(kInsertAudit, Actor(holder_), std::string("purge_results"), study_ref, detail.dump());
      out.push_back(std::move(p));
    }
    tx.commit();
  }));
  return out;
}

}  // namespace secondread::worklist
