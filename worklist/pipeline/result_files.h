// Durable files for the DICOM objects the node creates: <spool>/results/
// <sha256 of the object's UID and the attempt that wrote it>.dcm, written to a temporary file,
// fdatasync'ed, renamed and the directory fsync'ed, so a result the database
// points at always exists whole.
#pragma once

#include <string>

#include "common/status.h"

namespace secondread::worklist {

class ResultFiles {
 public:
  // Creates <spool_dir>/results when missing.
  static absl::StatusOr<ResultFiles> Open(const std::string& spool_dir);

  // Returns the file name: 64 hex characters, the SHA-256 of key. The key
  // names the object and the attempt that wrote it, so two holders of one
  // job never write the same file.
  absl::StatusOr<std::string> Write(const std::string& key, const std::string& bytes) const;
  std::string PathFor(const std::string& file_name) const;
  // Best effort: a file nothing refers to (a commit that did not happen).
  void Remove(const std::string& file_name) const;
  // Retention: removes the file of a row marked purged and returns the bytes
  // it held (0 when it was gone already). The caller fsyncs the directory
  // once for a batch (SyncDirectory).
  absl::StatusOr<uint64_t> Purge(const std::string& file_name) const;
  absl::Status SyncDirectory() const;

 private:
  explicit ResultFiles(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace secondread::worklist
