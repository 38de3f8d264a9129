#include "worklist/pipeline/inference_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <climits>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>

#include "common/log.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "secondread/inference/v1/inference.grpc.pb.h"

namespace secondread::worklist {

namespace pb = ::secondread::inference::v1;
namespace health = ::grpc::health::v1;

namespace {

// Long enough that a call in flight (call_timeout, 30 s by default) sends at
// most one ping without data, so a worker with gRPC's default ping policy
// never answers GOAWAY "too_many_pings".
constexpr int kKeepaliveTimeMs = 60000;
constexpr int kKeepaliveTimeoutMs = 20000;
// gRPC's default reconnect backoff grows to two minutes; a restarted worker
// should be back in rotation within seconds.
constexpr int kMaxReconnectBackoffMs = 5000;
constexpr std::chrono::milliseconds kMaxHealthDeadline{1000};
constexpr std::chrono::seconds kDescribeCacheTtl{10};

absl::Status FromGrpc(const std::string& endpoint, const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share the canonical numbering.
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(s.error_code())),
                      endpoint + ": " + s.error_message());
}

// Failures that say nothing about the request, only about the endpoint or
// the connection to it, so another endpoint may well succeed. CANCELLED is
// among them because this client cancels its own calls only through a
// CancelToken, which Run checks first: otherwise it arrives when a worker
// shuts down with the call still in flight.
bool IsEndpointFailure(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::CANCELLED;
}

// Answers about the request itself; they do not count against the endpoint.
bool IsRequestError(grpc::StatusCode code) {
  return code == grpc::StatusCode::INVALID_ARGUMENT || code == grpc::StatusCode::NOT_FOUND;
}

enum class Retry { kNo, kEndpointDown, kBusy };

Retry ClassifyUnary(const grpc::Status& s) {
  return IsEndpointFailure(s.error_code()) ? Retry::kEndpointDown : Retry::kNo;
}

// A worker refuses a volume beyond its concurrency bound with
// RESOURCE_EXHAUSTED and these words (inference/service.cc); another worker
// may well have a free slot. A volume over the worker's memory bound, or a
// message over gRPC's size limit, carries the same code but would be
// refused alike everywhere, so the words are what tells them apart. The
// unit tests hold this against the real service.
constexpr std::string_view kWorkerBusyWords = "already running";

Retry ClassifyVolume(const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
      s.error_message().find(kWorkerBusyWords) != std::string::npos) {
    return Retry::kBusy;
  }
  return ClassifyUnary(s);
}

// Below the contract's 4 MiB per chunk by enough that a whole message, with
// its framing, also fits a worker left at gRPC's default 4 MiB receive limit;
// a multiple of 4 so that no float is split between chunks.
constexpr size_t kVolumeChunkBytes = (4u << 20) - (64u << 10);
// What the contract allows the worker's chunks and maps.
constexpr size_t kMaxResultChunkBytes = 4u << 20;
// The label map plus one probability map for each of at most 255 labels.
constexpr int kMaxResultMaps = 256;

void SetTimestamp(std::chrono::system_clock::time_point t, google::protobuf::Timestamp* out) {
  const auto since_epoch = t.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  out->set_seconds(seconds.count());
  out->set_nanos(
      static_cast<int32_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count()));
}

grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), std::string(s.message()));
}

// Puts an InferVolume answer together while checking it against the
// contract, so that a faulty or hostile worker can neither make the node
// keep more than the configured bound nor hand back maps that do not fit
// the grid it announced. Memory grows only with bytes that passed the
// checks, and never beyond the header's announced (and bounded) sizes.
class VolumeAssembler {
 public:
  VolumeAssembler(const VolumeCall& call, uint64_t max_bytes, VolumeAnswer* out)
      : call_(call), max_bytes_(max_bytes), out_(out) {}

  absl::Status Take(pb::VolumeResponse& response) {
    if (response.has_header()) return TakeHeader(*response.mutable_header());
    if (response.has_chunk()) return TakeChunk(response.chunk());
    return absl::InternalError("InferVolume answer: a message with neither a header nor a chunk");
  }

