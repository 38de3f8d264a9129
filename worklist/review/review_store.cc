#include "worklist/review/review_store.h"

#include <pqxx/pqxx>

#include <cmath>
#include <map>
#include <string_view>

namespace secondread::worklist {
namespace {

using json = nlohmann::json;

// Every statement below is fixed text; absent filters are NULL parameters.
// Timestamps leave PostgreSQL as ISO 8601 UTC with milliseconds and a Z.

constexpr char kListWhere[] = R"SQL(
FROM worklist_entries we
WHERE ($1::text[] IS NULL OR we.status = ANY ($1::text[]))
  AND ($2::text IS NULL OR EXISTS (
        SELECT 1 FROM series se WHERE se.study_ref = we.study_ref AND se.modality = $2::text))
  AND ($3::text IS NULL OR we.top_model = $3::text OR EXISTS (
        SELECT 1 FROM reads r WHERE r.study_ref = we.study_ref AND r.mode = 'clinical' AND r.model_name = $3::text))
  AND ($4::boolean IS NULL OR we.flagged = $4::boolean)
  AND ($5::date IS NULL OR we.created_at >= ($5::date::timestamp AT TIME ZONE 'UTC'))
  AND ($6::date IS NULL OR we.created_at < (($6::date + 1)::timestamp AT TIME ZONE 'UTC'))
)SQL";

constexpr char kListPage[] = R"SQL(
WITH page AS (
  SELECT we.study_ref, we.flagged, we.priority, we.status, we.created_at, we.flagged_at, we.top_model,
         we.top_label, we.top_score, we.version
  {WHERE}
  ORDER BY we.flagged DESC, we.priority, we.created_at, we.study_ref
  LIMIT $7::int OFFSET $8::int
)
SELECT pg.study_ref, pg.flagged, pg.priority, pg.status,
       to_char(st.first_received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       GREATEST(0, floor(extract(epoch FROM now() - st.first_received_at)))::bigint,
       to_char(pg.flagged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       (SELECT se.modality FROM series se WHERE se.study_ref = pg.study_ref
        ORDER BY se.series_number NULLS LAST, se.id LIMIT 1),
       COALESCE(tr.model_name, pg.top_model), tr.version, pg.top_label, pg.top_score, tr.threshold,
       st.accession_number, p.patient_name, p.patient_id, st.study_description, pg.version
FROM page pg
JOIN studies st ON st.id = pg.study_ref
JOIN patients p ON p.id = st.patient_ref
LEFT JOIN LATERAL (
  SELECT r.model_name, COALESCE(r.served_version, r.model_version) AS version, f.threshold
  FROM reads r LEFT JOIN findings f ON f.read_ref = r.id
  WHERE r.study_ref = pg.study_ref AND r.mode = 'clinical'
  ORDER BY (r.model_name IS NOT DISTINCT FROM pg.top_model) DESC, (r.state = 'done') DESC,
           (f.label IS NOT DISTINCT FROM pg.top_label) DESC, f.score DESC NULLS LAST, r.id DESC
  LIMIT 1) tr ON true
ORDER BY pg.flagged DESC, pg.priority, pg.created_at, pg.study_ref
)SQL";

constexpr char kLockEntry[] = R"SQL(
SELECT status, version, last_reviewer FROM worklist_entries WHERE study_ref = $1 FOR UPDATE
)SQL";

constexpr char kOpenEntry[] = R"SQL(
UPDATE worklist_entries SET status = 'in_review', version = version + 1, updated_at = now()
WHERE study_ref = $1 AND status = 'new'
)SQL";

constexpr char kInsertAudit[] = R"SQL(
INSERT INTO audit_log (actor, role, action, study_ref, remote_addr, detail)
VALUES ($1, $2, $3, $4::bigint, $5, $6::jsonb)
)SQL";

constexpr char kStudyHeader[] = R"SQL(
SELECT st.id, st.study_instance_uid, st.accession_number, st.study_date, st.study_description,
       p.patient_name, p.patient_id, p.birth_date, p.sex,
       we.flagged, we.priority, we.status, we.version, we.top_label, we.top_score
FROM worklist_entries we
JOIN studies st ON st.id = we.study_ref
JOIN patients p ON p.id = st.patient_ref
WHERE we.study_ref = $1
)SQL";

