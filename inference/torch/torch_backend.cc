#include "inference/torch/torch_backend.h"

#include <torch/script.h>
#include <torch/version.h>
#include <ATen/Parallel.h>

#include <mutex>

#include "inference/torch/preprocess.h"

#include <torch/cuda.h>

// Only the device-memory gauges need the CUDA runtime headers; everything else
// asks LibTorch, which answers "no CUDA" in a CPU build.
#if defined(SECONDREAD_TORCH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace secondread::inference::torch_backend {

namespace {

bool HasCuda() { return torch::cuda::is_available(); }

int CudaDeviceCount() { return static_cast<int>(torch::cuda::device_count()); }

at::ScalarType ComputeType(Precision p) {
  switch (p) {
    case Precision::kFp32: return at::kFloat;
    case Precision::kFp16: return at::kHalf;
    case Precision::kBf16: return at::kBFloat16;
  }
  return at::kFloat;
}

// TorchScript errors carry a multi-line traceback; callers get its last line,
// which names the failure ("RuntimeError: ..."), kept short.
std::string Summarize(const char* what) {
  std::string text(what);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  const auto nl = text.rfind('\n');
  if (nl != std::string::npos) text = text.substr(nl + 1);
  if (text.size() > 500) text.resize(500);
  return text;
}

at::Tensor Activate(const at::Tensor& t, Activation a) {
  return a == Activation::kSigmoid ? t.sigmoid() : t;
}

class TorchBackend final : public ModelBackend {
 public:
  TorchBackend(const ModelConfig& config, torch::jit::script::Module module, at::Device device)
      : config_(config), module_(std::move(module)), device_(device) {}

  std::string Device() const override { return device_.str(); }

  absl::StatusOr<std::vector<ImageOutput>> Execute(const std::vector<const ImageView*>& images) override {
    try {
      return Run(images);
    } catch (const c10::Error& e) {
      return absl::InternalError("model execution failed: " + Summarize(e.what_without_backtrace()));
    } catch (const std::exception& e) {
      return absl::InternalError("model execution failed: " + Summarize(e.what()));
    }
  }

  // Runs a batch of zeros so that kernels are chosen and memory is reserved
  // before the first real request.
  absl::Status WarmUp(int batch) {
    std::vector<std::string> buffers(static_cast<size_t>(batch),
                                     std::string(static_cast<size_t>(config_.input.height * config_.input.width), '\0'));
    std::vector<ImageView> views(static_cast<size_t>(batch));
    std::vector<const ImageView*> ptrs;
    for (size_t i = 0; i < views.size(); ++i) {
      views[i].shape = {config_.input.height, config_.input.width};
      views[i].dtype = DType::kUint8;
      views[i].data = buffers[i];
      ptrs.push_back(&views[i]);
    }
    auto out = Execute(ptrs);
    if (!out.ok()) return out.status();
    if (out->size() != static_cast<size_t>(batch)) return absl::InternalError("warm-up returned the wrong batch size");
    for (const auto& o : *out) {
      if (o.scores.size() != config_.output.labels.size()) {
        return absl::FailedPreconditionError("model returns " + std::to_string(o.scores.size()) +
                                             " scores per image; model.yaml declares " +
                                             std::to_string(config_.output.labels.size()) + " labels");
      }
      if (config_.output.heatmap && o.heatmaps.size() != config_.output.labels.size()) {
        return absl::FailedPreconditionError("model.yaml declares heatmaps but the model returns none per label");
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::vector<ImageOutput>> Run(const std::vector<const ImageView*>& images) {
    c10::InferenceMode guard;
    const bool cuda = device_.is_cuda();
    at::Tensor x = Preprocess(images, config_.input, device_, /*pinned=*/cuda);
    x = x.to(ComputeType(config_.precision));
    if (cuda) x = x.contiguous(at::MemoryFormat::ChannelsLast);

    torch::jit::IValue result;
    {
      // TorchScript modules are not documented as safe for concurrent
      // forward calls; one instance runs one batch at a time anyway.
      std::lock_guard lk(mu_);
      result = module_.forward({x});
    }
    at::Tensor scores;
    at::Tensor heatmap;
    if (result.isTensor()) {
      scores = result.toTensor();
    } else if (result.isTuple()) {
      const auto& elems = result.toTupleRef().elements();
      if (elems.empty() || !elems[0].isTensor()) return absl::InternalError("model output tuple has no score tensor");
      scores = elems[0].toTensor();
      if (elems.size() > 1 && elems[1].isTensor()) heatmap = elems[1].toTensor();
    } else {
      return absl::InternalError("model output must be a tensor or a tuple of tensors");
    }
    const int64_t n = static_cast<int64_t>(images.size());
    if (scores.dim() == 1) scores = scores.unsqueeze(1);
    if (scores.dim() != 2 || scores.size(0) != n) {
      return absl::InternalError("model scores must have shape [batch, labels]");
    }
    scores = Activate(scores.to(at::kFloat), config_.output.scores_activation).cpu().contiguous();

    const bool want_heatmap = config_.output.heatmap && heatmap.defined();
    if (want_heatmap) {
      if (heatmap.dim() == 3) heatmap = heatmap.unsqueeze(1);
      if (heatmap.dim() != 4 || heatmap.size(0) != n) {
        return absl::InternalError("model heatmap must have shape [batch, labels, h, w]");
      }
      heatmap = Activate(heatmap.to(at::kFloat), config_.output.heatmap_activation).cpu().contiguous();
    }

    std::vector<ImageOutput> out(static_cast<size_t>(n));
    const int64_t labels = scores.size(1);
    const float* s = scores.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      auto& o = out[static_cast<size_t>(i)];
      o.scores.assign(s + i * labels, s + (i + 1) * labels);
      if (want_heatmap) {
        const int64_t maps = heatmap.size(1), h = heatmap.size(2), w = heatmap.size(3);
        o.heatmap_height = static_cast<int>(h);
        o.heatmap_width = static_cast<int>(w);
        const float* hp = heatmap.data_ptr<float>() + i * maps * h * w;
        for (int64_t m = 0; m < maps; ++m) o.heatmaps.emplace_back(hp + m * h * w, hp + (m + 1) * h * w);
      }
    }
    return out;
  }

  const ModelConfig config_;
  torch::jit::script::Module module_;
  at::Device device_;
  std::mutex mu_;
};

}  // namespace

void ConfigureThreads(const TorchOptions& options) {
  if (options.intra_op_threads > 0) at::set_num_threads(options.intra_op_threads);
  if (options.inter_op_threads > 0) {
    try {
      at::set_num_interop_threads(options.inter_op_threads);
    } catch (const c10::Error&) {
      // Only possible before the pool starts; main() calls this first.
    }
  }
}

std::string RuntimeSummary() {
  std::string s = std::string("LibTorch ") + TORCH_VERSION + ", " + std::to_string(at::get_num_threads()) +
                  " CPU threads";
  if (HasCuda()) s += ", CUDA devices: " + std::to_string(CudaDeviceCount());
  else s += ", no CUDA";
  return s;
}

bool CudaAvailable() { return HasCuda(); }

std::vector<DeviceMemory> CudaMemory() {
  std::vector<DeviceMemory> out;
#if defined(SECONDREAD_TORCH_CUDA)
  if (!HasCuda()) return out;
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) return out;
  for (int d = 0; d < CudaDeviceCount(); ++d) {
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(d) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) continue;
    out.push_back({"cuda:" + std::to_string(d), static_cast<double>(total_b - free_b), static_cast<double>(total_b)});
  }
  cudaSetDevice(current);
#endif
  return out;
}

