// The gRPC face of the worker: the Inference and ModelAdmin services over the
// model repository. Infer uses gRPC's callback API, so a request waiting in
// the batcher holds no thread; the batcher finishes the call when its batch
// is done.
#pragma once

#include <cstdint>

#include "inference/model_repository.h"
#include "inference/worker_metrics.h"
#include "secondread/inference/v1/inference.grpc.pb.h"

namespace secondread::inference {

namespace pb = ::secondread::inference::v1;

struct ServiceOptions {
  // Refuses images with more samples than this, before any allocation.
  uint64_t max_image_samples = 64ull << 20;
};

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

 private:
  ServiceOptions options_;
  ModelRepository* repository_;
  WorkerMetrics* metrics_;
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
void DescribeToProto(const LoadedVersion& model, pb::ModelDescription* out);

}  // namespace secondread::inference
