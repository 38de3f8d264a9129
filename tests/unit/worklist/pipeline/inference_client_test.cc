// The inference client against real in-process workers: each worker is the
// real InferenceService over a repository with a fake model, behind a real
// gRPC server on 127.0.0.1 with gRPC's health service, so balancing, retry,
// health and deadlines are exercised over TCP as in production.
#include "worklist/pipeline/inference_client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "inference/service.h"
#include "secondread/inference/v1/inference.grpc.pb.h"
#include "tests/unit/inference/fake_backend.h"

namespace secondread::worklist {
namespace {

namespace fs = std::filesystem;
namespace pb = ::secondread::inference::v1;
using namespace std::chrono_literals;

class Factory final : public inference::BackendFactory {
 public:
  absl::StatusOr<std::vector<std::unique_ptr<inference::ModelBackend>>> Create(const inference::ModelConfig&,
                                                                               const fs::path&) override {
    auto b = std::make_unique<inference::testing::FakeBackend>();
    last = b.get();
    std::vector<std::unique_ptr<inference::ModelBackend>> out;
    out.push_back(std::move(b));
    return out;
  }
  inference::testing::FakeBackend* last = nullptr;
};

// Counts the calls that reach a worker and what deadlines they carried,
// then hands them to the real service.
class CountingService final : public pb::Inference::CallbackService {
 public:
  explicit CountingService(inference::InferenceService* inner) : inner_(inner) {}

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx, const pb::ListModelsRequest* req,
                                       pb::ListModelsResponse* resp) override {
    return inner_->ListModels(ctx, req, resp);
  }
  grpc::ServerUnaryReactor* DescribeModel(grpc::CallbackServerContext* ctx, const pb::DescribeModelRequest* req,
                                          pb::ModelDescription* resp) override {
    ++describe_calls;
    return inner_->DescribeModel(ctx, req, resp);
  }
  grpc::ServerUnaryReactor* Infer(grpc::CallbackServerContext* ctx, const pb::InferRequest* req,
                                  pb::InferResponse* resp) override {
    ++infer_calls;
    {
      std::lock_guard lk(mu);
      last_call_deadline = ctx->deadline();
      last_request_deadline = req->deadline();
    }
    return inner_->Infer(ctx, req, resp);
  }

  std::atomic<int> infer_calls{0};
  std::atomic<int> describe_calls{0};
  std::mutex mu;
  std::chrono::system_clock::time_point last_call_deadline;
  google::protobuf::Timestamp last_request_deadline;

 private:
  inference::InferenceService* inner_;
};

// One worker: repository, service and a server that can be stopped and
// started again on the same port.
class Worker {
 public:
  explicit Worker(const std::string& name) {
    root_ = fs::temp_directory_path() / ("inference_client_test_" + std::to_string(::getpid()) + "_" + name + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "demo" / "1");
    std::ofstream(root_ / "demo" / "model.yaml") << R"(name: demo
intended_use: testing only
input: {channels: 1, height: 4, width: 4, accepted_dtypes: [uint8]}
output:
  labels:
    - {name: finding, code: {scheme: DCM, value: "111001", meaning: Finding}, threshold: 0.5}
max_batch_size: 4
dynamic_batching: {max_queue_size: 64}
)";
    std::ofstream(root_ / "demo" / "1" / "model.pt") << "fake";
    repo_ = std::make_unique<inference::ModelRepository>(inference::RepositoryOptions{root_, &factory_, &metrics_});
    EXPECT_TRUE(repo_->LoadAtStart({}).ok());
    service_ = std::make_unique<inference::InferenceService>(inference::ServiceOptions{1 << 20}, repo_.get(),
                                                             &metrics_);
    counting_ = std::make_unique<CountingService>(service_.get());
  }
  ~Worker() {
    Release();
    Stop();
    repo_.reset();
    fs::remove_all(root_);
  }

  void Start() {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int selected = 0;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port_), grpc::InsecureServerCredentials(), &selected);
    builder.RegisterService(counting_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(selected, 0);
    port_ = selected;
  }
  void Stop() {
    if (!server_) return;
    server_->Shutdown(std::chrono::system_clock::now() + 100ms);
    server_->Wait();
    server_.reset();
  }
  // What gRPC's health service answers, as a worker draining on SIGTERM does.
  void SetServing(bool serving) { server_->GetHealthCheckService()->SetServingStatus(serving); }
  void Hold() { factory_.last->Hold(); }
  void Release() {
    if (factory_.last) factory_.last->Release();
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  CountingService& counts() { return *counting_; }

 private:
  fs::path root_;
  Factory factory_;
  metrics::MetricsRegistry registry_;
  inference::WorkerMetrics metrics_{registry_};
  std::unique_ptr<inference::ModelRepository> repo_;
  std::unique_ptr<inference::InferenceService> service_;
  std::unique_ptr<CountingService> counting_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

pb::InferRequest Request(const std::string& model = "demo") {
  pb::InferRequest req;
  req.set_model_name(model);
  req.set_job_token("job-1");
  pb::Image* img = req.add_images();
  img->add_shape(4);
  img->add_shape(4);
  img->set_dtype(pb::DATA_TYPE_UINT8);
  std::string data(16, '\0');
  data[0] = static_cast<char>(200);
  img->set_data(data);
  return req;
}

class InferenceClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_.Start();
    b_.Start();
  }

  InferenceClient::Ptr Client(std::chrono::milliseconds call_timeout = 5000ms, int max_attempts = 3) {
    InferenceClientOptions o;
    o.endpoints = {a_.address(), b_.address()};
    o.call_timeout = call_timeout;
    o.health_interval = 100ms;
    o.max_attempts = max_attempts;
    auto c = InferenceClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Polls the client's health view of endpoint `i` until it equals `want`.
  static bool WaitHealthy(const InferenceClient& client, size_t i, bool want, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (client.Endpoints().at(i).healthy == want) return true;
      std::this_thread::sleep_for(10ms);
    }
    return client.Endpoints().at(i).healthy == want;
  }

  Worker a_{"a"};
  Worker b_{"b"};
};