constexpr char kStudyReads[] = R"SQL(
SELECT r.id, r.model_name, COALESCE(r.served_version, r.model_version), r.mode, r.state, r.flagged,
       to_char(r.triggered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(r.done_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), r.input,
       (SELECT se.series_instance_uid FROM series se WHERE se.id = r.series_ref),
       CASE WHEN r.state = 'failed' THEN r.error END
FROM reads r
WHERE r.study_ref = $1
ORDER BY (r.mode = 'clinical') DESC, r.id
)SQL";

constexpr char kStudyFindings[] = R"SQL(
SELECT f.read_ref, f.id, f.label, f.code_scheme, f.code_value, f.code_meaning, f.score, f.threshold, f.above,
       f.instance_ref, f.frame, f.peak_row, f.peak_column
FROM findings f JOIN reads r ON r.id = f.read_ref
WHERE r.study_ref = $1
ORDER BY f.read_ref, f.score DESC, f.id
)SQL";

constexpr char kStudyResults[] = R"SQL(
SELECT ro.read_ref, ro.id, ro.kind, ro.sop_instance_uid,
       to_char(ro.purged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
FROM result_objects ro JOIN reads r ON r.id = ro.read_ref
WHERE r.study_ref = $1
ORDER BY ro.read_ref, (ro.kind = 'sc') DESC, ro.id DESC
)SQL";

constexpr char kStudyExports[] = R"SQL(
SELECT e.read_ref, e.destination, e.state, e.attempts,
       to_char(e.sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), e.last_error
FROM exports e JOIN reads r ON r.id = e.read_ref
WHERE r.study_ref = $1
ORDER BY e.read_ref, e.destination
)SQL";

// Images a read left out (burned-in text, pixel data that did not decode),
// so the radiologist sees that the AI did not look at them.
constexpr char kStudySkipped[] = R"SQL(
SELECT s.read_ref, s.instance_ref, s.reason
FROM read_skipped_instances s JOIN reads r ON r.id = s.read_ref
WHERE r.study_ref = $1
ORDER BY s.read_ref, s.instance_ref
)SQL";

constexpr char kStudyReviews[] = R"SQL(
SELECT rv.id, rv.reviewer, rv.verdict, rv.finding_ref, rv.comment,
       to_char(rv.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), rv.worklist_version
FROM reviews rv
WHERE rv.study_ref = $1
ORDER BY rv.created_at DESC, rv.id DESC
LIMIT $2::int
)SQL";

constexpr char kScFile[] = R"SQL(
SELECT ro.file_name, ro.sop_class_uid, st.study_instance_uid, st.accession_number, p.patient_id, p.patient_name
FROM result_objects ro JOIN reads r ON r.id = ro.read_ref
JOIN studies st ON st.id = r.study_ref JOIN patients p ON p.id = st.patient_ref
WHERE ro.id = $2 AND r.study_ref = $1 AND ro.kind = 'sc' AND ro.purged_at IS NULL
)SQL";

constexpr char kFindingOfStudy[] = R"SQL(
SELECT 1 FROM findings f JOIN reads r ON r.id = f.read_ref WHERE f.id = $1 AND r.study_ref = $2
)SQL";

constexpr char kInsertReview[] = R"SQL(
INSERT INTO reviews (study_ref, finding_ref, reviewer, verdict, comment, worklist_version)
VALUES ($1, $2::bigint, $3, $4, $5, $6::int)
RETURNING id
)SQL";

constexpr char kApplyReview[] = R"SQL(
UPDATE worklist_entries
SET status = $2, version = version + 1, reviewed_at = clock_timestamp(), last_reviewer = $3, updated_at = now()
WHERE study_ref = $1
RETURNING status, version
)SQL";

