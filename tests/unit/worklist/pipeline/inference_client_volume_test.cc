// InferVolume from the node's side, against in-process gRPC servers on
// 127.0.0.1: scriptable fake workers that record what arrives and answer
// whatever a test wants (including answers that break the contract), and
// the real worker service where the client relies on its wording.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "inference/service.h"
#include "secondread/inference/v1/inference.grpc.pb.h"
#include "tests/unit/inference/fake_backend.h"
#include "worklist/pipeline/inference_client.h"

namespace secondread::worklist {
namespace {

namespace fs = std::filesystem;
namespace pb = ::secondread::inference::v1;
using namespace std::chrono_literals;
using Stream = grpc::ServerReaderWriter<pb::VolumeResponse, pb::VolumeRequest>;

std::chrono::system_clock::time_point FromTimestamp(const google::protobuf::Timestamp& ts) {
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::seconds(ts.seconds()) + std::chrono::nanoseconds(ts.nanos())));
}

// What one call brought to a fake worker.
struct Received {
  pb::VolumeHeader header;
  std::chrono::system_clock::time_point call_deadline;
  std::string data;
  std::vector<std::pair<uint64_t, size_t>> chunks;  // offset, size
};

using Answer = std::function<grpc::Status(grpc::ServerContext*, Stream*, const Received&)>;

// A worker that takes the header, refuses it if told to, else reads the
// data to the end and runs its answer. A test may change the answer while a
// call it gave up on still runs on the server, so each call works on copies.
class FakeVolumeService final : public pb::Inference::Service {
 public:
  grpc::Status InferVolume(grpc::ServerContext* ctx, Stream* stream) override {
    ++calls;
    grpc::Status refuse;
    Answer answer;
    {
      std::lock_guard lk(mu);
      refuse = refuse_;
      answer = answer_;
    }
    pb::VolumeRequest request;
    if (!stream->Read(&request) || !request.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no header");
    }
    Received r;
    r.header = request.header();
    r.call_deadline = ctx->deadline();
    if (!refuse.ok()) return refuse;
    while (stream->Read(&request)) {
      if (!request.has_chunk()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "not a chunk");
      r.chunks.emplace_back(request.chunk().offset(), request.chunk().data().size());
      r.data += request.chunk().data();
    }
    {
      std::lock_guard lk(mu);
      received = r;
    }
    return answer ? answer(ctx, stream, r) : grpc::Status::OK;
  }

  void SetAnswer(Answer a) {
    std::lock_guard lk(mu);
    answer_ = std::move(a);
  }
  void SetRefuse(grpc::Status s) {
    std::lock_guard lk(mu);
    refuse_ = std::move(s);
  }

  std::atomic<int> calls{0};
  std::mutex mu;
  Received received;

 private:
  grpc::Status refuse_ = grpc::Status::OK;
  Answer answer_;
};

