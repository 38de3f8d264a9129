// HTTP servers of the node. cpp-httplib is used only here (http_server.cc):
// the operational endpoint (/metrics, /healthz, /readyz) and a small generic
// server with regex routes that the worklist API is built on.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/metrics.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace httplib { class Server; }

namespace secondread {

// What one client may hold of a server. cpp-httplib bounds only each recv
// (5 s) and each header line (8 KiB); it counts neither headers, nor time
// across recvs, nor connections, so a few slow or fat clients could hold
// every worker thread or gigabytes of memory. These bounds are enforced by
// the node's own connection handling in http_server.cc. Every admitted
// connection has a thread of its own, so a slow client holds only its own.
struct HttpLimits {
  // To read one request's line, headers and body; also the longest a
  // connection may sit idle between requests.
  int header_timeout_s = 10;
  size_t max_header_bytes = 16 * 1024;  // request line and headers together
  int max_headers = 64;
  int max_connections = 64;  // at once, all peers together
  int max_connections_per_peer = 8;
};

// Reads <prefix>.header_timeout_seconds, .max_header_bytes, .max_headers,
// .max_connections and .max_connections_per_peer.
absl::Status ParseHttpLimits(config::ConfigTree& t, const std::string& prefix, HttpLimits& limits);

// At most `per_second` lines a second per key; the first line let through
// after a quiet spell says how many were held back. Keeps refusals that a
// client can provoke at will from flooding the log.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(int per_second) : per_second_(per_second) {}
  // True when a line may be written now; `suppressed` is the number of lines
  // held back for this key since the last one let through.
  bool Allow(const std::string& key, int64_t& suppressed);

 private:
  struct Window {
    std::chrono::steady_clock::time_point start;
    int count = 0;
    int64_t suppressed = 0;
  };
  const int per_second_;
  std::mutex mu_;
  std::map<std::string, Window> windows_;
};

class ConnectionGuard;

struct HttpOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 9090;
  HttpLimits limits;
};

class OpsHttpServer {
 public:
  // Returns OK when ready, or the reason it is not.
  using ReadinessCheck = std::function<absl::Status()>;

  // Refusals are counted in `registry` as secondread_http_refused_total.
  static absl::StatusOr<std::unique_ptr<OpsHttpServer>> Start(const HttpOptions& options,
                                                              metrics::MetricsRegistry* registry,
                                                              ReadinessCheck readiness);
  ~OpsHttpServer();
  uint16_t port() const { return port_; }
  void Stop();

 private:
  OpsHttpServer() = default;
  std::shared_ptr<ConnectionGuard> guard_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

struct HttpRequest {
  std::string method;  // GET, POST, ...
  std::string path;
  std::string remote_addr;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::multimap<std::string, std::string> query;
  std::vector<std::string> path_params;  // the route pattern's capture groups

  // The first value of a query parameter, or "".
  std::string Query(const std::string& name) const;
  bool HasQuery(const std::string& name) const;
  // A header by lower-case name, or "".
  std::string Header(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
  // When set, the body is this file, streamed from disk rather than held in
  // memory (body is ignored). A file that cannot be opened is a 404.
  std::string file_path;

  static HttpResponse Json(int status, const nlohmann::json& body);
  static HttpResponse Error(int status, const std::string& error, const std::string& message = "");
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpRoute {
  std::string method;   // GET or POST
  std::string pattern;  // an ECMAScript regex matched against the whole path, e.g. "/api/v1/studies/(\\d+)"
  HttpHandler handler;
};

struct HttpServerOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 8080;
  // Larger bodies are refused with 413, whatever their type; form and
  // multipart bodies, which no route takes, with 415.
  size_t max_body_bytes = 64 * 1024;
  // The least number of worker threads; the pool always has one per
  // admitted connection (limits.max_connections) and two for refusals.
  int threads = 8;
  HttpLimits limits;
  std::string name = "api";  // the server label of log lines and metrics
  // HTTPS when both are set: PEM files, the certificate file holding the
  // chain. TLS 1.2 is the oldest protocol accepted.
  std::string tls_cert_file;
  std::string tls_key_file;
  bool tls() const { return !tls_cert_file.empty(); }
};

// A server with explicit routes. A path no route matches is a 404 JSON
// error; a handler that throws is a 500 with a log line, never a crash.
class HttpServer {
 public:
  // Refusals are counted in `registry` (when given) as
  // secondread_http_refused_total.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           std::vector<HttpRoute> routes,
                                                           metrics::MetricsRegistry* registry = nullptr);
  ~HttpServer();
  uint16_t port() const { return port_; }
  void Stop();

 private:
  HttpServer() = default;
  std::shared_ptr<ConnectionGuard> guard_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace secondread
