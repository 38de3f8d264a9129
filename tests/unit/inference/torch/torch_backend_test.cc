#include "inference/torch/torch_backend.h"

#include <gtest/gtest.h>
#include <torch/script.h>

#include <fstream>

#include "inference/model_repository.h"

namespace secondread::inference::torch_backend {
namespace {

namespace fs = std::filesystem;

class TorchBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("torch_backend_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a TorchScript module whose forward is `body`.
  fs::path Script(const std::string& name, const std::string& body) {
    torch::jit::Module m("m_" + name);
    m.define(body);
    fs::path p = dir_ / (name + ".pt");
    m.save(p.string());
    return p;
  }

  static ModelConfig Config(int labels = 1, bool heatmap = true) {
    ModelConfig c;
    c.name = "t";
    c.intended_use = "testing";
    c.input.height = 8;
    c.input.width = 8;
    c.input.mean = {0};
    c.input.std = {1};
    c.input.accepted_dtypes = {DType::kUint8};
    c.output.heatmap = heatmap;
    for (int i = 0; i < labels; ++i) c.output.labels.push_back({"l" + std::to_string(i), {"DCM", "1", "x"}, 0.5});
    c.batching.max_batch_size = 4;
    return c;
  }

  fs::path dir_;
  TorchBackendFactory factory_{TorchOptions{}};
};

constexpr char kMeanModel[] = R"(
def forward(self, x):
    s = x.mean([1, 2, 3]).unsqueeze(1) * 8.0 - 4.0
    h = x[:, :, ::2, ::2] * 8.0 - 4.0
    return (s, h)
)";

struct Images {
  std::vector<std::string> bytes;
  std::vector<ImageView> views;
  std::vector<const ImageView*> ptrs;
  // Each image: first pixel `v`, the rest 0 (so minmax puts it at 1).
  explicit Images(std::vector<int> firsts, int rows = 8, int cols = 8) {
    bytes.reserve(firsts.size());
    views.reserve(firsts.size());
    for (int f : firsts) {
      bytes.emplace_back(static_cast<size_t>(rows * cols), '\0');
      bytes.back()[0] = static_cast<char>(f);
      ImageView v;
      v.shape = {rows, cols};
      v.dtype = DType::kUint8;
      v.data = bytes.back();
      views.push_back(v);
    }
    for (auto& v : views) ptrs.push_back(&v);
  }
};

TEST_F(TorchBackendTest, RunsABatchAndAppliesActivations) {
  auto backends = factory_.Create(Config(), Script("mean", kMeanModel));
  ASSERT_TRUE(backends.ok()) << backends.status();
  ASSERT_EQ(backends->size(), 1u);
  EXPECT_EQ((*backends)[0]->Device(), "cpu");
  Images imgs({255, 0});
  auto out = (*backends)[0]->Execute(imgs.ptrs);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 2u);
  // Image 0 after minmax: one pixel of 64 at 1 -> mean 1/64.
  EXPECT_NEAR((*out)[0].scores[0], 1.0 / (1.0 + std::exp(-(8.0 / 64 - 4.0))), 1e-5);
  // Image 1 is flat -> zeros -> sigmoid(-4).
  EXPECT_NEAR((*out)[1].scores[0], 1.0 / (1.0 + std::exp(4.0)), 1e-5);
  EXPECT_EQ((*out)[0].heatmap_height, 4);
  EXPECT_EQ((*out)[0].heatmap_width, 4);
  ASSERT_EQ((*out)[0].heatmaps.size(), 1u);
  EXPECT_NEAR((*out)[0].heatmaps[0][0], 1.0 / (1.0 + std::exp(-4.0)), 1e-5);
  EXPECT_NEAR((*out)[0].heatmaps[0][1], 1.0 / (1.0 + std::exp(4.0)), 1e-5);
}

TEST_F(TorchBackendTest, AnExceptionInTheModelFailsThatBatchOnly) {
  // Indexes out of range, so LibTorch throws, whenever any pixel is bright;
  // the all-zero warm-up batch passes.
  auto backends = factory_.Create(Config(), Script("throws", R"(
def forward(self, x):
    k = int(x.max().item() * 10.0)
    guard = torch.zeros([2])[k]
    return (x.mean([1, 2, 3]).unsqueeze(1) + guard, x[:, :, ::2, ::2])
)"));
  ASSERT_TRUE(backends.ok()) << backends.status();
  auto& b = *(*backends)[0];
  Images bright({1, 2, 3});
  auto failed = b.Execute(bright.ptrs);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(failed.status().message().find("index 10 out of range"), std::string::npos) << failed.status().message();
  Images flat({0, 0});
  EXPECT_TRUE(b.Execute(flat.ptrs).ok());
}

TEST_F(TorchBackendTest, BrokenOrMismatchedModelsAreRefusedAtLoad) {
  fs::path garbage = dir_ / "garbage.pt";
  std::ofstream(garbage) << "this is not a TorchScript archive";
  auto g = factory_.Create(Config(), garbage);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition);

  auto wrong_labels = factory_.Create(Config(/*labels=*/3), Script("mean", kMeanModel));
  ASSERT_FALSE(wrong_labels.ok());
  EXPECT_NE(wrong_labels.status().message().find("declares 3 labels"), std::string::npos)
      << wrong_labels.status().message();

  auto no_heatmap = factory_.Create(Config(1, true), Script("scores_only", R"(
def forward(self, x):
    return x.mean([1, 2, 3]).unsqueeze(1)
)"));
  ASSERT_FALSE(no_heatmap.ok());
  EXPECT_NE(no_heatmap.status().message().find("heatmap"), std::string::npos);

  ModelConfig half = Config();
  half.precision = Precision::kFp16;
  EXPECT_EQ(factory_.Create(half, Script("mean", kMeanModel)).status().code(), absl::StatusCode::kFailedPrecondition);
  if (!CudaAvailable()) {
    ModelConfig gpu = Config();
    gpu.placement.cuda = true;
    auto cuda = factory_.Create(gpu, Script("mean", kMeanModel));
    ASSERT_FALSE(cuda.ok());
    EXPECT_NE(cuda.status().message().find("CUDA"), std::string::npos);
  }
}

TEST_F(TorchBackendTest, SeveralInstancesAreCreatedAsPlaced) {
  ModelConfig c = Config();
  c.placement.count = 2;
  auto backends = factory_.Create(c, Script("mean", kMeanModel));
  ASSERT_TRUE(backends.ok());
  EXPECT_EQ(backends->size(), 2u);
}

#ifdef SECONDREAD_MODEL_REPOSITORY
TEST(ReferenceModelTest, TheCommittedReferenceModelLoadsAndProducesAHeatmap) {
  TorchBackendFactory factory{TorchOptions{}};
  ModelRepository repo({SECONDREAD_MODEL_REPOSITORY, &factory, nullptr});
  ASSERT_TRUE(repo.LoadAtStart({"synthetic-nodule-demo"}).ok());
  auto model = repo.Get("synthetic-nodule-demo", 0);
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = (*model)->config;
  EXPECT_NE(c.intended_use.find("not for clinical use"), std::string::npos);
  ASSERT_TRUE(c.output.heatmap);
  ASSERT_EQ(c.output.labels.size(), 1u);
}
#endif

}  // namespace
}  // namespace secondread::inference::torch_backend
