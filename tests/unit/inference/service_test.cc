// The gRPC service end to end in one process: a real gRPC server and channel,
// the real repository and batcher, and a fake model behind the backend seam.
#include "inference/service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>

#include "secondread/inference/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/unit/inference/fake_backend.h"

namespace secondread::inference {
namespace {

namespace fs = std::filesystem;

class HoldableFactory final : public BackendFactory {
 public:
  absl::StatusOr<std::vector<std::unique_ptr<ModelBackend>>> Create(const ModelConfig&, const fs::path&) override {
    auto b = std::make_unique<testing::FakeBackend>();
    last = b.get();
    std::vector<std::unique_ptr<ModelBackend>> out;
    out.push_back(std::move(b));
    return out;
  }
  testing::FakeBackend* last = nullptr;
};

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("service_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "demo" / "1");
    std::ofstream(root_ / "demo" / "model.yaml") << R"(name: demo
intended_use: testing only
input: {channels: 1, height: 4, width: 4, accepted_dtypes: [uint8, uint16]}
output:
  labels:
    - {name: finding, code: {scheme: DCM, value: "111001", meaning: Finding}, threshold: 0.5}
max_batch_size: 2
dynamic_batching: {max_queue_size: 2}
)";
    std::ofstream(root_ / "demo" / "1" / "model.pt") << "fake";
    repo_ = std::make_unique<ModelRepository>(RepositoryOptions{root_, &factory_, &metrics_});
    ASSERT_TRUE(repo_->LoadAtStart({}).ok());
    service_ = std::make_unique<InferenceService>(ServiceOptions{1 << 20}, repo_.get(), &metrics_);
    admin_ = std::make_unique<ModelAdminService>(repo_.get());
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    builder.RegisterService(admin_.get());
    builder.SetMaxReceiveMessageSize(64 * 1024);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    stub_ = v1::Inference::NewStub(channel_);
  }
  void TearDown() override {
    if (factory_.last) factory_.last->Release();
    server_->Shutdown();
    server_.reset();
    repo_.reset();
    fs::remove_all(root_);
  }

  static v1::Image Image(uint8_t first, int rows = 4, int cols = 4) {
    v1::Image img;
    img.add_shape(static_cast<uint32_t>(rows));
    img.add_shape(static_cast<uint32_t>(cols));
    img.set_dtype(v1::DATA_TYPE_UINT8);
    std::string data(static_cast<size_t>(rows * cols), '\0');
    data[0] = static_cast<char>(first);
    img.set_data(data);
    return img;
  }

  grpc::Status Infer(const v1::InferRequest& req, v1::InferResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return stub_->Infer(&ctx, req, resp);
  }

  fs::path root_;
  HoldableFactory factory_;
  metrics::MetricsRegistry registry_;
  WorkerMetrics metrics_{registry_};
  std::unique_ptr<ModelRepository> repo_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<ModelAdminService> admin_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(ServiceTest, InferReturnsScoresThresholdsTokenAndTiming) {
  v1::InferRequest req;
  req.set_model_name("demo");
  req.set_job_token("token-1");
  req.set_priority(v1::PRIORITY_STAT);
  *req.add_images() = Image(200);
  *req.add_images() = Image(10);
  v1::InferResponse resp;
  auto s = Infer(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.job_token(), "token-1");
  EXPECT_EQ(resp.model_version(), 1);
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).scores(0).label(), "finding");
  EXPECT_NEAR(resp.results(0).scores(0).score(), 200.0 / 255, 1e-6);
  EXPECT_TRUE(resp.results(0).scores(0).above_threshold());
  EXPECT_FALSE(resp.results(1).scores(0).above_threshold());
  EXPECT_FLOAT_EQ(resp.results(1).scores(0).threshold(), 0.5f);
  EXPECT_EQ(resp.results(1).model_version(), 1);
  EXPECT_EQ(resp.timing().batch_size(), 2u);
  const std::string exposition = registry_.Serialize();
  EXPECT_NE(exposition.find("secondread_inference_requests_total{code=\"OK\",model=\"demo\",version=\"1\"} 1"),
            std::string::npos)
      << exposition;
}