  // After the worker ended the call with OK.
  absl::Status Complete() const {
    if (!have_header_) return absl::InternalError("InferVolume answer: the worker sent no result header");
    for (size_t i = 0; i < sizes_.size(); ++i) {
      if (out_->maps[i].size() != sizes_[i]) {
        return absl::DataLossError("InferVolume answer: map " + std::to_string(i) + " holds " +
                                   std::to_string(out_->maps[i].size()) + " of its " + std::to_string(sizes_[i]) +
                                   " bytes");
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status TakeHeader(pb::VolumeResultHeader& h) {
    if (chunks_ > 0) return absl::InternalError("InferVolume answer: a result header after map chunks");
    if (have_header_) return absl::InternalError("InferVolume answer: a second result header");
    if (h.job_token() != call_.job_token) {
      return absl::InternalError("InferVolume answer: the result header carries another job's token");
    }
    if (h.model_name() != call_.model || (call_.version != 0 && h.model_version() != call_.version)) {
      return absl::InternalError("InferVolume answer: the result is for model '" + h.model_name() + "' version " +
                                 std::to_string(h.model_version()));
    }
    if (h.shape_size() != 3) return absl::DataLossError("InferVolume answer: the output shape is not [D, H, W]");
    if (h.maps_size() < 1 || h.maps_size() > kMaxResultMaps) {
      return absl::DataLossError("InferVolume answer: " + std::to_string(h.maps_size()) +
                                 " maps; there must be a label map and at most 255 more");
    }
    // Each factor is checked against the bound before it is multiplied in,
    // so that no hostile shape can overflow its way under it.
    uint64_t voxels = 1;
    for (uint32_t d : h.shape()) {
      if (d == 0) return absl::DataLossError("InferVolume answer: an output shape with an empty axis");
      if (d > max_bytes_ / voxels) return TooLarge();
      voxels *= d;
    }
    if (static_cast<uint64_t>(h.maps_size()) > max_bytes_ / voxels) return TooLarge();
    for (int i = 0; i < h.maps_size(); ++i) {
      const pb::VolumeMap& m = h.maps(i);
      const auto want = i == 0 ? pb::VOLUME_MAP_KIND_LABEL_MAP : pb::VOLUME_MAP_KIND_PROBABILITY;
      if (m.kind() != want) {
        return absl::DataLossError("InferVolume answer: map " + std::to_string(i) + " is not a " +
                                   (i == 0 ? "label map" : "probability map"));
      }
      if (m.size_bytes() != voxels) {
        return absl::DataLossError("InferVolume answer: map " + std::to_string(i) + " announces " +
                                   std::to_string(m.size_bytes()) + " bytes; its " + std::to_string(h.shape(0)) +
                                   "x" + std::to_string(h.shape(1)) + "x" + std::to_string(h.shape(2)) +
                                   " grid needs " + std::to_string(voxels));
      }
    }
    have_header_ = true;
    sizes_.assign(static_cast<size_t>(h.maps_size()), voxels);
    out_->maps.assign(sizes_.size(), {});
    out_->header = std::move(h);
    return absl::OkStatus();
  }

  absl::Status TakeChunk(const pb::VolumeChunk& c) {
    if (!have_header_) return absl::InternalError("InferVolume answer: a map chunk before the result header");
    ++chunks_;
    const auto at = [&c] {
      return "InferVolume answer: a chunk of map " + std::to_string(c.map()) + " at offset " +
             std::to_string(c.offset());
    };
    if (c.map() >= sizes_.size()) {
      return absl::DataLossError(at() + ", but the header lists " + std::to_string(sizes_.size()) + " maps");
    }
    if (c.data().size() > kMaxResultChunkBytes) {
      return absl::DataLossError(at() + " holds " + std::to_string(c.data().size()) + " bytes; chunks are at most " +
                                 std::to_string(kMaxResultChunkBytes));
    }
    if (c.map() < current_) {
      return absl::DataLossError(at() + " arrived after map " + std::to_string(current_) +
                                 "; maps come in the header's order");
    }
    for (; current_ < c.map(); ++current_) {
      if (out_->maps[current_].size() != sizes_[current_]) {
        return absl::DataLossError(at() + " arrived while map " + std::to_string(current_) + " holds " +
                                   std::to_string(out_->maps[current_].size()) + " of its " +
                                   std::to_string(sizes_[current_]) + " bytes");
      }
    }
    std::vector<uint8_t>& map = out_->maps[c.map()];
    if (c.offset() != map.size()) {
      return absl::DataLossError(at() + (c.offset() < map.size() ? " overlaps" : " leaves a gap after") + " the " +
                                 std::to_string(map.size()) + " bytes received");
    }
    if (c.data().size() > sizes_[c.map()] - map.size()) {
      return absl::DataLossError(at() + " runs past the map's " + std::to_string(sizes_[c.map()]) + " bytes");
    }
    if (map.empty()) map.reserve(sizes_[c.map()]);
    map.insert(map.end(), c.data().begin(), c.data().end());
    return absl::OkStatus();
  }

  absl::Status TooLarge() const {
    return absl::InternalError("InferVolume answer: the announced maps exceed the limit of " +
                               std::to_string(max_bytes_) + " bytes (inference.max_volume_result_bytes)");
  }

  const VolumeCall& call_;
  const uint64_t max_bytes_;
  VolumeAnswer* out_;
  bool have_header_ = false;
  int64_t chunks_ = 0;
  size_t current_ = 0;
  std::vector<uint64_t> sizes_;
};

// The little-endian bytes of voxels [first, first + n / 4).
void AppendLittleEndian(const float* voxels, uint64_t offset, size_t n, std::string* out) {
  if constexpr (std::endian::native == std::endian::little) {
    out->assign(reinterpret_cast<const char*>(voxels) + offset, n);
  } else {
    out->resize(n);
    for (size_t i = 0; i < n / 4; ++i) {
      const auto v = std::bit_cast<uint32_t>(voxels[offset / 4 + i]);
      for (size_t b = 0; b < 4; ++b) (*out)[i * 4 + b] = static_cast<char>((v >> (8 * b)) & 0xff);
    }
  }
}

}  // namespace

struct InferenceClient::Impl {
  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::Inference::Stub> inference;
    std::unique_ptr<health::Health::Stub> health;
    std::atomic<bool> healthy{true};
    std::atomic<int64_t> calls{0};
    std::atomic<int64_t> failures{0};
  };

  struct CachedDescription {
    pb::ModelDescription description;
    std::chrono::steady_clock::time_point expires;
  };

  InferenceClientOptions options;
  std::vector<std::unique_ptr<Endpoint>> endpoints;
  std::atomic<uint64_t> next{0};

  std::mutex cache_mu;
  std::map<std::pair<std::string, int64_t>, CachedDescription> describe_cache;

  // Guards stop and the bookkeeping of the health round in flight.
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  int pending_checks = 0;
  std::thread health_thread;

  ~Impl() {
    {
      std::lock_guard lk(mu);
      stop = true;
    }
    cv.notify_all();
    if (health_thread.joinable()) health_thread.join();
  }

  // The attempt'th endpoint of one call: round-robin over the healthy ones
  // not yet tried by this call, then over any not yet tried (a stale health
  // view must not make the node refuse work), then over all of them.
  Endpoint* Pick(uint64_t start, std::vector<bool>& tried) {
    std::vector<size_t> candidates;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      if (!tried[i] && endpoints[i]->healthy.load(std::memory_order_relaxed)) candidates.push_back(i);
    }
    if (candidates.empty()) {
      for (size_t i = 0; i < endpoints.size(); ++i) {
        if (!tried[i]) candidates.push_back(i);
      }
    }
    if (candidates.empty()) {
      std::fill(tried.begin(), tried.end(), false);
      for (size_t i = 0; i < endpoints.size(); ++i) candidates.push_back(i);
    }
    const size_t chosen = candidates[start % candidates.size()];
    tried[chosen] = true;
    return endpoints[chosen].get();
  }

