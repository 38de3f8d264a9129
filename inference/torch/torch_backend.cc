#include "inference/torch/torch_backend.h"

#include <torch/script.h>
#include <torch/version.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <mutex>

#include "inference/torch/preprocess.h"
#include "inference/torch/volume_ops.h"

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

  absl::StatusOr<VolumeOutput> ExecuteVolume(const VolumeView& volume) override {
    try {
      return RunVolume(volume);
    } catch (const c10::Error& e) {
      return absl::InternalError("volume execution failed: " + Summarize(e.what_without_backtrace()));
    } catch (const std::exception& e) {
      return absl::InternalError("volume execution failed: " + Summarize(e.what()));
    }
  }

  // A zero volume of one window at the model's spacing: loads kernels and
  // proves at load time that the network's channels match the manifest.
  absl::Status WarmUpVolume() {
    const auto& roi = config_.volume.roi;
    VolumeView v;
    v.shape = {config_.input.channels, roi[0], roi[1], roi[2]};
    v.dtype = DType::kFloat32;
    std::string zeros(static_cast<size_t>(v.shape[0] * roi[0] * roi[1] * roi[2]) * sizeof(float), '\0');
    v.data = zeros;
    for (size_t i = 0; i < 3; ++i) v.spacing[i] = config_.volume.spacing[i] > 0 ? config_.volume.spacing[i] : 1.0;
    // Identity cosines are LPS axial; canonical z is D, y is H, x is W.
    auto out = ExecuteVolume(v);
    return out.ok() ? absl::OkStatus() : out.status();
  }

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

  at::Tensor Forward(const at::Tensor& x) {
    torch::jit::IValue result;
    {
      std::lock_guard lk(mu_);
      result = module_.forward({x});
    }
    if (result.isTensor()) return result.toTensor();
    if (result.isTuple()) {
      const auto& elems = result.toTupleRef().elements();
      if (!elems.empty() && elems[0].isTensor()) return elems[0].toTensor();
    }
    TORCH_CHECK(false, "model output must be a tensor or a tuple whose first element is a tensor");
  }

  // Microseconds since `since`, after the device has finished what was
  // queued: CUDA kernels run asynchronously, and a step's time would
  // otherwise be charged to whichever later step first waits for it.
  int64_t StepUs(std::chrono::steady_clock::time_point* since) const {
    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
    const auto now = std::chrono::steady_clock::now();
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - *since).count();
    *since = now;
    return us;
  }

  absl::StatusOr<VolumeOutput> RunVolume(const VolumeView& in) {
    c10::InferenceMode guard;
    auto step = std::chrono::steady_clock::now();
    const VolumeConfig& vc = config_.volume;
    const auto& labels = config_.output.labels;
    const auto n_labels = static_cast<int64_t>(labels.size());
    ASSIGN_OR_RETURN(ReorientPlan plan, PlanReorientation(in.direction, vc.orientation));

    // One copy to the device in the stored type, then float there.
    const at::ScalarType stored = in.dtype == DType::kUint8    ? at::kByte
                                  : in.dtype == DType::kFloat16 ? at::kHalf
                                  : in.dtype == DType::kFloat32 ? at::kFloat
                                                                : at::kShort;
    at::Tensor x = at::from_blob(const_cast<char*>(in.data.data()), in.shape, at::TensorOptions().dtype(stored));
    x = x.to(device_);
    // uint16 has no LibTorch type: stored as int16, widened without the sign.
    x = in.dtype == DType::kUint16 ? x.to(at::kInt).bitwise_and(0xFFFF).to(at::kFloat) : x.to(at::kFloat);
    x = Reorient(x.unsqueeze(0), plan);

    const Size3 source_size{x.size(2), x.size(3), x.size(4)};
    const Spacing3 source_spacing = ReorientSpacing(in.spacing, plan);
    const Size3 model_size = ResampledSize(source_size, source_spacing, vc.spacing);
    x = ApplyIntensity(Resample(x, model_size, vc.interpolation), vc);
    const int64_t resample_us = StepUs(&step);

    // The network's own axis order, from and back to (z, y, x).
    std::vector<int64_t> to_model{0, 1}, from_model(5);
    for (char a : vc.axes) to_model.push_back(2 + (a == 'D' ? 0 : (a == 'H' ? 1 : 2)));
    for (int64_t i = 0; i < 5; ++i) from_model[static_cast<size_t>(to_model[static_cast<size_t>(i)])] = i;
    const at::ScalarType compute = ComputeType(config_.precision);
    Predictor predict = [&](const at::Tensor& window) {
      at::Tensor out = Forward(window.permute(to_model).contiguous().to(compute));
      return out.to(at::kFloat).permute(from_model);
    };
    SlidingWindowOptions sw{vc.roi, vc.overlap, vc.blending, vc.sigma_scale, vc.sw_batch_size};
    at::Tensor logits = SlidingWindow(x, sw, predict);
    const int64_t inference_us = StepUs(&step);

    const bool label_map_model = vc.output == VolumeOutputKind::kLabelMap;
    const int64_t want = label_map_model ? n_labels + 1 : n_labels;
    if (logits.size(1) != want) {
      return absl::FailedPreconditionError("model returns " + std::to_string(logits.size(1)) + " channels; model.yaml's " +
                                           std::string(VolumeOutputKindName(vc.output)) + " with " +
                                           std::to_string(n_labels) + " labels needs " + std::to_string(want));
    }

    const Size3 out_size = vc.resample_back ? source_size : model_size;
    at::Tensor label_map;
    at::Tensor probs;
    std::vector<float> max_probability(static_cast<size_t>(n_labels), 0.0f);
    if (label_map_model) {
      // Channel 0 is background; argmax of the logits is argmax of softmax.
      at::Tensor p = logits.softmax(1);
      at::Tensor peak = p.amax({0, 2, 3, 4}).cpu();
      for (int64_t i = 0; i < n_labels; ++i) max_probability[static_cast<size_t>(i)] = peak[i + 1].item<float>();
      // Labels are categories: nearest, never interpolated into each other;
      // gathered as bytes, the source grid being the largest tensor here.
      label_map = ResampleLabels(p.argmax(1, /*keepdim=*/true).to(at::kByte), out_size);
    } else {
      probs = Resample(logits.sigmoid(), out_size, Interpolation::kLinear);
      at::Tensor peak = probs.amax({0, 2, 3, 4}).cpu();
      for (int64_t i = 0; i < n_labels; ++i) max_probability[static_cast<size_t>(i)] = peak[i].item<float>();
      std::vector<float> thresholds;
      for (const auto& l : labels) thresholds.push_back(static_cast<float>(l.threshold));
      at::Tensor t = at::tensor(thresholds, probs.options()).view({1, n_labels, 1, 1, 1});
      // The label map gives each voxel its most probable label among those at
      // or above their own threshold. With one label that is the threshold
      // alone, taken in bytes: the general form passes over 64-bit indices
      // as large as the source grid several times.
      if (n_labels == 1) {
        label_map = probs.ge(t).to(at::kByte);
      } else {
        at::Tensor eligible = at::where(probs >= t, probs, at::full_like(probs, -1.0f));
        auto [best, index] = eligible.max(1, /*keepdim=*/true);
        label_map = at::where(best >= 0, index + 1, at::zeros_like(index)).to(at::kByte);
      }
    }

    // Back into the source's orientation.
    label_map = UndoReorient(label_map, plan).cpu().contiguous();
    VolumeOutput out;
    const Size3 shape{label_map.size(2), label_map.size(3), label_map.size(4)};
    out.shape = shape;
    if (vc.resample_back) {
      out.spacing = in.spacing;
    } else {
      // The grid covers the source's extent, so its spacing is that extent
      // over the new size, which can differ slightly from the target.
      Spacing3 model_spacing;
      for (size_t i = 0; i < 3; ++i) {
        model_spacing[i] = source_spacing[i] * static_cast<double>(source_size[i]) / static_cast<double>(model_size[i]);
      }
      for (size_t i = 0; i < 3; ++i) out.spacing[static_cast<size_t>(plan.perm[i])] = model_spacing[i];
    }
    out.label_map.assign(reinterpret_cast<const char*>(label_map.data_ptr<uint8_t>()),
                         static_cast<size_t>(label_map.numel()));
    // One byte comparison per label, counted without widening: a bincount
    // or a sum would first turn every voxel into a 64-bit integer.
    for (int64_t i = 0; i < n_labels; ++i) {
      out.voxel_count.push_back(static_cast<uint64_t>(at::count_nonzero(label_map.eq(i + 1)).item<int64_t>()));
    }
    out.max_probability = std::move(max_probability);
    if (probs.defined()) {
      // In place, then reoriented as bytes: the maps are no longer needed as
      // floats, and a quarter of the memory moves in the permutation.
      probs.mul_(255).round_().clamp_(0, 255);
      at::Tensor bytes = UndoReorient(probs.to(at::kByte), plan).cpu().contiguous();
      const auto per_map = static_cast<size_t>(bytes.numel() / n_labels);
      const char* base = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
      for (int64_t i = 0; i < n_labels; ++i) out.probabilities.emplace_back(base + static_cast<size_t>(i) * per_map, per_map);
    }
    out.resample_us = resample_us;
    out.inference_us = inference_us;
    out.resample_back_us = StepUs(&step);
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
      if (options_.warm_up && config.input.kind == InputKind::kVolume) {
        RETURN_IF_ERROR(backend->WarmUpVolume());
      } else if (options_.warm_up) {
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
