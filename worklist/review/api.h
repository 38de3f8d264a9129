// The worklist HTTP API and page (docs/worklist-api.md): sign-in
// (sign_in.h) and roles, the admin API for issued tokens, input validation,
// and the mapping of store results to HTTP statuses. Served on its own port
// by common/http_server.h's HttpServer.
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
#include "worklist/review/sign_in.h"

namespace secondread::worklist {

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
  OidcOptions oidc;
  // Tokens issued through the admin API: the lifetime when the request
  // names none, and the longest it may name.
  int64_t issued_token_default_lifetime_s = 30 * 86400;
  int64_t issued_token_max_lifetime_s = 365 * 86400;
};

// The client's address for audit rows and log lines: the TCP peer, or,
// when the peer is a trusted proxy, the nearest X-Forwarded-For address
// (walking from the right) that is not a trusted proxy itself.
std::string ClientAddress(const HttpRequest& req, const std::vector<AddressRange>& trusted_proxies);

// Renders a Secondary Capture file as PNG (scp::RenderPng); injected so the
// API can be tested without DCMTK.
using PngRenderer = std::function<absl::StatusOr<std::string>(const std::string& path)>;

// The routes of the API, the page and the health endpoints. Without
// sign_in, only options.tokens sign in, unaudited; without token_store, the
// admin API for issued tokens answers 404.
std::vector<HttpRoute> WorklistRoutes(const ApiOptions& options, ReviewStore* store, const ResultFiles* results,
                                      PngRenderer render_png, std::function<absl::Status()> readiness,
                                      audit::AuditSink* audit = nullptr, std::shared_ptr<SignIn> sign_in = nullptr,
                                      TokenStore* token_store = nullptr);

}  // namespace secondread::worklist