// A gRPC server on 127.0.0.1 with the health service, for any service.
class Server {
 public:
  explicit Server(grpc::Service* service) : service_(service) {}
  ~Server() { Stop(); }
  void Start() {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port_), grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
  }
  void Stop() {
    if (!server_) return;
    server_->Shutdown(std::chrono::system_clock::now() + 100ms);
    server_->Wait();
    server_.reset();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  grpc::Service* service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

pb::VolumeResponse ResultHeader(const std::string& token, std::array<uint32_t, 3> shape, int maps,
                                const std::string& model = "vol") {
  pb::VolumeResponse r;
  auto* h = r.mutable_header();
  h->set_job_token(token);
  h->set_model_name(model);
  h->set_model_version(1);
  for (uint32_t d : shape) h->add_shape(d);
  for (double s : {2.0, 1.0, 1.0}) h->add_spacing_mm(s);
  for (int i = 0; i < maps; ++i) {
    auto* m = h->add_maps();
    m->set_kind(i == 0 ? pb::VOLUME_MAP_KIND_LABEL_MAP : pb::VOLUME_MAP_KIND_PROBABILITY);
    if (i > 0) m->set_label("label" + std::to_string(i));
    m->set_size_bytes(uint64_t{shape[0]} * shape[1] * shape[2]);
    auto* l = h->add_labels();
    l->set_label("label" + std::to_string(i + 1));
  }
  return r;
}

pb::VolumeResponse Chunk(uint32_t map, uint64_t offset, std::string data) {
  pb::VolumeResponse r;
  r.mutable_chunk()->set_map(map);
  r.mutable_chunk()->set_offset(offset);
  r.mutable_chunk()->set_data(std::move(data));
  return r;
}

// An answer that writes `messages` and ends with `end`.
Answer Script(
    std::vector<pb::VolumeResponse> messages, grpc::Status end = grpc::Status::OK) {
  return [messages = std::move(messages), end](grpc::ServerContext*, Stream* stream, const Received&) {
    for (const auto& m : messages) {
      if (!stream->Write(m)) break;
    }
    return end;
  };
}

// A recognisable volume: every voxel differs from its neighbours, and the
// values include negatives, fractions and large magnitudes.
struct Volume {
  std::array<uint32_t, 3> shape;
  std::vector<float> voxels;
  explicit Volume(std::array<uint32_t, 3> s) : shape(s) {
    voxels.resize(size_t{s[0]} * s[1] * s[2]);
    for (size_t i = 0; i < voxels.size(); ++i) voxels[i] = static_cast<float>(i % 4093) * 0.75f - 1024.0f;
  }
  std::string Bytes() const {
    std::string out(voxels.size() * 4, '\0');
    for (size_t i = 0; i < voxels.size(); ++i) {
      uint32_t v;
      std::memcpy(&v, &voxels[i], 4);
      for (int b = 0; b < 4; ++b) out[i * 4 + b] = static_cast<char>((v >> (8 * b)) & 0xff);  // little-endian
    }
    return out;
  }
};

VolumeCall Call(const Volume& v, const std::string& token = "vol-token-1") {
  VolumeCall c;
  c.model = "vol";
  c.version = 0;
  c.priority = pb::PRIORITY_STAT;
  c.job_token = token;
  c.shape = v.shape;
  c.voxels = v.voxels.data();
  c.spacing_mm = {2.5, 0.7, 0.8};
  c.direction = {0, 1, 0, 0, 0, -1, -1, 0, 0};  // a sagittal stack
  c.modality.set_scheme("DCM");
  c.modality.set_value("CT");
  c.modality.set_meaning("Computed Tomography");
  c.body_part.set_scheme("SCT");
  c.body_part.set_value("818981001");
  c.body_part.set_meaning("Abdomen");
  return c;
}

class InferVolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_server_.Start();
    b_server_.Start();
  }

  InferenceClient::Ptr Client(std::chrono::milliseconds volume_timeout = 20s, uint64_t max_result = 1ull << 30) {
    InferenceClientOptions o;
    o.endpoints = {a_server_.address(), b_server_.address()};
    o.call_timeout = 1s;  // the volume's own timeout must be the one used
    o.volume_call_timeout = volume_timeout;
    o.max_volume_result_bytes = max_result;
    o.health_interval = 100ms;
    auto c = InferenceClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  int Calls() { return a_.calls.load() + b_.calls.load(); }
  void AnswerBoth(const Answer& f) {
    a_.SetAnswer(f);
    b_.SetAnswer(f);
  }

  FakeVolumeService a_;
  FakeVolumeService b_;
  Server a_server_{&a_};
  Server b_server_{&b_};
};

