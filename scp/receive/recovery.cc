#include "scp/receive/recovery.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "common/log.h"
#include "scp/receive/dataset_reader.h"

namespace secondread::scp {
namespace {

enum class Mode { kStartup, kRescan };

// Registers one spool object from the file itself. Returns false when the
// object turned out not to need it.
absl::StatusOr<bool> RegisterObject(Spool& spool, InstanceSink& sink, const std::string& name, Mode mode,
                                    RecoveryReport& report) {
  SpoolNameLock lock = spool.LockName(name);
  std::string path = spool.PathFor(name);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;  // withdrawn since the listing
    ++report.unreadable;
    log::Error("recovery_unreadable_object", {{"spool_name", name}, {"errno", errno}});
    return false;
  }
  if (mode == Mode::kRescan) {
    // An association may have registered it since the listing.
    ASSIGN_OR_RETURN(std::vector<std::string> still, sink.Unregistered({name}));
    if (still.empty()) return false;
  }
  auto record = ReadInstanceRecord(path);
  if (!record.ok() || Spool::NameForSopInstanceUid(record->sop_instance_uid) != name) {
    ++report.unreadable;
    log::Error("recovery_unreadable_object", {{"spool_name", name}});
    return false;
  }
  ReceivedInstance instance;
  instance.record = std::move(*record);
  instance.spool_name = name;
  instance.association.id = "recovery";
  instance.size_bytes = static_cast<uint64_t>(st.st_size);
  RETURN_IF_ERROR(sink.Accept(instance));
  return true;
}

absl::Status RegisterUnregistered(Spool& spool, InstanceSink& sink, Mode mode, RecoveryReport& report,
                                  const std::atomic<bool>* cancel = nullptr) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, spool.ListObjects());
  report.objects_scanned = static_cast<int>(names.size());
  ASSIGN_OR_RETURN(std::vector<std::string> missing, sink.Unregistered(names));
  for (const auto& name : missing) {
    if (cancel && cancel->load()) return absl::CancelledError("node stopping");
    auto registered = RegisterObject(spool, sink, name, mode, report);
    if (registered.ok()) {
      report.registered += *registered;
      continue;
    }
    if (mode == Mode::kStartup || registered.status().code() == absl::StatusCode::kUnavailable) {
      return registered.status();
    }
    ++report.failed;
    log::Error("rescan_register_failed", {{"spool_name", name}, {"error", registered.status().ToString()}});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RecoveryReport> RecoverSpool(Spool& spool, InstanceSink& sink) {
  RecoveryReport report;
  report.temp_files_removed = spool.CleanTemp();
  RETURN_IF_ERROR(RegisterUnregistered(spool, sink, Mode::kStartup, report));
  log::Info("spool_recovered", {{"temp_removed", report.temp_files_removed},
                                {"scanned", report.objects_scanned},
                                {"registered", report.registered},
                                {"unreadable", report.unreadable}});
  return report;
}

absl::StatusOr<RecoveryReport> RescanSpool(Spool& spool, InstanceSink& sink, const std::string& reason,
                                           const std::atomic<bool>* cancel) {
  RecoveryReport report;
  auto start = std::chrono::steady_clock::now();
  absl::Status st = RegisterUnregistered(spool, sink, Mode::kRescan, report, cancel);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  nlohmann::json fields = {{"reason", reason},
                           {"duration_ms", ms.count()},
                           {"scanned", report.objects_scanned},
                           {"registered", report.registered},
                           {"unreadable", report.unreadable},
                           {"failed", report.failed}};
  if (!st.ok()) {
    fields["error"] = st.ToString();
    log::Warn("spool_rescan_interrupted", fields);
    return st;
  }
  if (report.registered > 0 || report.unreadable > 0 || report.failed > 0) {
    log::Warn("spool_rescanned", fields);
  } else {
    log::Info("spool_rescanned", fields);
  }
  return report;
}

SpoolRescanner::SpoolRescanner(RescanOptions options, Spool* spool, InstanceSink* sink,
                               DatabaseIncarnation incarnation, std::string baseline)
    : options_(options), spool_(spool), sink_(sink), incarnation_(std::move(incarnation)),
      last_(std::move(baseline)) {}

SpoolRescanner::~SpoolRescanner() { Stop(); }

void SpoolRescanner::Start() { thread_ = std::thread([this] { Loop(); }); }

void SpoolRescanner::Stop() {
  stopping_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SpoolRescanner::Loop() {
  using Clock = std::chrono::steady_clock;
  const bool periodic = options_.interval.count() > 0;
  Clock::time_point next_periodic = Clock::now() + options_.interval;
  Clock::time_point retry_at = Clock::time_point::max();
  int failures = 0;
  bool lost = false;
  std::string pending;  // why a rescan is owed
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, options_.check_interval, [this] { return stop_; })) {
    lock.unlock();
    auto incarnation = incarnation_();
    if (!incarnation.ok()) {
      if (!lost) log::Warn("database_lost", {{"error", incarnation.status().ToString()}});
      lost = true;
    } else {
      if (*incarnation != last_) {
        pending = "database_restarted";
      } else if (lost && pending.empty()) {
        pending = "database_regained";
      }
      lost = false;
      last_ = *incarnation;
      Clock::time_point now = Clock::now();
      if (periodic && now >= next_periodic && pending.empty()) pending = "periodic";
      if (!pending.empty() && (failures == 0 || now >= retry_at)) {
        if (RescanSpool(*spool_, *sink_, pending, &stopping_).ok()) {
          pending.clear();
          failures = 0;
          next_periodic = Clock::now() + options_.interval;
        } else {
          // Retried on a later check, less often while it keeps failing.
          ++failures;
          auto backoff = std::min<std::chrono::milliseconds>(options_.check_interval * (1 << std::min(failures, 6)),
                                                             std::chrono::seconds(60));
          retry_at = Clock::now() + backoff;
        }
      }
    }
    lock.lock();
  }
}

}  // namespace secondread::scp
