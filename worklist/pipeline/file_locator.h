// Where a read or an export finds the files it needs. A node that runs alone
// holds every file in its own spool. With several node replicas each replica
// keeps what it received and what it produced in its own spool, and the
// registry names the replica holding each file (instances.holder,
// result_objects.holder); a replica that claims a job whose files another
// holds reads them through a FileLocator (worklist/cluster/peer_files.h).
#pragma once

#include <string>

#include "common/status.h"

namespace secondread::worklist {

enum class HeldKind { kInstance, kResult };

class FileLocator {
 public:
  virtual ~FileLocator() = default;

  // The replica id this node records as the holder of what it writes.
  virtual const std::string& self() const = 0;
  // Where jobs make their StagingDir (cleared when the node starts).
  virtual std::string staging_parent() const = 0;

  // A local path of `name` (a spool name or a result file name: 64 hex
  // digits, never a received string) held by `holder` (empty or self: this
  // node). A copy fetched from another replica is written into `staging`, a
  // directory the caller owns and removes. UNAVAILABLE when the holder cannot
  // be reached: the job is retried.
  virtual absl::StatusOr<std::string> Locate(HeldKind kind, const std::string& name, const std::string& holder,
                                             const std::string& staging) = 0;
};

// A directory for one job's fetched copies, created on first use under the
// spool's tmp/ and removed with its contents when the job ends.
class StagingDir {
 public:
  explicit StagingDir(std::string parent) : parent_(std::move(parent)) {}
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  ~StagingDir();
  absl::StatusOr<std::string> Path();

 private:
  std::string parent_;
  std::string path_;
};

}  // namespace secondread::worklist
