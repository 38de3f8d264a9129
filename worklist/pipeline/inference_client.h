// The node's client of the inference tier: several secondread-worker
// endpoints from configuration, health-checked with grpc.health.v1, balanced
// round-robin over the healthy ones. Every call carries a deadline, and a
// call that fails with UNAVAILABLE is retried on another endpoint. Only
// pixels, physical parameters and an opaque token cross this boundary.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "secondread/inference/v1/inference.pb.h"

namespace grpc {
class ClientContext;
}

namespace secondread::worklist {

// Lets another thread abandon a call in flight: a read whose claim was lost
// stops waiting on the worker instead of finishing work no one will commit.
class CancelToken {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class InferenceClient;
  // Registers the context of the attempt about to start; false when the
  // token was cancelled already.
  bool Attach(grpc::ClientContext* ctx);
  void Detach();

  mutable std::mutex mu_;
  grpc::ClientContext* ctx_ = nullptr;
  bool cancelled_ = false;
};

struct InferenceClientOptions {
  std::vector<std::string> endpoints;  // host:port
  std::chrono::milliseconds call_timeout{30000};
  std::chrono::milliseconds health_interval{2000};
  int max_attempts = 3;  // per call, across endpoints, for UNAVAILABLE
  int64_t max_message_bytes = 64ll << 20;
};

struct EndpointState {
  std::string endpoint;
  bool healthy = false;
  int64_t calls = 0;
  int64_t failures = 0;
};

class InferenceClient {
 public:
  using Ptr = std::unique_ptr<InferenceClient>;
  // Starts the health-check thread. An endpoint is healthy once its health
  // service answers SERVING; until the first check all count as healthy.
  static absl::StatusOr<Ptr> Create(const InferenceClientOptions& options);
  ~InferenceClient();

  // Cached per (name, version) for a short time; version 0 asks for the
  // latest ready version.
  absl::StatusOr<inference::v1::ModelDescription> Describe(const std::string& model, int64_t version);

  // The call's deadline is now + call_timeout (the request's own deadline
  // field is set to the same instant). gRPC status codes map one to one onto
  // absl codes.
  // A cancelled token ends the call with CANCELLED.
  absl::StatusOr<inference::v1::InferResponse> Infer(const inference::v1::InferRequest& request,
                                                    CancelToken* cancel = nullptr);

  std::vector<EndpointState> Endpoints() const;

 private:
  struct Impl;
  explicit InferenceClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace secondread::worklist
