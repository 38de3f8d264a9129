#include "worklist/pipeline/dispatcher.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "common/log.h"
#include "scp/objects/derived_uid.h"
#include "scp/pixels/pixel_decoder.h"
#include "scp/objects/result_objects.h"
#include "worklist/pipeline/model_input.h"
#include "worklist/pipeline/read_stages.h"

namespace secondread::worklist {
namespace {

namespace pb = ::secondread::inference::v1;
using Clock = std::chrono::system_clock;
using Steady = std::chrono::steady_clock;

// Series numbers of the result series, high so they sort after the
// acquisition series in a viewer.
constexpr int kSrSeriesNumber = 9901;
constexpr int kScSeriesNumber = 9902;

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

// Stage: the model's applicability narrows the images further than the rule
// did. Returns indexes into sources.
std::vector<size_t> ApplicableSources(const pb::ModelDescription& model, const std::vector<SourceRow>& sources) {
  std::vector<size_t> applicable;
  const auto& a = model.applicability();
  for (size_t i = 0; i < sources.size(); ++i) {
    if (Applies(a.modalities(), sources[i].modality) && Applies(a.body_parts(), sources[i].body_part) &&
        Applies(a.sop_classes(), sources[i].sop_class_uid)) {
      applicable.push_back(i);
    }
  }
  return applicable;
}

// Stage: every frame of the applicable sources, decoded the way the model
// asks, each compressed one in a decoder process of its own
// (scp/pixels/pixel_decoder.h). A source that does not decode is left out and
// recorded in *skipped with why; none decoding fails the read. A request the
// model cannot read right is a configuration error, not something a retry
// fixes.
absl::StatusOr<std::vector<Item>> DecodeSources(const pb::ModelDescription& model,
                                                const std::vector<SourceRow>& sources,
                                                const std::vector<size_t>& applicable, int64_t read_id,
                                                const scp::DecoderLimits& limits,
                                                std::vector<SkippedImage>* skipped) {
  ASSIGN_OR_RETURN(scp::DecodeOptions decode_options, DecodeOptionsFor(model.input()));
  decode_options.decoder = limits;
  std::vector<Item> items;
  for (size_t idx : applicable) {
    auto decoded = scp::DecodeImageFile(sources[idx].path, decode_options);
    if (!decoded.ok()) {
      const std::string reason = scp::DecodeFailureReason(decoded.status());
      log::Warn("decode_failed", {{"read_id", read_id},
                                  {"instance_ref", sources[idx].instance_id},
                                  {"reason", reason},
                                  {"error", std::string(decoded.status().message())}});
      skipped->push_back({sources[idx].instance_id, reason});
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
  if (items.empty()) return absl::InvalidArgumentError("no source image could be decoded");
  return items;
}

// Stage: each item's result from the worker, in requests no larger than the
// model's batch limit. A lost claim cancels the call in flight and sends no
// further request.
std::optional<StageError> InferItems(InferenceClient& inference, const pb::ModelDescription& model,
                                     const ReadRow& read, const std::vector<SourceRow>& sources,
                                     std::vector<Item>& items, Lease& lease) {
  CancelToken cancel;
  lease.OnLost([&cancel] { cancel.Cancel(); });
  struct Detach {
    Lease& lease;
    ~Detach() { lease.OnLost(nullptr); }
  } detach{lease};
  const size_t max_batch = model.input().max_batch_size() > 0 ? model.input().max_batch_size() : 16;
  for (size_t begin = 0; begin < items.size(); begin += max_batch) {
    if (absl::Status held = lease.Check(); !held.ok()) return Transiently(held);
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
        return Permanently(encoded);
      }
      image->set_row_spacing_mm(item.row_spacing);
      image->set_column_spacing_mm(item.column_spacing);
      const SourceRow& s = sources[item.source];
      image->mutable_modality()->set_scheme("DCM");
      image->mutable_modality()->set_value(Trim(s.modality));
      image->mutable_body_part()->set_value(Trim(s.body_part));
    }
    auto response = inference.Infer(request, &cancel);
    if (!response.ok()) return ByCode(response.status());
    if (response->job_token() != token || response->results_size() != static_cast<int>(end - begin)) {
      return Transiently(absl::InternalError("inference response does not match its request"));
    }
    for (size_t k = begin; k < end; ++k) items[k].result = response->results(static_cast<int>(k - begin));
  }
  return std::nullopt;
}

// What the model found, in the SR's order: one source image per item.
struct ReadFindings {
  std::vector<scp::SourceImage> images;               // per item
  std::vector<scp::Finding> findings;                 // all, image_index into images
  std::vector<std::vector<scp::Finding>> per_item;    // each item's own, image_index 0
  bool flagged = false;
  double top_score = -1;
  std::string top_label;
};

// Stage: findings from the worker's results.
ReadFindings CollectFindings(const pb::ModelDescription& model, const std::vector<Item>& items,
                             const std::vector<SourceRow>& sources) {
  ReadFindings out;
  std::map<std::string, const pb::Label*> labels;
  for (const auto& l : model.labels()) labels[l.name()] = &l;
  out.per_item.resize(items.size());
  for (size_t k = 0; k < items.size(); ++k) {
    const Item& item = items[k];
    const SourceRow& s = sources[item.source];
    scp::SourceImage src;
    src.path = s.path;
    src.sop_class_uid = s.sop_class_uid;
    src.sop_instance_uid = s.sop_instance_uid;
    src.series_instance_uid = s.series_uid;
    src.frame = item.frame;
    src.rows = item.pixels.rows;
    src.columns = item.pixels.columns;
    out.images.push_back(src);
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
      out.flagged = out.flagged || f.above_threshold;
      if (f.score > out.top_score) {
        out.top_score = f.score;
        out.top_label = f.label;
      }
      out.findings.push_back(f);
      scp::Finding local = f;
      local.image_index = 0;
      out.per_item[k].push_back(local);
    }
  }
  return out;
}

// Stage: the SR and one Secondary Capture per source instance (its
// highest-scoring frame), named by the read's identity (scp/objects/derived_uid.h).
// What an earlier generation of the same study read already holds under the
// same UID is not built again: the SR when the images are the same, and the
// SC of every image it read. A changed SR names the one it replaces.
absl::StatusOr<std::vector<BuiltResult>> BuildObjects(const ReadRow& read, const pb::ModelDescription& model,
                                                      const std::vector<SourceRow>& sources,
                                                      const std::vector<Item>& items, const ReadFindings& found,
                                                      const std::vector<PriorObject>& prior,
                                                      const std::string& software_version,
                                                      const scp::DecoderLimits& decoder) {
  const std::string version = std::to_string(model.version());
  const scp::AlgorithmInfo algorithm = AlgorithmFor(model, software_version);
  const scp::ContentTime when{LocalNow("%Y%m%d"), LocalNow("%H%M%S")};
  const bool per_instance = read.trigger == "instance";
  const scp::ReadIdentity identity{read.study_uid, read.rule, model.name(), version,
                                   per_instance ? sources.front().sop_instance_uid : std::string()};
  std::set<std::string> held;  // UIDs earlier generations hold
  for (const auto& p : prior) held.insert(p.object.sop_instance_uid);

  std::vector<BuiltResult> built;
  // Reads of single instances put one SR and one SC per image into the same
  // two series. Numbering them by the source's place in the study's arrival
  // order keeps them apart (a source's own Instance Number does not: each CR
  // view is often instance 1 of its own series) and stable across re-reads.
  // A study-level read numbers its own.
  const int source_number = static_cast<int>(std::min<int64_t>(sources.front().arrival, 2147483647));
  {
    std::vector<scp::ImageKey> keys;
    for (const auto& image : found.images) keys.push_back({image.sop_instance_uid, image.frame});
    scp::ResultIdentity id;
    id.sop_instance_uid = scp::ReadSrUid(identity, keys);
    id.series_instance_uid = scp::ReadSeriesUid(identity, "sr");
    id.series_number = kSrSeriesNumber;
    id.instance_number = per_instance ? source_number : read.generation;
    if (!held.count(id.sop_instance_uid)) {
      // The newest earlier generation's SR is the one this report replaces.
      for (const auto& p : prior) {
        if (p.kind != "sr") continue;
        id.predecessors.push_back(p.object);
        break;
      }
      auto sr = scp::BuildStructuredReport(found.images, found.findings, algorithm, id, when);
      if (!sr.ok()) return sr.status();
      built.push_back({"sr", std::move(*sr), 0});
    }
  }
  // One Secondary Capture per source instance, of its highest-scoring frame.
  auto item_top = [&](size_t k) {
    double top = -1;
    for (const auto& f : found.per_item[k]) top = std::max(top, f.score);
    return top;
  };
  std::map<size_t, size_t> best_item;  // source -> item
  for (size_t k = 0; k < items.size(); ++k) {
    auto it = best_item.find(items[k].source);
    if (it == best_item.end()) {
      best_item[items[k].source] = k;
    } else if (item_top(k) > item_top(it->second)) {
      it->second = k;
    }
  }
  int sc_number = 0;
  for (const auto& [source, k] : best_item) {
    ++sc_number;
    const Item& item = items[k];
    scp::ResultIdentity id;
    id.sop_instance_uid = scp::ReadScUid(identity, {sources[source].sop_instance_uid, item.frame});
    id.series_instance_uid = scp::ReadSeriesUid(identity, "sc");
    id.series_number = kScSeriesNumber;
    id.instance_number = per_instance ? source_number : sc_number;
    if (held.count(id.sop_instance_uid)) continue;
    scp::Heatmap heatmap;
    const scp::Heatmap* heatmap_ptr = nullptr;
    double top = -1;
    for (const auto& f : found.per_item[k]) {
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
    auto sc = scp::BuildSecondaryCapture(found.images[k], heatmap_ptr, found.per_item[k], algorithm, id, when,
                                         decoder);
    if (!sc.ok()) return sc.status();
    built.push_back({"sc", std::move(*sc), sources[source].instance_id});
  }
  return built;
}

std::vector<FindingRow> FindingRows(const ReadFindings& found, const std::vector<Item>& items,
                                    const std::vector<SourceRow>& sources) {
  std::vector<FindingRow> rows;
  for (const auto& f : found.findings) {
    const Item& item = items[f.image_index];
    rows.push_back({sources[item.source].instance_id, static_cast<int>(item.frame), f});
  }
  return rows;
}

}  // namespace

Dispatcher::Dispatcher(DispatcherOptions options, DatabaseOptions db, PgPool* pool, JobQueue* queue,
                       InferenceClient* inference, const scp::Spool* spool, const ResultFiles* results,
                       FileLocator* locator, PipelineMetrics* metrics)
    : options_(std::move(options)),
      db_(std::move(db)),
      pool_(pool),
      queue_(queue),
      inference_(inference),
      spool_(spool),
      locator_(locator),
      results_(results),
      metrics_(metrics),
      store_(pool, queue,
             ReadStoreOptions{options_.destinations, options_.export_max_attempts, "image",
                              locator ? locator->self() : std::string()}) {}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  runner_ = JobRunner::Started({kDispatchQueue, options_.concurrency, options_.node_id, options_.idle_wait}, db_, queue_,
                               [this](Lease& lease) { Process(lease); });
}