  // Runs one unary call with endpoint selection and retry. `call` starts the
  // RPC on the endpoint's stub with the prepared context.
  template <typename Call>
  absl::Status Run(std::chrono::system_clock::time_point deadline, Call&& call, CancelToken* cancel = nullptr,
                   Retry (*classify)(const grpc::Status&) = &ClassifyUnary) {
    const uint64_t start = next.fetch_add(1, std::memory_order_relaxed);
    std::vector<bool> tried(endpoints.size(), false);
    const int attempts = std::max(1, options.max_attempts);
    absl::Status last = absl::UnavailableError("no inference endpoint configured");
    for (int attempt = 0; attempt < attempts; ++attempt) {
      if (attempt > 0 && std::chrono::system_clock::now() >= deadline) {
        return absl::DeadlineExceededError("deadline passed while retrying; last error: " +
                                           std::string(last.message()));
      }
      Endpoint* ep = Pick(start, tried);
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline);
      if (cancel != nullptr && !cancel->Attach(&ctx)) return absl::CancelledError("inference call cancelled");
      ep->calls.fetch_add(1, std::memory_order_relaxed);
      const grpc::Status s = call(*ep, &ctx);
      if (cancel != nullptr) {
        cancel->Detach();
        if (cancel->cancelled()) return absl::CancelledError("inference call cancelled");
      }
      if (s.ok()) return absl::OkStatus();
      last = FromGrpc(ep->address, s);
      const Retry retry = classify(s);
      // A busy worker is working, not failing: it stays in rotation.
      if (retry == Retry::kBusy) continue;
      if (!IsRequestError(s.error_code())) ep->failures.fetch_add(1, std::memory_order_relaxed);
      if (retry == Retry::kNo) return last;
      // Out of rotation until a health check says SERVING again.
      ep->healthy.store(false, std::memory_order_relaxed);
    }
    return last;
  }

  void HealthLoop() {
    const auto deadline_after = std::min<std::chrono::milliseconds>(options.health_interval, kMaxHealthDeadline);
    const size_t n = endpoints.size();
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts(n);
    std::vector<health::HealthCheckRequest> requests(n);  // service "" = the whole server
    std::vector<health::HealthCheckResponse> responses(n);
    std::vector<bool> serving(n, false);
    std::unique_lock lk(mu);
    while (!stop) {
      const auto round_start = std::chrono::steady_clock::now();
      pending_checks = static_cast<int>(n);
      lk.unlock();
      // All endpoints are checked at once, so one that does not answer
      // delays nobody else's health by more than the check's deadline.
      for (size_t i = 0; i < n; ++i) {
        contexts[i] = std::make_unique<grpc::ClientContext>();
        contexts[i]->set_deadline(std::chrono::system_clock::now() + deadline_after);
        responses[i].Clear();
        endpoints[i]->health->async()->Check(contexts[i].get(), &requests[i], &responses[i],
                                             [this, i, &serving, &responses](grpc::Status s) {
                                               std::lock_guard g(mu);
                                               serving[i] = s.ok() && responses[i].status() ==
                                                                          health::HealthCheckResponse::SERVING;
                                               --pending_checks;
                                               cv.notify_all();
                                             });
      }
      lk.lock();
      cv.wait(lk, [&] { return pending_checks == 0 || stop; });
      if (pending_checks > 0) {
        // Shutting down: the callbacks refer to this frame, so they must
        // all have run before it is left.
        lk.unlock();
        for (auto& c : contexts) c->TryCancel();
        lk.lock();
        cv.wait(lk, [&] { return pending_checks == 0; });
        break;
      }
      for (size_t i = 0; i < n; ++i) endpoints[i]->healthy.store(serving[i], std::memory_order_relaxed);
      cv.wait_until(lk, round_start + options.health_interval, [&] { return stop; });
    }
  }
};

