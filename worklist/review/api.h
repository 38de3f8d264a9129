// The worklist HTTP API and page (docs/worklist-api.md): bearer-token
// authentication against configured SHA-256 hashes with roles, input
// validation, and the mapping of store results to HTTP statuses. Served on
// its own port by common/http_server.h's HttpServer.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "audit/audit_sink.h"
#include "common/http_server.h"
#include "common/status.h"
#include "worklist/pipeline/result_files.h"
#include "worklist/review/review_store.h"

namespace secondread::worklist {

struct ApiToken {
  std::string name;    // shown in reviews and the audit log
  std::string role;    // radiologist | admin
  std::string sha256;  // lower-case hex SHA-256 of the token
};

// One address or network (CIDR) of api.trusted_proxies.
struct AddressRange {
  int family = 0;  // AF_INET or AF_INET6
  std::array<unsigned char, 16> bytes{};
  int prefix_bits = 0;
};

// "10.0.0.5", "10.0.0.0/24", "::1", "fd00::/8".
absl::StatusOr<AddressRange> ParseAddressRange(const std::string& text);

struct ApiOptions {
  HttpServerOptions http;
  std::vector<ApiToken> tokens;
  // Reverse proxies whose X-Forwarded-For is believed; empty: none is, and
  // the client address is always the TCP peer.
  std::vector<AddressRange> trusted_proxies;
  bool enabled = true;
  int performance_refresh_s = 60;  // model-performance gauges
};

// Returns the token's entry, or nullopt; constant-time comparison of hashes.
std::optional<ApiToken> Authenticate(const std::vector<ApiToken>& tokens, const std::string& authorization_header);

// The client's address for audit rows and log lines: the TCP peer, or,
// when the peer is a trusted proxy, the nearest X-Forwarded-For address
// (walking from the right) that is not a trusted proxy itself.
std::string ClientAddress(const HttpRequest& req, const std::vector<AddressRange>& trusted_proxies);

// Renders a Secondary Capture file as PNG (scp::RenderPng); injected so the
// API can be tested without DCMTK.
using PngRenderer = std::function<absl::StatusOr<std::string>(const std::string& path)>;

// The routes of the API, the page and the health endpoints.
std::vector<HttpRoute> WorklistRoutes(const ApiOptions& options, ReviewStore* store, const ResultFiles* results,
                                      PngRenderer render_png, std::function<absl::Status()> readiness,
                                      audit::AuditSink* audit = nullptr);

}  // namespace secondread::worklist
