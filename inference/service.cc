#include "inference/service.h"

#include <algorithm>
#include <chrono>

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
Clock::time_point JobDeadline(const grpc::CallbackServerContext* ctx, const pb::InferRequest& req) {
  const auto sys_now = std::chrono::system_clock::now();
  const auto steady_now = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();
  const auto call = ctx->deadline();
  if (call != std::chrono::system_clock::time_point::max()) {
    deadline = steady_now + std::chrono::duration_cast<Clock::duration>(call - sys_now);
  }
  if (req.has_deadline()) {
    const auto wanted = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::seconds(req.deadline().seconds()) +
                                                                        std::chrono::nanoseconds(req.deadline().nanos())));
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

void DescribeToProto(const LoadedVersion& model, pb::ModelDescription* out) {
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
  for (const auto& l : c.output.labels) {
    auto* pl = out->add_labels();
    pl->set_name(l.name);
    pl->mutable_code()->set_scheme(l.code.scheme);
    pl->mutable_code()->set_value(l.code.value);
    pl->mutable_code()->set_meaning(l.code.meaning);
    pl->set_threshold(static_cast<float>(l.threshold));
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
    DescribeToProto(**model, resp);
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
  job->deadline = JobDeadline(ctx, *req);
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
