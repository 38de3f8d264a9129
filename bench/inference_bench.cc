// inference_bench: how much of LibTorch's own throughput the inference worker
// delivers. One binary measures both sides so that the comparison shares
// images, timing rules and statistics:
//
//   bare    the model in-process, loaded and executed through the same
//           ModelConfig and TorchBackendFactory code the worker uses, so
//           preprocessing, precision and device placement are identical;
//   grpc    the same model through a running worker, from concurrent clients;
//   matmul  the device's dense matmul rate, as a ceiling for the model's FLOPs;
//   volume  one synthetic CT volume through a volume model, in-process
//           (ExecuteVolume) or through a worker's InferVolume, with the
//           worker's step timings;
//   load    asks a worker to reload a model (ModelAdmin.LoadModel), so that a
//           benchmark can change model.yaml without restarting the worker.
//
// Every mode prints one JSON object on stdout; diagnostics go to stderr.
#include <grpcpp/grpcpp.h>
#include <torch/cuda.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "CLI/CLI.hpp"
#include "inference/model_config.h"
#include "inference/torch/torch_backend.h"
#include "nlohmann/json.hpp"
#include "secondread/inference/v1/inference.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = secondread::inference::v1;
namespace inf = secondread::inference;
namespace tb = secondread::inference::torch_backend;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Nearest-rank percentile: always a value that was actually observed.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

double Mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double Round(double x, int digits) {
  const double f = std::pow(10.0, digits);
  return std::round(x * f) / f;
}

int Fail(const std::string& what) {
  std::cerr << "inference_bench: " << what << "\n";
  return 1;
}

// One finished unit of work: a batch (bare) or a request (grpc).
struct Completion {
  Clock::time_point start;
  Clock::time_point end;
  int images = 0;
  // grpc only, from the response's Timing.
  int server_batch = 0;
  double queue_ms = 0;
  double compute_ms = 0;
};

// Shared by the worker threads of one run: they record completions and ask
// whether to go on; the coordinator decides when warm-up and measurement end.
// Classifying completions afterwards by time keeps the hot loop free of
// anything but an append under a mutex.
class Run {
 public:
  void Record(const Completion& c) {
    std::lock_guard lk(mu_);
    done_.push_back(c);
    count_.fetch_add(1, std::memory_order_relaxed);
  }
  bool Stopping() const { return stop_.load(std::memory_order_relaxed); }
  int64_t Count() const { return count_.load(std::memory_order_relaxed); }

  // Warm-up lasts `warmup` and at least `warm_min` completions, so that every
  // client or instance has been through the model before timing starts (the
  // first TorchScript runs profile and optimise the graph). Measurement then
  // lasts `seconds` and at least `measure_min` completions, so that slow
  // models still give a rate.
  void Coordinate(double warmup, int64_t warm_min, double seconds, int64_t measure_min) {
    const auto t0 = Clock::now();
    while (Seconds(Clock::now() - t0) < warmup || Count() < warm_min) Sleep();
    int64_t at_start = 0;
    {
      std::lock_guard lk(mu_);
      measure_start_ = Clock::now();
      at_start = static_cast<int64_t>(done_.size());
    }
    while (Seconds(Clock::now() - measure_start_) < seconds || Count() - at_start < measure_min) Sleep();
    measure_end_ = Clock::now();
    stop_ = true;
  }

  // Completions that ended inside the measurement window, in end order.
  std::vector<Completion> Measured() const {
    std::vector<Completion> out;
    std::lock_guard lk(mu_);
    for (const auto& c : done_) {
      if (c.end >= measure_start_ && c.end <= measure_end_) out.push_back(c);
    }
    std::sort(out.begin(), out.end(), [](const Completion& a, const Completion& b) { return a.end < b.end; });
    return out;
  }

  double window_seconds() const { return Seconds(measure_end_ - measure_start_); }

 private:
  static void Sleep() { std::this_thread::sleep_for(std::chrono::milliseconds(5)); }
  mutable std::mutex mu_;
  std::vector<Completion> done_;
  std::atomic<int64_t> count_{0};
  std::atomic<bool> stop_{false};
  Clock::time_point measure_start_{};
  Clock::time_point measure_end_{};
};

// Where the rate's span starts: the last of the completions that end within
// a millisecond of the first. Requests answered from one server batch finish
// together; counting the first one's batch-mates would credit the span with
// a batch it did not take.
size_t SpanStart(const std::vector<Completion>& m) {
  size_t first = 0;
  while (first + 1 < m.size() && m[first + 1].end - m[0].end < std::chrono::milliseconds(1)) ++first;
  return first;
}

// Images per second from the first to the last completion in the window.
// Counting completions over the whole window instead would be off by up to
// one batch per window, which for a slow CPU model is a large fraction.
double Rate(const std::vector<Completion>& m) {
  const size_t first = SpanStart(m);
  if (first + 1 >= m.size()) return 0;
  double images = 0;
  for (size_t i = first + 1; i < m.size(); ++i) images += m[i].images;
  const double span = Seconds(m.back().end - m[first].end);
  return span > 0 ? images / span : 0;
}

// ---------------------------------------------------------------------------
// Test images

struct ImageSpec {
  int64_t rows = 0;
  int64_t cols = 0;
  inf::DType dtype = inf::DType::kUint8;
};

