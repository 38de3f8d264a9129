// A gRPC peer for the worker's integration tests. Each subcommand checks one
// behaviour and exits non-zero, with a message, when it does not hold.
//   health TARGET                      grpc.health.v1 says SERVING
//   list TARGET MODEL STATE            ListModels shows MODEL in STATE (READY/UNAVAILABLE)
//   load TARGET MODEL CLIENTS REQUESTS IMAGES   concurrent Infer calls all succeed
//   errors TARGET MODEL                bad requests get the documented codes
// With WORKER_PROBE_CA set it speaks TLS with gRPC's own SSL credentials
// (not the node's code): the CA bundle from that file, a client certificate
// from WORKER_PROBE_CERT and WORKER_PROBE_KEY when set, and the name the
// worker's certificate must carry from WORKER_PROBE_NAME.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <random>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "secondread/inference/v1/inference.grpc.pb.h"

namespace v1 = secondread::inference::v1;

namespace {

std::string Slurp(const char* env) {
  const char* path = std::getenv(env);
  if (path == nullptr || *path == '\0') return "";
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::shared_ptr<grpc::Channel> Channel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(256 << 20);
  args.SetMaxReceiveMessageSize(256 << 20);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (const std::string ca = Slurp("WORKER_PROBE_CA"); !ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca;
    ssl.pem_cert_chain = Slurp("WORKER_PROBE_CERT");
    ssl.pem_private_key = Slurp("WORKER_PROBE_KEY");
    creds = grpc::SslCredentials(ssl);
    if (const char* name = std::getenv("WORKER_PROBE_NAME"); name != nullptr && *name != '\0') {
      args.SetSslTargetNameOverride(name);
    }
  }
  return grpc::CreateCustomChannel(target, creds, args);
}

v1::Image RandomImage(std::mt19937& rng, uint32_t rows, uint32_t cols) {
  v1::Image img;
  img.add_shape(rows);
  img.add_shape(cols);
  img.set_dtype(v1::DATA_TYPE_UINT16);
  std::string data(static_cast<size_t>(rows) * cols * 2, '\0');
  std::uniform_int_distribution<int> d(0, 4095);
  for (size_t i = 0; i < data.size(); i += 2) {
    const int v = d(rng);
    data[i] = static_cast<char>(v & 0xFF);
    data[i + 1] = static_cast<char>(v >> 8);
  }
  img.set_data(data);
  img.set_photometric(v1::PHOTOMETRIC_MONOCHROME2);
  img.mutable_modality()->set_scheme("DCM");
  img.mutable_modality()->set_value("CR");
  img.mutable_modality()->set_meaning("Computed Radiography");
  img.set_row_spacing_mm(0.5);
  img.set_column_spacing_mm(0.5);
  return img;
}

grpc::Status Call(v1::Inference::Stub& stub, const v1::InferRequest& req, v1::InferResponse* resp, int seconds = 60) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return stub.Infer(&ctx, req, resp);
}

int Fail(const std::string& what) {
  std::cerr << "worker_probe: " << what << "\n";
  return 1;
}

int Health(const std::string& target) {
  auto stub = grpc::health::v1::Health::NewStub(Channel(target));
  for (const std::string service : {"", "secondread.inference.v1.Inference"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    auto s = stub->Check(&ctx, req, &resp);
    if (!s.ok()) return Fail("health check failed: " + s.error_message());
    if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) return Fail("not SERVING: '" + service + "'");
  }
  std::cout << "SERVING\n";
  return 0;
}

int List(const std::string& target, const std::string& model, const std::string& state) {
  auto stub = v1::Inference::NewStub(Channel(target));
  grpc::ClientContext ctx;
  v1::ListModelsResponse resp;
  auto s = stub->ListModels(&ctx, {}, &resp);
  if (!s.ok()) return Fail("ListModels: " + s.error_message());
  for (const auto& m : resp.models()) {
    if (m.name() != model) continue;
    for (const auto& v : m.versions()) {
      std::cout << m.name() << " v" << v.version() << " " << v1::ModelState_Name(v.state()) << " " << v.reason() << "\n";
      if (v1::ModelState_Name(v.state()) == "MODEL_STATE_" + state) return 0;
    }
    return Fail(model + " is not " + state);
  }
  return Fail(model + " is not listed");
}

