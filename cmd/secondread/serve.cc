#include "cmd/secondread/serve.h"

#include <signal.h>
#include <unistd.h>

#include <thread>

#include "audit/audit_trail.h"
#include "common/http_server.h"
#include "common/log.h"
#include "scp/pixels/png_preview.h"
#include "scp/receive/audited_sink.h"
#include "scp/receive/recovery.h"
#include "scp/send/store_scu.h"
#include "worklist/review/performance_gauges.h"
#include "worklist/review/review_store.h"
#include "worklist/review/token_store.h"
#include "worklist/db/migrations.h"
#include "worklist/db/registry.h"
#include "worklist/pipeline/inference_client.h"

namespace secondread {

absl::Status Serve(const NodeOptions& options) {
  // Block termination signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // A TLS export destination whose CA, certificate or key cannot be used
  // stops the node at once rather than failing every export later.
  for (const auto& [name, destination] : options.pipeline.exporter.destinations) {
    if (absl::Status tls = scp::CheckTls(destination); !tls.ok()) {
      return absl::InvalidArgumentError("export destination " + name + ": " + std::string(tls.message()));
    }
  }

  // So does a link to the workers that would be plaintext across the
  // network, or whose TLS files cannot be used.
  if (!options.pipeline.inference.endpoints.empty()) {
    RETURN_IF_ERROR(worklist::CheckInferenceLink(options.pipeline.inference));
  }

  if (options.migrate_on_start) {
    ASSIGN_OR_RETURN(auto migrated, worklist::Migrate(options.database, -1));
    log::Info("schema_migrated", {{"from", migrated.from_version}, {"to", migrated.to_version}});
  }
  ASSIGN_OR_RETURN(auto migrations, worklist::EmbeddedMigrations());
  ASSIGN_OR_RETURN(int schema, worklist::CurrentSchemaVersion(options.database));
  if (schema != migrations.back().version) {
    return absl::FailedPreconditionError("database schema is at version " + std::to_string(schema) +
                                         ", this binary needs " + std::to_string(migrations.back().version) +
                                         ": run `secondread migrate`");
  }

  ASSIGN_OR_RETURN(auto spool, scp::Spool::Open(options.spool));
  // The audit trail first, so that a repository that cannot be configured
  // stops the node before it accepts anything it would have to audit.
  metrics::MetricsRegistry metrics;
  audit::NullAuditSink no_audit;
  std::unique_ptr<audit::AuditTrail> trail;
  if (options.audit.enabled) {
    ASSIGN_OR_RETURN(trail, audit::AuditTrail::Create(options.audit, metrics));
    trail->Start();
  }
  audit::AuditSink* audit = trail ? static_cast<audit::AuditSink*>(trail.get()) : &no_audit;
  audit->Record(audit::ApplicationActivity(audit->node(), true));
  // With several replicas each records itself as the holder of what it receives.
  worklist::PgRegistry registry(options.database, options.cluster.enabled ? options.cluster.node_id : "");
  // The rescanner's checks get a connection of their own: a pool busy with
  // associations must not look like a lost database.
  worklist::DatabaseOptions check_db = options.database;
  check_db.max_connections = 1;
  worklist::PgPool check_pool(check_db, nullptr);
  // Read before the recovery, so a restart of the database during it is
  // noticed by the rescanner's first check.
  ASSIGN_OR_RETURN(std::string database_started, check_pool.ServerStartTime());
  ASSIGN_OR_RETURN(auto recovered, scp::RecoverSpool(*spool, registry));
  (void)recovered;
  scp::SpoolRescanner rescanner(
      options.rescan, spool.get(), &registry, [&check_pool] { return check_pool.ServerStartTime(); },
      database_started);
  rescanner.Start();

  scp::ScpMetrics scp_metrics(metrics);
  scp::AuditedSink audited_registry(&registry, audit);
  scp::StoreProcessor processor(options.max_instance_bytes, spool.get(), &audited_registry, &scp_metrics,
                                options.dataset_limits);
  // The cluster's internal endpoint is up, and this replica registered,
  // before it takes an association: a peer may claim a read of what it
  // receives at once.
  std::unique_ptr<worklist::Cluster> cluster;
  if (options.cluster.enabled) {
    ASSIGN_OR_RETURN(cluster, worklist::Cluster::Start(options.cluster, options.database, options.spool.dir, &metrics));
  }
  ASSIGN_OR_RETURN(auto server,
                   scp::DicomServer::Create(options.dicom, &processor, &audited_registry, &scp_metrics, audit));

  ASSIGN_OR_RETURN(auto pipeline, worklist::Pipeline::Start(options.pipeline, options.database, spool.get(), metrics,
                                                            cluster.get(), audit));

  // Retention starts after the pipeline: its first run may purge at once.
  std::unique_ptr<worklist::Retention> retention;
  if (options.retention.enabled) {
    retention = std::make_unique<worklist::Retention>(options.retention, options.database, spool.get(), &metrics,
                                                      audit);
    retention->Start();
  }

  ASSIGN_OR_RETURN(auto http, OpsHttpServer::Start(options.http, &metrics, [&]() -> absl::Status {
                     RETURN_IF_ERROR(registry.Ping());
                     return spool->CheckWritable();
                   }));

  // The worklist API and page, on their own port and connection pool.
  worklist::PgPool api_pool(options.database, nullptr);
  worklist::ReviewStore review_store(&api_pool);
  // Append-only holds only against a login that cannot get around the
  // triggers; migration 0005 and docs/configuration.md set that up.
  if (absl::Status audit = review_store.AuditLogProtection(); !audit.ok()) {
    log::Warn("audit_log_unprotected", {{"login_can", std::string(audit.message())},
                                        {"hint", "see \"The audit log's owner\" in docs/configuration.md"}});
  }
  // Migrations 0013 and 0014 add these; a login that could not act for
  // audit_log's owner then left them out, and sign-in attempts and purges
  // cannot be audited (a purge that cannot be audited does not happen).
  std::vector<std::string> actions = {"sign_in", "issue_token", "revoke_token", "view_tokens"};
  if (options.retention.enabled) actions.insert(actions.end(), {"purge_study", "purge_results"});
  auto missing = review_store.MissingAuditActions(actions);
  if (missing.ok() && !missing->empty()) {
    log::Warn("audit_log_actions_missing",
              {{"missing", *missing}, {"hint", "see \"The audit log's owner\" in docs/configuration.md"}});
  }
  worklist::PgTokenStore token_store(&api_pool);
  worklist::AuditLogSignIns sign_in_audit(&review_store);
  ASSIGN_OR_RETURN(auto result_files, worklist::ResultFiles::Open(options.spool.dir));
  std::unique_ptr<HttpServer> api;
  worklist::PerformanceGauges gauges(&review_store, metrics, std::chrono::seconds(options.api.performance_refresh_s));
  if (options.api.enabled) {
    std::shared_ptr<worklist::OidcVerifier> oidc;
    if (options.api.oidc.enabled()) {
      oidc = std::make_shared<worklist::OidcVerifier>(options.api.oidc, worklist::MakeJwksFetcher(options.api.oidc));
      // Not fatal: the identity provider may come up after the node.
      size_t keys = oidc->KeyCount();
      log::Info("oidc_sign_in", {{"issuer", options.api.oidc.issuer}, {"keys", keys}});
      if (keys == 0) log::Warn("oidc_no_keys", {{"hint", "check api.oidc.jwks_file or api.oidc.jwks_url"}});
    }
    auto sign_in = std::make_shared<worklist::SignIn>(options.api.tokens, oidc, &token_store, &sign_in_audit);
    auto routes = worklist::WorklistRoutes(
        options.api, &review_store, &result_files,
        [&cluster](const std::string& path) -> absl::StatusOr<std::string> {
          // A capture another replica wrote is fetched from it for the preview.
          if (cluster && ::access(path.c_str(), F_OK) != 0) {
            worklist::StagingDir staging(cluster->staging_parent());
            ASSIGN_OR_RETURN(std::string dir, staging.Path());
            ASSIGN_OR_RETURN(std::string local, cluster->LocateResultFile(path, dir));
            return scp::RenderPng(local, 1600);
          }
          return scp::RenderPng(path, 1600);
        },
        [&]() -> absl::Status { return registry.Ping(); }, audit, sign_in, &token_store);
    ASSIGN_OR_RETURN(api, HttpServer::Start(options.api.http, std::move(routes), &metrics));
    gauges.Start();
    log::Info("api_listening", {{"bind", options.api.http.bind},
                                {"port", api->port()},
                                {"tokens", options.api.tokens.size()},
                                {"tls", options.api.http.tls()}});
    // Patient names and bearer tokens cross this connection; in clear text
    // that is only acceptable on loopback or behind a TLS-terminating proxy.
    if (!options.api.http.tls() && options.api.http.bind != "127.0.0.1" && options.api.http.bind != "::1" &&
        options.api.http.bind != "localhost") {
      log::Warn("api_plaintext", {{"bind", options.api.http.bind},
                                  {"hint", "set api.tls.cert_file and api.tls.key_file, or keep a TLS proxy in front"}});
    }
  }

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    log::Info("shutdown_requested", {{"signal", sig}});
    server->Stop();
  });
  log::Info("node_started", {{"ae_title", options.dicom.ae_title},
                             {"dicom_port", options.dicom.port},
                             {"http_port", http->port()}});
  absl::Status st = server->Run();
  // Wake the waiter if the listener ended on its own.
  if (waiter.joinable()) {
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
  }
  if (api) api->Stop();
  gauges.Stop();
  if (retention) retention->Stop();
  pipeline->Stop();
  rescanner.Stop();
  if (cluster) cluster->Stop();
  http->Stop();
  audit->Record(audit::ApplicationActivity(audit->node(), false,
                                           st.ok() ? audit::Outcome::kSuccess : audit::Outcome::kSeriousFailure));
  if (trail) trail->Stop();
  log::Info("node_stopped", {{"ok", st.ok()}});
  return st;
}

}  // namespace secondread
