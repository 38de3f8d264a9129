#include "worklist/dispatcher.h"

#include <pqxx/pqxx>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>

#include "common/log.h"
#include "scp/derived_uid.h"
#include "scp/pixel_decoder.h"
#include "scp/result_objects.h"
#include "worklist/model_input.h"

namespace secondread::worklist {
namespace {

namespace pb = ::secondread::inference::v1;
using Clock = std::chrono::system_clock;
using Steady = std::chrono::steady_clock;

// Series numbers of the result series, high so they sort after the
// acquisition series in a viewer.
constexpr int kSrSeriesNumber = 9901;
constexpr int kScSeriesNumber = 9902;

constexpr char kLoadRead[] = R"SQL(
SELECT r.state, r.study_ref, st.study_instance_uid, r.model_name, r.model_version, r.mode, r.priority,
       extract(epoch FROM r.triggered_at)::float8, r.trigger
FROM reads r JOIN studies st ON st.id = r.study_ref
WHERE r.id = $1
)SQL";

constexpr char kLoadSources[] = R"SQL(
SELECT i.id, i.sop_instance_uid, i.sop_class_uid, se.series_instance_uid, i.spool_name,
       se.modality, se.body_part_examined, COALESCE(i.number_of_frames, 1),
       -- Only a per-instance read ($2) needs the source's arrival position.
       CASE WHEN $2 THEN (SELECT count(*) FROM instances i2 JOIN series s2 ON s2.id = i2.series_ref
                          WHERE s2.study_ref = se.study_ref AND i2.id <= i.id)
            ELSE 1 END
FROM read_instances ri
JOIN instances i ON i.id = ri.instance_ref
JOIN series se ON se.id = i.series_ref
WHERE ri.read_ref = $1
ORDER BY se.series_number NULLS LAST, se.id, i.instance_number NULLS LAST, i.id
)SQL";

constexpr char kInsertFinding[] = R"SQL(
INSERT INTO findings (read_ref, instance_ref, frame, label, code_scheme, code_value, code_meaning, score, threshold,
                      above, peak_row, peak_column)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
)SQL";

constexpr char kUpsertResult[] = R"SQL(
INSERT INTO result_objects (read_ref, kind, sop_class_uid, sop_instance_uid, series_instance_uid,
                            source_instance_ref, file_name, size_bytes)
VALUES ($1, $2, $3, $4, $5, NULLIF($6::bigint, 0), $7, $8)
ON CONFLICT ON CONSTRAINT result_objects_uid_key
  DO UPDATE SET read_ref = EXCLUDED.read_ref, file_name = EXCLUDED.file_name, size_bytes = EXCLUDED.size_bytes,
                source_instance_ref = EXCLUDED.source_instance_ref, created_at = now()
)SQL";

constexpr char kReadDone[] = R"SQL(
UPDATE reads SET state = $2, flagged = $3, served_version = $4, images_read = $5, decode_ms = $6,
                 inference_ms = $7, results_ms = $8, done_at = clock_timestamp(), error = NULL
WHERE id = $1
)SQL";

constexpr char kUpsertExport[] = R"SQL(
INSERT INTO exports (read_ref, destination) VALUES ($1, $2)
ON CONFLICT ON CONSTRAINT exports_key
  DO UPDATE SET state = 'pending', sent_at = NULL, attempts = 0, last_error = NULL, queued_at = clock_timestamp()
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

struct ReadRow {
  std::string state;
  int64_t study_ref = 0;
  std::string study_uid;
  std::string model;
  int64_t version = 0;
  std::string mode;
  int priority = 1;
  double triggered_at = 0;
  std::string trigger;
};

struct SourceRow {
  int64_t instance_id = 0;
  std::string sop_instance_uid;
  std::string sop_class_uid;
  std::string series_uid;
  std::string spool_name;
  std::string modality;
  std::string body_part;
  int64_t frames = 1;
  int64_t arrival = 1;  // the instance's place in its study's arrival order, from 1
};

// One image sent to the model: a frame of a source instance.
struct Item {
  size_t source = 0;   // index into the sources
  uint32_t frame = 0;  // 1-based for multi-frame objects, else 0
  scp::DecodedFrame pixels;
  std::string source_photometric;
  double row_spacing = 0;
  double column_spacing = 0;
  pb::ImageResult result;
};

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

bool Applies(const google::protobuf::RepeatedPtrField<std::string>& allowed, const std::string& value) {
  if (allowed.empty()) return true;
  return std::find(allowed.begin(), allowed.end(), Trim(value)) != allowed.end();
}

