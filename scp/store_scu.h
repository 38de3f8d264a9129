// C-STORE SCU: sends Part 10 files to a DICOM destination (the hospital
// PACS) over one association, with TCP_NODELAY.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace secondread::scp {

struct StoreDestination {
  std::string name;         // our label for logs and metrics
  std::string ae_title;     // called AE
  std::string host;         // IP address or host name
  uint16_t port = 104;
  std::string calling_ae = "SECONDREAD";
  int connect_timeout_s = 10;
  int dimse_timeout_s = 60;
};

// Parses "AE@HOST:PORT".
absl::StatusOr<StoreDestination> ParseStoreDestination(const std::string& text);

struct StoreResult {
  std::string sop_instance_uid;
  uint16_t dimse_status = 0;  // 0 = Success (B000/B007/B006 warnings count as stored)
};

// Sends every file on one association, each in its own transfer syntax
// (proposed as stored, plus Explicit and Implicit VR Little Endian).
// UNAVAILABLE: the destination could not be reached, rejected the
// association, aborted, or answered a transient status (A7xx) -- retry later.
// FAILED_PRECONDITION: the destination refused an object permanently (A9xx,
// Cxxx, or no accepted presentation context) -- a retry will not help.
// INVALID_ARGUMENT: a file could not be read.
absl::StatusOr<std::vector<StoreResult>> SendFiles(const StoreDestination& destination,
                                                   const std::vector<std::string>& paths);

}  // namespace secondread::scp