absl::StatusOr<inf::DType> PickDType(const std::string& wanted, const std::vector<inf::DType>& accepted) {
  auto accepts = [&](inf::DType d) { return std::find(accepted.begin(), accepted.end(), d) != accepted.end(); };
  if (wanted != "auto") {
    ASSIGN_OR_RETURN(inf::DType d, inf::ParseDType(wanted));
    if (!accepts(d)) return absl::InvalidArgumentError("the model does not accept dtype " + wanted);
    return d;
  }
  // uint8 is the cheapest to send; uint16 is what radiographs usually are.
  for (inf::DType d : {inf::DType::kUint8, inf::DType::kUint16}) {
    if (accepts(d)) return d;
  }
  return absl::InvalidArgumentError("the model accepts neither uint8 nor uint16; pass --dtype");
}

// Random pixels, so that min-max scaling sees a real range; a different seed
// per image so that no two images in a batch are the same bytes.
std::string RandomPixels(const ImageSpec& spec, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t n = static_cast<size_t>(spec.rows * spec.cols);
  std::string data(n * inf::DTypeSize(spec.dtype), '\0');
  if (spec.dtype == inf::DType::kUint8) {
    for (auto& b : data) b = static_cast<char>(rng() & 0xFF);
  } else if (spec.dtype == inf::DType::kUint16 || spec.dtype == inf::DType::kInt16) {
    for (size_t i = 0; i < n; ++i) {
      const uint32_t v = rng() & 0x0FFF;  // 12-bit, like a typical CR/DX detector
      data[2 * i] = static_cast<char>(v & 0xFF);
      data[2 * i + 1] = static_cast<char>(v >> 8);
    }
  } else if (spec.dtype == inf::DType::kFloat32) {
    std::uniform_real_distribution<float> d(0, 1);
    for (size_t i = 0; i < n; ++i) {
      const float f = d(rng);
      std::memcpy(&data[4 * i], &f, 4);
    }
  }
  // float16 stays zero-filled: a flat image is valid input, and random
  // half-precision bit patterns would include NaNs.
  return data;
}

// ---------------------------------------------------------------------------
// bare

struct BareArgs {
  std::string model_dir;
  int batch = 1;
  double seconds = 10;
  double warmup = 2;
  int min_batches = 3;
  std::string device;  // empty: as model.yaml says
  std::string precision;
  int instances = 1;
  int threads = 0;
  int interop_threads = 0;
  int64_t rows = 0, cols = 0;
  std::string dtype = "auto";
};

absl::StatusOr<fs::path> ModelFile(const fs::path& dir, const inf::ModelConfig& config) {
  std::vector<int64_t> versions;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (!e.is_directory() || n.empty() || !std::all_of(n.begin(), n.end(), ::isdigit)) continue;
    if (fs::exists(e.path() / "model.pt")) versions.push_back(std::stoll(n));
  }
  if (ec) return absl::NotFoundError("cannot read " + dir.string() + ": " + ec.message());
  // The version the worker would serve by default: the newest it loads.
  const auto selected = inf::SelectVersions(config.version_policy, versions);
  if (selected.empty()) return absl::NotFoundError("no version directory with a model.pt in " + dir.string());
  return dir / std::to_string(selected.front()) / "model.pt";
}

absl::Status ApplyOverrides(const BareArgs& a, inf::ModelConfig& config) {
  if (!a.device.empty()) {
    if (a.device == "cpu") {
      config.placement.cuda = false;
      config.placement.devices.clear();
    } else if (a.device == "cuda" || (a.device.rfind("cuda:", 0) == 0 && a.device.size() > 5 &&
                                       std::all_of(a.device.begin() + 5, a.device.end(), ::isdigit))) {
      config.placement.cuda = true;
      config.placement.devices = {a.device == "cuda" ? 0 : std::stoi(a.device.substr(5))};
    } else {
      return absl::InvalidArgumentError("--device must be cpu or cuda:N");
    }
  }
  if (!a.precision.empty()) {
    if (a.precision == "fp32") config.precision = inf::Precision::kFp32;
    else if (a.precision == "fp16") config.precision = inf::Precision::kFp16;
    else if (a.precision == "bf16") config.precision = inf::Precision::kBf16;
    else return absl::InvalidArgumentError("--precision must be fp32, fp16 or bf16");
  }
  // The worker gives each instance its own batcher thread; here each instance
  // gets its own loop thread, so `instances` plays the role of
  // instance_group.count (per device).
  config.placement.count = a.instances;
  return absl::OkStatus();
}