TEST_F(InferVolumeTest, VolumeArrivesByteExactInOrderedChunksAndMapsComeBackWhole) {
  const Volume v({3, 700, 1000});  // 8.4 MB: three chunks
  const std::array<uint32_t, 3> out_shape{2, 350, 500};
  const size_t voxels = size_t{out_shape[0]} * out_shape[1] * out_shape[2];
  std::vector<std::string> maps;
  for (int m = 0; m < 3; ++m) {
    std::string map(voxels, '\0');
    for (size_t i = 0; i < voxels; ++i) map[i] = static_cast<char>((i * (m + 3) + static_cast<size_t>(m)) % 251);
    maps.push_back(map);
  }
  AnswerBoth([&](grpc::ServerContext*, Stream* stream, const Received& r) {
    pb::VolumeResponse header = ResultHeader(r.header.job_token(), out_shape, 3);
    header.mutable_header()->mutable_timing()->set_compute_us(1234);
    stream->Write(header);
    for (uint32_t m = 0; m < 3; ++m) {
      for (size_t off = 0; off < voxels; off += 100000) stream->Write(Chunk(m, off, maps[m].substr(off, 100000)));
    }
    return grpc::Status::OK;
  });
  auto client = Client(20s);
  ASSERT_NE(client, nullptr);
  const auto before = std::chrono::system_clock::now();
  auto answer = client->InferVolume(Call(v));
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(Calls(), 1);
  FakeVolumeService& got = a_.calls.load() == 1 ? a_ : b_;

  std::lock_guard lk(got.mu);
  const Received& r = got.received;
  EXPECT_EQ(r.header.model_name(), "vol");
  EXPECT_EQ(r.header.model_version(), 0);
  EXPECT_EQ(r.header.priority(), pb::PRIORITY_STAT);
  EXPECT_EQ(r.header.job_token(), "vol-token-1");
  ASSERT_EQ(r.header.shape_size(), 3);
  EXPECT_EQ(r.header.shape(0), 3u);
  EXPECT_EQ(r.header.shape(1), 700u);
  EXPECT_EQ(r.header.shape(2), 1000u);
  EXPECT_EQ(r.header.dtype(), pb::DATA_TYPE_FLOAT32);
  ASSERT_EQ(r.header.spacing_mm_size(), 3);
  EXPECT_EQ(r.header.spacing_mm(0), 2.5);
  EXPECT_EQ(r.header.spacing_mm(1), 0.7);
  EXPECT_EQ(r.header.spacing_mm(2), 0.8);
  ASSERT_EQ(r.header.direction_size(), 9);
  const std::array<double, 9> direction{0, 1, 0, 0, 0, -1, -1, 0, 0};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(r.header.direction(i), direction[static_cast<size_t>(i)]) << i;
  EXPECT_EQ(r.header.modality().value(), "CT");
  EXPECT_EQ(r.header.modality().scheme(), "DCM");
  EXPECT_EQ(r.header.body_part().value(), "818981001");
  EXPECT_EQ(r.header.body_part().meaning(), "Abdomen");

  // The header's deadline is the call's, volume_call_timeout away (not
  // call_timeout's 1 s).
  const auto header_deadline = FromTimestamp(r.header.deadline());
  EXPECT_LT(std::chrono::abs(header_deadline - r.call_deadline), 500ms);
  EXPECT_GT(header_deadline, before + 19s);
  EXPECT_LT(header_deadline, std::chrono::system_clock::now() + 21s);

  // In order, without gaps, none over 4 MiB, and several of them.
  EXPECT_GE(r.chunks.size(), 3u);
  uint64_t expect_offset = 0;
  for (const auto& [offset, size] : r.chunks) {
    EXPECT_EQ(offset, expect_offset);
    EXPECT_LE(size, 4u << 20);
    EXPECT_GT(size, 0u);
    expect_offset += size;
  }
  EXPECT_EQ(r.data.size(), v.voxels.size() * 4);
  EXPECT_TRUE(r.data == v.Bytes()) << "the reassembled volume differs";

  EXPECT_EQ(answer->header.job_token(), "vol-token-1");
  EXPECT_EQ(answer->header.timing().compute_us(), 1234);
  ASSERT_EQ(answer->maps.size(), 3u);
  for (size_t m = 0; m < 3; ++m) {
    ASSERT_EQ(answer->maps[m].size(), voxels);
    EXPECT_TRUE(std::equal(answer->maps[m].begin(), answer->maps[m].end(),
                           reinterpret_cast<const uint8_t*>(maps[m].data())))
        << "map " << m;
  }
}