void Dispatcher::Stop() {
  if (runner_) runner_->Stop();
}

void Dispatcher::Process(Lease& lease) {
  const Job& job = lease.job();
  const int64_t read_id = job.args.value("read_id", int64_t{0});
  std::vector<SkippedImage> skipped;  // images whose pixels did not decode
  auto count_skipped = [&] {
    if (!metrics_) return;
    for (const auto& skip : skipped) metrics_->ImagesSkipped(skip.reason).Increment();
  };
  auto fail = [&](const StageError& e) {
    std::string error(e.status.message());
    bool discarded = false;
    auto fenced = store_.Fail(job, read_id, error, e.permanent, &discarded, skipped);
    if (fenced.ok() && *fenced == Fence::kClaimLost) {
      log::Warn("read_claim_lost", {{"read_id", read_id}, {"job_id", job.id}, {"attempt", job.attempt}});
      return;
    }
    if (fenced.ok() && discarded) count_skipped();
    if (discarded && metrics_) metrics_->Reads("failed").Increment();
    log::Warn("read_failed", {{"read_id", read_id},
                              {"attempt", job.attempt},
                              {"final", discarded},
                              {"code", absl::StatusCodeToString(e.status.code())},
                              {"error", error}});
  };
  auto lost = [&](const char* stage) {
    log::Warn("read_claim_lost", {{"read_id", read_id}, {"job_id", job.id}, {"attempt", job.attempt},
                                  {"stage", stage}});
  };

  // Load.
  auto loaded = store_.Start(job, read_id);
  if (!loaded.ok()) return fail(Transiently(loaded.status()));
  if (loaded->fence == Fence::kClaimLost) return lost("load");
  if (loaded->fence == Fence::kFinished) return;
  if (!loaded->found) return fail(Permanently(absl::NotFoundError("read " + std::to_string(read_id) + " does not exist")));
  const ReadRow& read = loaded->read;
  std::vector<SourceRow>& sources = loaded->sources;
  if (metrics_) {
    double now_s = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    metrics_->Stage("queue").Observe(std::max(0.0, now_s - read.triggered_at));
  }

  // Describe the model and select the images it applies to.
  auto model = DescribeModel(*inference_, read);
  if (!model.ok()) return fail(ByCode(model.status()));
  const std::vector<size_t> applicable = ApplicableSources(*model, sources);
  if (applicable.empty()) {
    auto fenced = store_.FinishEmpty(job, read_id, "not_applicable", model->version());
    if (!fenced.ok()) return fail(Transiently(fenced.status()));
    if (*fenced == Fence::kClaimLost) return lost("finish");
    if (*fenced == Fence::kApplied && metrics_) metrics_->Reads("not_applicable").Increment();
    log::Info("read_finished", {{"read_id", read_id}, {"state", "not_applicable"}, {"images", 0}});
    return;
  }

  // Locate: instances another node replica holds are fetched from it.
  if (!lease.Check().ok()) return lost("locate");
  StagingDir staging(spool_->options().dir + "/fetch");
  if (absl::Status located = LocateSources(*spool_, locator_, staging, sources, &applicable,
                                           [&lease] { return !lease.lost(); });
      !located.ok()) {
    if (lease.lost()) return lost("locate");
    return fail(Transiently(located));
  }

  // Decode.
  if (!lease.Check().ok()) return lost("decode");
  const auto t_decode = Steady::now();
  auto items = DecodeSources(*model, sources, applicable, read_id, options_.decoder, &skipped);
  if (!items.ok()) return fail(Permanently(items.status()));
  const double decode_ms = Milliseconds(Steady::now() - t_decode);

  // Infer.
  if (!lease.Check().ok()) return lost("infer");
  const auto t_infer = Steady::now();
  if (auto failed = InferItems(*inference_, *model, read, sources, *items, lease)) {
    if (lease.lost()) return lost("infer");
    return fail(*failed);
  }
  const double inference_ms = Milliseconds(Steady::now() - t_infer);

  // Findings and result objects.
  if (!lease.Check().ok()) return lost("results");
  const auto t_results = Steady::now();
  const ReadFindings found = CollectFindings(*model, *items, sources);
  auto built = BuildObjects(read, *model, sources, *items, found, loaded->prior, options_.software_version,
                            options_.decoder);
  if (!built.ok()) return fail(Permanently(built.status()));
  if (!lease.Check().ok()) return lost("write");
  auto objects = WriteObjects(*results_, job, *built);
  if (!objects.ok()) return fail(Transiently(objects.status()));
  const double results_ms = Milliseconds(Steady::now() - t_results);

  // Commit everything the read produced, once, under the claim.
  ReadOutcome outcome;
  outcome.flagged = found.flagged;
  outcome.served_version = model->version();
  outcome.images = static_cast<int>(items->size());
  outcome.decode_ms = decode_ms;
  outcome.inference_ms = inference_ms;
  outcome.results_ms = results_ms;
  outcome.findings = FindingRows(found, *items, sources);
  outcome.objects = *objects;
  outcome.top_label = found.top_label;
  outcome.top_score = found.top_score;
  outcome.skipped = skipped;
  auto fenced = store_.Commit(job, read, outcome);
  if (!fenced.ok() || *fenced != Fence::kApplied) {
    // Nothing refers to this attempt's files.
    for (const auto& o : *objects) results_->Remove(o.file_name);
  }
  if (!fenced.ok()) return fail(Transiently(fenced.status()));
  if (*fenced == Fence::kClaimLost) return lost("commit");
  if (*fenced == Fence::kFinished) return;
  count_skipped();
  if (metrics_) {
    metrics_->Reads("done").Increment();
    if (found.flagged) metrics_->flagged_reads.Increment();
    metrics_->Stage("decode").Observe(decode_ms / 1000);
    metrics_->Stage("inference").Observe(inference_ms / 1000);
    metrics_->Stage("results").Observe(results_ms / 1000);
  }
  log::Info("read_finished", {{"read_id", read_id},
                              {"state", "done"},
                              {"model", model->name()},
                              {"model_version", model->version()},
                              {"generation", read.generation},
                              {"images", items->size()},
                              {"objects", objects->size()},
                              {"flagged", found.flagged},
                              {"decode_ms", decode_ms},
                              {"inference_ms", inference_ms},
                              {"results_ms", results_ms}});
}

}  // namespace secondread::worklist