int Load(const std::string& target, const std::string& model, int clients, int requests, int images) {
  auto channel = Channel(target);
  auto stub = v1::Inference::NewStub(channel);
  std::atomic<int> ok{0}, bad{0};
  std::atomic<int64_t> max_batch{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 rng(static_cast<unsigned>(c));
      for (int r = 0; r < requests; ++r) {
        v1::InferRequest req;
        req.set_model_name(model);
        req.set_priority(r % 5 == 0 ? v1::PRIORITY_STAT : v1::PRIORITY_ROUTINE);
        req.set_job_token("probe-" + std::to_string(c) + "-" + std::to_string(r));
        for (int i = 0; i < images; ++i) *req.add_images() = RandomImage(rng, 300, 280);
        v1::InferResponse resp;
        auto s = Call(*stub, req, &resp);
        const bool good = s.ok() && resp.results_size() == images && resp.job_token() == req.job_token() &&
                          resp.results(0).scores_size() > 0 && resp.results(0).scores(0).score() >= 0 &&
                          resp.results(0).scores(0).score() <= 1;
        if (good) {
          ++ok;
          int64_t b = resp.timing().batch_size();
          int64_t prev = max_batch.load();
          while (b > prev && !max_batch.compare_exchange_weak(prev, b)) {
          }
        } else {
          ++bad;
          std::cerr << "request failed: " << s.error_code() << " " << s.error_message() << "\n";
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::cout << "ok=" << ok << " failed=" << bad << " largest_batch=" << max_batch << "\n";
  return bad == 0 ? 0 : 1;
}

int Errors(const std::string& target, const std::string& model) {
  auto stub = v1::Inference::NewStub(Channel(target));
  std::mt19937 rng(1);
  int failures = 0;
  auto expect = [&](const std::string& what, const v1::InferRequest& req, grpc::StatusCode code) {
    v1::InferResponse resp;
    auto s = Call(*stub, req, &resp);
    std::cout << what << ": " << s.error_code() << " " << s.error_message() << "\n";
    if (s.error_code() != code) {
      std::cerr << what << ": expected code " << code << ", got " << s.error_code() << "\n";
      ++failures;
    }
  };
  v1::InferRequest good;
  good.set_model_name(model);
  *good.add_images() = RandomImage(rng, 64, 64);

  v1::InferRequest unknown = good;
  unknown.set_model_name("no-such-model");
  expect("unknown model", unknown, grpc::StatusCode::NOT_FOUND);

  v1::InferRequest short_data = good;
  short_data.mutable_images(0)->mutable_data()->resize(100);
  expect("short pixel data", short_data, grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest wrong_shape = good;
  wrong_shape.mutable_images(0)->add_shape(2);
  wrong_shape.mutable_images(0)->add_shape(2);
  expect("four-dimensional image", wrong_shape, grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest zero_dim = good;
  zero_dim.mutable_images(0)->set_shape(0, 0);
  expect("zero rows", zero_dim, grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest no_dtype = good;
  no_dtype.mutable_images(0)->set_dtype(v1::DATA_TYPE_UNSPECIFIED);
  expect("missing dtype", no_dtype, grpc::StatusCode::INVALID_ARGUMENT);

  v1::InferRequest oversized = good;
  *oversized.mutable_images(0) = RandomImage(rng, 2048, 2048);  // 8 MiB
  expect("oversized message", oversized, grpc::StatusCode::RESOURCE_EXHAUSTED);

  v1::InferResponse resp;
  auto s = Call(*stub, good, &resp);
  if (!s.ok()) {
    std::cerr << "a good request after the bad ones failed: " << s.error_message() << "\n";
    ++failures;
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() == 2 && a[0] == "health") return Health(a[1]);
  if (a.size() == 4 && a[0] == "list") return List(a[1], a[2], a[3]);
  if (a.size() == 6 && a[0] == "load") return Load(a[1], a[2], std::stoi(a[3]), std::stoi(a[4]), std::stoi(a[5]));
  if (a.size() == 3 && a[0] == "errors") return Errors(a[1], a[2]);
  std::cerr << "usage: worker_probe health|list|load|errors ...\n";
  return 2;
}
