#include "common/http_server.h"

#include <cctype>
#include <chrono>
#include <exception>
#include <regex>
#include <string_view>

#include <openssl/ssl.h>

#include "common/log.h"
#include "httplib.h"

namespace secondread {
namespace {

// Binds (port 0: any free port) and runs the accept loop on its own thread.
absl::StatusOr<uint16_t> BindAndListen(httplib::Server& srv, const std::string& bind, uint16_t wanted,
                                       std::thread& thread) {
  int port = 0;
  if (wanted == 0) {
    port = srv.bind_to_any_port(bind);
  } else {
    port = srv.bind_to_port(bind, wanted) ? wanted : -1;
  }
  if (port <= 0) {
    return absl::UnavailableError("cannot bind HTTP server to " + bind + ":" + std::to_string(wanted));
  }
  thread = std::thread([&srv] { srv.listen_after_bind(); });
  // stop() is a no-op until the accept loop runs; wait for it so that a
  // Stop() right after Start() cannot leave the thread running.
  for (int i = 0; i < 500 && !srv.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return static_cast<uint16_t>(port);
}

}  // namespace


absl::StatusOr<std::unique_ptr<OpsHttpServer>> OpsHttpServer::Start(const HttpOptions& options,
                                                                     const metrics::MetricsRegistry* registry,
                                                                     ReadinessCheck readiness) {
  std::unique_ptr<OpsHttpServer> self(new OpsHttpServer());
  self->server_ = std::make_unique<httplib::Server>();
  auto& srv = *self->server_;
  srv.Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry->Serialize(), "text/plain; version=0.0.4");
  });
  srv.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"alive\"}\n", "application/json");
  });
  srv.Get("/readyz", [readiness](const httplib::Request&, httplib::Response& res) {
    absl::Status st = readiness ? readiness() : absl::OkStatus();
    nlohmann::json body;
    body["status"] = st.ok() ? "ready" : "not_ready";
    if (!st.ok()) body["reason"] = std::string(st.message());
    res.status = st.ok() ? 200 : 503;
    res.set_content(body.dump() + "\n", "application/json");
  });
  ASSIGN_OR_RETURN(self->port_, BindAndListen(srv, options.bind, options.port, self->thread_));
  log::Info("http_listening", {{"bind", options.bind}, {"port", self->port_}});
  return self;
}

void OpsHttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

OpsHttpServer::~OpsHttpServer() { Stop(); }

// ---- HttpRequest / HttpResponse -------------------------------------------

std::string HttpRequest::Query(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? std::string() : it->second;
}

bool HttpRequest::HasQuery(const std::string& name) const { return query.find(name) != query.end(); }

std::string HttpRequest::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

HttpResponse HttpResponse::Json(int status, const nlohmann::json& body) {
  HttpResponse res;
  res.status = status;
  res.content_type = "application/json";
  // Replace invalid UTF-8 rather than throw: a response is always produced.
  res.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return res;
}

HttpResponse HttpResponse::Error(int status, const std::string& error, const std::string& message) {
  nlohmann::json body = {{"error", error}};
  if (!message.empty()) body["message"] = message;
  return Json(status, body);
}

// ---- HttpServer ------------------------------------------------------------

namespace {

bool IsApiPath(const std::string& path) { return path.rfind("/api/", 0) == 0; }

void SetHeaderOnce(httplib::Response& res, const std::string& name, const std::string& value) {
  if (!res.has_header(name.c_str())) res.set_header(name.c_str(), value);
}

// Headers every answer carries, whichever path produced it.
void AddCommonHeaders(const httplib::Request& req, httplib::Response& res) {
  SetHeaderOnce(res, "X-Content-Type-Options", "nosniff");
  if (IsApiPath(req.path)) SetHeaderOnce(res, "Cache-Control", "no-store");
}

const char* ErrorNameFor(int status) {
  switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthenticated";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 416: return "range_not_satisfiable";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal" : "error";
  }
}

