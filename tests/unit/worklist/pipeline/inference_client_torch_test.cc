// The node's InferVolume client against the real worker: the real
// repository, service and LibTorch backend behind a gRPC server on
// 127.0.0.1, with small TorchScript 3D networks of fixed weights. A test
// executable of its own, so that the node's libraries never link LibTorch.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <torch/script.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "inference/model_repository.h"
#include "inference/service.h"
#include "inference/torch/torch_backend.h"
#include "worklist/pipeline/inference_client.h"

namespace secondread::worklist {
namespace {

namespace fs = std::filesystem;
namespace pb = ::secondread::inference::v1;
using namespace std::chrono_literals;

// 1x1x1 convolutions over an input scaled from [0, 100] to [0, 1]: the
// foreground logit is positive where the input is above 50.
constexpr char kLabelMapNet[] = R"(
def forward(self, x):
    w = torch.full([1, 1, 1, 1, 1], 20.0, dtype=x.dtype, device=x.device)
    fg = torch.conv3d(x, w, None, [1, 1, 1], [0, 0, 0]) - 10.0
    return torch.cat([torch.zeros_like(fg), fg], 1)
)";

// "bright" above 50 and "dark" below it, as sigmoid channels.
constexpr char kProbabilityNet[] = R"(
def forward(self, x):
    w = torch.tensor([20.0, -20.0], dtype=x.dtype, device=x.device).view([2, 1, 1, 1, 1])
    b = torch.tensor([-10.0, 10.0], dtype=x.dtype, device=x.device)
    return torch.conv3d(x, w, b, [1, 1, 1], [0, 0, 0])
)";

constexpr char kSegYaml[] = R"(name: seg
intended_use: testing only
input:
  kind: volume
  intensity: {kind: range, low: 0, high: 100}
  accepted_dtypes: [float32]
sliding_window: {roi: [8, 64, 64], overlap: 0.25, blending: gaussian}
output:
  kind: label_map
  labels:
    - name: box
      category: {scheme: SCT, value: "49755003", meaning: Morphologically Abnormal Structure}
      type: {scheme: SCT, value: "108369006", meaning: Neoplasm}
      threshold: 0.5
)";

constexpr char kProbYaml[] = R"(name: prob
intended_use: testing only
input:
  kind: volume
  orientation: RAS
  intensity: {kind: range, low: 0, high: 100}
  accepted_dtypes: [float32]
sliding_window: {roi: [4, 8, 8], overlap: 0.5, blending: constant}
output:
  kind: probabilities
  labels:
    - name: bright
      category: {scheme: SCT, value: "49755003", meaning: Morphologically Abnormal Structure}
      type: {scheme: SCT, value: "108369006", meaning: Neoplasm}
      threshold: 0.5
    - name: dark
      category: {scheme: SCT, value: "91723000", meaning: Anatomical Structure}
      type: {scheme: SCT, value: "39607008", meaning: Lung}
      threshold: 0.5
)";

struct Box {
  std::array<uint32_t, 3> shape;
  std::vector<float> voxels;
  size_t inside = 0;
  // Zeros with 90 over [d/4, d/2) x [h/4, h/2) x [w/4, 3w/4).
  explicit Box(std::array<uint32_t, 3> s) : shape(s), voxels(size_t{s[0]} * s[1] * s[2], 0.0f) {
    for (uint32_t z = s[0] / 4; z < s[0] / 2; ++z)
      for (uint32_t y = s[1] / 4; y < s[1] / 2; ++y)
        for (uint32_t x = s[2] / 4; x < 3 * s[2] / 4; ++x) {
          voxels[(size_t{z} * s[1] + y) * s[2] + x] = 90.0f;
          ++inside;
        }
  }
};

class InferVolumeRealWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("inference_client_torch_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    WriteModel("seg", kSegYaml, kLabelMapNet);
    WriteModel("prob", kProbYaml, kProbabilityNet);
    repo_ = std::make_unique<inference::ModelRepository>(inference::RepositoryOptions{root_, &factory_, nullptr});
    ASSERT_TRUE(repo_->LoadAtStart({}).ok());
    for (const auto& m : repo_->List()) {
      for (const auto& v : m.versions) {
        ASSERT_EQ(v.state, inference::VersionState::kReady) << m.name << ": " << v.reason;
      }
    }
    service_ = std::make_unique<inference::InferenceService>(inference::ServiceOptions{}, repo_.get(), nullptr);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    // Left at gRPC's default 4 MiB receive limit, the smallest a worker may
    // run with: the client's chunks must fit it.
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    InferenceClientOptions o;
    o.endpoints = {"127.0.0.1:" + std::to_string(port)};
    o.health_interval = 100ms;
    auto c = InferenceClient::Create(o);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }

  void TearDown() override {
    client_.reset();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 1s);
    server_.reset();
    service_.reset();
    repo_.reset();
    fs::remove_all(root_);
  }

  void WriteModel(const std::string& name, const char* yaml, const char* net) {
    fs::create_directories(root_ / name / "1");
    std::ofstream(root_ / name / "model.yaml") << yaml;
    torch::jit::Module m("m_" + name);
    m.define(net);
    m.save((root_ / name / "1" / "model.pt").string());
  }

  static VolumeCall Call(const std::string& model, const Box& box) {
    VolumeCall c;
    c.model = model;
    c.job_token = "real-1";
    c.shape = box.shape;
    c.voxels = box.voxels.data();
    c.spacing_mm = {1.0, 1.0, 1.0};
    c.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    c.modality.set_scheme("DCM");
    c.modality.set_value("CT");
    return c;
  }

  fs::path root_;
  inference::torch_backend::TorchBackendFactory factory_{inference::torch_backend::TorchOptions{}};
  std::unique_ptr<inference::ModelRepository> repo_;
  std::unique_ptr<inference::InferenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  InferenceClient::Ptr client_;
};

TEST_F(InferVolumeRealWorkerTest, SeveralChunksInAndTheLabelMapBackOnTheSourceGrid) {
  const Box box({16, 256, 288});  // 4.7 MB of float32: two chunks
  auto answer = client_->InferVolume(Call("seg", box));
  ASSERT_TRUE(answer.ok()) << answer.status();
  const auto& h = answer->header;
  EXPECT_EQ(h.job_token(), "real-1");
  EXPECT_EQ(h.model_name(), "seg");
  EXPECT_EQ(h.model_version(), 1);
  ASSERT_EQ(h.shape_size(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.shape(i), box.shape[static_cast<size_t>(i)]) << i;
  ASSERT_EQ(answer->maps.size(), 1u);
  ASSERT_EQ(answer->maps[0].size(), box.voxels.size());
  size_t wrong = 0;
  for (size_t i = 0; i < box.voxels.size(); ++i) wrong += answer->maps[0][i] != (box.voxels[i] > 50 ? 1 : 0);
  EXPECT_EQ(wrong, 0u);
  ASSERT_EQ(h.labels_size(), 1);
  EXPECT_EQ(h.labels(0).voxel_count(), box.inside);
  EXPECT_TRUE(h.labels(0).above_threshold());
}

TEST_F(InferVolumeRealWorkerTest, ProbabilityMapsFollowTheLabelMap) {
  const Box box({8, 12, 16});
  auto answer = client_->InferVolume(Call("prob", box));
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->header.maps_size(), 3);
  EXPECT_EQ(answer->header.maps(1).label(), "bright");
  EXPECT_EQ(answer->header.maps(2).label(), "dark");
  ASSERT_EQ(answer->maps.size(), 3u);
  for (size_t i = 0; i < box.voxels.size(); ++i) {
    const bool bright = box.voxels[i] > 50;
    ASSERT_EQ(answer->maps[0][i], bright ? 1 : 2) << i;
    ASSERT_EQ(answer->maps[1][i] > 250, bright) << i;
    ASSERT_EQ(answer->maps[2][i] > 250, !bright) << i;
  }
}

TEST_F(InferVolumeRealWorkerTest, TheWorkersRefusalsReachTheCaller) {
  const Box box({8, 12, 16});
  EXPECT_EQ(client_->InferVolume(Call("nope", box)).status().code(), absl::StatusCode::kNotFound);
  VolumeCall bad = Call("seg", box);
  bad.spacing_mm = {0, 1, 1};
  EXPECT_EQ(client_->InferVolume(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace secondread::worklist