constexpr char kPerformance[] = R"SQL(
WITH c AS (
  SELECT ('1 ' || $1::text)::interval AS step, date_trunc($1::text, now() AT TIME ZONE 'UTC') AS cur
),
w AS (
  SELECT row_number() OVER (ORDER BY g) AS idx,
         g AT TIME ZONE 'UTC' AS start_at, (g + c.step) AT TIME ZONE 'UTC' AS end_at
  FROM c, generate_series(c.cur - ($2::int - 1) * c.step, c.cur, c.step) AS g
),
rd AS (
  SELECT r.id, r.study_ref, r.model_name, COALESCE(r.served_version, r.model_version) AS version, r.done_at,
         COALESCE(r.flagged, false) AS flagged,
         (SELECT max(f.score) FROM findings f WHERE f.read_ref = r.id) AS top_score
  FROM reads r
  WHERE r.mode = 'clinical' AND r.state = 'done'
    AND r.done_at >= (SELECT min(start_at) FROM w) AND r.done_at < (SELECT max(end_at) FROM w)
),
ps AS (
  SELECT rd.model_name, rd.version, w.idx, rd.study_ref,
         bool_or(rd.flagged) AS flagged, max(rd.top_score) AS top_score
  FROM rd JOIN w ON rd.done_at >= w.start_at AND rd.done_at < w.end_at
  GROUP BY rd.model_name, rd.version, w.idx, rd.study_ref
),
lv AS (
  SELECT DISTINCT ON (rv.study_ref) rv.study_ref, rv.verdict
  FROM reviews rv
  WHERE rv.verdict <> 'dismiss' AND rv.study_ref IN (SELECT study_ref FROM ps)
  ORDER BY rv.study_ref, rv.created_at DESC, rv.id DESC
),
agg AS (
  SELECT ps.model_name, ps.version, ps.idx,
         count(*) AS studies_read,
         count(*) FILTER (WHERE ps.flagged) AS flagged,
         count(lv.verdict) AS reviewed,
         count(*) FILTER (WHERE lv.verdict = 'agree') AS agreed,
         count(*) FILTER (WHERE lv.verdict = 'disagree') AS disagreed,
         count(*) FILTER (WHERE lv.verdict = 'uncertain') AS uncertain,
         count(*) FILTER (WHERE ps.flagged AND lv.verdict = 'agree') AS ppv_agreed,
         count(*) FILTER (WHERE ps.flagged AND lv.verdict IN ('agree', 'disagree')) AS ppv_judged,
         avg(ps.top_score) AS mean_score
  FROM ps LEFT JOIN lv ON lv.study_ref = ps.study_ref
  GROUP BY ps.model_name, ps.version, ps.idx
)
SELECT m.model_name, m.version, w.idx,
       to_char(w.start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       to_char(w.end_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       COALESCE(a.studies_read, 0), COALESCE(a.flagged, 0), COALESCE(a.reviewed, 0), COALESCE(a.agreed, 0),
       COALESCE(a.disagreed, 0), COALESCE(a.uncertain, 0), COALESCE(a.ppv_agreed, 0), COALESCE(a.ppv_judged, 0),
       a.mean_score
FROM (SELECT DISTINCT model_name, version FROM agg) m
CROSS JOIN w
LEFT JOIN agg a ON a.model_name = m.model_name AND a.version = m.version AND a.idx = w.idx
ORDER BY m.model_name, m.version, w.idx
)SQL";

constexpr char kAuditPage[] = R"SQL(
SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), actor, role, action, study_ref,
       remote_addr, detail::text
FROM audit_log
WHERE ($1::bigint IS NULL OR study_ref = $1::bigint)
ORDER BY at DESC, id DESC
LIMIT $2::int OFFSET $3::int
)SQL";

// What the login could do to audit_log beyond INSERT and SELECT.
constexpr char kAuditPowers[] = R"SQL(
SELECT r.rolsuper, r.rolcreaterole, pg_has_role(session_user, c.relowner, 'USAGE'),
       pg_has_role(session_user, n.nspowner, 'USAGE'),
       has_table_privilege(session_user, c.oid, 'UPDATE'), has_table_privilege(session_user, c.oid, 'DELETE'),
       has_table_privilege(session_user, c.oid, 'TRUNCATE'), has_table_privilege(session_user, c.oid, 'TRIGGER')
FROM pg_roles r, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.rolname = session_user AND c.oid = 'audit_log'::regclass
)SQL";

constexpr char kDisclaimer[] = "AI result for radiologist review. Not a diagnosis.";

// The page statement with the shared filter clause spliced in (constant
// text only).
const std::string& ListPageSql() {
  static const std::string sql = [] {
    std::string page(kListPage);
    page.replace(page.find("{WHERE}"), 7, kListWhere);
    return page;
  }();
  return sql;
}

const std::string& ListCountSql() {
  static const std::string sql = std::string("SELECT count(*) ") + kListWhere;
  return sql;
}

