#include "inference/service.h"

#include <algorithm>
#include <chrono>
#include <new>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace secondread::inference {

namespace {

constexpr char kUnknownModel[] = "_unknown";

const char* CodeName(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return "OK";
    case absl::StatusCode::kCancelled: return "CANCELLED";
    case absl::StatusCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case absl::StatusCode::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case absl::StatusCode::kNotFound: return "NOT_FOUND";
    case absl::StatusCode::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case absl::StatusCode::kUnavailable: return "UNAVAILABLE";
    case absl::StatusCode::kInternal: return "INTERNAL";
    default: return "OTHER";
  }
}

absl::StatusOr<DType> DTypeFromProto(pb::DataType t) {
  switch (t) {
    case pb::DATA_TYPE_UINT8: return DType::kUint8;
    case pb::DATA_TYPE_UINT16: return DType::kUint16;
    case pb::DATA_TYPE_INT16: return DType::kInt16;
    case pb::DATA_TYPE_FLOAT16: return DType::kFloat16;
    case pb::DATA_TYPE_FLOAT32: return DType::kFloat32;
    default: return absl::InvalidArgumentError("image dtype is missing or unknown");
  }
}

pb::DataType DTypeToProto(DType t) {
  switch (t) {
    case DType::kUint8: return pb::DATA_TYPE_UINT8;
    case DType::kUint16: return pb::DATA_TYPE_UINT16;
    case DType::kInt16: return pb::DATA_TYPE_INT16;
    case DType::kFloat16: return pb::DATA_TYPE_FLOAT16;
    case DType::kFloat32: return pb::DATA_TYPE_FLOAT32;
  }
  return pb::DATA_TYPE_UNSPECIFIED;
}

pb::ModelState StateToProto(VersionState s) {
  switch (s) {
    case VersionState::kReady: return pb::MODEL_STATE_READY;
    case VersionState::kUnavailable: return pb::MODEL_STATE_UNAVAILABLE;
    case VersionState::kLoading: return pb::MODEL_STATE_LOADING;
  }
  return pb::MODEL_STATE_UNSPECIFIED;
}

// The earlier of the request's own deadline and the call's, on the steady
// clock the batcher uses.
Clock::time_point JobDeadline(const grpc::CallbackServerContext* ctx, const google::protobuf::Timestamp* wanted_ts) {
  const auto sys_now = std::chrono::system_clock::now();
  const auto steady_now = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();
  const auto call = ctx->deadline();
  if (call != std::chrono::system_clock::time_point::max()) {
    deadline = steady_now + std::chrono::duration_cast<Clock::duration>(call - sys_now);
  }
  if (wanted_ts) {
    const auto wanted = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::seconds(wanted_ts->seconds()) +
                                                                        std::chrono::nanoseconds(wanted_ts->nanos())));
    deadline = std::min(deadline, steady_now + std::chrono::duration_cast<Clock::duration>(wanted - sys_now));
  }
  return deadline;
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::StatusOr<ImageView> ImageFromProto(const pb::Image& image) {
  ImageView v;
  ASSIGN_OR_RETURN(v.dtype, DTypeFromProto(image.dtype()));
  for (uint32_t d : image.shape()) v.shape.push_back(d);
  v.data = image.data();
  switch (image.photometric()) {
    case pb::PHOTOMETRIC_MONOCHROME1: v.photometric = PhotometricKind::kMonochrome1; break;
    case pb::PHOTOMETRIC_RGB: v.photometric = PhotometricKind::kRgb; break;
    default: v.photometric = PhotometricKind::kMonochrome2; break;
  }
  return v;
}

void ModelStatusToProto(const ModelStatus& status, pb::ModelSummary* out) {
  out->set_name(status.name);
  for (const auto& v : status.versions) {
    auto* pv = out->add_versions();
    pv->set_version(v.version);
    pv->set_state(StateToProto(v.state));
    pv->set_reason(v.reason);
  }
}

pb::Code CodeToProto(const CodedConcept& c) {
  pb::Code out;
  out.set_scheme(c.scheme);
  out.set_value(c.value);
  out.set_meaning(c.meaning);
  return out;
}