// A result whose chunks are larger than a whole message may be at gRPC's
// default 4 MiB limit still reaches the client: the node's limit is its own.
TEST_F(InferVolumeTest, AnswerInFullSizeChunks) {
  const Volume v({2, 3, 4});
  const std::array<uint32_t, 3> shape{1, 2048, 4096};  // 8 MiB: two chunks of exactly 4 MiB
  AnswerBoth([shape](grpc::ServerContext*, Stream* stream, const Received& r) {
    stream->Write(ResultHeader(r.header.job_token(), shape, 1));
    stream->Write(Chunk(0, 0, std::string(4u << 20, '\1')));
    stream->Write(Chunk(0, 4u << 20, std::string(4u << 20, '\2')));
    return grpc::Status::OK;
  });
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto answer = client->InferVolume(Call(v));
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->maps.size(), 1u);
  ASSERT_EQ(answer->maps[0].size(), 8u << 20);
  EXPECT_EQ(answer->maps[0].front(), 1);
  EXPECT_EQ(answer->maps[0].back(), 2);
}

// What the dispatcher's transfer stage is made of: the bytes each way and
// the time from the result header to the last chunk, which a worker that
// pauses between them stretches; the worker's own step times pass through.
TEST_F(InferVolumeTest, TransferIsTimedAndCounted) {
  const Volume v({3, 700, 1000});
  const std::array<uint32_t, 3> shape{1, 2048, 4096};
  AnswerBoth([shape](grpc::ServerContext*, Stream* stream, const Received& r) {
    pb::VolumeResponse header = ResultHeader(r.header.job_token(), shape, 1);
    header.mutable_header()->mutable_volume_timings()->set_inference_us(4321);
    stream->Write(header);
    stream->Write(Chunk(0, 0, std::string(4u << 20, '\1')));
    std::this_thread::sleep_for(300ms);
    stream->Write(Chunk(0, 4u << 20, std::string(4u << 20, '\2')));
    return grpc::Status::OK;
  });
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto answer = client->InferVolume(Call(v));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->sent_bytes, uint64_t{3} * 700 * 1000 * 4);
  EXPECT_EQ(answer->received_bytes, uint64_t{8} << 20);
  EXPECT_GT(answer->send_ms, 0);
  EXPECT_GE(answer->receive_ms, 290);
  EXPECT_LT(answer->receive_ms, 10000);
  EXPECT_EQ(answer->header.volume_timings().inference_us(), 4321);
}

struct HostileCase {
  const char* name;
  std::vector<pb::VolumeResponse> messages;
  absl::StatusCode code;
  grpc::Status end = grpc::Status::OK;
  const char* words = nullptr;  // in the status message, when set
};

