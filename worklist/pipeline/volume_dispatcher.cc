#include "worklist/pipeline/volume_dispatcher.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "common/log.h"
#include "scp/objects/derived_uid.h"
#include "scp/objects/segmentation.h"
#include "scp/objects/volumetric_results.h"
#include "scp/pixels/series_reader.h"
#include "worklist/pipeline/read_stages.h"

namespace secondread::worklist {
namespace {

namespace pb = ::secondread::inference::v1;
using Steady = std::chrono::steady_clock;

constexpr int kSrSeriesNumber = 9901;
constexpr int kScSeriesNumber = 9902;

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

// Stage: the read's series as one volume. A series that is not a consistent
// volume is refused with its reason, for good: a retry reads the same files.
// A series that splits into several stacks (echoes, time points) is refused
// too, since one SEG cannot lie on two grids; a routing rule picks series.
// Unevenly spaced slices are resampled onto a uniform grid only when the
// read's rule says so (series.resample); otherwise the planner refuses them.
absl::StatusOr<scp::Volume> Assemble(const std::vector<SourceRow>& sources,
                                     scp::VolumeOptions options, bool resample, scp::SeriesReadStats* stats,
                                     std::optional<StageError>* error) {
  std::vector<std::string> paths;
  paths.reserve(sources.size());
  for (const auto& s : sources) paths.push_back(s.path);
  options.allow_resample = resample;
  auto volumes = scp::ReadSeriesVolumes(paths, options, stats);
  if (!volumes.ok()) {
    const bool refused = !scp::RefusalCode(volumes.status()).empty() ||
                         volumes.status().code() == absl::StatusCode::kInvalidArgument;
    *error = refused ? Permanently(volumes.status()) : Transiently(volumes.status());
    return volumes.status();
  }
  if (volumes->size() != 1) {
    absl::Status st = scp::VolumeRefusal(
        "several_stacks", "The series holds " + std::to_string(volumes->size()) +
                              " stacks (for example echoes or time points); a volume read needs exactly one.");
    *error = Permanently(st);
    return st;
  }
  return std::move(volumes->front());
}

// Stage: the volume to the worker and its label map back, on the source grid.
absl::StatusOr<VolumeAnswer> InferOnWorker(InferenceClient& inference, const pb::ModelDescription& model,
                                           const ReadRow& read, const scp::Volume& volume,
                                           const std::vector<SourceRow>& sources, Lease& lease,
                                           std::optional<StageError>* error) {
  CancelToken cancel;
  lease.OnLost([&cancel] { cancel.Cancel(); });
  struct Detach {
    Lease& lease;
    ~Detach() { lease.OnLost(nullptr); }
  } detach{lease};

  VolumeCall call;
  call.model = model.name();
  call.version = model.version();
  call.priority = read.priority == 0 ? pb::PRIORITY_STAT : pb::PRIORITY_ROUTINE;
  call.job_token = RandomToken();
  call.shape = {volume.depth, volume.rows, volume.columns};
  call.voxels = volume.voxels.data();
  call.spacing_mm = volume.spacing_mm;
  for (int i = 0; i < 3; ++i) {
    call.direction[i] = volume.row_direction[i];
    call.direction[3 + i] = volume.column_direction[i];
    call.direction[6 + i] = volume.normal[i];
  }
  call.modality.set_scheme("DCM");
  call.modality.set_value(volume.modality);
  if (!sources.empty()) call.body_part.set_value(Trimmed(sources.front().body_part));

  auto answer = inference.InferVolume(call, &cancel);
  if (!answer.ok()) {
    *error = ByCode(answer.status());
    return answer.status();
  }
  const auto& h = answer->header;
  const uint64_t voxels = uint64_t{volume.depth} * volume.rows * volume.columns;
  const bool on_grid = h.shape_size() == 3 && h.shape(0) == volume.depth && h.shape(1) == volume.rows &&
                       h.shape(2) == volume.columns;
  if (h.job_token() != call.job_token) {
    absl::Status st = absl::InternalError("volume response does not match its request");
    *error = Transiently(st);
    return st;
  }
  if (!on_grid || answer->maps.empty() || h.maps(0).kind() != pb::VOLUME_MAP_KIND_LABEL_MAP ||
      answer->maps[0].size() != voxels) {
    // A model that does not resample back cannot be turned into a SEG on the
    // source slices; that is its configuration, not a passing fault.
    absl::Status st = absl::FailedPreconditionError("model " + model.name() +
                                                     " returned no label map on the source grid");
    *error = Permanently(st);
    return st;
  }
  return answer;
}

// What each of the model's labels is as a segment: its codes from the
// model, else a lesion.
std::vector<scp::SegmentDefinition> Segments(const pb::ModelDescription& model) {
  std::vector<scp::SegmentDefinition> segments;
  for (const auto& l : model.labels()) {
    scp::SegmentDefinition d = scp::AbnormalStructureSegment(l.name(), scp::segmentation_codes::kLesion);
    if (!l.segment_category().value().empty()) {
      d.category = {l.segment_category().scheme(), l.segment_category().value(), l.segment_category().meaning()};
    }
    if (!l.segment_type().value().empty()) {
      d.type = {l.segment_type().scheme(), l.segment_type().value(), l.segment_type().meaning()};
    }
    segments.push_back(std::move(d));
  }
  return segments;
}

struct VolumeResults {
  std::vector<BuiltResult> built;
  std::vector<FindingRow> findings;
  bool flagged = false;
  std::string top_label;
  double top_score = -1;
  size_t lesions = 0;
};

// Stage: lesions measured on the label map, and the SEG, the TID 1500 report
// and one key-slice capture per slice that is some lesion's key slice.
absl::StatusOr<VolumeResults> BuildVolumeObjects(const ReadRow& read, const pb::ModelDescription& model,
                                                 scp::Volume& volume, const std::vector<SourceRow>& sources,
                                                 VolumeAnswer& answer,
                                                 const std::vector<PriorObject>& prior,
                                                 const std::string& software_version) {
  const scp::AlgorithmInfo algorithm = AlgorithmFor(model, software_version);
  const scp::ContentTime when{LocalNow("%Y%m%d"), LocalNow("%H%M%S")};
  const scp::ReadIdentity identity{read.study_uid, read.rule, model.name(), std::to_string(model.version()), ""};
  std::set<std::string> held;
  for (const auto& p : prior) held.insert(p.object.sop_instance_uid);

  std::vector<scp::SourceImage> series;
  std::map<std::string, const SourceRow*> by_uid;
  for (const auto& s : sources) {
    scp::SourceImage img;
    img.path = s.path;
    img.sop_class_uid = s.sop_class_uid;
    img.sop_instance_uid = s.sop_instance_uid;
    img.series_instance_uid = s.series_uid;
    img.rows = volume.rows;
    img.columns = volume.columns;
    series.push_back(std::move(img));
    by_uid[s.sop_instance_uid] = &s;
  }

  scp::SegmentationResult result;
  result.segments = Segments(model);
  result.label_map = std::move(answer.maps[0]);
  for (uint8_t& v : result.label_map) {
    if (v > result.segments.size()) v = 0;  // a label the model did not declare is not a segment
  }
  scp::LesionOptions lesion_options;
  std::map<std::string, const pb::LabelSummary*> summary;
  for (const auto& l : answer.header.labels()) summary[l.label()] = &l;
  for (const auto& l : model.labels()) {
    auto it = summary.find(l.name());
    lesion_options.segment_probabilities.push_back(it == summary.end() ? 0.0 : it->second->max_probability());
  }
  // Measured on the grid the model read: uniform, so voxel volumes and
  // centroids are right even where the source slices are not.
  ASSIGN_OR_RETURN(std::vector<scp::LesionMeasurement> lesions, scp::MeasureLesions(volume, result, lesion_options));

  // Everything written lies on the source slices, the images the PACS holds:
  // a resampled read carries its label map and key slices back onto them.
  std::optional<scp::Volume> source_slices;
  if (volume.resampled) {
    ASSIGN_OR_RETURN(result.label_map, scp::LabelMapOnSourceSlices(volume, result.label_map));
    RETURN_IF_ERROR(scp::KeySlicesOnSourceSlices(volume, lesions));
    ASSIGN_OR_RETURN(source_slices, scp::TakeSourceSlices(volume));
  }
  const scp::Volume& slices = source_slices ? *source_slices : volume;

  VolumeResults out;
  out.lesions = lesions.size();
  // One finding per label: its highest probability, placed on the key slice
  // of its largest lesion (the first slice when it has none).
  for (int k = 0; k < model.labels_size(); ++k) {
    const auto& l = model.labels(k);
    scp::Finding f;
    f.label = l.name();
    f.code = {l.code().scheme(), l.code().value(), l.code().meaning()};
    f.score = lesion_options.segment_probabilities[static_cast<size_t>(k)];
    f.threshold = l.threshold();
    const scp::LesionMeasurement* largest = nullptr;
    for (const auto& m : lesions) {
      if (m.segment_number == k + 1 && (!largest || m.voxel_count > largest->voxel_count)) largest = &m;
    }
    f.above_threshold = f.score >= f.threshold && largest != nullptr;
    const scp::SliceSource& where = largest ? largest->key_source : slices.sources.front();
    auto src = by_uid.find(where.sop_instance_uid);
    if (src == by_uid.end()) return absl::InternalError("a volume slice has no source row");
    if (f.above_threshold) out.flagged = true;
    if (f.score > out.top_score) {
      out.top_score = f.score;
      out.top_label = f.label;
    }
    out.findings.push_back({src->second->instance_id, static_cast<int>(where.frame_number), f});
  }

  // The SEG, then the report that points at its segments.
  scp::ResultIdentity seg_id;
  seg_id.sop_instance_uid = scp::ReadSegUid(identity, slices);
  seg_id.series_instance_uid = scp::ReadSeriesUid(identity, "seg");
  seg_id.series_number = scp::kSegmentationSeriesNumber;
  seg_id.instance_number = read.generation;
  ASSIGN_OR_RETURN(scp::BuiltObject seg, scp::BuildSegmentation(slices, series, result, algorithm, seg_id, when));
  scp::SegmentationReference seg_ref{seg.sop_class_uid, seg.sop_instance_uid, seg.series_instance_uid,
                                     result.segments};

  std::vector<scp::ImageKey> keys;
  for (const auto& s : slices.sources) keys.push_back({s.sop_instance_uid, s.frame_number});
  scp::ResultIdentity sr_id;
  sr_id.sop_instance_uid = scp::ReadSrUid(identity, keys);
  sr_id.series_instance_uid = scp::ReadSeriesUid(identity, "sr");
  sr_id.series_number = kSrSeriesNumber;
  sr_id.instance_number = read.generation;
  if (!held.count(seg.sop_instance_uid)) out.built.push_back({"seg", std::move(seg), 0});
  if (!held.count(sr_id.sop_instance_uid)) {
    for (const auto& p : prior) {
      if (p.kind != "sr") continue;
      sr_id.predecessors.push_back(p.object);
      break;
    }
    ASSIGN_OR_RETURN(scp::BuiltObject sr, scp::BuildVolumetricReport(slices, series, lesions, seg_ref, algorithm,
                                                                     sr_id, when));
    out.built.push_back({"sr", std::move(sr), 0});
  }

  std::set<uint32_t> key_slices;
  for (const auto& m : lesions) key_slices.insert(m.key_slice);
  int sc_number = 0;
  for (uint32_t z : key_slices) {
    ++sc_number;
    const scp::SliceSource& where = slices.sources[z];
    scp::ResultIdentity sc_id;
    sc_id.sop_instance_uid = scp::ReadScUid(identity, {where.sop_instance_uid, where.frame_number});
    sc_id.series_instance_uid = scp::ReadSeriesUid(identity, "sc");
    sc_id.series_number = kScSeriesNumber;
    sc_id.instance_number = sc_number;
    if (held.count(sc_id.sop_instance_uid)) continue;
    ASSIGN_OR_RETURN(scp::BuiltObject sc, scp::BuildKeySliceCapture(slices, series, result, lesions, z, algorithm,
                                                                    sc_id, when, lesion_options));
    auto src = by_uid.find(where.sop_instance_uid);
    out.built.push_back({"sc", std::move(sc), src == by_uid.end() ? 0 : src->second->instance_id});
  }
  return out;
}

}  // namespace

VolumeDispatcher::VolumeDispatcher(VolumeDispatcherOptions options, DatabaseOptions db, PgPool* pool,
                                   JobQueue* queue, InferenceClient* inference, const scp::Spool* spool,
                                   const ResultFiles* results, FileLocator* locator, PipelineMetrics* metrics)
    : options_(std::move(options)),
      db_(std::move(db)),
      pool_(pool),
      queue_(queue),
      inference_(inference),
      spool_(spool),
      locator_(locator),
      results_(results),
      metrics_(metrics),
      store_(pool, queue, ReadStoreOptions{options_.destinations, options_.export_max_attempts, "volume",
                                             locator ? locator->self() : std::string()}) {}

VolumeDispatcher::~VolumeDispatcher() { Stop(); }

void VolumeDispatcher::Start() {
  runner_ = JobRunner::Started({kVolumeQueue, options_.concurrency, options_.node_id, options_.idle_wait}, db_, queue_,
                               [this](Lease& lease) { Process(lease); });
}

void VolumeDispatcher::Stop() {
  if (runner_) runner_->Stop();
}

void VolumeDispatcher::Process(Lease& lease) {
  const Job& job = lease.job();
  const int64_t read_id = job.args.value("read_id", int64_t{0});
  auto fail = [&](const StageError& e) {
    std::string error(e.status.message());
    const std::string refusal = scp::RefusalCode(e.status);
    bool discarded = false;
    auto fenced = store_.Fail(job, read_id, error, e.permanent, &discarded);
    if (fenced.ok() && *fenced == Fence::kClaimLost) {
      log::Warn("read_claim_lost", {{"read_id", read_id}, {"job_id", job.id}, {"attempt", job.attempt}});
      return;
    }
    if (discarded && metrics_) metrics_->Reads("failed").Increment();
    // The sentence may name the series' geometry, never the patient; the
    // refusal code is what an operator counts.
    log::Warn("read_failed", {{"read_id", read_id},
                              {"input", "volume"},
                              {"attempt", job.attempt},
                              {"final", discarded},
                              {"code", absl::StatusCodeToString(e.status.code())},
                              {"refusal", refusal},
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
  if (!loaded->found) {
    return fail(Permanently(absl::NotFoundError("read " + std::to_string(read_id) + " does not exist")));
  }
  const ReadRow& read = loaded->read;
  std::vector<SourceRow>& sources = loaded->sources;
  if (sources.empty()) return fail(Permanently(absl::FailedPreconditionError("the volume read has no images")));

  // Describe the model: it must read volumes.
  auto model = DescribeModel(*inference_, read);
  if (!model.ok()) return fail(ByCode(model.status()));
  if (model->input().kind() != pb::INPUT_KIND_VOLUME) {
    return fail(Permanently(absl::FailedPreconditionError("model " + model->name() + " does not read volumes")));
  }

  // Locate: instances another node replica holds are fetched from it.
  if (!lease.Check().ok()) return lost("locate");
  StagingDir staging(spool_->options().dir + "/fetch");
  if (absl::Status located =
          LocateSources(*spool_, locator_, staging, sources, nullptr, [&lease] { return !lease.lost(); });
      !located.ok()) {
    if (lease.lost()) return lost("locate");
    return fail(Transiently(located));
  }

  // Assemble.
  if (!lease.Check().ok()) return lost("assemble");
  std::optional<StageError> error;
  const auto t_assemble = Steady::now();
  scp::SeriesReadStats read_stats;
  auto volume = Assemble(sources, options_.volume, read.resample, &read_stats, &error);
  if (!volume.ok()) return fail(*error);
  const double assemble_ms = Milliseconds(Steady::now() - t_assemble);

  // Infer.
  if (!lease.Check().ok()) return lost("infer");
  const auto t_infer = Steady::now();
  auto answer = InferOnWorker(*inference_, *model, read, *volume, sources, lease, &error);
  if (!answer.ok()) {
    if (lease.lost()) return lost("infer");
    return fail(*error);
  }
  const double inference_ms = Milliseconds(Steady::now() - t_infer);

  // Measurements and objects.
  if (!lease.Check().ok()) return lost("results");
  const auto t_results = Steady::now();
  auto built = BuildVolumeObjects(read, *model, *volume, sources, *answer, loaded->prior,
                                  options_.software_version);
  if (!built.ok()) return fail(Permanently(built.status()));
  if (!lease.Check().ok()) return lost("write");
  auto objects = WriteObjects(*results_, job, built->built);
  if (!objects.ok()) return fail(Transiently(objects.status()));
  const double results_ms = Milliseconds(Steady::now() - t_results);
  const VolumeStageTimes stages = SplitVolumeStages(assemble_ms, read_stats, inference_ms, *answer, results_ms);

  ReadOutcome outcome;
  outcome.flagged = built->flagged;
  outcome.served_version = model->version();
  outcome.images = static_cast<int>(sources.size());
  outcome.decode_ms = assemble_ms;
  outcome.inference_ms = inference_ms;
  outcome.results_ms = results_ms;
  outcome.findings = built->findings;
  outcome.objects = *objects;
  outcome.top_label = built->top_label;
  outcome.top_score = built->top_score;
  auto fenced = store_.Commit(job, read, outcome);
  if (!fenced.ok() || *fenced != Fence::kApplied) {
    for (const auto& o : *objects) results_->Remove(o.file_name);
  }
  if (!fenced.ok()) return fail(Transiently(fenced.status()));
  if (*fenced == Fence::kClaimLost) return lost("commit");
  if (*fenced == Fence::kFinished) return;
  if (metrics_) {
    metrics_->Reads("done").Increment();
    if (built->flagged) metrics_->flagged_reads.Increment();
    metrics_->Stage("assembly").Observe(assemble_ms / 1000);
    metrics_->Stage("inference").Observe(inference_ms / 1000);
    metrics_->Stage("results").Observe(results_ms / 1000);
    ObserveVolumeStages(*metrics_, stages);
  }
  log::Info("read_finished", {{"read_id", read_id},
                              {"state", "done"},
                              {"input", "volume"},
                              {"model", model->name()},
                              {"model_version", model->version()},
                              {"slices", volume->depth},
                              {"resampled", volume->resampled},
                              {"lesions", built->lesions},
                              {"objects", objects->size()},
                              {"flagged", built->flagged},
                              {"assembly_ms", assemble_ms},
                              {"inference_ms", inference_ms},
                              {"results_ms", results_ms},
                              {"decode_ms", stages.decode},
                              {"assemble_ms", stages.assemble},
                              {"transfer_ms", stages.transfer},
                              {"sent_bytes", stages.sent_bytes},
                              {"received_bytes", stages.received_bytes},
                              {"resample_ms", stages.resample},
                              {"worker_inference_ms", stages.inference},
                              {"call_other_ms", stages.call_other}});
}

}  // namespace secondread::worklist
