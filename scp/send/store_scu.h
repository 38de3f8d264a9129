// C-STORE SCU: sends Part 10 files to a DICOM destination (the hospital
// PACS) over one association, with TCP_NODELAY, in the clear or over TLS.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace secondread::scp {

// DICOM TLS (PS3.15 Annex B, the Non-downgrading BCP 195 profile: TLS 1.2
// or 1.3) towards one destination. Its certificate must chain to ca_file and
// name the destination: server_name if set, else host (a DNS name against the
// certificate's DNS names, an IPv4 address against its IP addresses).
struct StoreTls {
  bool enabled = false;
  std::string ca_file;           // PEM: the CAs trusted for the destination's certificate
  std::string certificate_file;  // PEM: our certificate, for a destination that asks for one
  std::string private_key_file;  // PEM: its unencrypted key
  std::string server_name;       // name to verify instead of host (a PACS addressed by IP)
};

struct StoreDestination {
  std::string name;         // our label for logs and metrics
  std::string ae_title;     // called AE
  std::string host;         // IP address or host name
  uint16_t port = 104;
  std::string calling_ae = "SECONDREAD";
  int connect_timeout_s = 10;
  int dimse_timeout_s = 60;
  StoreTls tls;
};

// Parses "AE@HOST:PORT".
absl::StatusOr<StoreDestination> ParseStoreDestination(const std::string& text);

// Loads the destination's TLS files as a connection would: INVALID_ARGUMENT
// names the file that cannot be used (unreadable, not PEM, key not matching
// the certificate). OK without TLS. Meant for start-up.
absl::Status CheckTls(const StoreDestination& destination);

struct StoreResult {
  std::string sop_instance_uid;
  uint16_t dimse_status = 0;  // 0 = Success (B000/B007/B006 warnings count as stored)
};

// Sends every file on one association, each in its own transfer syntax
// (proposed as stored, plus Explicit and Implicit VR Little Endian).
// UNAVAILABLE: the destination could not be reached, rejected the
// association, aborted, or answered a transient status (A7xx) -- retry later.
// Over TLS also: the handshake failed (the message names the destination and
// the reason, such as the certificate check that failed), or a TLS file could
// not be loaded.
// FAILED_PRECONDITION: the destination refused an object permanently (A9xx,
// Cxxx, or no accepted presentation context) -- a retry will not help.
// INVALID_ARGUMENT: a file could not be read.
// ABORTED: keep_going (asked before each object) said to stop; the
// association is released and nothing more is sent.
absl::StatusOr<std::vector<StoreResult>> SendFiles(const StoreDestination& destination,
                                                   const std::vector<std::string>& paths,
                                                   const std::function<bool()>& keep_going = nullptr);

}  // namespace secondread::scp
