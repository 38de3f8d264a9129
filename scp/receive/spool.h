// The spool: durable per-instance DICOM files. Names come from a SHA-256 of
// the SOP Instance UID, so no received byte ever reaches a path and a re-sent
// instance atomically replaces its earlier copy.
//
// Layout: <dir>/objects/<2 hex>/<64 hex>.dcm and <dir>/tmp/<random>.part.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/status.h"

namespace secondread::scp {

struct SpoolOptions {
  std::string dir;
  uint64_t min_free_bytes = 1ull << 30;
};

// An open temporary file in the spool. Closed (and removed unless committed)
// on destruction.
class TempFile {
 public:
  TempFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  TempFile(TempFile&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)), committed_(o.committed_) { o.fd_ = -1; o.committed_ = true; }
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile();
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  friend class Spool;
  int fd_;
  std::string path_;
  bool committed_ = false;
};

struct CommitResult {
  bool replaced = false;  // an earlier copy with the same name existed
};

class Spool;

// Exclusive hold on one spool name, released on destruction. Whoever renames
// a file onto a name, registers it or removes it holds the name from the
// rename until the registry's answer is known. So an association never
// removes a copy that another one renamed over its own or registered, and the
// recovery scan never registers a file whose association is still waiting for
// its answer (and then perhaps withdraws it). The lock lives in the process:
// one node owns a spool.
class SpoolNameLock {
 public:
  SpoolNameLock(SpoolNameLock&& o) noexcept : spool_(o.spool_), name_(std::move(o.name_)) { o.spool_ = nullptr; }
  SpoolNameLock& operator=(SpoolNameLock&&) = delete;
  ~SpoolNameLock();
  const std::string& name() const { return name_; }

 private:
  friend class Spool;
  SpoolNameLock(Spool* spool, std::string name) : spool_(spool), name_(std::move(name)) {}
  Spool* spool_;
  std::string name_;
};

class Spool {
 public:
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const SpoolOptions& options);
  ~Spool();

  static std::string NameForSopInstanceUid(std::string_view sop_instance_uid);

  absl::StatusOr<TempFile> CreateTemp();
  // Waits until no one else holds `name`, then holds it.
  SpoolNameLock LockName(const std::string& name);
  // Makes the temp file durable under `name`: fdatasync, rename, fsync of the
  // directory. After OK the file survives a crash or power loss. Callers hold
  // the name's lock, as for Remove.
  absl::StatusOr<CommitResult> Commit(TempFile& file, const std::string& name);
  absl::Status Remove(const std::string& name);

  std::string PathFor(const std::string& name) const;
  // Below the free-space floor -> RESOURCE_EXHAUSTED.
  absl::Status CheckFreeSpace() const;
  // Readiness probe: the spool accepts a new file.
  absl::Status CheckWritable() const;
  // Names of all committed objects.
  absl::StatusOr<std::vector<std::string>> ListObjects() const;
  // Removes temp files left by a crash; returns how many.
  int CleanTemp();

  const SpoolOptions& options() const { return options_; }

 private:
  friend class SpoolNameLock;
  explicit Spool(SpoolOptions options) : options_(std::move(options)) {}
  void UnlockName(const std::string& name);

  SpoolOptions options_;
  std::string objects_dir_;
  std::string tmp_dir_;
  std::array<int, 256> shard_fds_{};
  std::mutex names_mu_;
  std::condition_variable names_cv_;
  std::unordered_set<std::string> locked_names_;
};

bool IsSpoolName(std::string_view name);

}  // namespace secondread::scp
