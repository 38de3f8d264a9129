// Delivery to the audit record repository: syslog over TLS (RFC 5425,
// octet-counted, client certificate, server name verified) or over UDP
// (RFC 5426). The only OpenSSL code of the audit module.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace secondread::audit {

struct RepositoryOptions {
  std::string host;
  uint16_t port = 6514;
  std::string transport = "tls";  // tls | udp
  std::string ca;                 // PEM: CAs trusted for the repository's certificate
  std::string certificate;        // PEM: our client certificate
  std::string private_key;        // PEM
  std::string server_name;        // checked against the repository's certificate; empty: host
  int connect_timeout_ms = 5000;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Sends one syslog message; UNAVAILABLE when the repository cannot be
  // reached now (the caller keeps the message and retries).
  virtual absl::Status Send(const std::string& message) = 0;
  virtual void Close() = 0;
};

// Loads the TLS files now, so that a bad file stops the node at start.
absl::StatusOr<std::unique_ptr<Transport>> MakeTransport(const RepositoryOptions& options);

}  // namespace secondread::audit
