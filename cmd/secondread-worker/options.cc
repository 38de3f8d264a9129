#include "cmd/secondread-worker/options.h"

namespace secondread {

absl::StatusOr<WorkerOptions> ParseWorkerOptions(config::ConfigTree& t) {
  WorkerOptions o;
  ASSIGN_OR_RETURN(o.listen, t.String("grpc.listen", o.listen));
  ASSIGN_OR_RETURN(o.max_message_bytes, t.Bytes("grpc.max_message_bytes", o.max_message_bytes));
  if (o.max_message_bytes < 1024 || o.max_message_bytes > (2ull << 30) - 1) {
    return absl::InvalidArgumentError("config key 'grpc.max_message_bytes': must be between 1KiB and 2GiB");
  }
  ASSIGN_OR_RETURN(o.admin, t.Bool("grpc.admin", o.admin));
  ASSIGN_OR_RETURN(int64_t age, t.Int("grpc.max_connection_age_seconds", o.max_connection_age_seconds, 0, 7 * 86400));
  o.max_connection_age_seconds = static_cast<int>(age);
  RETURN_IF_ERROR(grpc_tls::ParseFiles(t, "tls", &o.tls.files));
  ASSIGN_OR_RETURN(o.tls.allowed_clients, t.StringList("tls.allowed_clients", {}));
  if (o.tls.files.enabled() && o.tls.allowed_clients.empty()) {
    return absl::InvalidArgumentError("config key 'tls.allowed_clients': TLS needs at least one client name");
  }
  if (!o.tls.files.enabled() && !o.tls.allowed_clients.empty()) {
    return absl::InvalidArgumentError("config key 'tls.allowed_clients' needs tls.certificate, tls.private_key and tls.ca");
  }
  // Plaintext gRPC carries pixels and model answers readable by anyone on
  // the path, so it may only stay on this host.
  if (!o.tls.files.enabled() && !grpc_tls::IsLoopback(o.listen)) {
    return absl::InvalidArgumentError("config key 'grpc.listen': " + o.listen +
                                      " is not a loopback address; listening there needs tls.certificate, "
                                      "tls.private_key, tls.ca and tls.allowed_clients");
  }
  ASSIGN_OR_RETURN(o.repository, t.String("models.repository", ""));
  if (o.repository.empty()) return absl::InvalidArgumentError("config key 'models.repository' is required");
  ASSIGN_OR_RETURN(o.load, t.StringList("models.load", {}));
  ASSIGN_OR_RETURN(o.max_image_samples, t.Bytes("models.max_image_samples", o.max_image_samples));
  ASSIGN_OR_RETURN(o.max_volume_bytes, t.Bytes("models.max_volume_bytes", o.max_volume_bytes));
  if (o.max_volume_bytes < 1024) {
    return absl::InvalidArgumentError("config key 'models.max_volume_bytes': must be at least 1KiB");
  }
  ASSIGN_OR_RETURN(int64_t volumes, t.Int("models.max_concurrent_volumes", o.max_concurrent_volumes, 1, 256));
  o.max_concurrent_volumes = static_cast<int>(volumes);
  ASSIGN_OR_RETURN(o.warm_up, t.Bool("models.warm_up", o.warm_up));
  ASSIGN_OR_RETURN(int64_t threads, t.Int("cpu.threads", 0, 0, 1024));
  o.cpu_threads = static_cast<int>(threads);
  ASSIGN_OR_RETURN(int64_t interop, t.Int("cpu.interop_threads", 0, 0, 1024));
  o.cpu_interop_threads = static_cast<int>(interop);
  o.http.port = 9091;
  ASSIGN_OR_RETURN(o.http.bind, t.String("http.bind", o.http.bind));
  ASSIGN_OR_RETURN(int64_t hport, t.Int("http.port", o.http.port, 0, 65535));
  o.http.port = static_cast<uint16_t>(hport);
  RETURN_IF_ERROR(ParseHttpLimits(t, "http.limits", o.http.limits));
  ASSIGN_OR_RETURN(o.log.level, t.String("log.level", o.log.level));
  ASSIGN_OR_RETURN(o.log.file, t.String("log.file", o.log.file));
  RETURN_IF_ERROR(t.CheckNoUnknownKeys());
  return o;
}

}  // namespace secondread
