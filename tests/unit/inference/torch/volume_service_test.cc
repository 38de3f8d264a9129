// InferVolume end to end in one process: a real gRPC server and channel, the
// real repository and LibTorch backend, and small TorchScript 3D networks
// with fixed weights written by the test.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <filesystem>
#include <fstream>

#include "inference/model_repository.h"
#include "inference/service.h"
#include "inference/torch/torch_backend.h"
#include "inference/worker_metrics.h"
#include "secondread/inference/v1/inference.grpc.pb.h"

namespace secondread::inference {
namespace {

namespace fs = std::filesystem;

// A 1x1x1 convolution with weight 20 and bias -10 over an input scaled to
// [0, 1]: positive where the input is above 0.5. Channel 0 is background.
constexpr char kLabelMapNet[] = R"(
def forward(self, x):
    w = torch.full([1, 1, 1, 1, 1], 20.0, dtype=x.dtype, device=x.device)
    fg = torch.conv3d(x, w, None, [1, 1, 1], [0, 0, 0]) - 10.0
    return torch.cat([torch.zeros_like(fg), fg], 1)
)";

// Two sigmoid channels: "bright" above 0.5 and "dark" below it.
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
  orientation: RAS
  spacing: [2.0, 1.0, 1.0]
  intensity: {kind: range, low: 0, high: 100}
  accepted_dtypes: [int16, uint16]
sliding_window: {roi: [4, 4, 4], overlap: 0.25, blending: gaussian, batch_size: 2}
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
  axes: WHD
  intensity: {kind: range, low: 0, high: 100}
  accepted_dtypes: [int16]
sliding_window: {roi: [3, 5, 5], overlap: 0.5, blending: constant}
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

struct Volume {
  int64_t d, h, w;
  std::vector<int16_t> samples;
  std::string Bytes() const { return std::string(reinterpret_cast<const char*>(samples.data()), samples.size() * 2); }
};

// Zeros with a box of 90 at [1, 4) x [2, 7) x [3, 9).
Volume Box(int64_t d, int64_t h, int64_t w) {
  Volume v{d, h, w, std::vector<int16_t>(static_cast<size_t>(d * h * w), 0)};
  for (int64_t z = 1; z < 4; ++z)
    for (int64_t y = 2; y < 7; ++y)
      for (int64_t x = 3; x < 9; ++x) v.samples[static_cast<size_t>((z * h + y) * w + x)] = 90;
  return v;
}

struct Result {
  grpc::Status status;
  v1::VolumeResultHeader header;
  std::vector<std::string> maps;
};

class VolumeServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("volume_service_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    WriteModel("seg", kSegYaml, kLabelMapNet);
    WriteModel("prob", kProbYaml, kProbabilityNet);
    WriteModel("flat", R"(name: flat
intended_use: testing only
input: {height: 4, width: 4}
output:
  labels:
    - {name: finding, code: {scheme: DCM, value: "111001", meaning: Finding}, threshold: 0.5}
)",
               "def forward(self, x):\n    return x.mean([2, 3])\n");
  }

  void Start(ServiceOptions options, WorkerMetrics* metrics = nullptr) {
    repo_ = std::make_unique<ModelRepository>(RepositoryOptions{root_, &factory_, nullptr});
    ASSERT_TRUE(repo_->LoadAtStart({}).ok());
    for (const auto& m : repo_->List()) {
      for (const auto& v : m.versions) ASSERT_EQ(v.state, VersionState::kReady) << m.name << ": " << v.reason;
    }
    service_ = std::make_unique<InferenceService>(options, repo_.get(), metrics);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Inference::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
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

  static v1::VolumeRequest Header(const std::string& model, const Volume& v, std::vector<double> spacing,
                                  std::vector<double> direction = {1, 0, 0, 0, 1, 0, 0, 0, 1}) {
    v1::VolumeRequest r;
    auto* h = r.mutable_header();
    h->set_model_name(model);
    h->set_job_token("token-7");
    for (int64_t n : {v.d, v.h, v.w}) h->add_shape(static_cast<uint32_t>(n));
    h->set_dtype(v1::DATA_TYPE_INT16);
    for (double s : spacing) h->add_spacing_mm(s);
    for (double c : direction) h->add_direction(c);
    return r;
  }

  static v1::VolumeRequest Chunk(uint64_t offset, std::string data) {
    v1::VolumeRequest r;
    r.mutable_chunk()->set_offset(offset);
    r.mutable_chunk()->set_data(std::move(data));
    return r;
  }

  // Sends the header and `data` in chunks of `chunk` bytes, then reads
  // everything back and puts the maps together.
  Result Call(const v1::VolumeRequest& header, const std::string& data, size_t chunk) {
    grpc::ClientContext ctx;
    auto stream = stub_->InferVolume(&ctx);
    stream->Write(header);
    for (size_t off = 0; off < data.size(); off += chunk) {
      if (!stream->Write(Chunk(off, data.substr(off, chunk)))) break;
    }
    stream->WritesDone();
    return ReadAll(*stream);
  }

  static Result ReadAll(grpc::ClientReaderWriter<v1::VolumeRequest, v1::VolumeResponse>& stream) {
    Result r;
    v1::VolumeResponse resp;
    while (stream.Read(&resp)) {
      if (resp.has_header()) {
        r.header = resp.header();
        r.maps.resize(static_cast<size_t>(r.header.maps_size()));
      } else {
        const auto& c = resp.chunk();
        EXPECT_LT(c.map(), r.maps.size());
        if (c.map() >= r.maps.size()) continue;
        EXPECT_EQ(c.offset(), r.maps[c.map()].size());  // in order, no gaps
        EXPECT_LE(c.data().size(), kMaxVolumeChunkBytes);
        r.maps[c.map()] += c.data();
      }
    }
    r.status = stream.Finish();
    return r;
  }

  fs::path root_;
  torch_backend::TorchBackendFactory factory_{torch_backend::TorchOptions{}};
  std::unique_ptr<ModelRepository> repo_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(VolumeServiceTest, ChunksAreReassembledAndTheLabelMapComesBackOnTheSourceGrid) {
  Start({});
  const Volume v = Box(6, 10, 12);
  // The model's spacing, so the label map must match the box exactly; the
  // model works in RAS, so the worker flips and flips back.
  Result r = Call(Header("seg", v, {2.0, 1.0, 1.0}), v.Bytes(), 100);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.header.job_token(), "token-7");
  EXPECT_EQ(r.header.model_version(), 1);
  ASSERT_EQ(r.header.shape_size(), 3);
  EXPECT_EQ(r.header.shape(0), 6u);
  EXPECT_EQ(r.header.shape(2), 12u);
  EXPECT_DOUBLE_EQ(r.header.spacing_mm(0), 2.0);
  ASSERT_EQ(r.header.maps_size(), 1);
  EXPECT_EQ(r.header.maps(0).kind(), v1::VOLUME_MAP_KIND_LABEL_MAP);
  ASSERT_EQ(r.maps[0].size(), v.samples.size());
  for (size_t i = 0; i < v.samples.size(); ++i) {
    ASSERT_EQ(static_cast<int>(r.maps[0][i]), v.samples[i] > 50 ? 1 : 0) << "voxel " << i;
  }
  ASSERT_EQ(r.header.labels_size(), 1);
  EXPECT_EQ(r.header.labels(0).label(), "box");
  EXPECT_EQ(r.header.labels(0).voxel_count(), 3u * 5u * 6u);
  EXPECT_TRUE(r.header.labels(0).above_threshold());
  EXPECT_GT(r.header.labels(0).max_probability(), 0.99f);

  // Nothing bright: nothing found.
  const Volume empty{6, 10, 12, std::vector<int16_t>(720, 10)};
  r = Call(Header("seg", empty, {2.0, 1.0, 1.0}), empty.Bytes(), 4096);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.header.labels(0).voxel_count(), 0u);
  EXPECT_FALSE(r.header.labels(0).above_threshold());
}