HttpRequest ToRequest(const httplib::Request& req) {
  HttpRequest out;
  out.method = req.method;
  out.path = req.path;
  out.remote_addr = req.remote_addr;
  out.body = req.body;
  for (const auto& [name, value] : req.headers) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers.emplace(std::move(lower), value);  // the first of repeated headers wins
  }
  // The query is split here rather than taken from req.params: httplib keeps
  // only the text after the last '=' of a parameter ("a=1=2" gives "2").
  size_t q = req.target.find('?');
  if (q != std::string::npos) {
    std::string_view query = std::string_view(req.target).substr(q + 1);
    query = query.substr(0, query.find('#'));
    while (!query.empty()) {
      size_t amp = query.find('&');
      std::string_view piece = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (piece.empty()) continue;
      size_t eq = piece.find('=');
      std::string name(piece.substr(0, eq));
      std::string value(eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1));
      out.query.emplace(httplib::detail::decode_url(name, true), httplib::detail::decode_url(value, true));
    }
  }
  for (size_t i = 1; i < req.matches.size(); ++i) out.path_params.push_back(req.matches[i].str());
  return out;
}

void Write(const HttpResponse& from, httplib::Response& to) {
  to.status = from.status;
  for (const auto& [name, value] : from.headers) to.set_header(name.c_str(), value);
  to.set_content(from.body, from.content_type.c_str());
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                             std::vector<HttpRoute> routes) {
  std::unique_ptr<HttpServer> self(new HttpServer());
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both a certificate file and a key file");
  }
  if (options.tls()) {
    auto tls = std::make_unique<httplib::SSLServer>(options.tls_cert_file.c_str(), options.tls_key_file.c_str());
    // The constructor reports nothing; an unreadable file, a key that does not
    // match the certificate or a malformed PEM all leave it invalid.
    if (!tls->is_valid() || SSL_CTX_set_min_proto_version(tls->ssl_context(), TLS1_2_VERSION) != 1) {
      return absl::InvalidArgumentError("cannot use the TLS certificate " + options.tls_cert_file + " with key " +
                                        options.tls_key_file + " (unreadable, not PEM, or not a matching pair)");
    }
    self->server_ = std::move(tls);
  } else {
    self->server_ = std::make_unique<httplib::Server>();
  }
  auto& srv = *self->server_;
  size_t threads = options.threads > 0 ? static_cast<size_t>(options.threads) : 1;
  srv.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  srv.set_payload_max_length(options.max_body_bytes);

  for (auto& route : routes) {
    if (route.method != "GET" && route.method != "POST") {
      return absl::InvalidArgumentError("unsupported HTTP method in route: " + route.method);
    }
    try {
      std::regex check(route.pattern);
    } catch (const std::regex_error&) {
      return absl::InvalidArgumentError("invalid route pattern: " + route.pattern);
    }
    auto handler = [pattern = route.pattern, fn = std::move(route.handler)](const httplib::Request& req,
                                                                           httplib::Response& res) {
      HttpResponse out;
      try {
        out = fn(ToRequest(req));
      } catch (const std::exception&) {
        // No exception text: it may quote request data.
        log::Error("http_handler_exception", {{"method", req.method}, {"route", pattern}});
        out = HttpResponse::Error(500, "internal");
      } catch (...) {
        log::Error("http_handler_exception", {{"method", req.method}, {"route", pattern}});
        out = HttpResponse::Error(500, "internal");
      }
      Write(out, res);
      AddCommonHeaders(req, res);
    };
    if (route.method == "GET") {
      srv.Get(route.pattern, std::move(handler));
    } else {
      srv.Post(route.pattern, std::move(handler));
    }
  }

  // httplib itself answers unknown paths (404), oversized bodies (413) and
  // malformed requests (400) with an empty body; give them a JSON one. Called
  // for every status >= 400, so handler answers that have a body are kept.
  srv.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.body.empty()) {
      Write(HttpResponse::Error(res.status, ErrorNameFor(res.status)), res);
    }
    AddCommonHeaders(req, res);
  });
  // Handlers catch everything themselves; this is the backstop for anything
  // thrown inside httplib's own routing.
  srv.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr) {
    log::Error("http_exception", {{"method", req.method}});
    Write(HttpResponse::Error(500, "internal"), res);
    AddCommonHeaders(req, res);
  });

  ASSIGN_OR_RETURN(self->port_, BindAndListen(srv, options.bind, options.port, self->thread_));
  log::Info("http_listening",
            {{"bind", options.bind}, {"port", self->port_}, {"server", "api"}, {"tls", options.tls()}});
  return self;
}

void HttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace secondread