TEST_F(InferVolumeTest, AnswersThatBreakTheContractAreRefusedAndNotRetried) {
  const Volume v({2, 3, 4});
  const std::string t = "vol-token-1";
  const std::array<uint32_t, 3> g{2, 3, 4};  // 24 voxels per map
  const std::string full(24, '\1');
  auto header_with = [&](const std::function<void(pb::VolumeResultHeader*)>& edit) {
    pb::VolumeResponse r = ResultHeader(t, g, 2);
    edit(r.mutable_header());
    return r;
  };
  const auto kData = absl::StatusCode::kDataLoss;
  const auto kInternal = absl::StatusCode::kInternal;
  std::vector<HostileCase> cases = {
      {"a map size that does not match the grid",
       {header_with([](auto* h) { h->mutable_maps(1)->set_size_bytes(23); }), Chunk(0, 0, full), Chunk(1, 0, full)},
       kData},
      {"a map larger than the grid",
       {header_with([](auto* h) { h->mutable_maps(0)->set_size_bytes(48); }), Chunk(0, 0, full + full)},
       kData},
      {"a map short of its size", {ResultHeader(t, g, 2), Chunk(0, 0, full), Chunk(1, 0, full.substr(4))}, kData},
      {"a map never sent", {ResultHeader(t, g, 2), Chunk(0, 0, full)}, kData},
      // Both add up to the map's size, so only the offsets give them away.
      {"a chunk leaving a gap",
       {ResultHeader(t, g, 2), Chunk(0, 0, full.substr(4)), Chunk(0, 22, "abcd"), Chunk(1, 0, full)},
       kData,
       grpc::Status::OK,
       "gap"},
      {"overlapping chunks",
       {ResultHeader(t, g, 2), Chunk(0, 0, full.substr(4)), Chunk(0, 16, "abcd"), Chunk(1, 0, full)},
       kData,
       grpc::Status::OK,
       "overlaps"},
      {"a chunk past the end",
       {ResultHeader(t, g, 2), Chunk(0, 0, full), Chunk(0, 24, "x")},
       kData,
       grpc::Status::OK,
       "past"},
      {"a chunk larger than the map", {ResultHeader(t, g, 2), Chunk(0, 0, full + "x")}, kData},
      {"a chunk for a map that does not exist",
       {ResultHeader(t, g, 2), Chunk(0, 0, full), Chunk(1, 0, full), Chunk(2, 0, full)},
       kData,
       grpc::Status::OK,
       "the header lists 2 maps"},
      {"maps out of the header's order",
       {ResultHeader(t, g, 2), Chunk(1, 0, full), Chunk(0, 0, full)},
       kData},
      {"a map revisited", {ResultHeader(t, g, 2), Chunk(0, 0, full), Chunk(1, 0, full), Chunk(0, 24, "")}, kData},
      {"no label map first",
       {header_with([](auto* h) { h->mutable_maps(0)->set_kind(pb::VOLUME_MAP_KIND_PROBABILITY); })},
       kData},
      {"no maps", {header_with([](auto* h) { h->clear_maps(); })}, kData},
      {"an output grid that is not 3-D", {header_with([](auto* h) { h->add_shape(1); })}, kData},
      {"an empty output axis",
       {header_with([](auto* h) {
         h->set_shape(1, 0);
         for (auto& m : *h->mutable_maps()) m.set_size_bytes(0);
       })},
       kData},
      {"a chunk before the header", {Chunk(0, 0, full), ResultHeader(t, g, 2)}, kInternal},
      {"no header at all", {}, kInternal},
      {"a header after chunks",
       {ResultHeader(t, g, 2), Chunk(0, 0, full), ResultHeader(t, g, 2), Chunk(1, 0, full)},
       kInternal},
      {"a second header", {ResultHeader(t, g, 2), ResultHeader(t, g, 2)}, kInternal},
      {"another job's token", {ResultHeader("someone-else", g, 2), Chunk(0, 0, full), Chunk(1, 0, full)}, kInternal},
      {"another model", {ResultHeader(t, g, 1, "other"), Chunk(0, 0, full)}, kInternal},
      {"a neither-nor message", {ResultHeader(t, g, 1), pb::VolumeResponse()}, kInternal},
      {"maps beyond max_volume_result_bytes",
       {header_with([](auto* h) {
         h->clear_shape();
         for (uint32_t d : {1024u, 1024u, 1024u}) h->add_shape(d);
         for (auto& m : *h->mutable_maps()) m.set_size_bytes(1ull << 30);
       })},
       kInternal},
      {"a grid whose size overflows",
       {header_with([](auto* h) {
         h->clear_shape();
         for (uint32_t d : {4000000000u, 4000000000u, 4000000000u}) h->add_shape(d);
         for (auto& m : *h->mutable_maps()) m.set_size_bytes(0);
       })},
       kInternal},
      {"a worker failing after part of the answer",
       {ResultHeader(t, g, 2), Chunk(0, 0, full)},
       absl::StatusCode::kInternal,
       grpc::Status(grpc::StatusCode::INTERNAL, "torch exception")},
  };
  auto client = Client();
  ASSERT_NE(client, nullptr);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    AnswerBoth(Script(c.messages, c.end));
    const int before = Calls();
    const auto start = std::chrono::steady_clock::now();
    auto answer = client->InferVolume(Call(v));
    ASSERT_FALSE(answer.ok());
    EXPECT_EQ(answer.status().code(), c.code) << answer.status();
    EXPECT_EQ(Calls(), before + 1) << "an answer that breaks the contract is not retried";
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
    EXPECT_TRUE(answer.status().message().find("127.0.0.1:") == 0) << answer.status();
    if (c.words) {
      EXPECT_NE(answer.status().message().find(c.words), std::string::npos) << answer.status();
    }
  }
  const auto eps = client->Endpoints();
  EXPECT_EQ(eps[0].failures + eps[1].failures, static_cast<int64_t>(cases.size()));
}