TEST_F(VolumeServiceTest, Uint16SamplesAreWidenedWithoutSign) {
  Start({});
  // 60000 as uint16 is far above the range's top; read as int16 it would be
  // negative and vanish.
  std::vector<uint16_t> samples(4 * 4 * 4, 0);
  samples[21] = 60000;
  v1::VolumeRequest header = Header("seg", Volume{4, 4, 4, {}}, {2, 1, 1});
  header.mutable_header()->set_dtype(v1::DATA_TYPE_UINT16);
  Result r = Call(header, std::string(reinterpret_cast<const char*>(samples.data()), samples.size() * 2), 64);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.maps[0].size(), 64u);
  for (size_t i = 0; i < 64; ++i) EXPECT_EQ(static_cast<int>(r.maps[0][i]), i == 21 ? 1 : 0) << i;
}

TEST_F(VolumeServiceTest, AnisotropicSourceIsResampledAndComesBackOnItsOwnGrid) {
  Start({});
  const Volume v = Box(6, 10, 12);
  // Slices 4 mm apart and head to feet; rows 0.5 mm: the model grid differs
  // on every axis, the answer must not.
  Result r = Call(Header("seg", v, {4.0, 0.5, 0.5}, {1, 0, 0, 0, 1, 0, 0, 0, -1}), v.Bytes(), 333);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.header.shape_size(), 3);
  EXPECT_EQ(r.header.shape(0), 6u);
  EXPECT_EQ(r.header.shape(1), 10u);
  EXPECT_EQ(r.header.shape(2), 12u);
  ASSERT_EQ(r.maps[0].size(), v.samples.size());
  auto at = [&](int z, int y, int x) { return static_cast<int>(r.maps[0][static_cast<size_t>((z * 10 + y) * 12 + x)]); };
  EXPECT_EQ(at(2, 4, 5), 1);  // inside the box
  EXPECT_EQ(at(0, 0, 0), 0);
  EXPECT_EQ(at(5, 9, 11), 0);
  EXPECT_EQ(at(2, 4, 1), 0);
  const uint64_t count = r.header.labels(0).voxel_count();
  EXPECT_GT(count, 40u);
  EXPECT_LT(count, 140u);
}