TorchBackendFactory::TorchBackendFactory(TorchOptions options) : options_(options) {}

absl::StatusOr<std::vector<std::unique_ptr<ModelBackend>>> TorchBackendFactory::Create(
    const ModelConfig& config, const std::filesystem::path& model_file) {
  std::vector<at::Device> devices;
  if (config.placement.cuda) {
    if (!HasCuda()) return absl::FailedPreconditionError("model asks for CUDA, but this worker has no CUDA device");
    std::vector<int> ordinals = config.placement.devices.empty() ? std::vector<int>{0} : config.placement.devices;
    for (int d : ordinals) {
      if (d >= CudaDeviceCount()) return absl::FailedPreconditionError("no CUDA device " + std::to_string(d));
      for (int i = 0; i < config.placement.count; ++i) devices.emplace_back(at::kCUDA, static_cast<at::DeviceIndex>(d));
    }
  } else {
    if (config.precision != Precision::kFp32) {
      return absl::FailedPreconditionError("precision " + std::string(PrecisionName(config.precision)) +
                                           " needs a CUDA instance group; use fp32 on cpu");
    }
    for (int i = 0; i < config.placement.count; ++i) devices.emplace_back(at::kCPU);
  }

  std::vector<std::unique_ptr<ModelBackend>> out;
  for (const auto& device : devices) {
    try {
      torch::jit::script::Module module = torch::jit::load(model_file.string(), device);
      module.eval();
      module.to(ComputeType(config.precision));
      auto backend = std::make_unique<TorchBackend>(config, std::move(module), device);
      if (options_.warm_up) {
        const int batch = device.is_cuda() ? config.batching.max_batch_size : 1;
        RETURN_IF_ERROR(backend->WarmUp(batch));
      }
      out.push_back(std::move(backend));
    } catch (const c10::Error& e) {
      return absl::FailedPreconditionError("cannot load " + model_file.filename().string() + ": " +
                                           Summarize(e.what_without_backtrace()));
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError("cannot load " + model_file.filename().string() + ": " + Summarize(e.what()));
    }
  }
  return out;
}

}  // namespace secondread::inference::torch_backend
