// The local spool of audit messages: one file per message, fsynced with its
// directory before a send is attempted, removed once sent. Names are a
// sequence number, so the oldest is sent first; nothing in a name comes
// from a message.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/status.h"

namespace secondread::audit {

class AuditSpool {
 public:
  // Creates dir if needed, removes half-written files, and takes the files
  // left by an earlier run as the oldest messages.
  static absl::StatusOr<std::unique_ptr<AuditSpool>> Open(const std::string& dir, uint64_t max_bytes);

  // RESOURCE_EXHAUSTED when the message would take the spool past
  // max_bytes: the new message is refused and the older ones are kept.
  absl::Status Append(const std::string& message);

  struct Entry {
    std::string name;
    std::string message;
  };
  // The oldest message, read from its file; nullopt when the spool is empty.
  absl::StatusOr<std::optional<Entry>> Oldest();
  absl::Status Remove(const std::string& name);

  uint64_t bytes() const;
  size_t count() const;

 private:
  AuditSpool(std::string dir, uint64_t max_bytes) : dir_(std::move(dir)), max_bytes_(max_bytes) {}

  std::string dir_;
  uint64_t max_bytes_;
  mutable std::mutex mu_;
  uint64_t next_seq_ = 1;
  uint64_t bytes_ = 0;
  std::deque<std::pair<std::string, uint64_t>> files_;  // name, size; oldest first
};

}  // namespace secondread::audit
