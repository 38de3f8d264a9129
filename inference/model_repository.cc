#include "inference/model_repository.h"

#include <charconv>
#include <fstream>
#include <sstream>

#include "common/log.h"

namespace secondread::inference {

namespace fs = std::filesystem;

namespace {

constexpr uintmax_t kMaxManifestBytes = 1 << 20;

absl::StatusOr<std::string> ReadManifest(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return absl::NotFoundError("cannot read " + path.filename().string() + ": " + ec.message());
  if (size > kMaxManifestBytes) return absl::InvalidArgumentError("model.yaml is larger than 1 MiB");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open model.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<int64_t> VersionDirectories(const fs::path& dir) {
  std::vector<int64_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_directory()) continue;
    const std::string n = e.path().filename().string();
    int64_t v = 0;
    auto [p, err] = std::from_chars(n.data(), n.data() + n.size(), v);
    if (err == std::errc() && p == n.data() + n.size() && v > 0) out.push_back(v);
  }
  return out;
}

}  // namespace

ModelRepository::ModelRepository(RepositoryOptions options) : options_(std::move(options)) {}

ModelRepository::~ModelRepository() {
  std::map<std::string, Entry> doomed;
  {
    std::lock_guard lk(mu_);
    doomed.swap(entries_);
  }
}

absl::Status ModelRepository::LoadAtStart(const std::vector<std::string>& names) {
  std::vector<std::string> todo = names;
  if (todo.empty()) {
    std::error_code ec;
    fs::directory_iterator it(options_.root, ec);
    if (ec) return absl::NotFoundError("cannot read model repository: " + ec.message());
    for (const auto& e : it) {
      if (e.is_directory()) todo.push_back(e.path().filename().string());
    }
    std::sort(todo.begin(), todo.end());
  }
  for (const auto& name : todo) {
    auto s = Load(name);
    if (!s.ok()) log::Warn("model_load_failed", {{"model", name}, {"reason", std::string(s.status().message())}});
  }
  return absl::OkStatus();
}

ModelRepository::Entry ModelRepository::LoadEntry(const std::string& name) {
  Entry entry;
  entry.status.name = name;
  auto fail_model = [&](const std::string& reason) {
    entry.status.versions = {VersionStatus{0, VersionState::kUnavailable, reason}};
    log::Warn("model_unavailable", {{"model", name}, {"reason", reason}});
    return std::move(entry);
  };
  const fs::path dir = options_.root / name;
  auto text = ReadManifest(dir / "model.yaml");
  if (!text.ok()) return fail_model(std::string(text.status().message()));
  auto config = ParseModelConfig(*text, name);
  if (!config.ok()) return fail_model("model.yaml: " + std::string(config.status().message()));

  std::vector<int64_t> available;
  for (int64_t v : VersionDirectories(dir)) {
    if (fs::exists(dir / std::to_string(v) / "model.pt")) available.push_back(v);
  }
  const auto selected = SelectVersions(config->version_policy, available);
  if (selected.empty()) return fail_model("no version directory with a model.pt matches the version policy");

  for (int64_t v : selected) {
    const auto start = Clock::now();
    auto backends = options_.factory->Create(*config, dir / std::to_string(v) / "model.pt");
    if (!backends.ok()) {
      const std::string reason(backends.status().message());
      entry.status.versions.push_back({v, VersionState::kUnavailable, reason});
      log::Warn("model_unavailable", {{"model", name}, {"version", v}, {"reason", reason}});
      if (options_.metrics) options_.metrics->ModelReady(name, std::to_string(v), false);
      continue;
    }
    auto loaded = std::make_shared<LoadedVersion>();
    loaded->config = *config;
    loaded->version = v;
    for (const auto& b : *backends) loaded->devices.push_back(b->Device());
    BatcherHooks hooks;
    if (WorkerMetrics* m = options_.metrics) {
      const std::string vs = std::to_string(v);
      hooks.on_batch = [m, name, vs](int n, double s) {
        m->BatchSize(name, vs, n);
        m->ComputeDuration(name, vs, s);
      };
      hooks.on_dequeue = [m, name, vs](double s) { m->QueueDuration(name, vs, s); };
      hooks.on_pending = [m, name, vs](int64_t n) { m->Pending(name, vs, static_cast<double>(n)); };
      m->ModelReady(name, vs, true);
    }
    if (config->input.kind == InputKind::kVolume) {
      loaded->volume_backends = std::move(*backends);
    } else {
      loaded->batcher = std::make_unique<DynamicBatcher>(config->batching, std::move(*backends), std::move(hooks));
    }
    entry.loaded.emplace(v, loaded);
    entry.status.versions.push_back({v, VersionState::kReady, ""});
    log::Info("model_loaded",
              {{"model", name},
               {"version", v},
               {"devices", loaded->devices},
               {"precision", std::string(PrecisionName(config->precision))},
               {"seconds", std::chrono::duration<double>(Clock::now() - start).count()}});
  }
  return entry;
}