int Bare(const BareArgs& a) {
  const fs::path dir = fs::absolute(a.model_dir);
  std::ifstream in(dir / "model.yaml");
  if (!in) return Fail("cannot open " + (dir / "model.yaml").string());
  std::stringstream yaml;
  yaml << in.rdbuf();
  auto config = inf::ParseModelConfig(yaml.str(), dir.filename().string());
  if (!config.ok()) return Fail("model.yaml: " + config.status().ToString());
  if (auto s = ApplyOverrides(a, *config); !s.ok()) return Fail(s.ToString());
  auto file = ModelFile(dir, *config);
  if (!file.ok()) return Fail(file.status().ToString());

  tb::TorchOptions options;
  options.intra_op_threads = a.threads;
  options.inter_op_threads = a.interop_threads;
  tb::ConfigureThreads(options);
  tb::TorchBackendFactory factory(options);
  auto backends = factory.Create(*config, *file);
  if (!backends.ok()) return Fail("loading the model: " + backends.status().ToString());

  ImageSpec spec;
  spec.rows = a.rows > 0 ? a.rows : config->input.height;
  spec.cols = a.cols > 0 ? a.cols : config->input.width;
  auto dtype = PickDType(a.dtype, config->input.accepted_dtypes);
  if (!dtype.ok()) return Fail(dtype.status().ToString());
  spec.dtype = *dtype;

  Run run;
  std::atomic<bool> failed{false};
  std::string failure;
  std::mutex failure_mu;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < backends->size(); ++i) {
    threads.emplace_back([&, i] {
      inf::ModelBackend* backend = (*backends)[i].get();
      std::vector<std::string> buffers;
      std::vector<inf::ImageView> views(static_cast<size_t>(a.batch));
      std::vector<const inf::ImageView*> ptrs;
      for (int k = 0; k < a.batch; ++k) buffers.push_back(RandomPixels(spec, static_cast<uint32_t>(i * 100003 + k)));
      for (int k = 0; k < a.batch; ++k) {
        auto& v = views[static_cast<size_t>(k)];
        v.shape = {spec.rows, spec.cols};
        v.dtype = spec.dtype;
        v.data = buffers[static_cast<size_t>(k)];
        ptrs.push_back(&v);
      }
      while (!run.Stopping() && !failed) {
        Completion c;
        c.start = Clock::now();
        // Execute copies results back to the host, which on CUDA waits for
        // the batch to finish: the timing includes the device work.
        auto out = backend->Execute(ptrs);
        c.end = Clock::now();
        if (!out.ok() || out->size() != ptrs.size()) {
          std::lock_guard lk(failure_mu);
          failure = out.ok() ? "wrong number of results" : out.status().ToString();
          failed = true;
          return;
        }
        c.images = a.batch;
        run.Record(c);
      }
    });
  }
  const int64_t n_instances = static_cast<int64_t>(backends->size());
  std::thread coordinator([&] { run.Coordinate(a.warmup, 2 * n_instances, a.seconds, a.min_batches); });
  for (auto& t : threads) t.join();
  if (failed) {
    // The coordinator waits for completions that will never come and holds
    // references into this frame, so leave without unwinding.
    std::cerr << "inference_bench: batch failed: " << failure << std::endl;
    std::_Exit(1);
  }
  coordinator.join();

  const auto m = run.Measured();
  std::vector<double> lat;
  for (const auto& c : m) lat.push_back(Millis(c.end - c.start));
  json out = {
      {"mode", "bare"},
      {"model", config->name},
      {"device", (*backends)[0]->Device()},
      {"precision", std::string(inf::PrecisionName(config->precision))},
      {"instances", n_instances},
      {"threads", at::get_num_threads()},
      {"batch", a.batch},
      {"image", {{"rows", spec.rows}, {"cols", spec.cols}, {"dtype", std::string(inf::DTypeName(spec.dtype))}}},
      {"batches", m.size()},
      {"seconds", Round(run.window_seconds(), 3)},
      {"images_per_s", Round(Rate(m), 2)},
      {"batch_latency_ms_p50", Round(Percentile(lat, 50), 3)},
      {"batch_latency_ms_p99", Round(Percentile(lat, 99), 3)},
      {"batch_latency_ms_mean", Round(Mean(lat), 3)},
      {"runtime", tb::RuntimeSummary()},
  };
  std::cout << out.dump() << std::endl;
  return 0;
}

// ---------------------------------------------------------------------------
// grpc

struct GrpcArgs {
  std::string target;
  std::string model;
  int batch = 1;
  int clients = 4;
  double seconds = 10;
  double warmup = 2;
  int min_requests = 3;
  int64_t rows = 0, cols = 0;
  std::string dtype = "auto";
  double timeout = 300;
};

// Each client gets its own channel, made distinct by an argument the server
// never sees: gRPC shares one subchannel (one TCP connection) between
// channels with identical arguments, which would put every client behind
// one connection's flow control and one completion queue.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, int index) {
  grpc::ChannelArguments args;
  args.SetInt("secondread.bench.channel", index);
  args.SetMaxSendMessageSize(-1);
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

v1::DataType ToProto(inf::DType d) {
  switch (d) {
    case inf::DType::kUint8: return v1::DATA_TYPE_UINT8;
    case inf::DType::kUint16: return v1::DATA_TYPE_UINT16;
    case inf::DType::kInt16: return v1::DATA_TYPE_INT16;
    case inf::DType::kFloat16: return v1::DATA_TYPE_FLOAT16;
    case inf::DType::kFloat32: return v1::DATA_TYPE_FLOAT32;
  }
  return v1::DATA_TYPE_UNSPECIFIED;
}

std::optional<inf::DType> FromProto(int d) {
  switch (d) {
    case v1::DATA_TYPE_UINT8: return inf::DType::kUint8;
    case v1::DATA_TYPE_UINT16: return inf::DType::kUint16;
    case v1::DATA_TYPE_INT16: return inf::DType::kInt16;
    case v1::DATA_TYPE_FLOAT16: return inf::DType::kFloat16;
    case v1::DATA_TYPE_FLOAT32: return inf::DType::kFloat32;
    default: return std::nullopt;
  }
}