TEST_F(InferenceClientTest, SpreadsCallsRoundRobinAndSetsTheDeadline) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 10; ++i) {
    auto r = client->Infer(Request());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->job_token(), "job-1");
    ASSERT_EQ(r->results_size(), 1);
    EXPECT_NEAR(r->results(0).scores(0).score(), 200.0 / 255, 1e-6);
  }
  EXPECT_EQ(a_.counts().infer_calls.load(), 5);
  EXPECT_EQ(b_.counts().infer_calls.load(), 5);

  // The request's deadline and the call's are the same instant, call_timeout
  // from now.
  std::lock_guard lk(a_.counts().mu);
  const auto& ts = a_.counts().last_request_deadline;
  const auto request_deadline = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::seconds(ts.seconds()) +
                                                                      std::chrono::nanoseconds(ts.nanos())));
  const auto call_deadline = a_.counts().last_call_deadline;
  // gRPC sends the timeout relative, so the server-side deadline moves by the
  // transit time; a loaded machine can add hundreds of milliseconds.
  EXPECT_LT(std::chrono::abs(request_deadline - call_deadline), 500ms);
  EXPECT_GT(request_deadline, std::chrono::system_clock::now() + 3s);
  EXPECT_LT(request_deadline, std::chrono::system_clock::now() + 6s);

  const auto eps = client->Endpoints();
  ASSERT_EQ(eps.size(), 2u);
  EXPECT_EQ(eps[0].endpoint, a_.address());
  EXPECT_EQ(eps[0].calls + eps[1].calls, 10);
  EXPECT_EQ(eps[0].failures + eps[1].failures, 0);
}

TEST_F(InferenceClientTest, FailsOverWhenAWorkerStopsAndTakesItBackWhenItReturns) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Infer(Request()).ok());
  ASSERT_TRUE(WaitHealthy(*client, 1, true, 5s));

  b_.Stop();
  for (int i = 0; i < 10; ++i) {
    auto r = client->Infer(Request());
    ASSERT_TRUE(r.ok()) << r.status();
  }
  // Within a few health intervals (100 ms), even without a failed call; the
  // ceiling allows for a loaded machine.
  EXPECT_TRUE(WaitHealthy(*client, 1, false, 3s));
  EXPECT_TRUE(client->Endpoints()[0].healthy);

  const int before = a_.counts().infer_calls.load();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(client->Infer(Request()).ok());
  EXPECT_EQ(a_.counts().infer_calls.load(), before + 4);

  b_.Start();  // same port
  ASSERT_TRUE(WaitHealthy(*client, 1, true, 8s));
  const int b_before = b_.counts().infer_calls.load();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(client->Infer(Request()).ok());
  EXPECT_EQ(b_.counts().infer_calls.load(), b_before + 2);
}

TEST_F(InferenceClientTest, HealthChecksAloneTakeAWorkerOutOfRotation) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitHealthy(*client, 1, true, 5s));
  b_.SetServing(false);
  EXPECT_TRUE(WaitHealthy(*client, 1, false, 3s));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(client->Infer(Request()).ok());
  EXPECT_EQ(b_.counts().infer_calls.load(), 0);
  b_.SetServing(true);
  EXPECT_TRUE(WaitHealthy(*client, 1, true, 3s));

  b_.Stop();  // no calls: only the health checker can notice
  EXPECT_TRUE(WaitHealthy(*client, 1, false, 3s));
  EXPECT_EQ(client->Endpoints()[1].failures, 0);
}