// A NULL parameter for an empty string.
const char* OrNull(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

// A PostgreSQL array literal of text values, every element quoted: the
// value travels as a parameter, never as SQL text.
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char ch : values[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  out += '}';
  return out;
}

json Text(const pqxx::field& f) { return f.is_null() ? json(nullptr) : json(f.as<std::string>()); }
json Int(const pqxx::field& f) { return f.is_null() ? json(nullptr) : json(f.as<int64_t>()); }
json Real(const pqxx::field& f) { return f.is_null() ? json(nullptr) : json(f.as<double>()); }
json Bool(const pqxx::field& f) { return f.is_null() ? json(nullptr) : json(f.as<bool>()); }

size_t Utf8Length(std::string_view s) {
  size_t n = 0;
  for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
  return n;
}

json ReviewJson(const pqxx::row& r) {
  return json{{"review_id", r[0].as<int64_t>()}, {"reviewer", r[1].as<std::string>()},
              {"verdict", r[2].as<std::string>()}, {"finding_id", Int(r[3])},
              {"comment", r[4].as<std::string>()}, {"created_at", r[5].as<std::string>()}};
}

void InsertAudit(pqxx::transaction_base& tx, const Actor& actor, const std::string& action,
                 std::optional<int64_t> study_id, const json& detail) {
  std::string study = study_id ? std::to_string(*study_id) : std::string();
  tx.exec_params(kInsertAudit, actor.name, actor.role, action, OrNull(study), actor.remote_addr,
                 detail.is_object() ? detail.dump() : std::string("{}"));
}

// The 409 body: the entry's current state and the review that changed it.
json ConflictBody(pqxx::transaction_base& tx, int64_t study_id, const std::string& status, int64_t version) {
  json last = nullptr;
  std::string message = "the study changed meanwhile";
  auto rv = tx.exec_params(kStudyReviews, study_id, 1);
  if (!rv.empty()) {
    last = ReviewJson(rv[0]);
    // The latest change was that review (or dismissal) only if it was made
    // against the version just before the current one.
    if (rv[0][6].as<int64_t>() + 1 == version) {
      bool dismissed = rv[0][2].as<std::string>() == "dismiss";
      message = std::string("the study was ") + (dismissed ? "dismissed" : "reviewed") + " by " +
                rv[0][1].as<std::string>() + " meanwhile";
    }
  }
  return json{{"error", "conflict"},
              {"message", message},
              {"worklist", {{"status", status}, {"version", version}}},
              {"last_review", last}};
}

struct Decision {
  std::string verdict;  // agree | disagree | uncertain | dismiss
  std::string status;   // the worklist status it leads to
  std::string action;   // the audit action
  std::optional<int64_t> finding_id;
  std::string comment;
  int64_t expected_version = 0;
};

}  // namespace

ReviewStore::ReviewStore(PgPool* pool) : pool_(pool) {}

absl::StatusOr<json> ReviewStore::List(const WorklistFilter& filter, const Actor& actor) {
  if (filter.limit < 1 || filter.limit > 200) return absl::InvalidArgumentError("limit must be 1-200");
  if (filter.offset < 0) return absl::InvalidArgumentError("offset must be 0 or more");
  std::string statuses = filter.statuses.empty() ? std::string() : TextArray(filter.statuses);
  std::string flagged = filter.flagged ? (*filter.flagged ? "true" : "false") : "";
  json out{{"items", json::array()}, {"total", 0}, {"limit", filter.limit}, {"offset", filter.offset}};
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    out["items"] = json::array();
    // Read-write: the audit row of what was shown commits with the read.
    pqxx::transaction<pqxx::repeatable_read> tx(c);
    auto total = tx.exec_params(ListCountSql(), OrNull(statuses), OrNull(filter.modality), OrNull(filter.model),
                                OrNull(flagged), OrNull(filter.from), OrNull(filter.to));
    out["total"] = total[0][0].as<int64_t>();
    auto rows = tx.exec_params(ListPageSql(), OrNull(statuses), OrNull(filter.modality), OrNull(filter.model),
                               OrNull(flagged), OrNull(filter.from), OrNull(filter.to), filter.limit, filter.offset);
    for (const auto& r : rows) {
      out["items"].push_back(json{{"study_id", r[0].as<int64_t>()},
                                  {"flagged", r[1].as<bool>()},
                                  {"priority", r[2].as<int>() == 0 ? "STAT" : "routine"},
                                  {"status", r[3].as<std::string>()},
                                  {"arrived_at", r[4].as<std::string>()},
                                  {"age_seconds", r[5].as<int64_t>()},
                                  {"flagged_at", Text(r[6])},
                                  {"modality", Text(r[7])},
                                  {"model", Text(r[8])},
                                  {"model_version", Int(r[9])},
                                  {"top_label", Text(r[10])},
                                  {"top_score", Real(r[11])},
                                  {"threshold", Real(r[12])},
                                  {"accession_number", r[13].as<std::string>()},
                                  {"patient_name", r[14].as<std::string>()},
                                  {"patient_id", r[15].as<std::string>()},
                                  {"study_description", r[16].as<std::string>()},
                                  {"version", r[17].as<int64_t>()}});
    }
    json filter_used{{"limit", filter.limit}, {"offset", filter.offset}};
    if (!filter.statuses.empty()) filter_used["status"] = filter.statuses;
    if (!filter.modality.empty()) filter_used["modality"] = filter.modality;
    if (!filter.model.empty()) filter_used["model"] = filter.model;
    if (filter.flagged) filter_used["flagged"] = *filter.flagged;
    if (!filter.from.empty()) filter_used["from"] = filter.from;
    if (!filter.to.empty()) filter_used["to"] = filter.to;
    json shown = json::array();
    for (const auto& item : out["items"]) shown.push_back(item["study_id"]);
    InsertAudit(tx, actor, "view_worklist", std::nullopt, json{{"filter", filter_used}, {"study_ids", shown}});
    tx.commit();
  });
  if (!st.ok()) return st;
  return out;
}

