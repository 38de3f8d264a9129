// The worker's options, parsed once from YAML plus command-line overrides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/grpc_tls.h"
#include "common/http_server.h"
#include "common/log.h"

namespace secondread {

struct WorkerOptions {
  std::string listen = "127.0.0.1:50051";
  uint64_t max_message_bytes = 64ull << 20;
  bool admin = true;
  // Connections older than this are closed after their calls end, so that
  // each client handshakes again and rotated certificates take effect on
  // links that never go idle. 0: never.
  int max_connection_age_seconds = 3600;
  // Mutual TLS (tls.*); without it the worker listens in plaintext, and
  // only on a loopback address.
  grpc_tls::ServerOptions tls;
  std::string repository;
  std::vector<std::string> load;  // empty: every model in the repository
  uint64_t max_image_samples = 64ull << 20;
  uint64_t max_volume_bytes = 1ull << 30;
  int max_concurrent_volumes = 2;
  bool warm_up = true;
  int cpu_threads = 0;
  int cpu_interop_threads = 0;
  HttpOptions http;
  log::LogOptions log;
};

absl::StatusOr<WorkerOptions> ParseWorkerOptions(config::ConfigTree& tree);

}  // namespace secondread