TEST_F(VolumeServiceTest, ComputeIsReportedByStepInTheHeaderAndTheWorkerMetrics) {
  metrics::MetricsRegistry registry;
  WorkerMetrics metrics(registry);
  Start({}, &metrics);
  const Volume v = Box(6, 10, 12);
  // Anisotropic, so that there is resampling both ways.
  Result r = Call(Header("seg", v, {4.0, 0.5, 0.5}), v.Bytes(), 333);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const auto& steps = r.header.volume_timings();
  EXPECT_GT(steps.resample_us(), 0);
  EXPECT_GT(steps.inference_us(), 0);
  EXPECT_GT(steps.resample_back_us(), 0);
  // The steps are parts of compute, measured inside it.
  EXPECT_LE(steps.resample_us() + steps.inference_us() + steps.resample_back_us(), r.header.timing().compute_us());
  const std::string text = registry.Serialize();
  for (const char* step : {"receive", "resample", "inference", "resample_back"}) {
    EXPECT_NE(text.find(std::string("secondread_inference_volume_step_duration_seconds_count{model=\"seg\",step=\"") +
                        step + "\",version=\"1\"} 1"),
              std::string::npos)
        << step << "\n" << text;
  }
}

TEST_F(VolumeServiceTest, ProbabilityModelsStreamOneMapPerLabel) {
  Start({});
  const Volume v = Box(6, 10, 12);
  Result r = Call(Header("prob", v, {1.0, 1.0, 1.0}, {0, 1, 0, 0, 0, -1, 1, 0, 0}), v.Bytes(), 1000);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.header.maps_size(), 3);
  EXPECT_EQ(r.header.maps(1).kind(), v1::VOLUME_MAP_KIND_PROBABILITY);
  EXPECT_EQ(r.header.maps(1).label(), "bright");
  EXPECT_EQ(r.header.maps(2).label(), "dark");
  ASSERT_EQ(r.maps[1].size(), v.samples.size());
  ASSERT_EQ(r.maps[2].size(), v.samples.size());
  for (size_t i = 0; i < v.samples.size(); ++i) {
    const bool bright = v.samples[i] > 50;
    // sigmoid(20 * 0.9 - 10) = sigmoid(8) and sigmoid(-10) on a 0..255 scale.
    ASSERT_EQ(static_cast<uint8_t>(r.maps[1][i]), bright ? 255 : 0) << i;
    ASSERT_EQ(static_cast<uint8_t>(r.maps[2][i]), bright ? 0 : 255) << i;
    ASSERT_EQ(static_cast<int>(r.maps[0][i]), bright ? 1 : 2) << i;
  }
  EXPECT_EQ(r.header.labels(0).voxel_count(), 90u);
  EXPECT_EQ(r.header.labels(1).voxel_count(), v.samples.size() - 90u);
}

TEST_F(VolumeServiceTest, ChunksThatDoNotAddUpAreRefused) {
  Start({});
  const Volume v = Box(6, 10, 12);
  const std::string data = v.Bytes();
  // Short by one byte.
  Result r = Call(Header("seg", v, {2, 1, 1}), data.substr(0, data.size() - 1), 500);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find("need"), std::string::npos) << r.status.error_message();
  // One byte too many.
  r = Call(Header("seg", v, {2, 1, 1}), data + "x", 500);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A gap between chunks.
  {
    grpc::ClientContext ctx;
    auto stream = stub_->InferVolume(&ctx);
    stream->Write(Header("seg", v, {2, 1, 1}));
    stream->Write(Chunk(0, data.substr(0, 100)));
    stream->Write(Chunk(200, data.substr(200)));
    stream->WritesDone();
    r = ReadAll(*stream);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(r.status.error_message().find("offset"), std::string::npos) << r.status.error_message();
  }
  // Data without a header, and no message at all.
  r = Call(Chunk(0, data), "", 1);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = Call(v1::VolumeRequest(), "", 1);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A header with the wrong geometry.
  r = Call(Header("seg", v, {2, 1}), data, 4096);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = Call(Header("seg", v, {2, 1, 1}, {1, 0, 0, 1, 0, 0, 0, 0, 1}), data, 4096);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(VolumeServiceTest, TooLargeIsRefusedFromTheHeaderAlone) {
  ServiceOptions options;
  options.max_volume_bytes = 1000;
  Start(options);
  const Volume v = Box(6, 10, 12);  // 1440 bytes
  grpc::ClientContext ctx;
  auto stream = stub_->InferVolume(&ctx);
  ASSERT_TRUE(stream->Write(Header("seg", v, {2, 1, 1})));
  // No data sent and the side left open: the refusal cannot depend on data.
  Result r = ReadAll(*stream);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(r.status.error_message().find("1000"), std::string::npos) << r.status.error_message();
}

