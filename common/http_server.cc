#include "common/http_server.h"

#include "common/log.h"
#include "httplib.h"

namespace secondread {

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
  int port = 0;
  if (options.port == 0) {
    port = srv.bind_to_any_port(options.bind);
  } else {
    port = srv.bind_to_port(options.bind, options.port) ? options.port : -1;
  }
  if (port <= 0) {
    return absl::UnavailableError("cannot bind HTTP endpoint to " + options.bind + ":" + std::to_string(options.port));
  }
  self->port_ = static_cast<uint16_t>(port);
  self->thread_ = std::thread([s = self->server_.get()] { s->listen_after_bind(); });
  log::Info("http_listening", {{"bind", options.bind}, {"port", port}});
  return self;
}

void OpsHttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

OpsHttpServer::~OpsHttpServer() { Stop(); }

}  // namespace secondread