int Grpc(const GrpcArgs& a) {
  auto describe_channel = MakeChannel(a.target, -1);
  if (!describe_channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    return Fail("cannot connect to " + a.target);
  }
  v1::ModelDescription desc;
  {
    auto stub = v1::Inference::NewStub(describe_channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::DescribeModelRequest req;
    req.set_model_name(a.model);
    auto s = stub->DescribeModel(&ctx, req, &desc);
    if (!s.ok()) return Fail("DescribeModel: " + s.error_message());
    if (desc.state() != v1::MODEL_STATE_READY) return Fail("model " + a.model + " is not ready: " + desc.reason());
  }
  if (static_cast<uint32_t>(a.batch) > desc.input().max_batch_size()) {
    return Fail("--batch " + std::to_string(a.batch) + " exceeds the model's max_batch_size " +
                std::to_string(desc.input().max_batch_size()));
  }
  std::vector<inf::DType> accepted;
  for (int d : desc.input().accepted_dtypes()) {
    if (auto t = FromProto(d)) accepted.push_back(*t);
  }
  ImageSpec spec;
  spec.rows = a.rows > 0 ? a.rows : desc.input().height();
  spec.cols = a.cols > 0 ? a.cols : desc.input().width();
  auto dtype = PickDType(a.dtype, accepted);
  if (!dtype.ok()) return Fail(dtype.status().ToString());
  spec.dtype = *dtype;

  Run run;
  std::atomic<int64_t> errors{0};
  std::string first_error;
  std::mutex error_mu;
  std::vector<std::thread> threads;
  for (int i = 0; i < a.clients; ++i) {
    threads.emplace_back([&, i] {
      auto channel = MakeChannel(a.target, i);
      // Connection set-up is not what is measured, and 32 channels
      // connecting at once can see a failed first attempt; waiting lets gRPC
      // retry it instead of failing the first requests fast.
      if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
        errors.fetch_add(1);
        std::lock_guard lk(error_mu);
        if (first_error.empty()) first_error = "client " + std::to_string(i) + " could not connect in 30 s";
        return;
      }
      auto stub = v1::Inference::NewStub(channel);
      // Built once: the benchmark measures the worker, not request building.
      v1::InferRequest req;
      req.set_model_name(a.model);
      req.set_priority(v1::PRIORITY_ROUTINE);
      req.set_job_token("bench-" + std::to_string(i));
      for (int k = 0; k < a.batch; ++k) {
        auto* img = req.add_images();
        img->add_shape(static_cast<uint32_t>(spec.rows));
        img->add_shape(static_cast<uint32_t>(spec.cols));
        img->set_dtype(ToProto(spec.dtype));
        img->set_data(RandomPixels(spec, static_cast<uint32_t>(i * 100003 + k)));
        img->set_photometric(v1::PHOTOMETRIC_MONOCHROME2);
      }
      while (!run.Stopping()) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(static_cast<int64_t>(a.timeout * 1000)));
        v1::InferResponse resp;
        Completion c;
        c.start = Clock::now();
        grpc::Status s = stub->Infer(&ctx, req, &resp);
        c.end = Clock::now();
        if (!s.ok() || resp.results_size() != a.batch) {
          errors.fetch_add(1);
          {
            std::lock_guard lk(error_mu);
            if (first_error.empty()) {
              first_error = s.ok() ? "response has " + std::to_string(resp.results_size()) + " results"
                                   : std::to_string(s.error_code()) + " " + s.error_message();
            }
          }
          // Back off briefly so a refusing worker is not spun against.
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
        c.images = a.batch;
        c.server_batch = static_cast<int>(resp.timing().batch_size());
        c.queue_ms = static_cast<double>(resp.timing().queue_us()) / 1000.0;
        c.compute_ms = static_cast<double>(resp.timing().compute_us()) / 1000.0;
        run.Record(c);
      }
    });
  }
  // At least clients+1 requests, so that the window holds more than one
  // server batch even when all clients share one.
  std::thread coordinator([&] {
    run.Coordinate(a.warmup, a.clients + 1, a.seconds, std::max<int64_t>(a.min_requests, a.clients + 1));
  });
  // The coordinator waits for successful completions; when only errors come
  // back it would wait forever, so give up after 30 s without progress.
  int64_t last_count = 0;
  auto last_progress = Clock::now();
  while (!run.Stopping()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (run.Count() != last_count) {
      last_count = run.Count();
      last_progress = Clock::now();
    } else if (errors > 0 && Seconds(Clock::now() - last_progress) > 30) {
      std::lock_guard lk(error_mu);
      std::cerr << "inference_bench: no request succeeded for 30 s; first error: " << first_error << std::endl;
      // Threads and the coordinator still reference this frame.
      std::_Exit(1);
    }
  }
  coordinator.join();
  for (auto& t : threads) t.join();

  const auto m = run.Measured();
  std::vector<double> lat;
  double queue = 0, compute = 0, batches = 0, images = 0;
  for (const auto& c : m) {
    lat.push_back(Millis(c.end - c.start));
    queue += c.queue_ms;
    compute += c.compute_ms;
    images += c.images;
    // Each image is 1/b of a batch of b images, so this sums to the number
    // of server batches the measured requests travelled in.
    if (c.server_batch > 0) batches += static_cast<double>(c.images) / c.server_batch;
  }
  const double n = m.empty() ? 1.0 : static_cast<double>(m.size());
  // The share of time the worker's instances spent inside Execute, over the
  // same span as Rate(). A request carries images/batch of its batch's
  // compute time, so each batch is counted once. With requests always
  // queued, the rest is the worker's own time between batches: forming the
  // batch, answering the previous one, waking the instance thread.
  const int instances = std::max(1, desc.devices_size());
  const size_t first = SpanStart(m);
  double busy_ms = 0;
  for (size_t k = first + 1; k < m.size(); ++k) {
    if (m[k].server_batch > 0) busy_ms += m[k].compute_ms * m[k].images / m[k].server_batch;
  }
  const double span_ms = first + 1 < m.size() ? Millis(m.back().end - m[first].end) : 0;
  const double busy = span_ms > 0 ? busy_ms / span_ms / instances : 0;
  json out = {
      {"mode", "grpc"},
      {"model", a.model},
      {"devices", std::vector<std::string>(desc.devices().begin(), desc.devices().end())},
      {"precision", desc.precision()},
      {"batch", a.batch},
      {"clients", a.clients},
      {"image", {{"rows", spec.rows}, {"cols", spec.cols}, {"dtype", std::string(inf::DTypeName(spec.dtype))}}},
      {"requests", m.size()},
      {"errors", errors.load()},
      {"seconds", Round(run.window_seconds(), 3)},
      {"images_per_s", Round(Rate(m), 2)},
      {"request_latency_ms_p50", Round(Percentile(lat, 50), 3)},
      {"request_latency_ms_p99", Round(Percentile(lat, 99), 3)},
      {"request_latency_ms_mean", Round(Mean(lat), 3)},
      {"mean_server_batch", Round(batches > 0 ? images / batches : 0, 2)},
      {"mean_queue_ms", Round(queue / n, 3)},
      {"mean_compute_ms", Round(compute / n, 3)},
      {"instances", instances},
      {"server_busy", Round(busy, 3)},
  };
  if (errors > 0) out["first_error"] = first_error;
  std::cout << out.dump() << std::endl;
  // Errors make the throughput figure meaningless (refused requests are
  // cheap); say so in the exit code, not only in the JSON.
  return errors > 0 ? 3 : 0;
}

