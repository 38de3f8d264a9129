// Several node replicas on one database (docs/architecture.md, "Several node
// replicas"). Any replica receives any instance into its own spool and
// records itself as the holder; any replica may claim any read or export. A
// replica whose job needs files another holds fetches them from that
// replica's internal endpoint, over HTTPS, authenticated by the cluster
// token, or reads them from a shared spool where one is configured.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/http_server.h"
#include "common/metrics.h"
#include "worklist/db/pg_pool.h"
#include "worklist/pipeline/file_locator.h"

namespace secondread::worklist {

struct ClusterOptions {
  bool enabled = false;
  std::string node_id;        // unique and stable per replica: the StatefulSet pod name
  std::string advertise_url;  // where the other replicas reach this one's internal endpoint
  std::string bind = "0.0.0.0";
  uint16_t port = 8443;
  std::string token_file;  // the shared secret, first line; at least 32 characters
  std::string tls_cert_file, tls_key_file;  // serve HTTPS
  std::string tls_ca_file;  // trusted for the other replicas' certificates
  // Each replica's spool is <shared_spool_root>/<node_id>, on one
  // ReadWriteMany volume, and another replica's files are read there.
  std::string shared_spool_root;
  std::chrono::seconds heartbeat{5};
  std::chrono::seconds fetch_timeout{60};
  HttpLimits limits;
};

// Checks the options (a node id the registry accepts, a URL, a token file).
absl::Status ValidateClusterOptions(const ClusterOptions& options);

// This replica's part in the cluster: its row in `nodes` (heartbeat), its
// internal endpoint serving its spool's objects and result files to the other
// replicas, and the FileLocator that fetches theirs.
class Cluster : public FileLocator {
 public:
  static absl::StatusOr<std::unique_ptr<Cluster>> Start(const ClusterOptions& options, const DatabaseOptions& db,
                                                        const std::string& spool_dir,
                                                        metrics::MetricsRegistry* metrics);
  ~Cluster() override;
  void Stop();

  const std::string& self() const override { return options_.node_id; }
  std::string staging_parent() const override { return spool_dir_ + "/fetch"; }
  absl::StatusOr<std::string> Locate(HeldKind kind, const std::string& name, const std::string& holder,
                                     const std::string& staging) override;
  // The result file at `path` (this node's results/<name>.dcm), from the
  // replica the registry says holds it: for the worklist's previews.
  absl::StatusOr<std::string> LocateResultFile(const std::string& path, const std::string& staging);
  uint16_t port() const { return server_ ? server_->port() : 0; }

 private:
  Cluster() = default;
  absl::StatusOr<std::string> UrlOf(const std::string& holder, bool refresh);
  void Heartbeat();
  HttpResponse Serve(const HttpRequest& request, HeldKind kind);

  ClusterOptions options_;
  std::string spool_dir_;
  std::string token_;
  std::string token_sha256_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<HttpServer> server_;
  LogRateLimiter refusals_log_{1};
  prometheus::Family<metrics::Counter>* fetches_ = nullptr;
  prometheus::Family<metrics::Counter>* served_ = nullptr;
  std::mutex urls_mu_;
  std::map<std::string, std::string> urls_;
  std::thread heartbeat_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// A spool's path of an object or a result file by name (64 hex digits).
std::string HeldPath(const std::string& spool_dir, HeldKind kind, const std::string& name);

}  // namespace secondread::worklist