// The bound is on what the header announces, so an answer over it is
// refused before its maps are stored, however many bytes follow.
TEST_F(InferVolumeTest, AnswerOverTheConfiguredBoundIsRefusedAtItsHeader) {
  const Volume v({2, 3, 4});
  auto writes_failed = std::make_shared<std::atomic<bool>>(false);
  AnswerBoth([writes_failed](grpc::ServerContext*, Stream* stream, const Received& r) {
    stream->Write(ResultHeader(r.header.job_token(), {16, 256, 256}, 2));  // 2 maps of 1 MiB
    const std::string chunk(1u << 20, '\3');
    for (uint64_t off = 0; off < (64u << 20); off += chunk.size()) {
      if (!stream->Write(Chunk(0, off % (1u << 20), chunk))) {
        *writes_failed = true;
        break;
      }
    }
    return grpc::Status::OK;
  });
  auto client = Client(20s, (2u << 20) - 1);
  ASSERT_NE(client, nullptr);
  auto answer = client->InferVolume(Call(v));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kInternal) << answer.status();
  EXPECT_NE(answer.status().message().find("max_volume_result_bytes"), std::string::npos) << answer.status();
  // The client cancelled the call instead of reading 64 MiB to its end.
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!writes_failed->load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(writes_failed->load());

  // Exactly at the bound it is accepted.
  AnswerBoth([](grpc::ServerContext*, Stream* stream, const Received& r) {
    stream->Write(ResultHeader(r.header.job_token(), {16, 256, 256}, 2));
    for (uint32_t m = 0; m < 2; ++m) stream->Write(Chunk(m, 0, std::string(1u << 20, '\4')));
    return grpc::Status::OK;
  });
  auto exact = Client(20s, 2u << 20);
  ASSERT_NE(exact, nullptr);
  auto ok = exact->InferVolume(Call(v));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->maps[1].size(), 1u << 20);
}

// With the largest bound the configuration allows, a grid whose voxel count
// wraps around 2^64 to a size under it is still refused.
TEST_F(InferVolumeTest, GridThatOverflowsUnderTheLargestBoundIsRefused) {
  const Volume v({2, 3, 4});
  AnswerBoth([](grpc::ServerContext*, Stream* stream, const Received& r) {
    pb::VolumeResponse h = ResultHeader(r.header.job_token(), {1u << 20, 1u << 15, (1u << 29) + 1}, 1);
    h.mutable_header()->mutable_maps(0)->set_size_bytes(uint64_t{1} << 35);  // (2^64 + 2^35) mod 2^64
    stream->Write(h);
    return grpc::Status::OK;
  });
  auto client = Client(20s, 64ull << 30);
  ASSERT_NE(client, nullptr);
  auto answer = client->InferVolume(Call(v));
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kInternal) << answer.status();
}

TEST_F(InferVolumeTest, WorkerErrorsPassThroughWithoutRetry) {
  const Volume v({2, 3, 4});
  a_.SetRefuse(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "volume direction must be nine cosines"));
  b_.SetRefuse(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "volume direction must be nine cosines"));
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto answer = client->InferVolume(Call(v));
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kInvalidArgument) << answer.status();
  EXPECT_EQ(Calls(), 1);

  // Over a worker's memory bound: the same code as a busy worker, but every
  // worker would refuse it alike.
  const grpc::Status too_large(grpc::StatusCode::RESOURCE_EXHAUSTED, "volume exceeds this worker's limit of 100 bytes");
  a_.SetRefuse(too_large);
  b_.SetRefuse(too_large);
  answer = client->InferVolume(Call(v));
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kResourceExhausted) << answer.status();
  EXPECT_EQ(Calls(), 2);
}

