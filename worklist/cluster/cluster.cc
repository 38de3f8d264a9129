#include "worklist/cluster/cluster.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <pqxx/pqxx>

#include <cstring>
#include <fstream>
#include <regex>

#include "common/digest.h"
#include "common/http_client.h"
#include "common/log.h"

namespace secondread::worklist {
namespace {

bool IsHexName(const std::string& name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

const char* KindName(HeldKind kind) { return kind == HeldKind::kInstance ? "instance" : "result"; }

bool IsLoopback(const std::string& bind) { return bind == "127.0.0.1" || bind == "::1" || bind == "localhost"; }

// Removes what a previous run left in <spool>/fetch: copies are caches.
void ClearFetchDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    std::string sub = dir + "/" + e->d_name;
    if (DIR* s = ::opendir(sub.c_str())) {
      while (dirent* f = ::readdir(s)) {
        if (std::strcmp(f->d_name, ".") == 0 || std::strcmp(f->d_name, "..") == 0) continue;
        ::unlink((sub + "/" + f->d_name).c_str());
      }
      ::closedir(s);
      ::rmdir(sub.c_str());
    } else {
      ::unlink(sub.c_str());
    }
  }
  ::closedir(d);
}

constexpr char kHeartbeat[] = R"SQL(
INSERT INTO nodes (node_id, internal_url) VALUES ($1, $2)
ON CONFLICT (node_id) DO UPDATE SET internal_url = EXCLUDED.internal_url, heartbeat_at = now()
)SQL";

}  // namespace

std::string HeldPath(const std::string& spool_dir, HeldKind kind, const std::string& name) {
  if (kind == HeldKind::kInstance) return spool_dir + "/objects/" + name.substr(0, 2) + "/" + name + ".dcm";
  return spool_dir + "/results/" + name + ".dcm";
}