void VolumeSpecToProto(const ModelConfig& c, uint64_t max_volume_bytes, pb::VolumeInputSpec* out) {
  const VolumeConfig& v = c.volume;
  out->set_axes(v.axes);
  out->set_orientation(v.orientation == Orientation::kRas ? pb::PATIENT_ORIENTATION_RAS : pb::PATIENT_ORIENTATION_LPS);
  for (double s : v.spacing) out->add_spacing_mm(s);
  out->set_interpolation(std::string(InterpolationName(v.interpolation)));
  switch (v.intensity) {
    case Intensity::kNone: out->set_intensity(pb::VOLUME_INTENSITY_UNSPECIFIED); break;
    case Intensity::kWindow: out->set_intensity(pb::VOLUME_INTENSITY_WINDOW); break;
    case Intensity::kRange: out->set_intensity(pb::VOLUME_INTENSITY_RANGE); break;
    case Intensity::kZScore: out->set_intensity(pb::VOLUME_INTENSITY_ZSCORE); break;
    case Intensity::kSuvRange: out->set_intensity(pb::VOLUME_INTENSITY_SUV_RANGE); break;
  }
  out->set_window_center(v.window_center);
  out->set_window_width(v.window_width);
  out->set_low(v.low);
  out->set_high(v.high);
  for (int64_t r : v.roi) out->add_roi(static_cast<uint32_t>(r));
  out->set_overlap(v.overlap);
  out->set_output(v.output == VolumeOutputKind::kProbabilities ? pb::VOLUME_OUTPUT_KIND_PROBABILITIES
                                                               : pb::VOLUME_OUTPUT_KIND_LABEL_MAP);
  out->set_resample_back(v.resample_back);
  out->set_max_volume_bytes(max_volume_bytes);
}

void DescribeToProto(const LoadedVersion& model, pb::ModelDescription* out, uint64_t max_volume_bytes) {
  const ModelConfig& c = model.config;
  out->set_name(c.name);
  out->set_version(model.version);
  out->set_state(pb::MODEL_STATE_READY);
  out->set_description(c.description);
  out->set_intended_use(c.intended_use);
  auto* in = out->mutable_input();
  in->set_channels(static_cast<uint32_t>(c.input.channels));
  in->set_height(static_cast<uint32_t>(c.input.height));
  in->set_width(static_cast<uint32_t>(c.input.width));
  for (DType d : c.input.accepted_dtypes) in->add_accepted_dtypes(DTypeToProto(d));
  in->set_scaling(std::string(ScalingName(c.input.scaling)));
  for (double m : c.input.mean) in->add_mean(static_cast<float>(m));
  for (double s : c.input.std) in->add_std(static_cast<float>(s));
  in->set_window_center(c.input.window_center);
  in->set_window_width(c.input.window_width);
  in->set_pixel_values(std::string(PixelValuesName(c.input.values)));
  if (c.input.scaling == Scaling::kRange) {
    in->set_range_low(c.input.range_low);
    in->set_range_high(c.input.range_high);
  }
  in->set_max_batch_size(static_cast<uint32_t>(c.batching.max_batch_size));
  const bool volume = c.input.kind == InputKind::kVolume;
  in->set_kind(volume ? pb::INPUT_KIND_VOLUME : pb::INPUT_KIND_IMAGE);
  if (volume) VolumeSpecToProto(c, max_volume_bytes, in->mutable_volume());
  for (const auto& l : c.output.labels) {
    auto* pl = out->add_labels();
    pl->set_name(l.name);
    *pl->mutable_code() = CodeToProto(l.code);
    pl->set_threshold(static_cast<float>(l.threshold));
    if (volume) {
      *pl->mutable_segment_category() = CodeToProto(l.category);
      *pl->mutable_segment_type() = CodeToProto(l.type);
    }
  }
  out->set_produces_heatmap(c.output.heatmap);
  auto* app = out->mutable_applicability();
  for (const auto& m : c.modalities) app->add_modalities(m);
  for (const auto& b : c.body_parts) app->add_body_parts(b);
  for (const auto& s : c.sop_classes) app->add_sop_classes(s);
  out->set_precision(std::string(PrecisionName(c.precision)));
  for (const auto& d : model.devices) out->add_devices(d);
}