std::string RandomToken() {
  std::random_device rd;
  std::string token(16, '\0');
  for (auto& c : token) c = static_cast<char>(rd() & 0xff);
  return token;
}

double Ms(Steady::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool Transient(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kNotFound:  // a model not (yet) deployed on the workers
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

std::string Now(const char* fmt) {
  std::time_t t = Clock::to_time_t(Clock::now());
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

}  // namespace

Dispatcher::Dispatcher(DispatcherOptions options, DatabaseOptions db, PgPool* pool, JobQueue* queue,
                       InferenceClient* inference, const scp::Spool* spool, const ResultFiles* results,
                       PipelineMetrics* metrics)
    : options_(std::move(options)),
      db_(std::move(db)),
      pool_(pool),
      queue_(queue),
      inference_(inference),
      spool_(spool),
      results_(results),
      metrics_(metrics) {}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  JobRunnerOptions runner;
  runner.queue = kDispatchQueue;
  runner.concurrency = options_.concurrency;
  runner.node_id = options_.node_id;
  runner.idle_wait = options_.idle_wait;
  runner_ = std::make_unique<JobRunner>(runner, db_, queue_, [this](const Job& job) { Process(job); });
  runner_->Start();
}

void Dispatcher::Stop() {
  if (runner_) runner_->Stop();
}

void Dispatcher::Process(const Job& job) {
  const int64_t read_id = job.args.value("read_id", int64_t{0});
  auto fail = [&](const absl::Status& st, bool permanent) {
    const bool last = permanent || job.attempt >= job.max_attempts;
    std::string error(st.message());
    absl::Status db = pool_->Run([&](pqxx::connection_base& c) {
      pqxx::work tx(c);
      tx.exec_params(last ? "UPDATE reads SET state = 'failed', error = $2, done_at = clock_timestamp() WHERE id = $1"
                          : "UPDATE reads SET state = 'queued', error = $2 WHERE id = $1",
                     read_id, error);
      tx.commit();
    });
    (void)db;
    absl::Status q = queue_->Fail(job, error, permanent);
    (void)q;
    if (last && metrics_) metrics_->Reads("failed").Increment();
    log::Warn("read_failed", {{"read_id", read_id},
                              {"attempt", job.attempt},
                              {"final", last},
                              {"code", absl::StatusCodeToString(st.code())},
                              {"error", error}});
  };

  // Load the read and its source instances.
  ReadRow read;
  std::vector<SourceRow> sources;
  bool found = false;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    auto r = tx.exec_params(kLoadRead, read_id);
    found = !r.empty();
    if (!found) return;
    read.state = r[0][0].as<std::string>();
    read.study_ref = r[0][1].as<int64_t>();
    read.study_uid = r[0][2].as<std::string>();
    read.model = r[0][3].as<std::string>();
    read.version = r[0][4].as<int64_t>();
    read.mode = r[0][5].as<std::string>();
    read.priority = r[0][6].as<int>();
    read.triggered_at = r[0][7].as<double>();
    read.trigger = r[0][8].as<std::string>();
    sources.clear();
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
      s.arrival = row[8].as<int64_t>();
      sources.push_back(std::move(s));
    }
    if (read.state == "queued" || read.state == "running") {
      tx.exec_params("UPDATE reads SET state = 'running', started_at = clock_timestamp() WHERE id = $1", read_id);
    }
    tx.commit();
  });
  if (!st.ok()) return fail(st, false);
  if (!found) return fail(absl::NotFoundError("read " + std::to_string(read_id) + " does not exist"), true);
  if (read.state == "done" || read.state == "not_applicable" || read.state == "failed") {
    (void)queue_->Complete(job);  // finished by an earlier attempt whose completion was lost
    return;
  }
  if (metrics_) {
    double now_s = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    metrics_->Stage("queue").Observe(std::max(0.0, now_s - read.triggered_at));
  }

  auto described = inference_->Describe(read.model, read.version);
  if (!described.ok()) return fail(described.status(), !Transient(described.status().code()));
  const pb::ModelDescription& model = *described;
  if (model.state() != pb::MODEL_STATE_READY) {
    return fail(absl::UnavailableError("model " + read.model + " is not ready: " + model.reason()), false);
  }

  // The model's applicability narrows the images further than the rule did.
  std::vector<size_t> applicable;
  for (size_t i = 0; i < sources.size(); ++i) {
    const auto& a = model.applicability();
    if (Applies(a.modalities(), sources[i].modality) && Applies(a.body_parts(), sources[i].body_part) &&
        Applies(a.sop_classes(), sources[i].sop_class_uid)) {
      applicable.push_back(i);
    }
  }
  auto finish_without_results = [&](const std::string& state) {
    absl::Status s2 = pool_->Run([&](pqxx::connection_base& c) {
      pqxx::work tx(c);
      tx.exec_params(kReadDone, read_id, state, false, model.version(), 0, 0.0, 0.0, 0.0);
      tx.commit();
    });
    if (!s2.ok()) return fail(s2, false);
    (void)queue_->Complete(job);
    if (metrics_) metrics_->Reads(state).Increment();
    log::Info("read_finished", {{"read_id", read_id}, {"state", state}, {"images", 0}});
  };
  if (applicable.empty()) return finish_without_results("not_applicable");

  // Decode.
  const auto t_decode = Steady::now();
  std::vector<Item> items;
  // The model says which values it needs; a request it cannot read right is
  // a configuration error, not something a retry fixes.
  auto decode_options = DecodeOptionsFor(model.input());
  if (!decode_options.ok()) return fail(decode_options.status(), true);
  for (size_t idx : applicable) {
    auto decoded = scp::DecodeImageFile(spool_->PathFor(sources[idx].spool_name), *decode_options);
    if (!decoded.ok()) {
      log::Warn("decode_failed", {{"read_id", read_id},
                                  {"instance_ref", sources[idx].instance_id},
                                  {"error", std::string(decoded.status().message())}});
      continue;
    }
    const bool multi = decoded->frames.size() > 1;
    for (size_t f = 0; f < decoded->frames.size(); ++f) {
      Item item;
      item.source = idx;
      item.frame = multi ? static_cast<uint32_t>(f + 1) : 0;
      item.pixels = std::move(decoded->frames[f]);
      item.source_photometric = decoded->source_photometric;
      item.row_spacing = decoded->row_spacing_mm;
      item.column_spacing = decoded->column_spacing_mm;
      items.push_back(std::move(item));
    }
  }
  const double decode_ms = Ms(Steady::now() - t_decode);
  if (items.empty()) return fail(absl::InvalidArgumentError("no source image could be decoded"), true);

  // Infer, in requests no larger than the model's batch limit.
  const auto t_infer = Steady::now();
  const size_t max_batch = model.input().max_batch_size() > 0 ? model.input().max_batch_size() : 16;
  for (size_t begin = 0; begin < items.size(); begin += max_batch) {
    const size_t end = std::min(items.size(), begin + max_batch);
    pb::InferRequest request;
    request.set_model_name(model.name());
    request.set_model_version(model.version());
    request.set_priority(read.priority == kPriorityStat ? pb::PRIORITY_STAT : pb::PRIORITY_ROUTINE);
    const std::string token = RandomToken();
    request.set_job_token(token);
    for (size_t k = begin; k < end; ++k) {
      const Item& item = items[k];
      pb::Image* image = request.add_images();
      if (absl::Status encoded = EncodePixels(model.input(), item.pixels, item.source_photometric, image);
          !encoded.ok()) {
        return fail(encoded, true);
      }
      image->set_row_spacing_mm(item.row_spacing);
      image->set_column_spacing_mm(item.column_spacing);
      const SourceRow& s = sources[item.source];
      image->mutable_modality()->set_scheme("DCM");
      image->mutable_modality()->set_value(Trim(s.modality));
      image->mutable_body_part()->set_value(Trim(s.body_part));
    }
    auto response = inference_->Infer(request);
    if (!response.ok()) return fail(response.status(), !Transient(response.status().code()));
    if (response->job_token() != token || response->results_size() != static_cast<int>(end - begin)) {
      return fail(absl::InternalError("inference response does not match its request"), false);
    }
    for (size_t k = begin; k < end; ++k) items[k].result = response->results(static_cast<int>(k - begin));
  }
  const double inference_ms = Ms(Steady::now() - t_infer);
  (void)queue_->Heartbeat(job);

  // Findings, in the SR's order: one source image per item.
  const auto t_results = Steady::now();
  std::map<std::string, const pb::Label*> labels;
  for (const auto& l : model.labels()) labels[l.name()] = &l;
  std::vector<scp::SourceImage> sr_sources;
  std::vector<scp::Finding> findings;
  std::vector<std::vector<scp::Finding>> item_findings(items.size());
  bool flagged = false;
  double top_score = -1;
  std::string top_label;
  for (size_t k = 0; k < items.size(); ++k) {
    const Item& item = items[k];
    const SourceRow& s = sources[item.source];
    scp::SourceImage src;
    src.path = spool_->PathFor(s.spool_name);
    src.sop_class_uid = s.sop_class_uid;
    src.sop_instance_uid = s.sop_instance_uid;
    src.series_instance_uid = s.series_uid;
    src.frame = item.frame;
    src.rows = item.pixels.rows;
    src.columns = item.pixels.columns;
    sr_sources.push_back(src);
    for (const auto& score : item.result.scores()) {
      scp::Finding f;
      f.label = score.label();
      auto it = labels.find(score.label());
      if (it != labels.end()) {
        f.code = {it->second->code().scheme(), it->second->code().value(), it->second->code().meaning()};
      }
      f.score = score.score();
      f.threshold = score.threshold();
      f.above_threshold = score.above_threshold();
      f.image_index = k;
      for (const auto& hm : item.result.heatmaps()) {
        if (hm.label() != score.label() || hm.values_size() == 0 ||
            hm.values_size() != static_cast<int>(hm.height() * hm.width())) {
          continue;
        }
        int best = static_cast<int>(std::max_element(hm.values().begin(), hm.values().end()) - hm.values().begin());
        f.has_peak = true;
        f.peak_column = (best % hm.width() + 0.5) * item.pixels.columns / hm.width();
        f.peak_row = (best / hm.width() + 0.5) * item.pixels.rows / hm.height();
      }
      flagged = flagged || f.above_threshold;
      if (f.score > top_score) {
        top_score = f.score;
        top_label = f.label;
      }
      findings.push_back(f);
      scp::Finding local = f;
      local.image_index = 0;
      item_findings[k].push_back(local);
    }
  }

  // Result objects. Their UIDs depend only on the study, the model, its
  // version and the object, so a re-sent result replaces the earlier one.
  const std::string version = std::to_string(model.version());
  scp::AlgorithmInfo algorithm;
  algorithm.model_name = model.name();
  algorithm.model_version = version;
  algorithm.software_version = options_.software_version;
  for (const auto& l : model.labels()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4g", l.threshold());
    algorithm.parameters += (algorithm.parameters.empty() ? "" : "; ") + ("threshold " + l.name() + "=" + buf);
  }
  scp::ContentTime when{Now("%Y%m%d"), Now("%H%M%S")};

  struct Written {
    std::string kind;
    scp::BuiltObject object;
    int64_t source_instance = 0;
    std::string file;
  };
  std::vector<Written> written;
  // Reads of single instances put one SR and one SC per image into the same
  // two series. Numbering them by the source's place in the study's arrival
  // order keeps them apart (a source's own Instance Number does not: each CR
  // view is often instance 1 of its own series) and stable across re-reads.
  // A study-level read numbers its own.
  const bool per_instance = read.trigger == "instance";
  const int source_number = static_cast<int>(std::min<int64_t>(sources.front().arrival, 2147483647));
  {
    scp::ResultIdentity id;
    // A study-level read has one SR per study and model version. Reads of
    // single instances (per-instance triggering) each have their own, keyed
    // by the instance, so one image's report never replaces another's.
    id.sop_instance_uid =
        per_instance
            ? scp::DerivedUid({read.study_uid, model.name(), version, "sr", sources.front().sop_instance_uid})
            : scp::DerivedUid({read.study_uid, model.name(), version, "sr"});
    id.series_instance_uid = scp::DerivedUid({read.study_uid, model.name(), version, "sr-series"});
    id.series_number = kSrSeriesNumber;
    id.instance_number = per_instance ? source_number : 1;
    auto sr = scp::BuildStructuredReport(sr_sources, findings, algorithm, id, when);
    if (!sr.ok()) return fail(sr.status(), true);
    written.push_back({"sr", std::move(*sr), 0, ""});
  }
  // One Secondary Capture per source instance, of its highest-scoring frame.
  std::map<size_t, size_t> best_item;  // source -> item
  for (size_t k = 0; k < items.size(); ++k) {
    double top = -1;
    for (const auto& f : item_findings[k]) top = std::max(top, f.score);
    auto it = best_item.find(items[k].source);
    if (it == best_item.end()) {
      best_item[items[k].source] = k;
    } else {
      double other = -1;
      for (const auto& f : item_findings[it->second]) other = std::max(other, f.score);
      if (top > other) it->second = k;
    }
  }
  int sc_number = 0;
  for (const auto& [source, k] : best_item) {
    const Item& item = items[k];
    scp::Heatmap heatmap;
    const scp::Heatmap* heatmap_ptr = nullptr;
    double top = -1;
    for (const auto& f : item_findings[k]) {
      if (f.score <= top) continue;
      top = f.score;
      for (const auto& hm : item.result.heatmaps()) {
        if (hm.label() != f.label || hm.values_size() != static_cast<int>(hm.height() * hm.width())) continue;
        heatmap.rows = hm.height();
        heatmap.columns = hm.width();
        heatmap.values.assign(hm.values().begin(), hm.values().end());
        heatmap_ptr = &heatmap;
      }
    }
    scp::ResultIdentity id;
    id.sop_instance_uid = scp::DerivedUid({read.study_uid, model.name(), version, "sc",
                                           sources[source].sop_instance_uid, std::to_string(item.frame)});
    id.series_instance_uid = scp::DerivedUid({read.study_uid, model.name(), version, "sc-series"});
    id.series_number = kScSeriesNumber;
    ++sc_number;
    id.instance_number = per_instance ? source_number : sc_number;
    auto sc = scp::BuildSecondaryCapture(sr_sources[k], heatmap_ptr, item_findings[k], algorithm, id, when);
    if (!sc.ok()) return fail(sc.status(), true);
    written.push_back({"sc", std::move(*sc), sources[source].instance_id, ""});
  }
  for (auto& w : written) {
    auto name = results_->Write(w.object.sop_instance_uid, w.object.part10);
    if (!name.ok()) return fail(name.status(), false);
    w.file = *name;
  }
  const double results_ms = Ms(Steady::now() - t_results);

  // Commit everything the read produced, once.
  const bool clinical = read.mode == "clinical";
  bool already_done = false;
  std::vector<int64_t> exports;
  st = pool_->Run([&](pqxx::connection_base& c) {
    already_done = false;
    exports.clear();
    pqxx::work tx(c);
    auto state = tx.exec_params("SELECT state FROM reads WHERE id = $1 FOR UPDATE", read_id);
    if (state.empty() || state[0][0].as<std::string>() == "done") {
      already_done = true;
      return;
    }
    tx.exec_params("DELETE FROM findings WHERE read_ref = $1", read_id);
    for (const auto& f : findings) {
      const Item& item = items[f.image_index];
      const SourceRow& s = sources[item.source];
      if (f.has_peak) {
        tx.exec_params(kInsertFinding, read_id, s.instance_id, static_cast<int>(item.frame), f.label, f.code.scheme,
                       f.code.value, f.code.meaning, f.score, f.threshold, f.above_threshold, f.peak_row,
                       f.peak_column);
      } else {
        tx.exec_params(kInsertFinding, read_id, s.instance_id, static_cast<int>(item.frame), f.label, f.code.scheme,
                       f.code.value, f.code.meaning, f.score, f.threshold, f.above_threshold, nullptr, nullptr);
      }
    }
    for (const auto& w : written) {
      tx.exec_params(kUpsertResult, read_id, w.kind, w.object.sop_class_uid, w.object.sop_instance_uid,
                     w.object.series_instance_uid, w.source_instance, w.file,
                     static_cast<int64_t>(w.object.part10.size()));
    }
    tx.exec_params(kReadDone, read_id, std::string("done"), flagged, model.version(),
                   static_cast<int>(items.size()), decode_ms, inference_ms, results_ms);
    if (clinical) {
      for (const auto& dest : options_.destinations) {
        int64_t export_id = tx.exec_params(kUpsertExport, read_id, dest)[0][0].as<int64_t>();
        NewJob ej;
        ej.queue = kExportQueue;
        ej.priority = read.priority;
        ej.args = {{"export_id", export_id}};
        ej.max_attempts = options_.export_max_attempts;
        ej.unique_key = "export:" + std::to_string(export_id);
        JobQueue::EnqueueInTx(tx, ej);
        exports.push_back(export_id);
      }
      tx.exec_params(kUpsertWorklist, read.study_ref, flagged, read.priority, model.name(), top_label, top_score);
    }
    tx.commit();
  });
  if (!st.ok()) return fail(st, false);
  (void)queue_->Complete(job);
  if (already_done) return;
  if (metrics_) {
    metrics_->Reads("done").Increment();
    if (flagged) metrics_->flagged_reads.Increment();
    metrics_->Stage("decode").Observe(decode_ms / 1000);
    metrics_->Stage("inference").Observe(inference_ms / 1000);
    metrics_->Stage("results").Observe(results_ms / 1000);
  }
  log::Info("read_finished", {{"read_id", read_id},
                              {"state", "done"},
                              {"model", model.name()},
                              {"model_version", model.version()},
                              {"images", items.size()},
                              {"flagged", flagged},
                              {"exports", exports.size()},
                              {"decode_ms", decode_ms},
                              {"inference_ms", inference_ms},
                              {"results_ms", results_ms}});
}

}  // namespace secondread::worklist
