// The worklist HTTP API and page (docs/worklist-api.md): bearer-token
// authentication against configured SHA-256 hashes with roles, input
// validation, and the mapping of store results to HTTP statuses. Served on
// its own port by common/http_server.h's HttpServer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "common/status.h"
#include "worklist/result_files.h"
#include "worklist/review_store.h"

namespace secondread::worklist {

struct ApiToken {
  std::string name;    // shown in reviews and the audit log
  std::string role;    // radiologist | admin
  std::string sha256;  // lower-case hex SHA-256 of the token
};

struct ApiOptions {
  HttpServerOptions http;
  std::vector<ApiToken> tokens;
  bool enabled = true;
  int performance_refresh_s = 60;  // model-performance gauges
};

// Returns the token's entry, or nullopt; constant-time comparison of hashes.
std::optional<ApiToken> Authenticate(const std::vector<ApiToken>& tokens, const std::string& authorization_header);

// Renders a Secondary Capture file as PNG (scp::RenderPng); injected so the
// API can be tested without DCMTK.
using PngRenderer = std::function<absl::StatusOr<std::string>(const std::string& path)>;

// The routes of the API, the page and the health endpoints.
std::vector<HttpRoute> WorklistRoutes(const ApiOptions& options, ReviewStore* store, const ResultFiles* results,
                                      PngRenderer render_png, std::function<absl::Status()> readiness);

}  // namespace secondread::worklist
