#include "worklist/pipeline/inference_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

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
  absl::Status Run(std::chrono::system_clock::time_point deadline, Call&& call, CancelToken* cancel = nullptr) {
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
      if (!IsRequestError(s.error_code())) ep->failures.fetch_add(1, std::memory_order_relaxed);
      last = FromGrpc(ep->address, s);
      if (!IsEndpointFailure(s.error_code())) return last;
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

absl::StatusOr<InferenceClient::Ptr> InferenceClient::Create(const InferenceClientOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("inference client: no endpoints configured");
  if (options.health_interval <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("inference client: health_interval must be positive");
  }
  if (options.call_timeout <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("inference client: call_timeout must be positive");
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
      auto ep = std::make_unique<Impl::Endpoint>();
      ep->address = address;
      ep->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
      if (!ep->channel) return absl::InvalidArgumentError("inference client: cannot create channel to " + address);
      ep->inference = pb::Inference::NewStub(ep->channel);
      ep->health = health::Health::NewStub(ep->channel);
      impl->endpoints.push_back(std::move(ep));
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
    const auto since_epoch = deadline.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    with_deadline.mutable_deadline()->set_seconds(seconds.count());
    with_deadline.mutable_deadline()->set_nanos(
        static_cast<int32_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count()));
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
