// A transparent gRPC proxy between the node and an inference worker that keeps
// a copy of every request, so that an integration test can search the exact
// bytes the node sent for patient data instead of trusting the proto schema.
//   infer_recorder --listen ADDR --upstream ADDR --out FILE [--port-file FILE]
//                  [--images FILE]
// FILE is appended to, one record per request: a 4-byte little-endian length,
// then the serialized request. --images appends one text line per image of
// every Infer request, "model dtype photometric rows columns min max", so a
// test can check what values a model was given. SIGTERM or SIGINT stops the proxy and prints
// one JSON line with the number of requests per method.
#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <limits>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "secondread/inference/v1/inference.grpc.pb.h"

namespace v1 = secondread::inference::v1;
namespace health = grpc::health::v1;

namespace {

constexpr int kMaxMessageBytes = 64 << 20;

// In-flight calls get this long to finish after a stop signal; then they are
// cancelled, and the cancellation reaches the worker through propagation.
constexpr auto kShutdownGrace = std::chrono::seconds(5);

class Recorder {
 public:
  Recorder(std::FILE* out, const std::vector<std::string>& methods) : out_(out) {
    // Methods never called still appear in the summary, so a test can assert
    // a zero without special-casing a missing key.
    for (const auto& m : methods) counts_[m] = 0;
  }

  // False when the record could not be written in full. After a short write
  // the file can no longer be parsed past that point, so every later request is
  // refused too rather than silently left out of the evidence.
  bool Append(const std::string& method, const google::protobuf::Message& request) {
    const std::string bytes = request.SerializeAsString();
    const auto n = static_cast<uint32_t>(bytes.size());
    const unsigned char length[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                                     static_cast<unsigned char>(n >> 16), static_cast<unsigned char>(n >> 24)};
    std::lock_guard lock(mu_);
    ++counts_[method];
    if (broken_) return false;
    broken_ = std::fwrite(length, 1, sizeof length, out_) != sizeof length ||
              std::fwrite(bytes.data(), 1, bytes.size(), out_) != bytes.size() || std::fflush(out_) != 0;
    if (broken_) return false;
    ++records_;
    return true;
  }

  std::string Summary() {
    std::lock_guard lock(mu_);
    std::ostringstream os;
    os << R"({"event":"infer_recorder_stopped","requests":{)";
    bool first = true;
    for (const auto& [method, count] : counts_) {
      os << (first ? "" : ",") << '"' << method << "\":" << count;
      first = false;
    }
    os << R"(},"records":)" << records_ << R"(,"record_file_ok":)" << (broken_ ? "false" : "true") << "}";
    return os.str();
  }

 private:
  std::mutex mu_;
  std::FILE* out_;
  std::map<std::string, int64_t> counts_;
  int64_t records_ = 0;
  bool broken_ = false;
};

template <typename T>
std::pair<double, double> Range(const std::string& data) {
  const size_t n = data.size() / sizeof(T);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, data.data() + i * sizeof(T), sizeof(T));
    lo = std::min(lo, static_cast<double>(v));
    hi = std::max(hi, static_cast<double>(v));
  }
  return {lo, hi};
}

class ImageLog {
 public:
  explicit ImageLog(const std::string& path) {
    if (!path.empty()) out_.open(path, std::ios::app);
  }
  void Add(const v1::InferRequest& req) {
    if (!out_.is_open()) return;
    std::lock_guard lock(mu_);
    for (const auto& image : req.images()) {
      std::pair<double, double> r{0, 0};
      switch (image.dtype()) {
        case v1::DATA_TYPE_UINT8: r = Range<uint8_t>(image.data()); break;
        case v1::DATA_TYPE_UINT16: r = Range<uint16_t>(image.data()); break;
        case v1::DATA_TYPE_INT16: r = Range<int16_t>(image.data()); break;
        case v1::DATA_TYPE_FLOAT32: r = Range<float>(image.data()); break;
        default: break;
      }
      out_ << req.model_name() << ' ' << v1::DataType_Name(image.dtype()) << ' '
           << v1::Photometric_Name(image.photometric()) << ' ' << (image.shape_size() > 0 ? image.shape(0) : 0) << ' '
           << (image.shape_size() > 1 ? image.shape(1) : 0) << ' ' << r.first << ' ' << r.second << '\n';
    }
    out_.flush();
  }