absl::Status ValidateClusterOptions(const ClusterOptions& o) {
  if (!o.enabled) return absl::OkStatus();
  static const std::regex kId("[A-Za-z0-9][A-Za-z0-9._-]{0,62}");
  if (!std::regex_match(o.node_id, kId)) {
    return absl::InvalidArgumentError("cluster.node_id must be 1 to 63 letters, digits, '.', '_' or '-', got '" +
                                      o.node_id + "'");
  }
  if (o.shared_spool_root.empty()) {
    if (o.advertise_url.rfind("https://", 0) != 0 && o.advertise_url.rfind("http://", 0) != 0) {
      return absl::InvalidArgumentError("cluster.advertise_url must be an http:// or https:// URL");
    }
    if (o.token_file.empty()) return absl::InvalidArgumentError("cluster.token_file is required");
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("cluster.tls.cert_file and cluster.tls.key_file go together");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Start(const ClusterOptions& options, const DatabaseOptions& db,
                                                        const std::string& spool_dir,
                                                        metrics::MetricsRegistry* metrics) {
  RETURN_IF_ERROR(ValidateClusterOptions(options));
  std::unique_ptr<Cluster> self(new Cluster());
  self->options_ = options;
  self->spool_dir_ = spool_dir;
  if (metrics) {
    self->fetches_ = &metrics->CounterFamily("secondread_cluster_fetches_total",
                                             "Files fetched from other node replicas, by kind and outcome");
    self->served_ = &metrics->CounterFamily("secondread_cluster_served_total",
                                            "Files served to other node replicas, by kind and outcome");
  }
  const std::string fetch_dir = spool_dir + "/fetch";
  if (::mkdir(fetch_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError("cannot create " + fetch_dir + ": " + std::strerror(errno));
  }
  ClearFetchDir(fetch_dir);

  DatabaseOptions small = db;
  small.max_connections = 2;
  self->pool_ = std::make_unique<PgPool>(small, nullptr);

  if (options.shared_spool_root.empty()) {
    std::ifstream in(options.token_file);
    std::string token;
    if (!in || !std::getline(in, token)) {
      return absl::FailedPreconditionError("cannot read cluster.token_file " + options.token_file);
    }
    while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) token.pop_back();
    if (token.size() < 32) {
      return absl::FailedPreconditionError("the cluster token in " + options.token_file +
                                           " is shorter than 32 characters");
    }
    self->token_sha256_ = Sha256Hex(token);
    self->token_ = token;

    HttpServerOptions http;
    http.bind = options.bind;
    http.port = options.port;
    http.name = "cluster";
    http.limits = options.limits;
    http.threads = 4;
    http.tls_cert_file = options.tls_cert_file;
    http.tls_key_file = options.tls_key_file;
    Cluster* c = self.get();
    std::vector<HttpRoute> routes = {
        {"GET", "/internal/v1/instances/([0-9a-f]{64})",
         [c](const HttpRequest& r) { return c->Serve(r, HeldKind::kInstance); }},
        {"GET", "/internal/v1/results/([0-9a-f]{64})",
         [c](const HttpRequest& r) { return c->Serve(r, HeldKind::kResult); }},
    };
    ASSIGN_OR_RETURN(self->server_, HttpServer::Start(http, std::move(routes), metrics));
    if (!http.tls() && !IsLoopback(options.bind)) {
      log::Warn("cluster_plaintext", {{"bind", options.bind},
                                      {"hint", "set cluster.tls.cert_file and cluster.tls.key_file: patient data "
                                               "and the cluster token cross this connection"}});
    }
  }
  // Registered before the node takes associations, so a peer that claims a
  // read of this replica's instances finds where to fetch them.
  absl::Status registered = self->pool_->Run([&](pqxx::connection_base& conn) {
    pqxx::nontransaction tx(conn);
    tx.exec_params(kHeartbeat, options.node_id,
                   options.shared_spool_root.empty() ? options.advertise_url : std::string("shared-spool"));
  });
  if (!registered.ok()) return registered;
  self->heartbeat_ = std::thread([c = self.get()] { c->Heartbeat(); });
  log::Info("cluster_joined", {{"node_id", options.node_id},
                               {"internal_port", self->port()},
                               {"shared_spool", !options.shared_spool_root.empty()}});
  return self;
}

Cluster::~Cluster() { Stop(); }

void Cluster::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  if (server_) server_->Stop();
}

void Cluster::Heartbeat() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, options_.heartbeat, [this] { return stop_; })) {
    lock.unlock();
    absl::Status st = pool_->Run([&](pqxx::connection_base& conn) {
      pqxx::nontransaction tx(conn);
      tx.exec_params(kHeartbeat, options_.node_id,
                     options_.shared_spool_root.empty() ? options_.advertise_url : std::string("shared-spool"));
    });
    if (!st.ok()) log::Warn("cluster_heartbeat_failed", {{"error", st.ToString()}});
    lock.lock();
  }
}

HttpResponse Cluster::Serve(const HttpRequest& request, HeldKind kind) {
  auto count = [&](const char* outcome) {
    if (served_) served_->Add({{"kind", KindName(kind)}, {"outcome", outcome}}).Increment();
  };
  const std::string auth = request.Header("authorization");
  const std::string presented = auth.rfind("Bearer ", 0) == 0 ? Sha256Hex(auth.substr(7)) : std::string(64, 'x');
  if (CRYPTO_memcmp(presented.data(), token_sha256_.data(), token_sha256_.size()) != 0) {
    count("refused");
    int64_t suppressed = 0;
    if (refusals_log_.Allow(request.remote_addr, suppressed)) {
      log::Warn("cluster_fetch_refused", {{"peer", request.remote_addr},
                                          {"reason", auth.empty() ? "no token" : "wrong token"},
                                          {"suppressed", suppressed}});
    }
    return HttpResponse::Error(401, "unauthorized");
  }
  const std::string& name = request.path_params.at(0);
  if (!IsHexName(name)) return HttpResponse::Error(404, "not_found");
  HttpResponse out;
  out.content_type = "application/dicom";
  out.file_path = HeldPath(spool_dir_, kind, name);
  struct stat st {};
  if (::stat(out.file_path.c_str(), &st) != 0) {
    count("missing");
    return HttpResponse::Error(404, "not_found");
  }
  count("served");
  return out;
}