TEST_F(InferenceClientTest, AllWorkersDownIsUnavailableQuickly) {
  auto client = Client(10s, 3);
  ASSERT_NE(client, nullptr);
  a_.Stop();
  b_.Stop();
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto r = client->Infer(Request());
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    EXPECT_TRUE(r.status().message().find("127.0.0.1:") == 0) << r.status();
    EXPECT_LT(took, 5s);  // far below the 10 s call timeout
  }
  // None healthy: every call still tries the endpoints rather than refusing.
  EXPECT_TRUE(WaitHealthy(*client, 0, false, 3s));
  EXPECT_TRUE(WaitHealthy(*client, 1, false, 3s));
  auto r = client->Infer(Request());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  const auto eps = client->Endpoints();
  EXPECT_EQ(eps[0].calls + eps[1].calls, 12);  // 4 calls x 3 attempts
  EXPECT_EQ(eps[0].failures + eps[1].failures, 12);
}

TEST_F(InferenceClientTest, SlowModelEndsInDeadlineExceededWithoutRetry) {
  a_.Hold();
  b_.Hold();
  auto client = Client(300ms);
  ASSERT_NE(client, nullptr);
  const auto start = std::chrono::steady_clock::now();
  auto r = client->Infer(Request());
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);  // no retry: the call count below is the exact check
  EXPECT_EQ(a_.counts().infer_calls.load() + b_.counts().infer_calls.load(), 1);
}

// A read whose claim is lost abandons the call it waits on, long before the
// call's own deadline, and tries no other worker.
TEST_F(InferenceClientTest, CancelledCallEndsAtOnceWithoutRetry) {
  a_.Hold();
  b_.Hold();
  auto client = Client(20000ms);
  ASSERT_NE(client, nullptr);
  CancelToken cancel;
  std::thread canceller([&cancel] {
    std::this_thread::sleep_for(300ms);
    cancel.Cancel();
  });
  const auto start = std::chrono::steady_clock::now();
  auto r = client->Infer(Request(), &cancel);
  const auto took = std::chrono::steady_clock::now() - start;
  canceller.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_LT(took, 10s);  // the deadline is 20 s
  EXPECT_EQ(a_.counts().infer_calls.load() + b_.counts().infer_calls.load(), 1);
  // A token cancelled before the call starts sends nothing.
  auto again = client->Infer(Request(), &cancel);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(a_.counts().infer_calls.load() + b_.counts().infer_calls.load(), 1);
}

TEST_F(InferenceClientTest, UnknownModelIsNotFoundAndNotRetried) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto r = client->Infer(Request("no-such-model"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_EQ(a_.counts().infer_calls.load() + b_.counts().infer_calls.load(), 1);

  pb::InferRequest bad = Request();
  bad.mutable_images(0)->set_data("abc");
  r = client->Infer(bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_EQ(a_.counts().infer_calls.load() + b_.counts().infer_calls.load(), 2);
  // Answers about the request are not held against the endpoints.
  const auto eps = client->Endpoints();
  EXPECT_EQ(eps[0].failures + eps[1].failures, 0);
  EXPECT_TRUE(eps[0].healthy && eps[1].healthy);
}

TEST_F(InferenceClientTest, DescribeIsCachedPerModelAndVersion) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto d = client->Describe("demo", 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name(), "demo");
  EXPECT_EQ(d->version(), 1);
  ASSERT_EQ(d->labels_size(), 1);
  EXPECT_EQ(d->labels(0).name(), "finding");
  auto again = client->Describe("demo", 0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->name(), "demo");
  EXPECT_EQ(a_.counts().describe_calls.load() + b_.counts().describe_calls.load(), 1);

  // A different version is a different entry; failures are not cached.
  ASSERT_TRUE(client->Describe("demo", 1).ok());
  EXPECT_EQ(a_.counts().describe_calls.load() + b_.counts().describe_calls.load(), 2);
  EXPECT_EQ(client->Describe("nope", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->Describe("nope", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(a_.counts().describe_calls.load() + b_.counts().describe_calls.load(), 4);
}

TEST_F(InferenceClientTest, DescribeFailsOverToALiveWorker) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  a_.Stop();
  for (int i = 0; i < 2; ++i) {
    auto d = client->Describe("demo", i);
    ASSERT_TRUE(d.ok()) << d.status();
  }
}

TEST_F(InferenceClientTest, ConcurrentCallersAllSucceed) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        if (client->Infer(Request()).ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 160);
  EXPECT_EQ(a_.counts().infer_calls.load(), 80);
  EXPECT_EQ(b_.counts().infer_calls.load(), 80);
}

TEST(InferenceClientOptionsTest, RejectsEmptyConfiguration) {
  InferenceClientOptions o;
  EXPECT_EQ(InferenceClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.endpoints = {"127.0.0.1:1"};
  o.health_interval = 0ms;
  EXPECT_EQ(InferenceClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(InferenceClientShutdownTest, DestructorReturnsPromptlyWithALongHealthInterval) {
  InferenceClientOptions o;
  o.endpoints = {"127.0.0.1:1"};
  o.health_interval = 60s;
  auto c = InferenceClient::Create(o);
  ASSERT_TRUE(c.ok());
  std::this_thread::sleep_for(50ms);
  const auto start = std::chrono::steady_clock::now();
  c->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);  // far below the 60 s interval
}

}  // namespace
}  // namespace secondread::worklist