InferenceService::InferenceService(ServiceOptions options, ModelRepository* repository, WorkerMetrics* metrics)
    : options_(options), repository_(repository), metrics_(metrics) {}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* ctx, const pb::ListModelsRequest*,
                                                       pb::ListModelsResponse* resp) {
  for (const auto& m : repository_->List()) ModelStatusToProto(m, resp->add_models());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::DescribeModel(grpc::CallbackServerContext* ctx,
                                                          const pb::DescribeModelRequest* req,
                                                          pb::ModelDescription* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto model = repository_->Get(req->model_name(), req->model_version());
  if (model.ok()) {
    DescribeToProto(**model, resp, options_.max_volume_bytes);
    reactor->Finish(grpc::Status::OK);
  } else if (absl::IsUnavailable(model.status())) {
    // An unavailable model is still described, so an engineer sees why.
    resp->set_name(req->model_name());
    resp->set_state(pb::MODEL_STATE_UNAVAILABLE);
    resp->set_reason(std::string(model.status().message()));
    reactor->Finish(grpc::Status::OK);
  } else {
    reactor->Finish(ToGrpc(model.status()));
  }
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Infer(grpc::CallbackServerContext* ctx, const pb::InferRequest* req,
                                                  pb::InferResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto refuse = [&](const std::string& model, const std::string& version, const absl::Status& s) {
    if (metrics_) metrics_->Request(model, version, CodeName(s.code()));
    log::Warn("infer_refused", {{"model", model}, {"code", CodeName(s.code())}, {"reason", std::string(s.message())}});
    reactor->Finish(ToGrpc(s));
    return reactor;
  };

  auto found = repository_->Get(req->model_name(), req->model_version());
  if (!found.ok()) {
    const bool known = !absl::IsNotFound(found.status()) && IsValidModelName(req->model_name());
    return refuse(known ? req->model_name() : kUnknownModel, "", found.status());
  }
  std::shared_ptr<LoadedVersion> model = std::move(*found);
  const ModelConfig* config = &model->config;
  const std::string version = std::to_string(model->version);
  if (!model->batcher) {
    return refuse(config->name, version,
                  absl::FailedPreconditionError("model '" + config->name + "' takes volumes; use InferVolume"));
  }

  if (req->images_size() == 0) return refuse(config->name, version, absl::InvalidArgumentError("no images"));
  auto job = std::make_unique<InferJob>();
  job->images.reserve(static_cast<size_t>(req->images_size()));
  for (int i = 0; i < req->images_size(); ++i) {
    auto view = ImageFromProto(req->images(i));
    absl::Status s = view.ok() ? ValidateImage(*config, *view, options_.max_image_samples) : view.status();
    if (!s.ok()) {
      return refuse(config->name, version, absl::InvalidArgumentError(absl::StrCat("image ", i, ": ", s.message())));
    }
    job->images.push_back(std::move(*view));
  }
  const int levels = config->batching.priority_levels;
  job->priority = (req->priority() == pb::PRIORITY_STAT || levels == 1) ? 0 : 1;
  job->deadline = JobDeadline(ctx, req->has_deadline() ? &req->deadline() : nullptr);
  job->cancelled = [ctx] { return ctx->IsCancelled(); };
  // The callback holds the config by pointer, never the model itself: the
  // batcher it runs on is owned by the model, and a batcher thread must not
  // destroy its own batcher. The batcher drains before the config goes.
  job->done = [this, reactor, req, resp, config, version](absl::StatusOr<JobResult> r) {
    if (!r.ok()) {
      if (metrics_) metrics_->Request(config->name, version, CodeName(r.status().code()));
      if (!absl::IsCancelled(r.status())) {
        log::Warn("infer_failed", {{"model", config->name},
                                   {"code", CodeName(r.status().code())},
                                   {"reason", std::string(r.status().message())}});
      }
      reactor->Finish(ToGrpc(r.status()));
      return;
    }
    const int64_t v = std::stoll(version);
    resp->set_job_token(req->job_token());
    resp->set_model_name(config->name);
    resp->set_model_version(v);
    for (auto& out : r->outputs) {
      auto* ir = resp->add_results();
      ir->set_model_name(config->name);
      ir->set_model_version(v);
      const auto& labels = config->output.labels;
      for (size_t l = 0; l < labels.size() && l < out.scores.size(); ++l) {
        auto* ls = ir->add_scores();
        ls->set_label(labels[l].name);
        ls->set_score(out.scores[l]);
        ls->set_threshold(static_cast<float>(labels[l].threshold));
        ls->set_above_threshold(out.scores[l] >= labels[l].threshold);
      }
      for (size_t l = 0; l < out.heatmaps.size() && l < labels.size(); ++l) {
        auto* hm = ir->add_heatmaps();
        hm->set_label(labels[l].name);
        hm->set_height(static_cast<uint32_t>(out.heatmap_height));
        hm->set_width(static_cast<uint32_t>(out.heatmap_width));
        hm->mutable_values()->Add(out.heatmaps[l].begin(), out.heatmaps[l].end());
      }
    }
    resp->mutable_timing()->set_queue_us(r->queue_us);
    resp->mutable_timing()->set_compute_us(r->compute_us);
    resp->mutable_timing()->set_batch_size(static_cast<uint32_t>(r->batch_size));
    if (metrics_) {
      metrics_->Request(config->name, version, "OK");
      metrics_->Images(config->name, version, static_cast<double>(r->outputs.size()));
    }
    reactor->Finish(grpc::Status::OK);
  };
  absl::Status queued = model->batcher->Enqueue(std::move(job));
  if (!queued.ok()) return refuse(config->name, version, queued);
  return reactor;
}

absl::StatusOr<VolumeView> VolumeHeaderFromProto(const pb::VolumeHeader& header) {
  VolumeView v;
  ASSIGN_OR_RETURN(v.dtype, DTypeFromProto(header.dtype()));
  if (header.shape_size() == 3) v.shape.push_back(1);
  for (uint32_t d : header.shape()) v.shape.push_back(d);
  if (v.shape.size() != 4) return absl::InvalidArgumentError("volume shape must be [D, H, W] or [C, D, H, W]");
  if (header.spacing_mm_size() != 3) return absl::InvalidArgumentError("volume spacing_mm needs three values (D, H, W)");
  for (int i = 0; i < 3; ++i) v.spacing[static_cast<size_t>(i)] = header.spacing_mm(i);
  if (header.direction_size() != 9) {
    return absl::InvalidArgumentError("volume direction needs nine cosines (row, column, normal)");
  }
  for (int i = 0; i < 9; ++i) v.direction[static_cast<size_t>(i)] = header.direction(i);
  return v;
}

// One InferVolume call. The data arrives into a buffer sized by the header
// (which was checked against the memory bound first), compute runs on its
// own thread so no gRPC callback thread is held for seconds, and the result
// goes out chunk by chunk, one write in flight at a time.
class VolumeCall final : public grpc::ServerBidiReactor<pb::VolumeRequest, pb::VolumeResponse> {
 public:
  VolumeCall(InferenceService* service, grpc::CallbackServerContext* ctx) : service_(service), ctx_(ctx) {
    arrived_ = Clock::now();
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side (or went away): the data must be complete.
      if (ctx_->IsCancelled()) return Fail(absl::CancelledError("the client went away"));
      if (!model_) return Fail(absl::InvalidArgumentError("no volume header was sent"));
      if (received_ != expected_) {
        return Fail(absl::InvalidArgumentError("volume chunks hold " + std::to_string(received_) +
                                               " bytes; the header's shape and dtype need " +
                                               std::to_string(expected_)));
      }
      StartCompute();
      return;
    }
    absl::Status s = model_ ? OnChunk() : OnHeader();
    if (!s.ok()) return Fail(s);
    request_.Clear();
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return End(grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading"));
    if (!NextChunk()) {
      Count("OK");
      End(grpc::Status::OK);
      return;
    }
    StartWrite(&response_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status OnHeader() {
    if (!request_.has_header()) return absl::InvalidArgumentError("the first message must be the volume header");
    const pb::VolumeHeader& h = request_.header();
    auto found = service_->repository_->Get(h.model_name(), h.model_version());
    if (!found.ok()) return found.status();
    auto view = VolumeHeaderFromProto(h);
    if (!view.ok()) return view.status();
    auto bytes = ValidateVolumeHeader((*found)->config, *view, service_->options_.max_volume_bytes);
    if (!bytes.ok()) {
      model_name_ = (*found)->config.name;
      return bytes.status();
    }
    if (service_->active_volumes_.fetch_add(1) >= service_->options_.max_concurrent_volumes) {
      service_->active_volumes_.fetch_sub(1);
      model_name_ = (*found)->config.name;
      return absl::ResourceExhaustedError("this worker is already running " +
                                          std::to_string(service_->options_.max_concurrent_volumes) + " volumes");
    }
    holds_slot_ = true;
    try {
      buffer_.reserve(static_cast<size_t>(*bytes));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError("no memory for the volume");
    }
    model_ = std::move(*found);
    model_name_ = model_->config.name;
    view_ = std::move(*view);
    expected_ = *bytes;
    job_token_ = h.job_token();
    deadline_ = JobDeadline(ctx_, h.has_deadline() ? &h.deadline() : nullptr);
    return absl::OkStatus();
  }

  absl::Status OnChunk() {
    if (!request_.has_chunk()) return absl::InvalidArgumentError("only data chunks may follow the volume header");
    const pb::VolumeChunk& c = request_.chunk();
    if (c.data().size() > kMaxVolumeChunkBytes) {
      return absl::InvalidArgumentError("volume chunks must not exceed " + std::to_string(kMaxVolumeChunkBytes) +
                                        " bytes");
    }
    if (c.offset() != received_) {
      return absl::InvalidArgumentError("volume chunk at offset " + std::to_string(c.offset()) + "; expected " +
                                        std::to_string(received_));
    }
    if (c.data().size() > expected_ - received_) {
      return absl::InvalidArgumentError("volume chunks exceed the " + std::to_string(expected_) +
                                        " bytes the header's shape and dtype need");
    }
    buffer_.append(c.data());
    received_ += c.data().size();
    return absl::OkStatus();
  }

  void StartCompute() {
    std::thread([this] {
      const auto start = Clock::now();
      if (start >= deadline_) return Fail(absl::DeadlineExceededError("the volume's deadline passed before compute"));
      if (ctx_->IsCancelled()) return Fail(absl::CancelledError("the client went away"));
      ModelBackend* backend = model_->VolumeBackend();
      if (!backend) return Fail(absl::UnavailableError("model '" + model_name_ + "' has no volume instance"));
      view_.data = buffer_;
      auto out = backend->ExecuteVolume(view_);
      if (!out.ok()) return Fail(out.status());
      output_ = std::move(*out);
      // The input is no longer needed; release it before streaming back.
      std::string().swap(buffer_);
      BuildHeader(std::chrono::duration_cast<std::chrono::microseconds>(start - arrived_).count(),
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
      StartWrite(&response_);
    }).detach();
  }

  void BuildHeader(int64_t queue_us, int64_t compute_us) {
    const ModelConfig& c = model_->config;
    auto* h = response_.mutable_header();
    h->set_job_token(job_token_);
    h->set_model_name(c.name);
    h->set_model_version(model_->version);
    const bool label_map_model = c.volume.output == VolumeOutputKind::kLabelMap;
    for (size_t i = 0; i < c.output.labels.size(); ++i) {
      const auto& l = c.output.labels[i];
      auto* ls = h->add_labels();
      ls->set_label(l.name);
      const float p = i < output_.max_probability.size() ? output_.max_probability[i] : 0.0f;
      const uint64_t n = i < output_.voxel_count.size() ? output_.voxel_count[i] : 0;
      ls->set_max_probability(p);
      ls->set_voxel_count(n);
      ls->set_threshold(static_cast<float>(l.threshold));
      // A label-map label is found only where it wins some voxel.
      ls->set_above_threshold(p >= l.threshold && (!label_map_model || n > 0));
    }
    for (int64_t d : output_.shape) h->add_shape(static_cast<uint32_t>(d));
    for (double s : output_.spacing) h->add_spacing_mm(s);
    auto* map = h->add_maps();
    map->set_kind(pb::VOLUME_MAP_KIND_LABEL_MAP);
    map->set_size_bytes(output_.label_map.size());
    for (size_t i = 0; i < output_.probabilities.size(); ++i) {
      auto* pm = h->add_maps();
      pm->set_kind(pb::VOLUME_MAP_KIND_PROBABILITY);
      pm->set_label(c.output.labels[i].name);
      pm->set_size_bytes(output_.probabilities[i].size());
    }
    h->mutable_timing()->set_queue_us(queue_us);
    h->mutable_timing()->set_compute_us(compute_us);
    h->mutable_timing()->set_batch_size(1);
    auto* steps = h->mutable_volume_timings();
    steps->set_resample_us(output_.resample_us);
    steps->set_inference_us(output_.inference_us);
    steps->set_resample_back_us(output_.resample_back_us);
    if (auto* m = service_->metrics_) {
      const std::string version = std::to_string(model_->version);
      m->VolumeStep(c.name, version, "receive", static_cast<double>(queue_us) / 1e6);
      m->VolumeStep(c.name, version, "resample", static_cast<double>(output_.resample_us) / 1e6);
      m->VolumeStep(c.name, version, "inference", static_cast<double>(output_.inference_us) / 1e6);
      m->VolumeStep(c.name, version, "resample_back", static_cast<double>(output_.resample_back_us) / 1e6);
    }
  }

  const std::string& Map(size_t i) const { return i == 0 ? output_.label_map : output_.probabilities[i - 1]; }

  // Fills response_ with the next chunk; false when everything is sent.
  bool NextChunk() {
    const size_t maps = 1 + output_.probabilities.size();
    while (map_ < maps && offset_ >= Map(map_).size()) {
      ++map_;
      offset_ = 0;
    }
    if (map_ >= maps) return false;
    const std::string& m = Map(map_);
    const size_t n = std::min(kMaxVolumeChunkBytes, m.size() - offset_);
    response_.Clear();
    auto* chunk = response_.mutable_chunk();
    chunk->set_map(static_cast<uint32_t>(map_));
    chunk->set_offset(offset_);
    chunk->set_data(m.substr(offset_, n));
    offset_ += n;
    return true;
  }

  void Count(const char* code) {
    if (service_->metrics_) {
      service_->metrics_->Request(model_name_.empty() ? std::string(kUnknownModel) : model_name_,
                                  model_ ? std::to_string(model_->version) : "", code);
    }
  }

  void Fail(const absl::Status& s) {
    Count(CodeName(s.code()));
    if (!absl::IsCancelled(s)) {
      log::Warn("infer_volume_refused", {{"model", model_name_.empty() ? std::string(kUnknownModel) : model_name_},
                                         {"code", CodeName(s.code())},
                                         {"reason", std::string(s.message())}});
    }
    End(ToGrpc(s));
  }

  // The slot goes back before the client can see the status, so a client
  // that starts its next volume on seeing it is not refused.
  void End(const grpc::Status& status) {
    if (holds_slot_) service_->active_volumes_.fetch_sub(1);
    holds_slot_ = false;
    Finish(status);
  }

  InferenceService* service_;
  grpc::CallbackServerContext* ctx_;
  pb::VolumeRequest request_;
  pb::VolumeResponse response_;
  std::shared_ptr<LoadedVersion> model_;
  std::string model_name_;
  bool holds_slot_ = false;
  VolumeView view_;
  std::string buffer_;
  uint64_t expected_ = 0;
  uint64_t received_ = 0;
  std::string job_token_;
  Clock::time_point arrived_;
  Clock::time_point deadline_ = Clock::time_point::max();
  VolumeOutput output_;
  size_t map_ = 0;
  size_t offset_ = 0;
};

grpc::ServerBidiReactor<pb::VolumeRequest, pb::VolumeResponse>* InferenceService::InferVolume(
    grpc::CallbackServerContext* ctx) {
  return new VolumeCall(this, ctx);
}

ModelAdminService::ModelAdminService(ModelRepository* repository) : repository_(repository) {}

grpc::ServerUnaryReactor* ModelAdminService::LoadModel(grpc::CallbackServerContext* ctx,
                                                       const pb::LoadModelRequest* req, pb::LoadModelResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto status = repository_->Load(req->model_name());
  absl::Status result = status.status();
  if (status.ok()) {
    ModelStatusToProto(*status, resp->mutable_model());
    std::string reasons;
    bool any_ready = false;
    for (const auto& v : status->versions) {
      if (v.state == VersionState::kReady) any_ready = true;
      if (!v.reason.empty()) reasons += (reasons.empty() ? "" : "; ") + v.reason;
    }
    if (!any_ready) result = absl::FailedPreconditionError("no version of the model could be loaded: " + reasons);
  }
  log::Info("admin_load_model", {{"model", req->model_name()}, {"ok", result.ok()}});
  reactor->Finish(ToGrpc(result));
  return reactor;
}

grpc::ServerUnaryReactor* ModelAdminService::UnloadModel(grpc::CallbackServerContext* ctx,
                                                         const pb::UnloadModelRequest* req, pb::UnloadModelResponse*) {
  auto* reactor = ctx->DefaultReactor();
  absl::Status s = repository_->Unload(req->model_name());
  log::Info("admin_unload_model", {{"model", req->model_name()}, {"ok", s.ok()}});
  reactor->Finish(ToGrpc(s));
  return reactor;
}

}  // namespace secondread::inference