TEST_F(VolumeServiceTest, ConcurrentVolumesAreBounded) {
  ServiceOptions options;
  options.max_concurrent_volumes = 1;
  Start(options);
  const Volume v = Box(6, 10, 12);
  grpc::ClientContext first_ctx;
  auto first = stub_->InferVolume(&first_ctx);
  ASSERT_TRUE(first->Write(Header("seg", v, {2, 1, 1})));
  // The first call holds its slot once the header is read; poll until then.
  grpc::StatusCode second = grpc::StatusCode::OK;
  for (int attempt = 0; attempt < 200 && second != grpc::StatusCode::RESOURCE_EXHAUSTED; ++attempt) {
    grpc::ClientContext ctx;
    auto stream = stub_->InferVolume(&ctx);
    stream->Write(Header("seg", v, {2, 1, 1}));
    stream->Write(Chunk(0, v.Bytes()));
    stream->WritesDone();
    second = ReadAll(*stream).status.error_code();
  }
  EXPECT_EQ(second, grpc::StatusCode::RESOURCE_EXHAUSTED);
  // The first call is unaffected, and its slot comes back when it ends.
  ASSERT_TRUE(first->Write(Chunk(0, v.Bytes())));
  first->WritesDone();
  Result r = ReadAll(*first);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  r = Call(Header("seg", v, {2, 1, 1}), v.Bytes(), 4096);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

TEST_F(VolumeServiceTest, DescribeModelCarriesTheVolumeFactsAndInferRefusesVolumeModels) {
  ServiceOptions options;
  options.max_volume_bytes = 123456;
  Start(options);
  grpc::ClientContext ctx;
  v1::DescribeModelRequest req;
  req.set_model_name("seg");
  v1::ModelDescription d;
  ASSERT_TRUE(stub_->DescribeModel(&ctx, req, &d).ok());
  EXPECT_EQ(d.input().kind(), v1::INPUT_KIND_VOLUME);
  const auto& vs = d.input().volume();
  EXPECT_EQ(vs.axes(), "DHW");
  EXPECT_EQ(vs.orientation(), v1::PATIENT_ORIENTATION_RAS);
  ASSERT_EQ(vs.spacing_mm_size(), 3);
  EXPECT_DOUBLE_EQ(vs.spacing_mm(0), 2.0);
  EXPECT_EQ(vs.intensity(), v1::VOLUME_INTENSITY_RANGE);
  ASSERT_EQ(vs.roi_size(), 3);
  EXPECT_EQ(vs.roi(0), 4u);
  EXPECT_EQ(vs.output(), v1::VOLUME_OUTPUT_KIND_LABEL_MAP);
  EXPECT_TRUE(vs.resample_back());
  EXPECT_EQ(vs.max_volume_bytes(), 123456u);
  ASSERT_EQ(d.labels_size(), 1);
  EXPECT_EQ(d.labels(0).segment_type().value(), "108369006");
  EXPECT_EQ(d.labels(0).segment_category().meaning(), "Morphologically Abnormal Structure");
  EXPECT_EQ(d.labels(0).code().value(), "108369006");  // defaults to the type

  grpc::ClientContext ictx;
  v1::InferRequest ireq;
  ireq.set_model_name("seg");
  v1::InferResponse iresp;
  EXPECT_EQ(stub_->Infer(&ictx, ireq, &iresp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // And the other way round: an image model takes no volume.
  const Volume v = Box(6, 10, 12);
  Result r = Call(Header("flat", v, {2, 1, 1}), v.Bytes(), 4096);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("use Infer"), std::string::npos) << r.status.error_message();
  r = Call(Header("absent", v, {2, 1, 1}), v.Bytes(), 4096);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace secondread::inference
