// The spool file is the journal of record: these functions register every
// spool object that has no registry row, at start and while the node runs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "scp/receive/instance_sink.h"
#include "scp/receive/spool.h"

namespace secondread::scp {

struct RecoveryReport {
  int temp_files_removed = 0;
  int objects_scanned = 0;
  int registered = 0;
  int unreadable = 0;
  int failed = 0;  // registrations refused for good (rescan only; recovery stops instead)
};

// Run before the listener starts. Removes temp files of interrupted receives
// and registers every spool object that has no registry row: an instance
// answered with Success is never lost even when its row's commit had not
// reached disk. Any registration error stops it.
absl::StatusOr<RecoveryReport> RecoverSpool(Spool& spool, InstanceSink& sink);

// The same registration while associations keep storing: tmp/ is left alone
// (it holds live receives), and each name is registered under its spool name
// lock after asking again whether it still lacks a row, so an instance whose
// association is mid-registration is neither registered twice nor registered
// after its association withdrew the file. Stops at an UNAVAILABLE sink;
// other refusals are counted in `failed` and logged. `cancel` ends it early.
absl::StatusOr<RecoveryReport> RescanSpool(Spool& spool, InstanceSink& sink, const std::string& reason,
                                           const std::atomic<bool>* cancel = nullptr);

struct RescanOptions {
  // How often the node asks the database which incarnation it is talking to.
  std::chrono::milliseconds check_interval{1000};
  // Full rescans as a backstop; zero turns them off.
  std::chrono::milliseconds interval{std::chrono::hours(1)};
};

// Returns a value that changes whenever the database server restarts
// (PostgreSQL's start time), or an error while it cannot be reached.
using DatabaseIncarnation = std::function<absl::StatusOr<std::string>()>;

// Runs RescanSpool when the database comes back after the node lost it, when
// it restarted in between two checks (a crash can lose rows whose commit had
// not reached disk), and every `interval`. A failed rescan is retried.
class SpoolRescanner {
 public:
  // `baseline` is the incarnation seen before the start-up recovery.
  SpoolRescanner(RescanOptions options, Spool* spool, InstanceSink* sink, DatabaseIncarnation incarnation,
                 std::string baseline);
  ~SpoolRescanner();
  void Start();
  void Stop();

 private:
  void Loop();

  RescanOptions options_;
  Spool* spool_;
  InstanceSink* sink_;
  DatabaseIncarnation incarnation_;
  std::string last_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> stopping_{false};  // read by a rescan in progress
};

}  // namespace secondread::scp