// ---------------------------------------------------------------------------
// matmul

struct MatmulArgs {
  std::string device = "cpu";
  std::string dtype = "fp32";
  int64_t n = 2048;
  double seconds = 5;
  int threads = 0;
};

int Matmul(const MatmulArgs& a) {
  tb::TorchOptions options;
  options.intra_op_threads = a.threads;
  tb::ConfigureThreads(options);
  at::ScalarType type = at::kFloat;
  if (a.dtype == "bf16") type = at::kBFloat16;
  else if (a.dtype == "fp16") type = at::kHalf;
  else if (a.dtype != "fp32") return Fail("--dtype must be fp32, bf16 or fp16");
  try {
    const at::Device device(a.device);
    const bool cuda = device.is_cuda();
    if (cuda && !torch::cuda::is_available()) return Fail("no CUDA device is available to this LibTorch");
    c10::InferenceMode guard;
    auto opts = at::TensorOptions().dtype(type).device(device);
    at::Tensor x = at::randn({a.n, a.n}, opts);
    at::Tensor y = at::randn({a.n, a.n}, opts);
    at::Tensor z = at::empty({a.n, a.n}, opts);
    // Kernels are launched asynchronously on CUDA; only a synchronisation
    // makes the elapsed time cover the work.
    auto sync = [&] {
      if (cuda) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index());
    };
    for (int i = 0; i < 3; ++i) at::mm_out(z, x, y);
    sync();
    // Enough matmuls per synchronisation that the sync's own latency does
    // not count against the device.
    const int per_sync = cuda ? 20 : 1;
    int64_t count = 0;
    const auto t0 = Clock::now();
    double elapsed = 0;
    do {
      for (int i = 0; i < per_sync; ++i) at::mm_out(z, x, y);
      sync();
      count += per_sync;
      elapsed = Seconds(Clock::now() - t0);
    } while (elapsed < a.seconds);
    const double flop = 2.0 * static_cast<double>(a.n) * static_cast<double>(a.n) * static_cast<double>(a.n);
    json out = {
        {"mode", "matmul"},
        {"device", device.str()},
        {"dtype", a.dtype},
        {"n", a.n},
        {"matmuls", count},
        {"seconds", Round(elapsed, 3)},
        {"tflops", Round(flop * static_cast<double>(count) / elapsed / 1e12, 4)},
        {"flop_convention", "2*n^3 per matmul (a multiply-add counts as 2 FLOP)"},
        {"runtime", tb::RuntimeSummary()},
    };
    std::cout << out.dump() << std::endl;
  } catch (const c10::Error& e) {
    return Fail(std::string("matmul failed: ") + e.what_without_backtrace());
  }
  return 0;
}

// ---------------------------------------------------------------------------
// load