TEST_F(ServiceTest, BadRequestsGetClearStatusCodes) {
  v1::InferResponse resp;
  v1::InferRequest unknown;
  unknown.set_model_name("nope");
  *unknown.add_images() = Image(1);
  EXPECT_EQ(Infer(unknown, &resp).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::InferRequest traversal = unknown;
  traversal.set_model_name("../demo");
  EXPECT_EQ(Infer(traversal, &resp).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::InferRequest short_data;
  short_data.set_model_name("demo");
  *short_data.add_images() = Image(1);
  short_data.mutable_images(0)->set_data("abc");
  auto s = Infer(short_data, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("bytes"), std::string::npos) << s.error_message();

  v1::InferRequest wrong_dtype = short_data;
  *wrong_dtype.mutable_images(0) = Image(1);
  wrong_dtype.mutable_images(0)->set_dtype(v1::DATA_TYPE_FLOAT32);
  EXPECT_EQ(Infer(wrong_dtype, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest no_dtype = short_data;
  *no_dtype.mutable_images(0) = Image(1);
  no_dtype.mutable_images(0)->set_dtype(v1::DATA_TYPE_UNSPECIFIED);
  EXPECT_EQ(Infer(no_dtype, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest bad_shape = short_data;
  *bad_shape.mutable_images(0) = Image(1);
  bad_shape.mutable_images(0)->add_shape(1);
  bad_shape.mutable_images(0)->add_shape(1);
  EXPECT_EQ(Infer(bad_shape, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest empty;
  empty.set_model_name("demo");
  EXPECT_EQ(Infer(empty, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest too_many;
  too_many.set_model_name("demo");
  for (int i = 0; i < 3; ++i) *too_many.add_images() = Image(1);
  EXPECT_EQ(Infer(too_many, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest huge;
  huge.set_model_name("demo");
  *huge.add_images() = Image(1, 256, 512);  // 128 KiB, above the 64 KiB message limit
  EXPECT_EQ(Infer(huge, &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // After all of that, the service still answers.
  v1::InferRequest good;
  good.set_model_name("demo");
  *good.add_images() = Image(255);
  EXPECT_TRUE(Infer(good, &resp).ok());
}

TEST_F(ServiceTest, FullQueueAndExpiredDeadlines) {
  ASSERT_NE(factory_.last, nullptr);
  factory_.last->Hold();
  v1::InferRequest req;
  req.set_model_name("demo");
  *req.add_images() = Image(1);

  // One request occupies the instance, two fill the queue.
  std::vector<std::thread> callers;
  std::vector<grpc::Status> results(3);
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back([&, i] {
      v1::InferResponse r;
      results[static_cast<size_t>(i)] = Infer(req, &r);
    });
    if (i == 0) factory_.last->WaitStarted(1);
  }
  // Wait until both queued requests are pending.
  for (int spin = 0; spin < 500; ++spin) {
    if (registry_.Serialize().find("secondread_inference_pending_requests{model=\"demo\",version=\"1\"} 2") !=
        std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  v1::InferResponse resp;
  EXPECT_EQ(Infer(req, &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  factory_.last->Release();
  for (auto& t : callers) t.join();
  for (const auto& s : results) EXPECT_TRUE(s.ok()) << s.error_message();

  // A deadline already in the past is dropped before compute.
  factory_.last->Hold();
  v1::InferRequest busy = req;
  std::thread occupier([&] {
    v1::InferResponse r;
    Infer(busy, &r);
  });
  factory_.last->WaitStarted(3);
  v1::InferRequest late = req;
  const auto past = std::chrono::system_clock::now() - std::chrono::seconds(1);
  late.mutable_deadline()->set_seconds(std::chrono::duration_cast<std::chrono::seconds>(past.time_since_epoch()).count());
  std::thread late_caller([&] {
    v1::InferResponse r;
    EXPECT_EQ(Infer(late, &r).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  factory_.last->Release();
  occupier.join();
  late_caller.join();
  EXPECT_EQ(factory_.last->batches().size(), 3u);
}

TEST_F(ServiceTest, ListDescribeHealthAndAdmin) {
  grpc::ClientContext c1;
  v1::ListModelsResponse list;
  ASSERT_TRUE(stub_->ListModels(&c1, {}, &list).ok());
  ASSERT_EQ(list.models_size(), 1);
  EXPECT_EQ(list.models(0).versions(0).state(), v1::MODEL_STATE_READY);

  grpc::ClientContext c2;
  v1::DescribeModelRequest dreq;
  dreq.set_model_name("demo");
  v1::ModelDescription desc;
  ASSERT_TRUE(stub_->DescribeModel(&c2, dreq, &desc).ok());
  EXPECT_EQ(desc.input().height(), 4u);
  EXPECT_EQ(desc.labels(0).code().value(), "111001");
  EXPECT_EQ(desc.intended_use(), "testing only");
  EXPECT_EQ(desc.input().scaling(), "minmax");
  EXPECT_EQ(desc.input().pixel_values(), "display");

  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext c3;
  grpc::health::v1::HealthCheckResponse hresp;
  ASSERT_TRUE(health->Check(&c3, {}, &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  auto admin = v1::ModelAdmin::NewStub(channel_);
  grpc::ClientContext c4;
  v1::UnloadModelRequest ureq;
  ureq.set_model_name("demo");
  v1::UnloadModelResponse uresp;
  ASSERT_TRUE(admin->UnloadModel(&c4, ureq, &uresp).ok());
  v1::InferRequest req;
  req.set_model_name("demo");
  *req.add_images() = Image(1);
  v1::InferResponse resp;
  EXPECT_EQ(Infer(req, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);

  grpc::ClientContext c5;
  v1::LoadModelRequest lreq;
  lreq.set_model_name("demo");
  v1::LoadModelResponse lresp;
  ASSERT_TRUE(admin->LoadModel(&c5, lreq, &lresp).ok());
  EXPECT_TRUE(Infer(req, &resp).ok());
}

}  // namespace
}  // namespace secondread::inference