absl::StatusOr<json> ReviewStore::Study(int64_t study_id, const Actor& actor) {
  absl::Status result;
  json out;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    result = absl::OkStatus();
    pqxx::work tx(c);
    auto entry = tx.exec_params(kLockEntry, study_id);
    if (entry.empty()) {
      result = absl::NotFoundError("no worklist entry for this study");
      return;
    }
    if (actor.role == "radiologist" && entry[0][0].as<std::string>() == "new") tx.exec_params(kOpenEntry, study_id);
    InsertAudit(tx, actor, "view_study", study_id, json::object());

    auto h = tx.exec_params(kStudyHeader, study_id);
    if (h.empty()) {
      result = absl::NotFoundError("no such study");
      return;
    }
    const auto& r = h[0];
    out = json{{"study_id", r[0].as<int64_t>()},
               {"study_instance_uid", r[1].as<std::string>()},
               {"accession_number", r[2].as<std::string>()},
               {"study_date", r[3].as<std::string>()},
               {"study_description", r[4].as<std::string>()},
               {"patient",
                {{"name", r[5].as<std::string>()},
                 {"id", r[6].as<std::string>()},
                 {"birth_date", r[7].as<std::string>()},
                 {"sex", r[8].as<std::string>()}}},
               {"worklist",
                {{"flagged", r[9].as<bool>()},
                 {"priority", r[10].as<int>() == 0 ? "STAT" : "routine"},
                 {"status", r[11].as<std::string>()},
                 {"version", r[12].as<int64_t>()},
                 {"top_label", Text(r[13])},
                 {"top_score", Real(r[14])}}},
               {"reads", json::array()},
               {"reviews", json::array()},
               {"disclaimer", kDisclaimer}};

    std::map<int64_t, size_t> read_index;
    for (const auto& rr : tx.exec_params(kStudyReads, study_id)) {
      read_index[rr[0].as<int64_t>()] = out["reads"].size();
      out["reads"].push_back(json{{"read_id", rr[0].as<int64_t>()},
                                  {"model", rr[1].as<std::string>()},
                                  {"model_version", rr[2].as<int64_t>()},
                                  {"mode", rr[3].as<std::string>()},
                                  {"state", rr[4].as<std::string>()},
                                  {"flagged", Bool(rr[5])},
                                  {"triggered_at", Text(rr[6])},
                                  {"done_at", Text(rr[7])},
                                  {"input", rr[8].as<std::string>()},
                                  {"series_instance_uid", Text(rr[9])},
                                  {"error", Text(rr[10])},
                                  {"findings", json::array()},
                                  {"results", json::array()},
                                  {"exports", json::array()},
                                  {"skipped_images", json::array()}});
    }
    auto read_json = [&](const pqxx::field& f) -> json* {
      auto it = read_index.find(f.as<int64_t>());
      return it == read_index.end() ? nullptr : &out["reads"][it->second];
    };
    for (const auto& fr : tx.exec_params(kStudyFindings, study_id)) {
      json* rd = read_json(fr[0]);
      if (!rd) continue;
      json peak = nullptr;
      if (!fr[11].is_null() && !fr[12].is_null()) {
        peak = json{{"row", fr[11].as<double>()}, {"column", fr[12].as<double>()}};
      }
      (*rd)["findings"].push_back(json{
          {"finding_id", fr[1].as<int64_t>()},
          {"label", fr[2].as<std::string>()},
          {"code",
           {{"scheme", fr[3].as<std::string>()}, {"value", fr[4].as<std::string>()}, {"meaning", fr[5].as<std::string>()}}},
          {"score", fr[6].as<double>()},
          {"threshold", fr[7].as<double>()},
          {"above", fr[8].as<bool>()},
          {"instance_id", fr[9].as<int64_t>()},
          {"frame", fr[10].as<int64_t>()},
          {"peak", peak}});
    }
    for (const auto& ro : tx.exec_params(kStudyResults, study_id)) {
      json* rd = read_json(ro[0]);
      if (!rd) continue;
      int64_t result_id = ro[1].as<int64_t>();
      std::string kind = ro[2].as<std::string>();
      json item{{"result_id", result_id}, {"kind", kind}, {"sop_instance_uid", ro[3].as<std::string>()}};
      // Retention removed the file: the object is in the PACS, not here.
      if (!ro[4].is_null()) item["purged_at"] = ro[4].as<std::string>();
      if (kind == "sc" && ro[4].is_null()) {
        item["image_url"] =
            "/api/v1/studies/" + std::to_string(study_id) + "/images/" + std::to_string(result_id) + ".png";
      }
      (*rd)["results"].push_back(std::move(item));
    }
    for (const auto& ex : tx.exec_params(kStudyExports, study_id)) {
      json* rd = read_json(ex[0]);
      if (!rd) continue;
      (*rd)["exports"].push_back(json{{"destination", ex[1].as<std::string>()},
                                      {"state", ex[2].as<std::string>()},
                                      {"attempts", ex[3].as<int64_t>()},
                                      {"sent_at", Text(ex[4])},
                                      {"last_error", Text(ex[5])}});
    }
    for (const auto& sk : tx.exec_params(kStudySkipped, study_id)) {
      json* rd = read_json(sk[0]);
      if (!rd) continue;
      (*rd)["skipped_images"].push_back(
          json{{"instance_id", sk[1].as<int64_t>()}, {"reason", sk[2].as<std::string>()}});
    }
    for (const auto& rv : tx.exec_params(kStudyReviews, study_id, 1000)) out["reviews"].push_back(ReviewJson(rv));
    tx.commit();
  });
  if (!st.ok()) return st;
  if (!result.ok()) return result;
  return out;
}