int Load(const std::string& target, const std::string& model) {
  auto stub = v1::ModelAdmin::NewStub(MakeChannel(target, -2));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  v1::LoadModelRequest req;
  req.set_model_name(model);
  v1::LoadModelResponse resp;
  const auto t0 = Clock::now();
  auto s = stub->LoadModel(&ctx, req, &resp);
  if (!s.ok()) return Fail("LoadModel " + model + ": " + s.error_message());
  json versions = json::array();
  for (const auto& v : resp.model().versions()) {
    versions.push_back({{"version", v.version()}, {"state", v1::ModelState_Name(v.state())}, {"reason", v.reason()}});
  }
  std::cout << json{{"mode", "load"}, {"model", model}, {"seconds", Round(Seconds(Clock::now() - t0), 3)},
                    {"versions", versions}}
                   .dump()
            << std::endl;
  return 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// volume

struct VolumeArgs {
  std::string model_dir;  // in-process, as bare
  std::string target;     // or through a worker
  std::string model;
  std::string device;
  int threads = 0;
  int repeats = 3;
  std::vector<uint32_t> shape{300, 512, 512};
  std::vector<double> spacing{1.0, 0.7, 0.7};
  double timeout = 1800;
};

// A CT-like volume in HU: air outside an elliptic body of soft tissue
// (40 HU) with a 15 mm sphere of 200 HU at its centre, so that the model's
// window and the label map have something to do.
std::string SyntheticCt(const VolumeArgs& a) {
  const size_t d = a.shape[0], h = a.shape[1], w = a.shape[2];
  std::string bytes(d * h * w * sizeof(float), '\0');
  auto* v = reinterpret_cast<float*>(bytes.data());
  const double cz = d * a.spacing[0] / 2, cy = h * a.spacing[1] / 2, cx = w * a.spacing[2] / 2;
  for (size_t z = 0; z < d; ++z) {
    const double pz = z * a.spacing[0] - cz;
    for (size_t y = 0; y < h; ++y) {
      const double py = y * a.spacing[1] - cy;
      float* row = v + (z * h + y) * w;
      for (size_t x = 0; x < w; ++x) {
        const double px = x * a.spacing[2] - cx;
        const bool body = (px * px) / (0.45 * 0.45 * 4 * cx * cx) + (py * py) / (0.35 * 0.35 * 4 * cy * cy) <= 1;
        const bool lesion = px * px + py * py + pz * pz <= 15.0 * 15.0;
        row[x] = lesion ? 200.0f : (body ? 40.0f + static_cast<float>((x * 7 + y * 13 + z * 3) % 21) - 10 : -1000.0f);
      }
    }
  }
  return bytes;
}

json Median(const std::vector<json>& runs, const char* key) {
  if (runs.empty()) return nullptr;
  std::vector<double> v;
  for (const auto& r : runs) v.push_back(r.at(key).get<double>());
  return Round(Percentile(v, 50), 3);
}

// The volume in-process through the worker's own ExecuteVolume (reorient,
// resample, intensity, sliding window, resample back), repeated.
int VolumeBare(const VolumeArgs& a) {
  const fs::path dir = fs::absolute(a.model_dir);
  std::ifstream in(dir / "model.yaml");
  if (!in) return Fail("cannot open " + (dir / "model.yaml").string());
  std::stringstream yaml;
  yaml << in.rdbuf();
  auto config = inf::ParseModelConfig(yaml.str(), dir.filename().string());
  if (!config.ok()) return Fail("model.yaml: " + config.status().ToString());
  if (config->input.kind != inf::InputKind::kVolume) return Fail(config->name + " is not a volume model");
  BareArgs overrides;
  overrides.device = a.device;
  if (auto st = ApplyOverrides(overrides, *config); !st.ok()) return Fail(st.ToString());
  auto file = ModelFile(dir, *config);
  if (!file.ok()) return Fail(file.status().ToString());
  tb::TorchOptions options;
  options.intra_op_threads = a.threads;
  tb::ConfigureThreads(options);
  tb::TorchBackendFactory factory(options);
  const auto t_load = Clock::now();
  auto backends = factory.Create(*config, *file);  // includes the worker's one-window warm-up
  if (!backends.ok()) return Fail("loading the model: " + backends.status().ToString());
  const double load_s = Seconds(Clock::now() - t_load);
  inf::ModelBackend& backend = *backends->front();

  const std::string data = SyntheticCt(a);
  inf::VolumeView view;
  view.shape = {1, a.shape[0], a.shape[1], a.shape[2]};
  view.dtype = inf::DType::kFloat32;
  view.data = data;
  view.spacing = {a.spacing[0], a.spacing[1], a.spacing[2]};
  std::vector<json> runs;
  // The first run is a warm-up: TorchScript profiles its first calls at new
  // shapes, and the last batch of windows can be smaller.
  for (int i = 0; i <= a.repeats; ++i) {
    const auto t0 = Clock::now();
    auto out = backend.ExecuteVolume(view);
    const double wall = Seconds(Clock::now() - t0);
    if (!out.ok()) return Fail("ExecuteVolume: " + out.status().ToString());
    json r{{"wall_s", Round(wall, 3)},
           {"resample_s", Round(out->resample_us / 1e6, 3)},
           {"inference_s", Round(out->inference_us / 1e6, 3)},
           {"resample_back_s", Round(out->resample_back_us / 1e6, 3)},
           {"lesion_voxels", out->voxel_count.empty() ? 0 : out->voxel_count[0]}};
    std::cerr << "volume bare run " << i << (i == 0 ? " (warm-up)" : "") << ": " << r.dump() << "\n";
    if (i > 0) runs.push_back(std::move(r));
  }
  std::cout << json{{"mode", "volume"},
                    {"path", "bare"},
                    {"model", config->name},
                    {"device", backend.Device()},
                    {"threads", at::get_num_threads()},
                    {"shape", a.shape},
                    {"spacing_mm", a.spacing},
                    {"load_s", Round(load_s, 3)},
                    {"repeats", a.repeats},
                    {"wall_s", Median(runs, "wall_s")},
                    {"resample_s", Median(runs, "resample_s")},
                    {"inference_s", Median(runs, "inference_s")},
                    {"resample_back_s", Median(runs, "resample_back_s")},
                    {"lesion_voxels", runs.empty() ? json() : runs.back()["lesion_voxels"]},
                    {"runs", runs}}
                   .dump()
            << "\n";
  return 0;
}

// The same volume through a running worker's InferVolume, as the node sends
// it: a header, 4 MiB chunks of float32, then the maps back.
int VolumeGrpc(const VolumeArgs& a) {
  auto stub = v1::Inference::NewStub(MakeChannel(a.target, 0));
  const std::string data = SyntheticCt(a);
  const size_t chunk_bytes = 4u << 20;
  std::vector<json> runs;
  std::string device;
  for (int i = 0; i <= a.repeats; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(a.timeout * 1000)));
    auto stream = stub->InferVolume(&ctx);
    v1::VolumeRequest req;
    auto* h = req.mutable_header();
    h->set_model_name(a.model);
    h->set_job_token("bench-" + std::to_string(i));
    for (uint32_t d : a.shape) h->add_shape(d);
    h->set_dtype(v1::DATA_TYPE_FLOAT32);
    for (double sp : a.spacing) h->add_spacing_mm(sp);
    for (double c : {1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0}) h->add_direction(c);
    h->mutable_modality()->set_scheme("DCM");
    h->mutable_modality()->set_value("CT");
    const auto t0 = Clock::now();
    bool open = stream->Write(req);
    for (size_t off = 0; open && off < data.size(); off += chunk_bytes) {
      req.Clear();
      req.mutable_chunk()->set_offset(off);
      req.mutable_chunk()->set_data(data.substr(off, std::min(chunk_bytes, data.size() - off)));
      open = stream->Write(req);
    }
    stream->WritesDone();
    const auto t_sent = Clock::now();
    v1::VolumeResponse resp;
    v1::VolumeResultHeader header;
    Clock::time_point t_header{};
    uint64_t received = 0;
    while (stream->Read(&resp)) {
      if (resp.has_header()) {
        header = resp.header();
        t_header = Clock::now();
      } else {
        received += resp.chunk().data().size();
      }
    }
    const auto t_end = Clock::now();
    grpc::Status st = stream->Finish();
    if (!st.ok()) return Fail("InferVolume: " + st.error_message());
    const double send_s = Seconds(t_sent - t0), receive_s = Seconds(t_end - t_header);
    json r{{"wall_s", Round(Seconds(t_end - t0), 3)},
           {"send_s", Round(send_s, 3)},
           {"send_mb_per_s", Round(data.size() / 1e6 / send_s, 1)},
           {"worker_receive_s", Round(header.timing().queue_us() / 1e6, 3)},
           {"compute_s", Round(header.timing().compute_us() / 1e6, 3)},
           {"resample_s", Round(header.volume_timings().resample_us() / 1e6, 3)},
           {"inference_s", Round(header.volume_timings().inference_us() / 1e6, 3)},
           {"resample_back_s", Round(header.volume_timings().resample_back_us() / 1e6, 3)},
           {"receive_s", Round(receive_s, 3)},
           {"received_bytes", received},
           {"receive_mb_per_s", Round(receive_s > 0 ? received / 1e6 / receive_s : 0, 1)},
           {"lesion_voxels", header.labels_size() ? header.labels(0).voxel_count() : 0}};
    std::cerr << "volume grpc run " << i << (i == 0 ? " (warm-up)" : "") << ": " << r.dump() << "\n";
    if (i > 0) runs.push_back(std::move(r));
  }
  json out{{"mode", "volume"}, {"path", "grpc"}, {"model", a.model}, {"target", a.target},
           {"shape", a.shape}, {"spacing_mm", a.spacing}, {"repeats", a.repeats}};
  for (const char* k : {"wall_s", "send_s", "send_mb_per_s", "worker_receive_s", "compute_s", "resample_s",
                        "inference_s", "resample_back_s", "receive_s", "receive_mb_per_s"}) {
    out[k] = Median(runs, k);
  }
  out["lesion_voxels"] = runs.empty() ? json() : runs.back()["lesion_voxels"];
  out["runs"] = runs;
  std::cout << out.dump() << "\n";
  return 0;
}