absl::StatusOr<std::string> Cluster::UrlOf(const std::string& holder, bool refresh) {
  {
    std::lock_guard<std::mutex> lock(urls_mu_);
    auto it = urls_.find(holder);
    if (it != urls_.end() && !refresh) return it->second;
  }
  std::string url;
  bool found = false;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& conn) {
    pqxx::nontransaction tx(conn);
    auto r = tx.exec_params("SELECT internal_url FROM nodes WHERE node_id = $1", holder);
    found = !r.empty();
    if (found) url = r[0][0].as<std::string>();
  }));
  if (!found) return absl::UnavailableError("node replica " + holder + " has never registered");
  std::lock_guard<std::mutex> lock(urls_mu_);
  urls_[holder] = url;
  return url;
}

absl::StatusOr<std::string> Cluster::Locate(HeldKind kind, const std::string& name, const std::string& holder,
                                            const std::string& staging) {
  if (!IsHexName(name)) return absl::InvalidArgumentError("not a spool or result file name");
  if (holder.empty() || holder == options_.node_id) return HeldPath(spool_dir_, kind, name);
  if (!options_.shared_spool_root.empty()) {
    // Ids in the registry passed the same check as ours (nodes_id_check), so
    // they are safe as one path component.
    static const std::regex kId("[A-Za-z0-9][A-Za-z0-9._-]{0,62}");
    if (!std::regex_match(holder, kId)) return absl::InvalidArgumentError("not a node id");
    std::string path = HeldPath(options_.shared_spool_root + "/" + holder, kind, name);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      return absl::UnavailableError(std::string(KindName(kind)) + " file of replica " + holder +
                                    " is missing from the shared spool");
    }
    return path;
  }
  const std::string dest = staging + "/" + name + ".dcm";
  absl::Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto url = UrlOf(holder, attempt > 0);
    if (!url.ok()) {
      last = url.status();
      continue;
    }
    HttpFetch fetch;
    fetch.base_url = *url;
    fetch.path = std::string(kind == HeldKind::kInstance ? "/internal/v1/instances/" : "/internal/v1/results/") + name;
    fetch.bearer_token = token_;
    fetch.ca_file = options_.tls_ca_file;
    fetch.read_timeout_s = static_cast<int>(options_.fetch_timeout.count());
    uint64_t bytes = 0;
    last = HttpGetToFile(fetch, dest, &bytes);
    if (last.ok()) {
      if (fetches_) fetches_->Add({{"kind", KindName(kind)}, {"outcome", "fetched"}}).Increment();
      return dest;
    }
  }
  if (fetches_) fetches_->Add({{"kind", KindName(kind)}, {"outcome", "failed"}}).Increment();
  // A missing file or a refusal is as transient as a dead peer here: the
  // holder may be restarting from its own volume.
  return absl::UnavailableError("cannot fetch " + std::string(KindName(kind)) + " from node replica " + holder + ": " +
                                std::string(last.message()));
}

absl::StatusOr<std::string> Cluster::LocateResultFile(const std::string& path, const std::string& staging) {
  const size_t slash = path.rfind('/');
  std::string name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".dcm") == 0) name.resize(name.size() - 4);
  if (!IsHexName(name)) return absl::NotFoundError("not a result file");
  std::string holder;
  bool found = false;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& conn) {
    pqxx::nontransaction tx(conn);
    auto r = tx.exec_params("SELECT COALESCE(holder, '') FROM result_objects WHERE file_name = $1 LIMIT 1", name);
    found = !r.empty();
    if (found) holder = r[0][0].as<std::string>();
  }));
  if (!found) return absl::NotFoundError("no such result file");
  return Locate(HeldKind::kResult, name, holder, staging);
}

}  // namespace secondread::worklist