absl::StatusOr<std::string> ReviewStore::ScFileName(int64_t study_id, int64_t result_id, const Actor& actor,
                                                    audit::StudyRef* identity) {
  absl::Status result;
  std::string file;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    result = absl::OkStatus();
    pqxx::work tx(c);
    auto r = tx.exec_params(kScFile, study_id, result_id);
    if (r.empty()) {
      result = absl::NotFoundError("no such image of this study");
      return;
    }
    file = r[0][0].as<std::string>();
    if (identity) {
      *identity = audit::StudyRef{};
      identity->sop_classes[r[0][1].as<std::string>()] = 1;
      identity->study_uid = r[0][2].as<std::string>();
      identity->accession = r[0][3].as<std::string>();
      identity->patient_id = r[0][4].as<std::string>();
      identity->patient_name = r[0][5].as<std::string>();
    }
    InsertAudit(tx, actor, "view_image", study_id, json{{"result_id", result_id}});
    tx.commit();
  });
  if (!st.ok()) return st;
  if (!result.ok()) return result;
  return file;
}

namespace {

// One review or dismissal: lock the entry, check the finding and the
// version, store the review, move the entry on and audit, all or nothing.
absl::StatusOr<json> Decide(PgPool* pool, int64_t study_id, const Decision& d, const Actor& actor) {
  if (Utf8Length(d.comment) > 2000) return absl::InvalidArgumentError("comment: at most 2000 characters");
  absl::Status result;
  json out;
  std::string finding = d.finding_id ? std::to_string(*d.finding_id) : std::string();
  absl::Status st = pool->Run([&](pqxx::connection_base& c) {
    result = absl::OkStatus();
    pqxx::work tx(c);
    auto entry = tx.exec_params(kLockEntry, study_id);
    if (entry.empty()) {
      result = absl::NotFoundError("no worklist entry for this study");
      return;
    }
    if (d.finding_id && tx.exec_params(kFindingOfStudy, *d.finding_id, study_id).empty()) {
      result = absl::NotFoundError("no such finding of this study");
      return;
    }
    std::string status = entry[0][0].as<std::string>();
    int64_t version = entry[0][1].as<int64_t>();
    if (version != d.expected_version) {
      result = absl::AbortedError(ConflictBody(tx, study_id, status, version).dump());
      return;
    }
    int64_t review_id = tx.exec_params(kInsertReview, study_id, OrNull(finding), actor.name, d.verdict, d.comment,
                                       d.expected_version)[0][0]
                            .as<int64_t>();
    auto upd = tx.exec_params(kApplyReview, study_id, d.status, actor.name);
    json detail{{"review_id", review_id}};
    if (d.action == "review") {
      detail["verdict"] = d.verdict;
      detail["finding_id"] = d.finding_id ? json(*d.finding_id) : json(nullptr);
    }
    InsertAudit(tx, actor, d.action, study_id, detail);
    out = json{{"review_id", review_id},
               {"worklist", {{"status", upd[0][0].as<std::string>()}, {"version", upd[0][1].as<int64_t>()}}}};
    tx.commit();
  });
  if (!st.ok()) return st;
  if (!result.ok()) return result;
  return out;
}

}  // namespace

