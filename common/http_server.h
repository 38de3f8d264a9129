// The node's operational HTTP endpoint: /metrics, /healthz (liveness) and
// /readyz (readiness). cpp-httplib is used only here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "common/status.h"

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

}  // namespace secondread