InferenceClient::InferenceClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

InferenceClient::~InferenceClient() = default;

absl::Status CheckInferenceLink(const InferenceClientOptions& options) {
  if (options.tls.files.enabled()) {
    if (absl::Status st = grpc_tls::CheckFiles(options.tls.files); !st.ok()) {
      return absl::Status(st.code(), "inference.tls: " + std::string(st.message()));
    }
    return absl::OkStatus();
  }
  for (const auto& address : options.endpoints) {
    if (!grpc_tls::IsLoopback(address)) {
      return absl::FailedPreconditionError("inference endpoint " + address +
                                           " is not on loopback and inference.tls is not configured: "
                                           "plaintext gRPC is allowed on loopback only");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<InferenceClient::Ptr> InferenceClient::Create(const InferenceClientOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("inference client: no endpoints configured");
  RETURN_IF_ERROR(CheckInferenceLink(options));
  if (options.health_interval <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("inference client: health_interval must be positive");
  }
  if (options.call_timeout <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("inference client: call_timeout must be positive");
  }
  if (options.volume_call_timeout <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("inference client: volume_call_timeout must be positive");
  }
  if (options.max_volume_result_bytes == 0) {
    return absl::InvalidArgumentError("inference client: max_volume_result_bytes must be positive");
  }
  try {
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(static_cast<int>(std::clamp<int64_t>(options.max_message_bytes, 0, INT_MAX)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                static_cast<int>(std::min<std::chrono::milliseconds>(options.health_interval, kMaxHealthDeadline).count()));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
    for (const auto& address : options.endpoints) {
      if (address.empty()) return absl::InvalidArgumentError("inference client: empty endpoint");
      grpc::ChannelArguments endpoint_args = args;
      std::shared_ptr<grpc::ChannelCredentials> credentials;
      if (options.tls.files.enabled()) {
        auto tls = grpc_tls::ChannelCredentials(options.tls, address, &endpoint_args);
        if (!tls.ok()) return absl::Status(tls.status().code(), "inference client: " + std::string(tls.status().message()));
        credentials = *std::move(tls);
      } else {
        credentials = grpc::InsecureChannelCredentials();
      }
      auto ep = std::make_unique<Impl::Endpoint>();
      ep->address = address;
      // Health checks ride on the same channel, so they use the same credentials.
      ep->channel = grpc::CreateCustomChannel(address, credentials, endpoint_args);
      if (!ep->channel) return absl::InvalidArgumentError("inference client: cannot create channel to " + address);
      ep->inference = pb::Inference::NewStub(ep->channel);
      ep->health = health::Health::NewStub(ep->channel);
      impl->endpoints.push_back(std::move(ep));
    }
    if (!options.tls.files.enabled()) {
      log::Warn("inference_plaintext", {{"endpoints", options.endpoints},
                                        {"reason", "no inference.tls: plaintext gRPC, allowed on loopback only"}});
    }
    Impl* raw = impl.get();
    impl->health_thread = std::thread([raw] { raw->HealthLoop(); });
    return Ptr(new InferenceClient(std::move(impl)));
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("inference client: ") + e.what());
  }
}

absl::StatusOr<pb::ModelDescription> InferenceClient::Describe(const std::string& model, int64_t version) {
  try {
    const auto key = std::make_pair(model, version);
    {
      std::lock_guard lk(impl_->cache_mu);
      auto it = impl_->describe_cache.find(key);
      if (it != impl_->describe_cache.end() && it->second.expires > std::chrono::steady_clock::now()) {
        return it->second.description;
      }
    }
    pb::DescribeModelRequest request;
    request.set_model_name(model);
    request.set_model_version(version);
    pb::ModelDescription response;
    const auto deadline = std::chrono::system_clock::now() + impl_->options.call_timeout;
    RETURN_IF_ERROR(impl_->Run(deadline, [&](Impl::Endpoint& ep, grpc::ClientContext* ctx) {
      response.Clear();
      return ep.inference->DescribeModel(ctx, request, &response);
    }));
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lk(impl_->cache_mu);
    std::erase_if(impl_->describe_cache, [&](const auto& entry) { return entry.second.expires <= now; });
    impl_->describe_cache[key] = Impl::CachedDescription{response, now + kDescribeCacheTtl};
    return response;
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("inference client: ") + e.what());
  }
}

void CancelToken::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (ctx_ != nullptr) ctx_->TryCancel();
}

bool CancelToken::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

bool CancelToken::Attach(grpc::ClientContext* ctx) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return false;
  ctx_ = ctx;
  return true;
}

