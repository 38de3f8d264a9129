#include "inference/model_repository.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/unit/inference/fake_backend.h"

namespace secondread::inference {
namespace {

namespace fs = std::filesystem;

constexpr char kManifest[] = R"(name: NAME
intended_use: testing only
input: {channels: 1, height: 8, width: 8}
output:
  labels:
    - {name: finding, code: {scheme: DCM, value: "111001", meaning: Finding}, threshold: 0.5}
max_batch_size: 4
)";

// Creates backends that are fakes, except for model files whose content is
// "broken", which fail the way a corrupt TorchScript file would.
class FakeFactory final : public BackendFactory {
 public:
  absl::StatusOr<std::vector<std::unique_ptr<ModelBackend>>> Create(const ModelConfig& config,
                                                                    const fs::path& model_file) override {
    std::ifstream in(model_file);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (content == "broken") return absl::FailedPreconditionError("cannot load model.pt: not a TorchScript archive");
    std::vector<std::unique_ptr<ModelBackend>> out;
    out.push_back(std::make_unique<testing::FakeBackend>());
    return out;
  }
};

class ModelRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("repo_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  void AddModel(const std::string& name, const std::string& manifest, const std::map<int, std::string>& versions) {
    fs::create_directories(root_ / name);
    std::ofstream(root_ / name / "model.yaml") << manifest;
    for (const auto& [v, content] : versions) {
      fs::create_directories(root_ / name / std::to_string(v));
      std::ofstream(root_ / name / std::to_string(v) / "model.pt") << content;
    }
  }
  std::string Manifest(const std::string& name) {
    std::string m = kManifest;
    return m.replace(m.find("NAME"), 4, name);
  }

  fs::path root_;
  FakeFactory factory_;
};

TEST_F(ModelRepositoryTest, BrokenModelsAreUnavailableWithAReasonAndTheRestServe) {
  AddModel("good", Manifest("good"), {{1, "ok"}, {2, "ok"}});
  AddModel("bad-yaml", "name: bad-yaml\ninput: [", {{1, "ok"}});
  AddModel("wrong-name", Manifest("someone-else"), {{1, "ok"}});
  AddModel("bad-file", Manifest("bad-file"), {{1, "broken"}});
  AddModel("no-versions", Manifest("no-versions"), {});
  ModelRepository repo({root_, &factory_, nullptr});
  ASSERT_TRUE(repo.LoadAtStart({}).ok());

  auto list = repo.List();
  ASSERT_EQ(list.size(), 5u);
  std::map<std::string, ModelStatus> by_name;
  for (const auto& m : list) by_name[m.name] = m;

  // Only the newest version is selected by the default policy.
  ASSERT_EQ(by_name["good"].versions.size(), 1u);
  EXPECT_EQ(by_name["good"].versions[0].version, 2);
  EXPECT_EQ(by_name["good"].versions[0].state, VersionState::kReady);

  auto reason = [&](const std::string& name) {
    EXPECT_EQ(by_name[name].versions.at(0).state, VersionState::kUnavailable) << name;
    return by_name[name].versions.at(0).reason;
  };
  EXPECT_NE(reason("bad-yaml").find("YAML"), std::string::npos);
  EXPECT_NE(reason("wrong-name").find("differs from its directory"), std::string::npos);
  EXPECT_NE(reason("bad-file").find("TorchScript"), std::string::npos);
  EXPECT_NE(reason("no-versions").find("no version"), std::string::npos);

  EXPECT_TRUE(repo.AnyReady());
  auto got = repo.Get("good", 0);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)->version, 2);
  EXPECT_EQ(repo.Get("good", 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(repo.Get("bad-file", 0).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(repo.Get("bad-file", 0).status().message().find("TorchScript"), std::string::npos);
  EXPECT_EQ(repo.Get("missing", 0).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, LoadAndUnloadOnDemand) {
  AddModel("m", Manifest("m"), {{1, "ok"}});
  ModelRepository repo({root_, &factory_, nullptr});
  ASSERT_TRUE(repo.LoadAtStart({"m"}).ok());
  ASSERT_TRUE(repo.Get("m", 0).ok());
  std::shared_ptr<LoadedVersion> held = *repo.Get("m", 0);

  ASSERT_TRUE(repo.Unload("m").ok());
  auto after = repo.Get("m", 0);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(after.status().message().find("unloaded"), std::string::npos);
  EXPECT_FALSE(repo.AnyReady());
  // A request that already holds the version can still use it.
  EXPECT_NE(held->batcher, nullptr);
  held.reset();

  // A new version deployed while running is picked up by a reload.
  AddModel("m", Manifest("m"), {{1, "ok"}, {2, "ok"}});
  auto loaded = repo.Load("m");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->versions.at(0).version, 2);
  EXPECT_EQ((*repo.Get("m", 0))->version, 2);

  EXPECT_EQ(repo.Load("../m").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(repo.Load("absent").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(repo.Unload("absent").code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, VersionPolicyLatestTwoLoadsBoth) {
  AddModel("m", Manifest("m") + "version_policy: {latest: 2}\n", {{1, "ok"}, {2, "ok"}, {3, "ok"}});
  ModelRepository repo({root_, &factory_, nullptr});
  ASSERT_TRUE(repo.LoadAtStart({}).ok());
  EXPECT_TRUE(repo.Get("m", 3).ok());
  EXPECT_TRUE(repo.Get("m", 2).ok());
  EXPECT_FALSE(repo.Get("m", 1).ok());
}

}  // namespace
}  // namespace secondread::inference