 private:
  std::mutex mu_;
  std::ofstream out_;
};

// Keys that gRPC itself sets on every call; copying them would duplicate or
// contradict what the outgoing call carries.
bool Forwardable(const grpc::string_ref& key) {
  const std::string_view k(key.data(), key.size());
  return !k.empty() && k[0] != ':' && !k.starts_with("grpc-") && k != "user-agent" && k != "content-type" &&
         k != "te";
}

std::string Str(const grpc::string_ref& s) { return std::string(s.data(), s.size()); }

// Records the request, then makes the same call upstream. The client context is
// derived from the server context so that the node's deadline and a
// cancellation by the node carry through to the worker.
template <typename Request, typename Response, typename Call>
grpc::Status Forward(Recorder& recorder, const std::string& method, grpc::ServerContext* server,
                     const Request& request, Response* response, Call call) {
  if (!recorder.Append(method, request)) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "infer_recorder: cannot write the record file");
  }
  auto client = grpc::ClientContext::FromServerContext(*server);
  for (const auto& [key, value] : server->client_metadata()) {
    if (Forwardable(key)) client->AddMetadata(Str(key), Str(value));
  }
  grpc::Status status = call(client.get(), request, response);
  for (const auto& [key, value] : client->GetServerInitialMetadata()) {
    if (Forwardable(key)) server->AddInitialMetadata(Str(key), Str(value));
  }
  for (const auto& [key, value] : client->GetServerTrailingMetadata()) {
    if (Forwardable(key)) server->AddTrailingMetadata(Str(key), Str(value));
  }
  return status;
}

class InferenceProxy final : public v1::Inference::Service {
 public:
  InferenceProxy(Recorder& recorder, ImageLog& images, const std::shared_ptr<grpc::Channel>& upstream)
      : recorder_(recorder), images_(images), stub_(v1::Inference::NewStub(upstream)) {}

  grpc::Status ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest* req,
                          v1::ListModelsResponse* resp) override {
    return Forward(recorder_, "ListModels", ctx, *req, resp, [this](auto* c, const auto& q, auto* r) {
      return stub_->ListModels(c, q, r);
    });
  }

  grpc::Status DescribeModel(grpc::ServerContext* ctx, const v1::DescribeModelRequest* req,
                             v1::ModelDescription* resp) override {
    return Forward(recorder_, "DescribeModel", ctx, *req, resp, [this](auto* c, const auto& q, auto* r) {
      return stub_->DescribeModel(c, q, r);
    });
  }

  grpc::Status Infer(grpc::ServerContext* ctx, const v1::InferRequest* req, v1::InferResponse* resp) override {
    images_.Add(*req);
    return Forward(recorder_, "Infer", ctx, *req, resp,
                   [this](auto* c, const auto& q, auto* r) { return stub_->Infer(c, q, r); });
  }

  // Every message of the volume stream is recorded as it arrives and passed
  // on; the answer streams back unchanged. The worker answers only after the
  // node's last chunk, so the two directions need not overlap.
  grpc::Status InferVolume(grpc::ServerContext* ctx,
                           grpc::ServerReaderWriter<v1::VolumeResponse, v1::VolumeRequest>* stream) override {
    auto client = grpc::ClientContext::FromServerContext(*ctx);
    for (const auto& [key, value] : ctx->client_metadata()) {
      if (Forwardable(key)) client->AddMetadata(Str(key), Str(value));
    }
    auto upstream = stub_->InferVolume(client.get());
    v1::VolumeRequest request;
    while (stream->Read(&request)) {
      if (!recorder_.Append("InferVolume", request)) {
        client->TryCancel();
        return grpc::Status(grpc::StatusCode::INTERNAL, "infer_recorder: cannot write the record file");
      }
      if (!upstream->Write(request)) break;
    }
    upstream->WritesDone();
    v1::VolumeResponse response;
    while (upstream->Read(&response)) {
      if (!stream->Write(response)) {
        client->TryCancel();
        break;
      }
    }
    return upstream->Finish();
  }

 private:
  Recorder& recorder_;
  ImageLog& images_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

