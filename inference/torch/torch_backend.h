// LibTorch behind the ModelBackend seam. Every LibTorch exception is caught
// here and becomes a Status; a failed batch fails its requests, never the
// worker.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "inference/backend.h"

namespace secondread::inference::torch_backend {

struct TorchOptions {
  int intra_op_threads = 0;  // 0 leaves LibTorch's default
  int inter_op_threads = 0;
  bool warm_up = true;
};

// Sets LibTorch's process-wide thread pools; call once, before any model loads.
void ConfigureThreads(const TorchOptions& options);

// "LibTorch 1.13.1, CUDA available: 2 devices" and the like, for the start-up log.
std::string RuntimeSummary();
bool CudaAvailable();

// Device memory for metrics: (device, used bytes, total bytes) per CUDA device.
struct DeviceMemory {
  std::string device;
  double used = 0;
  double total = 0;
};
std::vector<DeviceMemory> CudaMemory();

class TorchBackendFactory final : public BackendFactory {
 public:
  explicit TorchBackendFactory(TorchOptions options);
  absl::StatusOr<std::vector<std::unique_ptr<ModelBackend>>> Create(const ModelConfig& config,
                                                                    const std::filesystem::path& model_file) override;

 private:
  TorchOptions options_;
};

}  // namespace secondread::inference::torch_backend