absl::StatusOr<json> ReviewStore::Review(int64_t study_id, const ReviewInput& input, const Actor& actor) {
  Decision d;
  if (input.verdict == "agree") {
    d.status = "agreed";
  } else if (input.verdict == "disagree") {
    d.status = "disagreed";
  } else if (input.verdict == "uncertain") {
    d.status = "in_review";
  } else {
    return absl::InvalidArgumentError("verdict must be agree, disagree or uncertain");
  }
  d.verdict = input.verdict;
  d.action = "review";
  d.finding_id = input.finding_id;
  d.comment = input.comment;
  d.expected_version = input.expected_version;
  return Decide(pool_, study_id, d, actor);
}

absl::StatusOr<json> ReviewStore::Dismiss(int64_t study_id, int64_t expected_version, const std::string& comment,
                                          const Actor& actor) {
  Decision d;
  d.verdict = "dismiss";
  d.status = "dismissed";
  d.action = "dismiss";
  d.comment = comment;
  d.expected_version = expected_version;
  return Decide(pool_, study_id, d, actor);
}

absl::StatusOr<json> ReviewStore::Performance(const PerformanceQuery& query) {
  if (query.window != "day" && query.window != "week" && query.window != "month") {
    return absl::InvalidArgumentError("window must be day, week or month");
  }
  if (query.windows < 1 || query.windows > 52) return absl::InvalidArgumentError("windows must be 1-52");
  json out{{"window", query.window}, {"models", json::array()}};
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    out["models"] = json::array();
    pqxx::read_transaction tx(c);
    auto rows = tx.exec_params(kPerformance, query.window, query.windows);
    tx.commit();
    json* model = nullptr;
    std::string model_key;
    json prev;  // the previous window of the same model and version
    for (const auto& r : rows) {
      std::string name = r[0].as<std::string>();
      int64_t version = r[1].as<int64_t>();
      std::string key = name + '\x1f' + std::to_string(version);
      if (!model || key != model_key) {
        out["models"].push_back(json{{"model", name}, {"version", version}, {"windows", json::array()}});
        model = &out["models"].back();
        model_key = key;
        prev = nullptr;
      }
      int64_t studies = r[5].as<int64_t>(), flagged = r[6].as<int64_t>();
      int64_t agreed = r[8].as<int64_t>(), disagreed = r[9].as<int64_t>();
      int64_t ppv_agreed = r[11].as<int64_t>(), ppv_judged = r[12].as<int64_t>();
      json flagged_rate = studies > 0 ? json(double(flagged) / double(studies)) : json(nullptr);
      json mean_score = Real(r[13]);
      json drift{{"flagged_rate_delta", nullptr}, {"mean_score_delta", nullptr}, {"alert", false}};
      if (!prev.is_null()) {
        if (!flagged_rate.is_null() && !prev["flagged_rate"].is_null()) {
          drift["flagged_rate_delta"] = flagged_rate.get<double>() - prev["flagged_rate"].get<double>();
        }
        if (!mean_score.is_null() && !prev["mean_score"].is_null()) {
          drift["mean_score_delta"] = mean_score.get<double>() - prev["mean_score"].get<double>();
        }
        bool enough = studies >= 20 && prev["studies_read"].get<int64_t>() >= 20;
        bool moved = (!drift["flagged_rate_delta"].is_null() &&
                      std::fabs(drift["flagged_rate_delta"].get<double>()) > 0.15) ||
                     (!drift["mean_score_delta"].is_null() && std::fabs(drift["mean_score_delta"].get<double>()) > 0.10);
        drift["alert"] = enough && moved;
      }
      json win{{"start", r[3].as<std::string>()},
               {"end", r[4].as<std::string>()},
               {"studies_read", studies},
               {"flagged", flagged},
               {"flagged_rate", flagged_rate},
               {"reviewed", r[7].as<int64_t>()},
               {"agreed", agreed},
               {"disagreed", disagreed},
               {"uncertain", r[10].as<int64_t>()},
               {"agreement_rate", agreed + disagreed > 0 ? json(double(agreed) / double(agreed + disagreed))
                                                         : json(nullptr)},
               {"ppv", ppv_judged > 0 ? json(double(ppv_agreed) / double(ppv_judged)) : json(nullptr)},
               {"mean_score", mean_score},
               {"drift", drift}};
      prev = win;
      (*model)["windows"].push_back(std::move(win));
    }
  });
  if (!st.ok()) return st;
  return out;
}

