// The model repository: a directory of <model>/model.yaml and
// <model>/<version>/model.pt. Each loaded version owns its backends and its
// batcher. A model that fails to load is kept as UNAVAILABLE with the reason
// and never stops the others. Loads and unloads swap whole entries, so
// requests in flight finish on the version they started on.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "inference/backend.h"
#include "inference/batcher.h"
#include "inference/model_config.h"
#include "inference/worker_metrics.h"

namespace secondread::inference {

enum class VersionState { kReady, kUnavailable, kLoading };

struct LoadedVersion {
  ModelConfig config;
  int64_t version = 0;
  std::vector<std::string> devices;
  // Image models: requests go through the batcher, which owns the backends.
  std::unique_ptr<DynamicBatcher> batcher;
  // Volume models: a volume is its own batch, so calls use a backend
  // directly, taking turns over the instances.
  std::vector<std::unique_ptr<ModelBackend>> volume_backends;
  std::atomic<uint64_t> next_backend{0};

  ModelBackend* VolumeBackend() {
    if (volume_backends.empty()) return nullptr;
    return volume_backends[next_backend.fetch_add(1) % volume_backends.size()].get();
  }
};

struct VersionStatus {
  int64_t version = 0;  // 0 when the model as a whole could not be read
  VersionState state = VersionState::kUnavailable;
  std::string reason;
};

struct ModelStatus {
  std::string name;
  std::vector<VersionStatus> versions;
};

struct RepositoryOptions {
  std::filesystem::path root;
  BackendFactory* factory = nullptr;
  WorkerMetrics* metrics = nullptr;  // optional
};

class ModelRepository {
 public:
  explicit ModelRepository(RepositoryOptions options);
  ~ModelRepository();

  // Loads the named models, or every model directory when `names` is empty.
  // Failures are recorded per model; the call itself only fails when the
  // repository directory cannot be read.
  absl::Status LoadAtStart(const std::vector<std::string>& names);

  // (Re)loads one model from disk. The new versions replace the old ones
  // only once they are all loaded; the status says how each version fared.
  absl::StatusOr<ModelStatus> Load(const std::string& name);
  // Removes a model; queued requests finish first.
  absl::Status Unload(const std::string& name);

  // version 0 = the newest ready version. NOT_FOUND for an unknown model or
  // version, UNAVAILABLE with the reason when it exists but is not loaded.
  absl::StatusOr<std::shared_ptr<LoadedVersion>> Get(const std::string& name, int64_t version) const;

  std::vector<ModelStatus> List() const;
  absl::StatusOr<ModelStatus> Status(const std::string& name) const;
  // True when at least one version of some model is ready.
  bool AnyReady() const;

 private:
  struct Entry {
    ModelStatus status;
    std::map<int64_t, std::shared_ptr<LoadedVersion>, std::greater<>> loaded;  // newest first
  };
  Entry LoadEntry(const std::string& name);
  void Publish(const std::string& name, Entry entry);

  RepositoryOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  std::mutex load_mu_;  // one load or unload at a time
};

}  // namespace secondread::inference