TEST_F(InferVolumeTest, BusyWorkerIsRetriedOnTheOtherAndStaysInRotation) {
  const Volume v({2, 3, 4});
  const grpc::Status busy(grpc::StatusCode::RESOURCE_EXHAUSTED, "this worker is already running 2 volumes");
  a_.SetRefuse(busy);
  b_.SetAnswer([](grpc::ServerContext*, Stream* stream, const Received& r) {
    stream->Write(ResultHeader(r.header.job_token(), {2, 3, 4}, 1));
    stream->Write(Chunk(0, 0, std::string(24, '\7')));
    return grpc::Status::OK;
  });
  auto client = Client();
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 4; ++i) {
    auto answer = client->InferVolume(Call(v));
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->maps[0].size(), 24u);
  }
  EXPECT_EQ(b_.calls.load(), 4);
  EXPECT_GE(a_.calls.load(), 1);
  const auto eps = client->Endpoints();
  EXPECT_TRUE(eps[0].healthy);
  EXPECT_EQ(eps[0].failures, 0);

  // Both busy: the caller learns so after max_attempts.
  b_.SetRefuse(busy);
  const int before = Calls();
  auto answer = client->InferVolume(Call(v));
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kResourceExhausted) << answer.status();
  EXPECT_EQ(Calls(), before + 3);
}

TEST_F(InferVolumeTest, StoppedWorkerIsRetriedOnTheOther) {
  const Volume v({2, 3, 4});
  b_.SetAnswer([](grpc::ServerContext*, Stream* stream, const Received& r) {
    stream->Write(ResultHeader(r.header.job_token(), {2, 3, 4}, 1));
    stream->Write(Chunk(0, 0, std::string(24, '\7')));
    return grpc::Status::OK;
  });
  a_server_.Stop();
  auto client = Client();
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 3; ++i) {
    auto answer = client->InferVolume(Call(v));
    ASSERT_TRUE(answer.ok()) << answer.status();
  }
  EXPECT_EQ(b_.calls.load(), 3);
}

TEST_F(InferVolumeTest, CancelEndsTheCallAtOnceWithoutRetry) {
  const Volume v({2, 3, 4});
  AnswerBoth([](grpc::ServerContext* ctx, Stream*, const Received&) {
    const auto until = std::chrono::steady_clock::now() + 15s;
    while (!ctx->IsCancelled() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    return grpc::Status::OK;
  });
  auto client = Client(30s);
  ASSERT_NE(client, nullptr);
  CancelToken cancel;
  std::thread canceller([&cancel] {
    std::this_thread::sleep_for(300ms);
    cancel.Cancel();
  });
  const auto start = std::chrono::steady_clock::now();
  auto answer = client->InferVolume(Call(v), &cancel);
  const auto took = std::chrono::steady_clock::now() - start;
  canceller.join();
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kCancelled) << answer.status();
  EXPECT_LT(took, 10s);
  EXPECT_EQ(Calls(), 1);
  // Already cancelled: nothing is sent.
  EXPECT_EQ(client->InferVolume(Call(v), &cancel).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Calls(), 1);
}

TEST_F(InferVolumeTest, SlowWorkerEndsAtTheVolumeDeadline) {
  const Volume v({2, 3, 4});
  AnswerBoth([](grpc::ServerContext* ctx, Stream*, const Received&) {
    const auto until = std::chrono::steady_clock::now() + 15s;
    while (!ctx->IsCancelled() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    return grpc::Status::OK;
  });
  auto client = Client(1500ms);
  ASSERT_NE(client, nullptr);
  const auto start = std::chrono::steady_clock::now();
  auto answer = client->InferVolume(Call(v));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kDeadlineExceeded) << answer.status();
  EXPECT_GE(took, 1400ms);  // not call_timeout's 1 s
  EXPECT_LT(took, 8s);
  EXPECT_EQ(Calls(), 1);
}