class HealthProxy final : public health::Health::Service {
 public:
  HealthProxy(Recorder& recorder, const std::shared_ptr<grpc::Channel>& upstream)
      : recorder_(recorder), stub_(health::Health::NewStub(upstream)) {}

  grpc::Status Check(grpc::ServerContext* ctx, const health::HealthCheckRequest* req,
                     health::HealthCheckResponse* resp) override {
    grpc::Status status = Forward(recorder_, "Check", ctx, *req, resp,
                                  [this](auto* c, const auto& q, auto* r) { return stub_->Check(c, q, r); });
    // A worker without the health service still answered, so it is up; the
    // node must not see the proxy as less healthy than the worker behind it.
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      resp->set_status(health::HealthCheckResponse::SERVING);
      return grpc::Status::OK;
    }
    return status;
  }

 private:
  Recorder& recorder_;
  std::unique_ptr<health::Health::Stub> stub_;
};

int Usage() {
  std::cerr << "usage: infer_recorder --listen HOST:PORT --upstream HOST:PORT --out FILE [--port-file FILE]"
               " [--images FILE]\n";
  return 2;
}

// Written under a temporary name and renamed, so that a test polling for the
// file never reads a partial port number.
bool WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  const bool written = std::fprintf(f, "%d\n", port) > 0;
  if (std::fclose(f) != 0 || !written) return false;
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen, upstream, out_path, port_file, images_path;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string value = argv[++i];
    if (flag == "--listen") {
      listen = value;
    } else if (flag == "--upstream") {
      upstream = value;
    } else if (flag == "--out") {
      out_path = value;
    } else if (flag == "--port-file") {
      port_file = value;
    } else if (flag == "--images") {
      images_path = value;
    } else {
      return Usage();
    }
  }
  if (listen.empty() || upstream.empty() || out_path.empty()) return Usage();

  // Blocked before gRPC starts its threads, which inherit the mask, so that
  // only the sigwait thread below ever receives the stop signals.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::FILE* out = std::fopen(out_path.c_str(), "ab");
  if (out == nullptr) {
    std::perror(("infer_recorder: " + out_path).c_str());
    return 1;
  }
  Recorder recorder(out, {"ListModels", "DescribeModel", "Infer", "InferVolume", "Check"});

  grpc::ChannelArguments channel_args;
  channel_args.SetMaxSendMessageSize(kMaxMessageBytes);
  channel_args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  auto channel = grpc::CreateCustomChannel(upstream, grpc::InsecureChannelCredentials(), channel_args);

  ImageLog images(images_path);
  InferenceProxy inference(recorder, images, channel);
  HealthProxy health_proxy(recorder, channel);

  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Tests pick free ports and rely on a bind failing when the port is taken;
  // SO_REUSEPORT would let two processes share it silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&inference);
  builder.RegisterService(&health_proxy);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "infer_recorder: cannot listen on " << listen << "\n";
    return 1;
  }
  if (!port_file.empty() && !WritePortFile(port_file, port)) {
    std::perror(("infer_recorder: " + port_file).c_str());
    server->Shutdown();
    return 1;
  }
  std::cerr << "infer_recorder: listening on port " << port << ", forwarding to " << upstream << ", recording to "
            << out_path << std::endl;

  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  });
  server->Wait();
  stopper.join();

  std::cout << recorder.Summary() << std::endl;
  return std::fclose(out) == 0 ? 0 : 1;
}
