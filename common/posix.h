// Status values for failed POSIX calls, and the directory fsync that durable
// renames need. Shared by the spool and the result files.
#pragma once

#include <string>

#include "common/status.h"

namespace secondread::posix {

// errno as a status: a full disk or quota is RESOURCE_EXHAUSTED (transient
// for a sender), anything else INTERNAL. Reads errno, so call it first.
absl::Status ErrnoStatus(const std::string& what);

// Makes a directory's entries durable (after a rename or unlink in it).
absl::Status FsyncDirectory(const std::string& path);

}  // namespace secondread::posix
