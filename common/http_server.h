// HTTP servers of the node. cpp-httplib is used only here (http_server.cc):
// the operational endpoint (/metrics, /healthz, /readyz) and a small generic
// server with regex routes that the worklist API is built on.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace httplib { class Server; }

namespace secondread {

struct HttpOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 9090;
};

class OpsHttpServer {
 public:
  // Returns OK when ready, or the reason it is not.
  using ReadinessCheck = std::function<absl::Status()>;

  static absl::StatusOr<std::unique_ptr<OpsHttpServer>> Start(const HttpOptions& options,
                                                              const metrics::MetricsRegistry* registry,
                                                              ReadinessCheck readiness);
  ~OpsHttpServer();
  uint16_t port() const { return port_; }
  void Stop();

 private:
  OpsHttpServer() = default;
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
  size_t max_body_bytes = 64 * 1024;  // larger bodies are refused with 413
  int threads = 8;
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
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           std::vector<HttpRoute> routes);
  ~HttpServer();
  uint16_t port() const { return port_; }
  void Stop();

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace secondread
