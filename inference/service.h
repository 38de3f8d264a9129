// The gRPC face of the worker: the Inference and ModelAdmin services over the
// model repository. Infer uses gRPC's callback API, so a request waiting in
// the batcher holds no thread; the batcher finishes the call when its batch
// is done.
#pragma once

#include <atomic>
#include <cstdint>

#include "inference/model_repository.h"
#include "inference/worker_metrics.h"
#include "secondread/inference/v1/inference.grpc.pb.h"

namespace secondread::inference {

namespace pb = ::secondread::inference::v1;

struct ServiceOptions {
  // Refuses images with more samples than this, before any allocation.
  uint64_t max_image_samples = 64ull << 20;
  // The memory bound for volumes: a header announcing more bytes of samples
  // is refused before any data is sent, and at most max_concurrent_volumes
  // calls hold a buffer at once.
  uint64_t max_volume_bytes = 1ull << 30;
  int max_concurrent_volumes = 2;
};

// The largest data chunk either side of InferVolume sends.
inline constexpr size_t kMaxVolumeChunkBytes = 4u << 20;

grpc::Status ToGrpc(const absl::Status& s);

class InferenceService final : public pb::Inference::CallbackService {
 public:
  InferenceService(ServiceOptions options, ModelRepository* repository, WorkerMetrics* metrics);

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx, const pb::ListModelsRequest* req,
                                       pb::ListModelsResponse* resp) override;
  grpc::ServerUnaryReactor* DescribeModel(grpc::CallbackServerContext* ctx, const pb::DescribeModelRequest* req,
                                          pb::ModelDescription* resp) override;
  grpc::ServerUnaryReactor* Infer(grpc::CallbackServerContext* ctx, const pb::InferRequest* req,
                                  pb::InferResponse* resp) override;
  grpc::ServerBidiReactor<pb::VolumeRequest, pb::VolumeResponse>* InferVolume(grpc::CallbackServerContext* ctx) override;

 private:
  friend class VolumeCall;
  ServiceOptions options_;
  ModelRepository* repository_;
  WorkerMetrics* metrics_;
  std::atomic<int> active_volumes_{0};
};

class ModelAdminService final : public pb::ModelAdmin::CallbackService {
 public:
  explicit ModelAdminService(ModelRepository* repository);

  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* ctx, const pb::LoadModelRequest* req,
                                      pb::LoadModelResponse* resp) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* ctx, const pb::UnloadModelRequest* req,
                                        pb::UnloadModelResponse* resp) override;

 private:
  ModelRepository* repository_;
};

// Exposed for tests: the conversions at the edge of the service.
absl::StatusOr<ImageView> ImageFromProto(const pb::Image& image);
void ModelStatusToProto(const ModelStatus& status, pb::ModelSummary* out);
// `max_volume_bytes` is the worker's bound, reported with a volume model.
void DescribeToProto(const LoadedVersion& model, pb::ModelDescription* out, uint64_t max_volume_bytes = 0);
absl::StatusOr<VolumeView> VolumeHeaderFromProto(const pb::VolumeHeader& header);

}  // namespace secondread::inference
