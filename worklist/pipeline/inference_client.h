// The node's client of the inference tier: several secondread-worker
// endpoints from configuration, health-checked with grpc.health.v1, balanced
// round-robin over the healthy ones. Every call carries a deadline, and a
// call that fails with UNAVAILABLE is retried on another endpoint. Only
// pixels, physical parameters and an opaque token cross this boundary.
// Volumes stream both ways (InferVolume) under a deadline of their own, and
// the worker's answer is checked against its own header before it is kept.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/grpc_tls.h"
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
  // InferVolume sends hundreds of MiB and waits for a sliding window over
  // the whole volume, so it gets a deadline of its own.
  std::chrono::milliseconds volume_call_timeout{600000};
  // The most bytes of maps one InferVolume answer may announce; a larger
  // answer is refused before any of it is stored.
  uint64_t max_volume_result_bytes = 1ull << 30;
  // Mutual TLS to the workers (inference.tls.*). Without it, every endpoint
  // must be on loopback.
  grpc_tls::ClientOptions tls;
};

// A volume for InferVolume: float32 voxels [depth][rows][columns], W fastest.
struct VolumeCall {
  std::string model;
  int64_t version = 0;  // 0: the newest ready version
  inference::v1::Priority priority = inference::v1::PRIORITY_ROUTINE;
  std::string job_token;  // opaque; never derived from patient data
  std::array<uint32_t, 3> shape{};        // D, H, W
  const float* voxels = nullptr;          // shape[0]*shape[1]*shape[2] values
  std::array<double, 3> spacing_mm{};     // along D, H, W
  std::array<double, 9> direction{};      // LPS: row direction (W), column direction (H), normal (D)
  inference::v1::Code modality;
  inference::v1::Code body_part;
};

// The worker's answer: the result header and each map's bytes, in the
// order of header.maps (map 0 is the uint8 label map).
struct VolumeAnswer {
  inference::v1::VolumeResultHeader header;
  std::vector<std::vector<uint8_t>> maps;
  // How the successful attempt's bytes travelled. Sending is timed from the
  // first write until the close of the sending side returns: gRPC's flow
  // control holds writes until the worker has taken most of the data.
  // Receiving is timed from the result header to the last chunk.
  uint64_t sent_bytes = 0;  // voxel bytes
  double send_ms = 0;
  uint64_t received_bytes = 0;  // map bytes
  double receive_ms = 0;
};

struct EndpointState {
  std::string endpoint;
  bool healthy = false;
  int64_t calls = 0;
  int64_t failures = 0;
};

// The link's security before anything connects: with inference.tls, its
// files must load; without it, every endpoint must be on loopback, since
// pixels and model answers would otherwise cross the network readable by
// anyone on the path.
absl::Status CheckInferenceLink(const InferenceClientOptions& options);

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

  // Streams the volume in chunks and reads the maps back. The deadline is
  // now + volume_call_timeout, also sent in the header. Retried on another
  // endpoint for UNAVAILABLE and for a worker that already runs as many
  // volumes as it may (RESOURCE_EXHAUSTED); never for anything about the
  // volume itself. RESOURCE_EXHAUSTED after the last attempt means either
  // that every worker tried was busy or that the volume exceeds a worker's
  // memory bound; the message says which. An answer that breaks the
  // contract (sizes that do not match its grid, chunks out of order,
  // overlapping or past the end, a missing or late header, more than
  // max_volume_result_bytes) is INTERNAL or DATA_LOSS and is not retried.
  // The call's `voxels` are read in place, once per attempt, and must stay
  // valid until it returns. A cancelled token ends the call with CANCELLED.
  absl::StatusOr<VolumeAnswer> InferVolume(const VolumeCall& call, CancelToken* cancel = nullptr);

  std::vector<EndpointState> Endpoints() const;

 private:
  struct Impl;
  explicit InferenceClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace secondread::worklist