int main(int argc, char** argv) {
  CLI::App app{"inference_bench: the inference worker's throughput against bare LibTorch"};
  app.require_subcommand(1);

  BareArgs bare;
  auto* b = app.add_subcommand("bare", "Run a model in-process through the worker's backend code");
  b->add_option("--model-dir", bare.model_dir, "Model directory (REPO/MODEL, holding model.yaml)")->required();
  b->add_option("--batch", bare.batch, "Images per batch")->check(CLI::Range(1, 4096));
  b->add_option("--seconds", bare.seconds, "Measurement time after warm-up");
  b->add_option("--warmup", bare.warmup, "Warm-up time (at least two batches per instance)");
  b->add_option("--min-batches", bare.min_batches, "Measure at least this many batches")->check(CLI::Range(2, 1000000));
  b->add_option("--device", bare.device, "cpu or cuda:N (default: model.yaml's instance_group)");
  b->add_option("--precision", bare.precision, "fp32, fp16 or bf16 (default: model.yaml's)");
  b->add_option("--instances", bare.instances, "Model instances, each on its own thread")->check(CLI::Range(1, 64));
  b->add_option("--threads", bare.threads, "LibTorch intra-op threads (0: LibTorch's default)");
  b->add_option("--interop-threads", bare.interop_threads, "LibTorch inter-op threads (0: default)");
  b->add_option("--rows", bare.rows, "Image rows (default: the model's input height)");
  b->add_option("--cols", bare.cols, "Image columns (default: the model's input width)");
  b->add_option("--dtype", bare.dtype, "Pixel type: auto, uint8, uint16, int16, float16, float32");

  GrpcArgs grpc_args;
  auto* g = app.add_subcommand("grpc", "Drive a running worker with concurrent Infer calls");
  g->add_option("--target", grpc_args.target, "Worker address HOST:PORT")->required();
  g->add_option("--model", grpc_args.model, "Model name")->required();
  g->add_option("--batch", grpc_args.batch, "Images per request")->check(CLI::Range(1, 4096));
  g->add_option("--clients", grpc_args.clients, "Concurrent clients, one channel each")->check(CLI::Range(1, 1024));
  g->add_option("--seconds", grpc_args.seconds, "Measurement time after warm-up");
  g->add_option("--warmup", grpc_args.warmup, "Warm-up time (at least clients+1 requests)");
  g->add_option("--min-requests", grpc_args.min_requests, "Measure at least this many requests")
      ->check(CLI::Range(2, 1000000));
  g->add_option("--rows", grpc_args.rows, "Image rows (default: the model's input height)");
  g->add_option("--cols", grpc_args.cols, "Image columns (default: the model's input width)");
  g->add_option("--dtype", grpc_args.dtype, "Pixel type: auto, uint8, uint16, int16, float16, float32");
  g->add_option("--timeout", grpc_args.timeout, "Per-request deadline in seconds");

  MatmulArgs mm;
  auto* m = app.add_subcommand("matmul", "Dense matmul rate of a device, in TFLOP/s");
  m->add_option("--device", mm.device, "cpu or cuda:N");
  m->add_option("--dtype", mm.dtype, "fp32, bf16 or fp16");
  m->add_option("--n", mm.n, "Matrix size (n x n times n x n)")->check(CLI::Range(16, 65536));
  m->add_option("--seconds", mm.seconds, "Measurement time");
  m->add_option("--threads", mm.threads, "LibTorch intra-op threads (0: default)");

  std::string load_target, load_model;
  auto* l = app.add_subcommand("load", "Ask a worker to (re)load a model from its repository");
  l->add_option("--target", load_target, "Worker address HOST:PORT")->required();
  l->add_option("--model", load_model, "Model name")->required();

  VolumeArgs vol;
  auto* v = app.add_subcommand("volume", "One synthetic CT volume through a volume model, in-process or through a worker");
  auto* v_dir = v->add_option("--model-dir", vol.model_dir, "In-process: model directory (REPO/MODEL)");
  auto* v_target = v->add_option("--target", vol.target, "Through a worker: its address HOST:PORT");
  v_dir->excludes(v_target);
  v->add_option("--model", vol.model, "Model name (with --target)");
  v->add_option("--device", vol.device, "In-process: cpu or cuda:N (default: model.yaml's instance_group)");
  v->add_option("--threads", vol.threads, "In-process: LibTorch intra-op threads (0: default)");
  v->add_option("--repeats", vol.repeats, "Timed runs after one warm-up run (median shown; 0: the warm-up only)")
      ->check(CLI::Range(0, 100));
  v->add_option("--shape", vol.shape, "D H W")->expected(3)->delimiter(',');
  v->add_option("--spacing", vol.spacing, "Spacing along D, H, W in mm")->expected(3)->delimiter(',');
  v->add_option("--timeout", vol.timeout, "Per-call deadline in seconds (with --target)");

  CLI11_PARSE(app, argc, argv);
  if (*v) {
    if (!vol.model_dir.empty()) return VolumeBare(vol);
    if (vol.target.empty() || vol.model.empty()) return Fail("volume needs --model-dir, or --target and --model");
    return VolumeGrpc(vol);
  }
  if (*b) return Bare(bare);
  if (*g) return Grpc(grpc_args);
  if (*m) return Matmul(mm);
  if (*l) return Load(load_target, load_model);
  return 2;
}