TEST_F(InferVolumeTest, BadCallsAreRefusedBeforeAnythingIsSent) {
  const Volume v({2, 3, 4});
  auto client = Client();
  ASSERT_NE(client, nullptr);
  VolumeCall c = Call(v);
  c.voxels = nullptr;
  EXPECT_EQ(client->InferVolume(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Call(v);
  c.shape[1] = 0;
  EXPECT_EQ(client->InferVolume(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Call(v);
  c.model.clear();
  EXPECT_EQ(client->InferVolume(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Call(v);
  c.shape = {4000000000u, 4000000000u, 4000000000u};
  EXPECT_EQ(client->InferVolume(c).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Calls(), 0);
}

TEST(InferVolumeOptionsTest, RejectsNonPositiveVolumeOptions) {
  InferenceClientOptions o;
  o.endpoints = {"127.0.0.1:1"};
  o.volume_call_timeout = 0ms;
  EXPECT_EQ(InferenceClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.volume_call_timeout = 1s;
  o.max_volume_result_bytes = 0;
  EXPECT_EQ(InferenceClient::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

// The client tells a busy worker from a volume too large for any by the
// real worker's words; this holds it to them.
class Factory final : public inference::BackendFactory {
 public:
  absl::StatusOr<std::vector<std::unique_ptr<inference::ModelBackend>>> Create(const inference::ModelConfig&,
                                                                               const fs::path&) override {
    std::vector<std::unique_ptr<inference::ModelBackend>> out;
    out.push_back(std::make_unique<inference::testing::FakeBackend>());
    return out;
  }
};

class RealWorkerRefusals : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("inference_client_volume_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "vol" / "1");
    std::ofstream(root_ / "vol" / "model.yaml") << R"(name: vol
intended_use: testing only
input:
  kind: volume
  accepted_dtypes: [float32]
sliding_window: {roi: [4, 4, 4]}
output:
  kind: label_map
  labels:
    - name: box
      category: {scheme: SCT, value: "49755003", meaning: Morphologically Abnormal Structure}
      type: {scheme: SCT, value: "108369006", meaning: Neoplasm}
      threshold: 0.5
)";
    std::ofstream(root_ / "vol" / "1" / "model.pt") << "fake";
    repo_ = std::make_unique<inference::ModelRepository>(inference::RepositoryOptions{root_, &factory_, nullptr});
    ASSERT_TRUE(repo_->LoadAtStart({}).ok());
    fake_.SetAnswer([](grpc::ServerContext*, Stream* stream, const Received& r) {
      stream->Write(ResultHeader(r.header.job_token(), {2, 3, 4}, 1));
      stream->Write(Chunk(0, 0, std::string(24, '\7')));
      return grpc::Status::OK;
    });
    fake_server_.Start();
  }
  void TearDown() override {
    if (real_server_) real_server_->Stop();
    real_server_.reset();
    service_.reset();
    repo_.reset();
    fs::remove_all(root_);
  }
  void StartReal(inference::ServiceOptions options) {
    service_ = std::make_unique<inference::InferenceService>(options, repo_.get(), nullptr);
    real_server_ = std::make_unique<Server>(service_.get());
    real_server_->Start();
  }
  InferenceClient::Ptr Client() {
    InferenceClientOptions o;
    o.endpoints = {real_server_->address(), fake_server_.address()};
    o.health_interval = 100ms;
    auto c = InferenceClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  fs::path root_;
  Factory factory_;
  std::unique_ptr<inference::ModelRepository> repo_;
  std::unique_ptr<inference::InferenceService> service_;
  std::unique_ptr<Server> real_server_;
  FakeVolumeService fake_;
  Server fake_server_{&fake_};
};

TEST_F(RealWorkerRefusals, ConcurrencyBoundIsRetriedElsewhere) {
  inference::ServiceOptions options;
  options.max_concurrent_volumes = 0;  // every volume finds the worker busy
  StartReal(options);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  const Volume v({2, 3, 4});
  for (int i = 0; i < 2; ++i) {  // whichever endpoint the rotation starts on
    auto answer = client->InferVolume(Call(v));
    ASSERT_TRUE(answer.ok()) << answer.status();
  }
  EXPECT_EQ(fake_.calls.load(), 2);
  EXPECT_EQ(client->Endpoints()[0].failures, 0);
}

TEST_F(RealWorkerRefusals, MemoryBoundIsNotRetried) {
  inference::ServiceOptions options;
  options.max_volume_bytes = 64;  // the volume has 96
  StartReal(options);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  const Volume v({2, 3, 4});
  int refused = 0;
  for (int i = 0; i < 2; ++i) {
    auto answer = client->InferVolume(Call(v));
    if (!answer.ok()) {
      EXPECT_EQ(answer.status().code(), absl::StatusCode::kResourceExhausted) << answer.status();
      ++refused;
    }
  }
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(fake_.calls.load(), 1);
}

}  // namespace
}  // namespace secondread::worklist