void ModelRepository::Publish(const std::string& name, Entry entry) {
  Entry old;
  {
    std::lock_guard lk(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) old = std::move(it->second);
    entries_[name] = std::move(entry);
  }
  // `old` drains its batchers here, outside the lock, while new requests
  // already go to the new entry.
}

absl::StatusOr<ModelStatus> ModelRepository::Load(const std::string& name) {
  if (!IsValidModelName(name)) return absl::InvalidArgumentError("not a valid model name");
  std::error_code ec;
  if (!fs::is_directory(options_.root / name, ec)) {
    return absl::NotFoundError("model '" + name + "' is not in the repository");
  }
  std::lock_guard load_lock(load_mu_);
  {
    std::lock_guard lk(mu_);
    auto& e = entries_[name];
    e.status.name = name;
    for (auto& v : e.status.versions) v.state = VersionState::kLoading;
    if (e.status.versions.empty()) e.status.versions.push_back({0, VersionState::kLoading, ""});
  }
  Entry entry = LoadEntry(name);
  ModelStatus status = entry.status;
  Publish(name, std::move(entry));
  return status;
}

absl::Status ModelRepository::Unload(const std::string& name) {
  if (!IsValidModelName(name)) return absl::InvalidArgumentError("not a valid model name");
  std::lock_guard load_lock(load_mu_);
  Entry old;
  {
    std::lock_guard lk(mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return absl::NotFoundError("model '" + name + "' is not loaded");
    old = std::move(it->second);
    Entry& e = it->second;
    e = Entry{};
    e.status.name = name;
    for (const auto& v : old.status.versions) e.status.versions.push_back({v.version, VersionState::kUnavailable, "unloaded"});
    e.loaded.clear();
  }
  if (options_.metrics) {
    for (const auto& [v, _] : old.loaded) options_.metrics->ModelReady(name, std::to_string(v), false);
  }
  log::Info("model_unloaded", {{"model", name}});
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<LoadedVersion>> ModelRepository::Get(const std::string& name, int64_t version) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return absl::NotFoundError("model '" + name + "' is not in the repository");
  const Entry& e = it->second;
  if (version == 0) {
    if (!e.loaded.empty()) return e.loaded.begin()->second;
  } else {
    auto v = e.loaded.find(version);
    if (v != e.loaded.end()) return v->second;
  }
  for (const auto& vs : e.status.versions) {
    if (version == 0 || vs.version == version || vs.version == 0) {
      std::string reason = vs.reason.empty() ? "loading" : vs.reason;
      return absl::UnavailableError("model '" + name + "' is unavailable: " + reason);
    }
  }
  return absl::NotFoundError("model '" + name + "' has no version " + std::to_string(version));
}

std::vector<ModelStatus> ModelRepository::List() const {
  std::lock_guard lk(mu_);
  std::vector<ModelStatus> out;
  for (const auto& [_, e] : entries_) out.push_back(e.status);
  return out;
}

absl::StatusOr<ModelStatus> ModelRepository::Status(const std::string& name) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return absl::NotFoundError("model '" + name + "' is not in the repository");
  return it->second.status;
}

bool ModelRepository::AnyReady() const {
  std::lock_guard lk(mu_);
  for (const auto& [_, e] : entries_) {
    if (!e.loaded.empty()) return true;
  }
  return false;
}

}  // namespace secondread::inference