void CancelToken::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  ctx_ = nullptr;
}

absl::StatusOr<pb::InferResponse> InferenceClient::Infer(const pb::InferRequest& request, CancelToken* cancel) {
  try {
    const auto deadline = std::chrono::system_clock::now() + impl_->options.call_timeout;
    // The worker drops queued work past this instant even if the transport
    // deadline were lost on the way, so both carry the same time.
    pb::InferRequest with_deadline = request;
    SetTimestamp(deadline, with_deadline.mutable_deadline());
    pb::InferResponse response;
    RETURN_IF_ERROR(impl_->Run(deadline, [&](Impl::Endpoint& ep, grpc::ClientContext* ctx) {
      response.Clear();
      return ep.inference->Infer(ctx, with_deadline, &response);
    }, cancel));
    return response;
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("inference client: ") + e.what());
  }
}

absl::StatusOr<VolumeAnswer> InferenceClient::InferVolume(const VolumeCall& call, CancelToken* cancel) {
  if (call.model.empty()) return absl::InvalidArgumentError("InferVolume: no model");
  if (call.voxels == nullptr) return absl::InvalidArgumentError("InferVolume: no voxels");
  uint64_t bytes = sizeof(float);
  for (uint32_t d : call.shape) {
    if (d == 0) return absl::InvalidArgumentError("InferVolume: a volume shape with an empty axis");
    // Each factor is below 2^32, so the product overflows only past 2^32.
    if (bytes > (uint64_t{1} << 32)) return absl::InvalidArgumentError("InferVolume: the volume is too large");
    bytes *= d;
  }
  try {
    const auto deadline = std::chrono::system_clock::now() + impl_->options.volume_call_timeout;
    pb::VolumeRequest header_message;
    pb::VolumeHeader* h = header_message.mutable_header();
    h->set_model_name(call.model);
    h->set_model_version(call.version);
    h->set_priority(call.priority);
    // As for Infer: the worker drops a volume past this instant before
    // compute even if the transport deadline were lost on the way.
    SetTimestamp(deadline, h->mutable_deadline());
    h->set_job_token(call.job_token);
    for (uint32_t d : call.shape) h->add_shape(d);
    h->set_dtype(pb::DATA_TYPE_FLOAT32);
    for (double s : call.spacing_mm) h->add_spacing_mm(s);
    for (double c : call.direction) h->add_direction(c);
    *h->mutable_modality() = call.modality;
    *h->mutable_body_part() = call.body_part;

    VolumeAnswer answer;
    RETURN_IF_ERROR(impl_->Run(
        deadline,
        [&](Impl::Endpoint& ep, grpc::ClientContext* ctx) {
          answer = VolumeAnswer{};
          auto stream = ep.inference->InferVolume(ctx);
          const auto send_start = std::chrono::steady_clock::now();
          // A worker that refuses the call ends it, and the next write
          // fails; the reason then comes from Finish.
          bool open = stream->Write(header_message);
          pb::VolumeRequest chunk;
          for (uint64_t offset = 0; open && offset < bytes; offset += kVolumeChunkBytes) {
            const size_t n = static_cast<size_t>(std::min<uint64_t>(kVolumeChunkBytes, bytes - offset));
            chunk.mutable_chunk()->set_offset(offset);
            AppendLittleEndian(call.voxels, offset, n, chunk.mutable_chunk()->mutable_data());
            open = stream->Write(chunk);
          }
          chunk.Clear();
          stream->WritesDone();
          const double send_ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - send_start).count();

          VolumeAssembler assembler(call, impl_->options.max_volume_result_bytes, &answer);
          absl::Status refused;
          pb::VolumeResponse response;
          std::chrono::steady_clock::time_point receive_start{};
          while (stream->Read(&response)) {
            if (response.has_header()) receive_start = std::chrono::steady_clock::now();
            refused = assembler.Take(response);
            if (!refused.ok()) {
              // Nothing more of this answer is wanted; stop the worker
              // sending it rather than read it to the end.
              ctx->TryCancel();
              while (stream->Read(&response)) {
              }
              break;
            }
          }
          const auto receive_end = std::chrono::steady_clock::now();
          const grpc::Status finished = stream->Finish();
          if (!refused.ok()) {
            answer = VolumeAnswer{};
            return ToGrpcStatus(refused);
          }
          if (!finished.ok()) return finished;
          refused = assembler.Complete();
          if (!refused.ok()) {
            answer = VolumeAnswer{};
            return ToGrpcStatus(refused);
          }
          answer.sent_bytes = bytes;
          answer.send_ms = send_ms;
          for (const auto& m : answer.maps) answer.received_bytes += m.size();
          answer.receive_ms = std::chrono::duration<double, std::milli>(receive_end - receive_start).count();
          return grpc::Status::OK;
        },
        cancel, &ClassifyVolume));
    return answer;
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("inference client: ") + e.what());
  }
}

std::vector<EndpointState> InferenceClient::Endpoints() const {
  std::vector<EndpointState> out;
  out.reserve(impl_->endpoints.size());
  for (const auto& ep : impl_->endpoints) {
    EndpointState s;
    s.endpoint = ep->address;
    s.healthy = ep->healthy.load(std::memory_order_relaxed);
    s.calls = ep->calls.load(std::memory_order_relaxed);
    s.failures = ep->failures.load(std::memory_order_relaxed);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace secondread::worklist