absl::Status ReviewStore::Audit(const Actor& actor, const std::string& action, std::optional<int64_t> study_id,
                                const json& detail) {
  return pool_->Run([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    InsertAudit(tx, actor, action, study_id, detail);
    tx.commit();
  });
}

absl::Status ReviewStore::AuditLogProtection() {
  std::vector<std::string> powers;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    powers.clear();
    pqxx::read_transaction tx(c);
    auto r = tx.exec(kAuditPowers);
    tx.commit();
    if (r.empty()) return;
    // A schema's owner may drop any table in it, triggers and all.
    static const char* kNames[] = {"superuser", "create_roles", "owner",   "schema_owner",
                                   "update",    "delete",       "truncate", "trigger"};
    for (int i = 0; i < 8; ++i) {
      if (r[0][i].as<bool>()) powers.push_back(kNames[i]);
    }
  });
  if (!st.ok()) return st;
  if (powers.empty()) return absl::OkStatus();
  std::string list;
  for (const auto& p : powers) list += (list.empty() ? "" : ",") + p;
  return absl::FailedPreconditionError(list);
}

absl::StatusOr<std::vector<std::string>> ReviewStore::MissingAuditActions(const std::vector<std::string>& actions) {
  std::string definition;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    pqxx::read_transaction tx(c);
    auto r = tx.exec(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'audit_log'::regclass AND conname = 'audit_log_action_check'");
    tx.commit();
    definition = r.empty() ? std::string() : r[0][0].as<std::string>();
  });
  if (!st.ok()) return st;
  std::vector<std::string> missing;
  if (definition.empty()) return missing;  // no constraint: every action is admitted
  for (const auto& a : actions) {
    if (definition.find("'" + a + "'") == std::string::npos) missing.push_back(a);
  }
  return missing;
}

absl::StatusOr<json> ReviewStore::AuditLog(int limit, int offset, std::optional<int64_t> study_id,
                                           const Actor& actor) {
  if (limit < 1 || limit > 500) return absl::InvalidArgumentError("limit must be 1-500");
  if (offset < 0) return absl::InvalidArgumentError("offset must be 0 or more");
  std::string study = study_id ? std::to_string(*study_id) : std::string();
  json out{{"items", json::array()}, {"limit", limit}, {"offset", offset}};
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    out["items"] = json::array();
    pqxx::work tx(c);
    json detail{{"limit", limit}, {"offset", offset}};
    if (study_id) detail["study_id"] = *study_id;
    InsertAudit(tx, actor, "view_audit", std::nullopt, detail);
    for (const auto& r : tx.exec_params(kAuditPage, OrNull(study), limit, offset)) {
      out["items"].push_back(json{{"id", r[0].as<int64_t>()},
                                  {"at", r[1].as<std::string>()},
                                  {"actor", r[2].as<std::string>()},
                                  {"role", r[3].as<std::string>()},
                                  {"action", r[4].as<std::string>()},
                                  {"study_id", Int(r[5])},
                                  {"remote_addr", r[6].as<std::string>()},
                                  {"detail", json::parse(r[7].as<std::string>())}});
    }
    tx.commit();
  });
  if (!st.ok()) return st;
  return out;
}

}  // namespace secondread::worklist
