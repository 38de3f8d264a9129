#include "cmd/secondread/options.h"

#include "common/grpc_tls.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <cctype>
#include <algorithm>
#include <climits>
#include <set>

namespace secondread {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

absl::StatusOr<worklist::RoutingRule> ParseRule(config::ConfigTree& t, const std::string& k) {
  worklist::RoutingRule r;
  ASSIGN_OR_RETURN(r.name, t.String(k + "name", ""));
  ASSIGN_OR_RETURN(r.modalities, t.StringList(k + "match.modalities", {}));
  ASSIGN_OR_RETURN(r.body_parts, t.StringList(k + "match.body_parts", {}));
  ASSIGN_OR_RETURN(r.sop_classes, t.StringList(k + "match.sop_classes", {}));
  ASSIGN_OR_RETURN(r.image_types, t.StringList(k + "match.image_types", {}));
  ASSIGN_OR_RETURN(r.calling_aes, t.StringList(k + "match.calling_aes", {}));
  ASSIGN_OR_RETURN(r.called_aes, t.StringList(k + "match.called_aes", {}));
  ASSIGN_OR_RETURN(r.series_description, t.String(k + "match.series_description", ""));
  ASSIGN_OR_RETURN(r.min_images, t.Int(k + "match.min_images", r.min_images, 1, 1000000));
  ASSIGN_OR_RETURN(r.max_images, t.Int(k + "match.max_images", r.max_images, 0, 1000000));
  ASSIGN_OR_RETURN(std::string input, t.String(k + "input", "image"));
  if (input == "image") {
    r.input = worklist::ReadInput::kImage;
  } else if (input == "volume") {
    r.input = worklist::ReadInput::kVolume;
  } else {
    return absl::InvalidArgumentError(k + "input must be image or volume");
  }
  auto& series = r.series;
  ASSIGN_OR_RETURN(series.min_slices, t.Int(k + "series.min_slices", 0, 0, 100000));
  ASSIGN_OR_RETURN(series.max_slices, t.Int(k + "series.max_slices", 0, 0, 100000));
  if (t.Has(k + "series.slice_thickness_mm")) {
    ASSIGN_OR_RETURN(auto range, t.DoubleList(k + "series.slice_thickness_mm", {}));
    if (range.size() != 2) return absl::InvalidArgumentError(k + "series.slice_thickness_mm must be [low, high]");
    series.slice_thickness_lo_mm = range[0];
    series.slice_thickness_hi_mm = range[1];
  }
  ASSIGN_OR_RETURN(series.orientations, t.StringList(k + "series.orientation", {}));
  ASSIGN_OR_RETURN(series.image_types, t.StringList(k + "series.image_type", {}));
  if (t.Has(k + "series.multiframe")) {
    ASSIGN_OR_RETURN(bool multiframe, t.Bool(k + "series.multiframe", false));
    series.multiframe = multiframe;
  }
  ASSIGN_OR_RETURN(series.resample, t.Bool(k + "series.resample", false));
  ASSIGN_OR_RETURN(size_t models, t.ListSize(k + "models"));
  for (size_t i = 0; i < models; ++i) {
    const std::string m = k + "models." + std::to_string(i) + ".";
    worklist::ModelRef ref;
    ASSIGN_OR_RETURN(ref.name, t.String(m + "name", ""));
    ASSIGN_OR_RETURN(ref.version, t.Int(m + "version", 0, 0, INT64_MAX));
    if (ref.name.empty()) return absl::InvalidArgumentError(m + "name must be set");
    r.models.push_back(ref);
  }
  ASSIGN_OR_RETURN(std::string priority, t.String(k + "priority", "routine"));
  if (priority == "stat") {
    r.priority = worklist::kPriorityStat;
  } else if (priority == "routine") {
    r.priority = worklist::kPriorityRoutine;
  } else {
    return absl::InvalidArgumentError(k + "priority must be stat or routine");
  }
  ASSIGN_OR_RETURN(std::string mode, t.String(k + "mode", "clinical"));
  if (mode == "clinical") {
    r.mode = worklist::ReadMode::kClinical;
  } else if (mode == "shadow") {
    r.mode = worklist::ReadMode::kShadow;
  } else {
    return absl::InvalidArgumentError(k + "mode must be clinical or shadow");
  }
  ASSIGN_OR_RETURN(std::string burned_in, t.String(k + "burned_in_text", "exclude"));
  if (burned_in == "exclude") {
    r.burned_in_text = worklist::BurnedInText::kExclude;
  } else if (burned_in == "allow") {
    r.burned_in_text = worklist::BurnedInText::kAllow;
  } else {
    return absl::InvalidArgumentError(k + "burned_in_text must be exclude or allow");
  }
  auto& c = r.completeness;
  ASSIGN_OR_RETURN(std::string trigger, t.String(k + "completeness.trigger", "silence"));
  if (trigger == "instance") {
    c.trigger = worklist::Trigger::kInstance;
  } else if (trigger == "silence") {
    c.trigger = worklist::Trigger::kSilence;
  } else if (trigger == "association") {
    c.trigger = worklist::Trigger::kAssociation;
  } else {
    return absl::InvalidArgumentError(k + "completeness.trigger must be instance, silence or association");
  }
  ASSIGN_OR_RETURN(int64_t silence, t.Int(k + "completeness.silence_seconds", c.silence.count(), 0, 86400));
  c.silence = seconds(silence);
  ASSIGN_OR_RETURN(int64_t max_wait, t.Int(k + "completeness.max_wait_seconds", c.max_wait.count(), 0, 7 * 86400));
  c.max_wait = seconds(max_wait);
  ASSIGN_OR_RETURN(c.use_expected_count, t.Bool(k + "completeness.expected_count", c.use_expected_count));
  ASSIGN_OR_RETURN(std::string late, t.String(k + "completeness.late_instances", "ignore"));
  if (late == "ignore") {
    c.late = worklist::LatePolicy::kIgnore;
  } else if (late == "reread") {
    c.late = worklist::LatePolicy::kReread;
  } else {
    return absl::InvalidArgumentError(k + "completeness.late_instances must be ignore or reread");
  }
  return r;
}

absl::Status ParsePipeline(config::ConfigTree& t, worklist::PipelineOptions& p, const std::string& node_ae) {
  ASSIGN_OR_RETURN(size_t rules, t.ListSize("routing.rules"));
  for (size_t i = 0; i < rules; ++i) {
    ASSIGN_OR_RETURN(auto rule, ParseRule(t, "routing.rules." + std::to_string(i) + "."));
    p.tracker.rules.push_back(std::move(rule));
  }
  RETURN_IF_ERROR(worklist::ValidateRules(p.tracker.rules));

  ASSIGN_OR_RETURN(p.inference.endpoints, t.StringList("inference.endpoints", {}));
  ASSIGN_OR_RETURN(int64_t call_ms, t.Int("inference.call_timeout_ms", p.inference.call_timeout.count(), 100, 600000));
  p.inference.call_timeout = milliseconds(call_ms);
  ASSIGN_OR_RETURN(int64_t health_ms,
                   t.Int("inference.health_interval_ms", p.inference.health_interval.count(), 50, 600000));
  p.inference.health_interval = milliseconds(health_ms);
  ASSIGN_OR_RETURN(int64_t attempts, t.Int("inference.max_attempts", p.inference.max_attempts, 1, 20));
  p.inference.max_attempts = static_cast<int>(attempts);
  ASSIGN_OR_RETURN(uint64_t max_msg, t.Bytes("inference.max_message_bytes", p.inference.max_message_bytes));
  p.inference.max_message_bytes = static_cast<int64_t>(max_msg);
  RETURN_IF_ERROR(grpc_tls::ParseFiles(t, "inference.tls", &p.inference.tls.files));
  ASSIGN_OR_RETURN(p.inference.tls.server_name, t.String("inference.tls.server_name", ""));
  if (!p.inference.tls.files.enabled() && !p.inference.tls.server_name.empty()) {
    return absl::InvalidArgumentError(
        "config key 'inference.tls.server_name' needs inference.tls.certificate, private_key and ca");
  }
  ASSIGN_OR_RETURN(int64_t volume_ms, t.Int("inference.volume_call_timeout_ms", p.inference.volume_call_timeout.count(),
                                            1000, 3600000));
  p.inference.volume_call_timeout = milliseconds(volume_ms);
  ASSIGN_OR_RETURN(p.inference.max_volume_result_bytes,
                   t.Bytes("inference.max_volume_result_bytes", p.inference.max_volume_result_bytes));
  if (p.inference.max_volume_result_bytes < (1ull << 20) || p.inference.max_volume_result_bytes > (64ull << 30)) {
    return absl::InvalidArgumentError("config key 'inference.max_volume_result_bytes': must be between 1MiB and 64GiB");
  }

  ASSIGN_OR_RETURN(int64_t dconc, t.Int("dispatch.concurrency", p.dispatch.concurrency, 1, 64));
  p.dispatch.concurrency = static_cast<int>(dconc);
  ASSIGN_OR_RETURN(int64_t dmax, t.Int("dispatch.max_attempts", p.tracker.dispatch_max_attempts, 1, 100));
  p.tracker.dispatch_max_attempts = static_cast<int>(dmax);
  ASSIGN_OR_RETURN(p.volume_enabled, t.Bool("volume.enabled", p.volume_enabled));
  ASSIGN_OR_RETURN(int64_t vconc, t.Int("volume.concurrency", p.volume.concurrency, 1, 16));
  p.volume.concurrency = static_cast<int>(vconc);
  ASSIGN_OR_RETURN(int64_t vslices, t.Int("volume.max_slices", p.volume.volume.max_slices, 3, 65536));
  p.volume.volume.max_slices = static_cast<uint32_t>(vslices);
  ASSIGN_OR_RETURN(uint64_t vbytes, t.Bytes("volume.max_bytes", p.volume.volume.max_voxels * sizeof(float)));
  if (vbytes < (1ull << 20) || vbytes > (64ull << 30)) {
    return absl::InvalidArgumentError("volume.max_bytes must be 1MiB..64GiB");
  }
  p.volume.volume.max_voxels = vbytes / sizeof(float);
  // Each compressed image decodes in a process of its own under these limits.
  scp::DecoderLimits& decoder = p.dispatch.decoder;
  ASSIGN_OR_RETURN(decoder.memory_bytes, t.Bytes("decoder.memory_limit", decoder.memory_bytes));
  if (decoder.memory_bytes < (16ull << 20) || decoder.memory_bytes > (1ull << 40)) {
    return absl::InvalidArgumentError("decoder.memory_limit must be 16MiB..1TiB");
  }
  ASSIGN_OR_RETURN(int64_t decoder_cpu, t.Int("decoder.cpu_seconds", decoder.cpu_seconds, 1, 3600));
  decoder.cpu_seconds = static_cast<uint32_t>(decoder_cpu);
  ASSIGN_OR_RETURN(int64_t decoder_wall, t.Int("decoder.wall_seconds", decoder.wall_seconds, 1, 3600));
  decoder.wall_seconds = static_cast<uint32_t>(decoder_wall);
  p.volume.volume.decoder = decoder;
  ASSIGN_OR_RETURN(int64_t lease, t.Int("queue.lease_seconds", 120, 5, 86400));
  p.queue.lease = seconds(lease);
  ASSIGN_OR_RETURN(int64_t base, t.Int("queue.backoff_base_ms", p.queue.backoff_base.count(), 10, 3600000));
  p.queue.backoff_base = milliseconds(base);
  ASSIGN_OR_RETURN(int64_t cap, t.Int("queue.backoff_max_ms", p.queue.backoff_max.count(), 10, 86400000));
  p.queue.backoff_max = milliseconds(cap);
  ASSIGN_OR_RETURN(int64_t reap, t.Int("queue.maintenance_interval_ms", p.maintenance_interval.count(), 100, 600000));
  p.maintenance_interval = milliseconds(reap);

  ASSIGN_OR_RETURN(int64_t econc, t.Int("export.concurrency", p.exporter.concurrency, 1, 64));
  p.exporter.concurrency = static_cast<int>(econc);
  ASSIGN_OR_RETURN(int64_t emax, t.Int("export.max_attempts", p.dispatch.export_max_attempts, 1, 100));
  p.dispatch.export_max_attempts = static_cast<int>(emax);
  p.volume.export_max_attempts = p.dispatch.export_max_attempts;
  ASSIGN_OR_RETURN(std::string calling, t.String("export.calling_ae", node_ae));
  ASSIGN_OR_RETURN(size_t dests, t.ListSize("export.destinations"));
  for (size_t i = 0; i < dests; ++i) {
    const std::string k = "export.destinations." + std::to_string(i) + ".";
    scp::StoreDestination d;
    ASSIGN_OR_RETURN(d.name, t.String(k + "name", ""));
    ASSIGN_OR_RETURN(std::string address, t.String(k + "address", ""));
    if (d.name.empty() || address.empty()) return absl::InvalidArgumentError(k + "name and address must be set");
    ASSIGN_OR_RETURN(scp::StoreDestination parsed, scp::ParseStoreDestination(address));
    d.ae_title = parsed.ae_title;
    d.host = parsed.host;
    d.port = parsed.port;
    d.calling_ae = calling;
    ASSIGN_OR_RETURN(int64_t cto, t.Int(k + "connect_timeout_seconds", d.connect_timeout_s, 1, 600));
    d.connect_timeout_s = static_cast<int>(cto);
    ASSIGN_OR_RETURN(int64_t dto, t.Int(k + "dimse_timeout_seconds", d.dimse_timeout_s, 1, 3600));
    d.dimse_timeout_s = static_cast<int>(dto);
    ASSIGN_OR_RETURN(d.tls.enabled, t.Bool(k + "tls", false));
    ASSIGN_OR_RETURN(d.tls.ca_file, t.String(k + "tls_ca", ""));
    ASSIGN_OR_RETURN(d.tls.certificate_file, t.String(k + "tls_certificate", ""));
    ASSIGN_OR_RETURN(d.tls.private_key_file, t.String(k + "tls_private_key", ""));
    ASSIGN_OR_RETURN(d.tls.server_name, t.String(k + "tls_server_name", ""));
    if (d.tls.enabled && d.tls.ca_file.empty()) {
      return absl::InvalidArgumentError(k + "tls_ca (the destination's CA) must be set with tls: true");
    }
    if (d.tls.certificate_file.empty() != d.tls.private_key_file.empty()) {
      return absl::InvalidArgumentError(k + "tls_certificate and " + k + "tls_private_key go together");
    }
    // TLS files without tls: true would send results in the clear to a
    // destination its operator meant to reach over TLS.
    if (!d.tls.enabled && (!d.tls.ca_file.empty() || !d.tls.certificate_file.empty() || !d.tls.server_name.empty())) {
      return absl::InvalidArgumentError(k + "tls_* keys are set but " + k + "tls is not true");
    }
    if (p.exporter.destinations.count(d.name)) {
      return absl::InvalidArgumentError("export destination " + d.name + " is named twice");
    }
    p.dispatch.destinations.push_back(d.name);
    p.volume.destinations.push_back(d.name);
    p.exporter.destinations[d.name] = d;
  }
  return absl::OkStatus();
}

absl::Status ParseOidc(config::ConfigTree& t, worklist::OidcOptions& o) {
  ASSIGN_OR_RETURN(o.issuer, t.String("api.oidc.issuer", ""));
  ASSIGN_OR_RETURN(o.audience, t.String("api.oidc.audience", ""));
  ASSIGN_OR_RETURN(o.jwks_file, t.String("api.oidc.jwks_file", ""));
  ASSIGN_OR_RETURN(o.jwks_url, t.String("api.oidc.jwks_url", ""));
  ASSIGN_OR_RETURN(o.jwks_ca_file, t.String("api.oidc.jwks_ca_file", ""));
  ASSIGN_OR_RETURN(int64_t refresh, t.Int("api.oidc.jwks_refresh_seconds", o.jwks_refresh_s, 1, 86400));
  ASSIGN_OR_RETURN(int64_t min_refresh, t.Int("api.oidc.jwks_min_refresh_seconds", o.jwks_min_refresh_s, 1, 3600));
  ASSIGN_OR_RETURN(int64_t timeout, t.Int("api.oidc.jwks_timeout_seconds", o.jwks_timeout_s, 1, 60));
  ASSIGN_OR_RETURN(int64_t skew, t.Int("api.oidc.clock_skew_seconds", o.clock_skew_s, 0, 600));
  o.jwks_refresh_s = static_cast<int>(refresh);
  o.jwks_min_refresh_s = static_cast<int>(min_refresh);
  o.jwks_timeout_s = static_cast<int>(timeout);
  o.clock_skew_s = static_cast<int>(skew);
  ASSIGN_OR_RETURN(o.username_claim, t.String("api.oidc.username_claim", o.username_claim));
  ASSIGN_OR_RETURN(o.roles_claim, t.String("api.oidc.roles_claim", o.roles_claim));
  ASSIGN_OR_RETURN(o.radiologist_values, t.StringList("api.oidc.roles.radiologist", {}));
  ASSIGN_OR_RETURN(o.admin_values, t.StringList("api.oidc.roles.admin", {}));
  const bool any = !o.audience.empty() || !o.jwks_file.empty() || !o.jwks_url.empty() ||
                   !o.radiologist_values.empty() || !o.admin_values.empty();
  if (o.issuer.empty()) {
    if (any) return absl::InvalidArgumentError("api.oidc.* is set but api.oidc.issuer is not");
    return absl::OkStatus();
  }
  if (o.audience.empty()) return absl::InvalidArgumentError("api.oidc.audience must be set with api.oidc.issuer");
  if (o.jwks_file.empty() == o.jwks_url.empty()) {
    return absl::InvalidArgumentError("set exactly one of api.oidc.jwks_file and api.oidc.jwks_url");
  }
  // Keys fetched in the clear could be swapped by anyone on the path.
  if (!o.jwks_url.empty() && o.jwks_url.rfind("https://", 0) != 0) {
    return absl::InvalidArgumentError("api.oidc.jwks_url must be an https:// URL");
  }
  if (!o.jwks_ca_file.empty() && o.jwks_url.empty()) {
    return absl::InvalidArgumentError("api.oidc.jwks_ca_file goes with api.oidc.jwks_url");
  }
  if (o.radiologist_values.empty() && o.admin_values.empty()) {
    return absl::InvalidArgumentError("api.oidc.roles.radiologist or api.oidc.roles.admin must list claim values");
  }
  if (o.username_claim.empty() || o.roles_claim.empty()) {
    return absl::InvalidArgumentError("api.oidc.username_claim and api.oidc.roles_claim must not be empty");
  }
  return absl::OkStatus();
}

absl::Status ParseCluster(config::ConfigTree& t, worklist::ClusterOptions& c) {
  ASSIGN_OR_RETURN(c.enabled, t.Bool("cluster.enabled", c.enabled));
  ASSIGN_OR_RETURN(c.node_id, t.String("cluster.node_id", c.node_id));
  ASSIGN_OR_RETURN(c.advertise_url, t.String("cluster.advertise_url", c.advertise_url));
  ASSIGN_OR_RETURN(c.bind, t.String("cluster.bind", c.bind));
  ASSIGN_OR_RETURN(int64_t port, t.Int("cluster.port", c.port, 0, 65535));
  c.port = static_cast<uint16_t>(port);
  ASSIGN_OR_RETURN(c.token_file, t.String("cluster.token_file", c.token_file));
  ASSIGN_OR_RETURN(c.tls_cert_file, t.String("cluster.tls.cert_file", ""));
  ASSIGN_OR_RETURN(c.tls_key_file, t.String("cluster.tls.key_file", ""));
  ASSIGN_OR_RETURN(c.tls_ca_file, t.String("cluster.tls.ca_file", ""));
  ASSIGN_OR_RETURN(c.shared_spool_root, t.String("cluster.shared_spool_root", ""));
  ASSIGN_OR_RETURN(int64_t beat, t.Int("cluster.heartbeat_seconds", c.heartbeat.count(), 1, 3600));
  c.heartbeat = std::chrono::seconds(beat);
  ASSIGN_OR_RETURN(int64_t fetch, t.Int("cluster.fetch_timeout_seconds", c.fetch_timeout.count(), 1, 3600));
  c.fetch_timeout = std::chrono::seconds(fetch);
  RETURN_IF_ERROR(ParseHttpLimits(t, "cluster.limits", c.limits));
  return worklist::ValidateClusterOptions(c);
}

absl::Status ParseApi(config::ConfigTree& t, worklist::ApiOptions& api) {
  ASSIGN_OR_RETURN(api.enabled, t.Bool("api.enabled", api.enabled));
  ASSIGN_OR_RETURN(api.http.bind, t.String("api.bind", api.http.bind));
  ASSIGN_OR_RETURN(int64_t port, t.Int("api.port", api.http.port, 0, 65535));
  api.http.port = static_cast<uint16_t>(port);
  ASSIGN_OR_RETURN(int64_t threads, t.Int("api.threads", api.http.threads, 1, 256));
  ASSIGN_OR_RETURN(int64_t refresh, t.Int("api.performance_refresh_seconds", api.performance_refresh_s, 1, 86400));
  api.performance_refresh_s = static_cast<int>(refresh);
  api.http.threads = static_cast<int>(threads);
  RETURN_IF_ERROR(ParseHttpLimits(t, "api.limits", api.http.limits));
  ASSIGN_OR_RETURN(std::vector<std::string> proxies, t.StringList("api.trusted_proxies", {}));
  for (const auto& p : proxies) {
    ASSIGN_OR_RETURN(worklist::AddressRange range, worklist::ParseAddressRange(p));
    api.trusted_proxies.push_back(range);
  }
  ASSIGN_OR_RETURN(api.http.tls_cert_file, t.String("api.tls.cert_file", ""));
  ASSIGN_OR_RETURN(api.http.tls_key_file, t.String("api.tls.key_file", ""));
  if (api.http.tls_cert_file.empty() != api.http.tls_key_file.empty()) {
    return absl::InvalidArgumentError("api.tls.cert_file and api.tls.key_file go together");
  }
  ASSIGN_OR_RETURN(size_t n, t.ListSize("api.tokens"));
  std::set<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    const std::string k = "api.tokens." + std::to_string(i) + ".";
    worklist::ApiToken token;
    ASSIGN_OR_RETURN(token.name, t.String(k + "name", ""));
    ASSIGN_OR_RETURN(token.role, t.String(k + "role", ""));
    ASSIGN_OR_RETURN(token.sha256, t.String(k + "sha256", ""));
    if (token.name.empty() || token.name.size() > 64) return absl::InvalidArgumentError(k + "name must be 1..64 characters");
    if (!names.insert(token.name).second) return absl::InvalidArgumentError(k + "name " + token.name + " is used twice");
    if (token.role != "radiologist" && token.role != "admin") {
      return absl::InvalidArgumentError(k + "role must be radiologist or admin");
    }
    bool hex = token.sha256.size() == 64;
    for (char& c : token.sha256) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      hex = hex && std::isxdigit(static_cast<unsigned char>(c));
    }
    if (!hex) return absl::InvalidArgumentError(k + "sha256 must be 64 hexadecimal digits (the token's SHA-256)");
    ASSIGN_OR_RETURN(std::string expires, t.String(k + "expires", ""));
    if (!expires.empty()) {
      token.expires_unix = worklist::ParseTimestamp(expires);
      if (!token.expires_unix) {
        return absl::InvalidArgumentError(k + "expires must be a date (2027-06-30) or an RFC 3339 time");
      }
    }
    api.tokens.push_back(std::move(token));
  }
  ASSIGN_OR_RETURN(int64_t default_days, t.Int("api.issued_tokens.default_lifetime_days", 30, 1, 3650));
  ASSIGN_OR_RETURN(int64_t max_days, t.Int("api.issued_tokens.max_lifetime_days", 365, 1, 3650));
  if (default_days > max_days) {
    return absl::InvalidArgumentError("api.issued_tokens.default_lifetime_days is over max_lifetime_days");
  }
  api.issued_token_default_lifetime_s = default_days * 86400;
  api.issued_token_max_lifetime_s = max_days * 86400;
  return ParseOidc(t, api.oidc);
}

// audit.*: the ATNA trail is on when audit.repository is set.
absl::Status ParseAudit(config::ConfigTree& t, NodeOptions& o) {
  audit::AuditOptions& a = o.audit;
  ASSIGN_OR_RETURN(std::string repository, t.String("audit.repository", ""));
  ASSIGN_OR_RETURN(a.repository.transport, t.String("audit.transport", a.repository.transport));
  ASSIGN_OR_RETURN(a.repository.ca, t.String("audit.tls.ca", ""));
  ASSIGN_OR_RETURN(a.repository.certificate, t.String("audit.tls.certificate", ""));
  ASSIGN_OR_RETURN(a.repository.private_key, t.String("audit.tls.private_key", ""));
  ASSIGN_OR_RETURN(a.repository.server_name, t.String("audit.tls.server_name", ""));
  ASSIGN_OR_RETURN(a.spool_dir, t.String("audit.spool_dir", ""));
  ASSIGN_OR_RETURN(a.spool_max_bytes, t.Bytes("audit.spool_max_bytes", a.spool_max_bytes));
  ASSIGN_OR_RETURN(double retry_max, t.Double("audit.retry_max_seconds", a.retry_max.count() / 1000.0, 0.1, 3600));
  a.retry_max = std::chrono::milliseconds(static_cast<int64_t>(retry_max * 1000));
  a.retry_initial = std::min(a.retry_initial, a.retry_max);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  ASSIGN_OR_RETURN(a.node.source_id, t.String("audit.source_id", "secondread@" + std::string(host)));
  ASSIGN_OR_RETURN(a.node.enterprise_site, t.String("audit.enterprise_site", ""));
  a.node.ae_title = o.dicom.ae_title;
  a.node.host = host;
  a.node.process_id = std::to_string(getpid());
  a.syslog.hostname = host;
  a.syslog.proc_id = a.node.process_id;
  if (repository.empty()) return absl::OkStatus();
  a.enabled = true;
  if (a.repository.transport != "tls" && a.repository.transport != "udp") {
    return absl::InvalidArgumentError("audit.transport must be tls or udp");
  }
  // HOST:PORT; [v6]:PORT for an IPv6 address.
  size_t colon = repository.rfind(':');
  if (colon == std::string::npos || colon == 0) return absl::InvalidArgumentError("audit.repository must be HOST:PORT");
  std::string h = repository.substr(0, colon);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const std::string port = repository.substr(colon + 1);
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 1 || p > 65535) {
    return absl::InvalidArgumentError("audit.repository port must be 1..65535");
  }
  a.repository.host = h;
  a.repository.port = static_cast<uint16_t>(p);
  if (a.repository.transport == "tls" &&
      (a.repository.ca.empty() || a.repository.certificate.empty() || a.repository.private_key.empty())) {
    return absl::InvalidArgumentError("audit.transport tls needs audit.tls.ca, audit.tls.certificate and "
                                      "audit.tls.private_key");
  }
  if (a.spool_dir.empty()) {
    if (o.spool.dir.empty()) return absl::InvalidArgumentError("audit.spool_dir or storage.spool_dir must be set");
    a.spool_dir = o.spool.dir + "/audit";
  }
  return absl::OkStatus();
}

// retention.*: off unless the hospital turns it on, since it deletes
// patient data. Hours and days for operators; the *_seconds forms, which
// win when set, for tests.
absl::Status ParseRetention(config::ConfigTree& t, NodeOptions& o) {
  worklist::RetentionOptions& r = o.retention;
  ASSIGN_OR_RETURN(r.enabled, t.Bool("retention.enabled", r.enabled));
  constexpr int64_t kTenYears = 10 * 366 * 86400LL;
  ASSIGN_OR_RETURN(int64_t grace_h, t.Int("retention.source_grace_hours", r.source_grace.count() / 3600, 0,
                                          kTenYears / 3600));
  r.source_grace = std::chrono::hours(grace_h);
  if (t.Has("retention.source_grace_seconds")) {
    ASSIGN_OR_RETURN(int64_t grace_s, t.Int("retention.source_grace_seconds", 0, 0, kTenYears));
    r.source_grace = std::chrono::seconds(grace_s);
  }
  ASSIGN_OR_RETURN(int64_t days, t.Int("retention.result_days", r.result_age.count() / 86400, 0, kTenYears / 86400));
  r.result_age = std::chrono::hours(24 * days);
  if (t.Has("retention.result_seconds")) {
    ASSIGN_OR_RETURN(int64_t age_s, t.Int("retention.result_seconds", 0, 0, kTenYears));
    r.result_age = std::chrono::seconds(age_s);
  }
  ASSIGN_OR_RETURN(int64_t interval, t.Int("retention.interval_seconds", r.interval.count(), 1, 7 * 86400));
  r.interval = std::chrono::seconds(interval);
  ASSIGN_OR_RETURN(int64_t batch, t.Int("retention.batch", r.batch, 1, 100000));
  r.batch = static_cast<int>(batch);
  // Each replica removes only the files it holds.
  if (o.cluster.enabled) r.node_id = o.cluster.node_id;
  if (r.enabled && o.spool.dir.empty()) return absl::InvalidArgumentError("retention needs storage.spool_dir");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NodeOptions> ParseNodeOptions(config::ConfigTree& t) {
  NodeOptions o;
  ASSIGN_OR_RETURN(o.dicom.ae_title, t.String("dicom.ae_title", o.dicom.ae_title));
  ASSIGN_OR_RETURN(int64_t port, t.Int("dicom.port", o.dicom.port, 0, 65535));
  o.dicom.port = static_cast<uint16_t>(port);
  ASSIGN_OR_RETURN(o.dicom.bind_address, t.String("dicom.bind_address", o.dicom.bind_address));
  ASSIGN_OR_RETURN(double deadline_s, t.Double("dicom.acceptor.association_deadline_seconds",
                                                o.dicom.association_deadline_ms / 1000.0, 0.1, 3600));
  o.dicom.association_deadline_ms = static_cast<int>(deadline_s * 1000);
  ASSIGN_OR_RETURN(int64_t per_peer, t.Int("dicom.acceptor.max_connections_per_peer",
                                           o.dicom.max_connections_per_peer, 1, 100000));
  o.dicom.max_connections_per_peer = static_cast<int>(per_peer);
  ASSIGN_OR_RETURN(int64_t pending, t.Int("dicom.acceptor.max_pending_connections",
                                          o.dicom.max_pending_connections, 1, 100000));
  o.dicom.max_pending_connections = static_cast<int>(pending);
  ASSIGN_OR_RETURN(uint64_t rq_bytes, t.Bytes("dicom.acceptor.max_associate_rq_bytes", o.dicom.max_associate_rq_bytes));
  if (rq_bytes < 1024 || rq_bytes > (1u << 20)) {
    return absl::InvalidArgumentError("dicom.acceptor.max_associate_rq_bytes must be 1KiB..1MiB");
  }
  o.dicom.max_associate_rq_bytes = static_cast<uint32_t>(rq_bytes);
  ASSIGN_OR_RETURN(int64_t tls_port, t.Int("dicom.tls.port", o.dicom.tls.port, 0, 65535));
  o.dicom.tls.port = static_cast<uint16_t>(tls_port);
  ASSIGN_OR_RETURN(o.dicom.tls.certificate, t.String("dicom.tls.certificate", ""));
  ASSIGN_OR_RETURN(o.dicom.tls.private_key, t.String("dicom.tls.private_key", ""));
  ASSIGN_OR_RETURN(o.dicom.tls.ca, t.String("dicom.tls.ca", ""));
  ASSIGN_OR_RETURN(o.dicom.tls.require_client_certificate,
                   t.Bool("dicom.tls.require_client_certificate", o.dicom.tls.require_client_certificate));
  ASSIGN_OR_RETURN(o.dicom.tls.require_subject_binding,
                   t.Bool("dicom.tls.require_subject_binding", o.dicom.tls.require_subject_binding));
  ASSIGN_OR_RETURN(size_t subjects, t.ListSize("dicom.tls.caller_subjects"));
  for (size_t i = 0; i < subjects; ++i) {
    const std::string k = "dicom.tls.caller_subjects." + std::to_string(i) + ".";
    scp::CallerSubject b;
    ASSIGN_OR_RETURN(b.ae_title, t.String(k + "ae_title", ""));
    ASSIGN_OR_RETURN(b.subject, t.String(k + "subject", ""));
    if (b.ae_title.empty() || b.ae_title.size() > 16) return absl::InvalidArgumentError(k + "ae_title must have 1 to 16 characters");
    if (b.subject.empty()) return absl::InvalidArgumentError(k + "subject is empty");
    o.dicom.tls.caller_subjects.push_back(std::move(b));
  }
  if (o.dicom.port == 0 && o.dicom.tls.port == 0) {
    return absl::InvalidArgumentError("dicom.port and dicom.tls.port are both 0: no DICOM listener");
  }
  if (o.dicom.port != 0 && o.dicom.port == o.dicom.tls.port) {
    return absl::InvalidArgumentError("dicom.port and dicom.tls.port must differ");
  }
  ASSIGN_OR_RETURN(std::vector<std::string> callers, t.StringList("dicom.allowed_callers", {}));
  for (const auto& c : callers) {
    ASSIGN_OR_RETURN(scp::CallerRule rule, scp::ParseCallerRule(c));
    o.dicom.allowed_callers.push_back(rule);
  }
  ASSIGN_OR_RETURN(o.dicom.check_called_ae, t.Bool("dicom.check_called_ae", o.dicom.check_called_ae));
  ASSIGN_OR_RETURN(int64_t max_assoc, t.Int("dicom.max_associations", o.dicom.max_associations, 1, 1000));
  o.dicom.max_associations = static_cast<int>(max_assoc);
  ASSIGN_OR_RETURN(int64_t idle, t.Int("dicom.idle_timeout_seconds", o.dicom.idle_timeout_s, 1, 86400));
  o.dicom.idle_timeout_s = static_cast<int>(idle);
  ASSIGN_OR_RETURN(uint64_t pdu, t.Bytes("dicom.max_pdu_bytes", o.dicom.max_pdu_bytes));
  if (pdu < 4096 || pdu > (1u << 24)) return absl::InvalidArgumentError("dicom.max_pdu_bytes must be 4KiB..16MiB");
  o.dicom.max_pdu_bytes = static_cast<uint32_t>(pdu);

  ASSIGN_OR_RETURN(o.spool.dir, t.String("storage.spool_dir", ""));
  ASSIGN_OR_RETURN(o.spool.min_free_bytes, t.Bytes("storage.min_free_bytes", o.spool.min_free_bytes));
  ASSIGN_OR_RETURN(o.max_instance_bytes, t.Bytes("storage.max_instance_bytes", o.max_instance_bytes));
  ASSIGN_OR_RETURN(int64_t rescan_s, t.Int("storage.rescan_interval_seconds",
                                           std::chrono::duration_cast<std::chrono::seconds>(o.rescan.interval).count(),
                                           0, 7 * 86400));
  o.rescan.interval = std::chrono::seconds(rescan_s);
  ASSIGN_OR_RETURN(int64_t depth, t.Int("dicom.limits.max_sequence_depth", o.dataset_limits.max_depth, 1, 1000));
  o.dataset_limits.max_depth = static_cast<int>(depth);
  ASSIGN_OR_RETURN(o.dataset_limits.max_elements,
                   t.Int("dicom.limits.max_elements", o.dataset_limits.max_elements, 100, 100000000));
  // A deflated data set may inflate to no more than an instance may hold.
  o.dataset_limits.max_inflated_bytes = o.max_instance_bytes;

  ASSIGN_OR_RETURN(o.database.url, t.String("database.url", ""));
  ASSIGN_OR_RETURN(std::string url_file, t.String("database.url_file", ""));
  if (o.database.url.empty() && !url_file.empty()) {
    std::ifstream in(url_file);
    if (!in) return absl::InvalidArgumentError("database.url_file: cannot read " + url_file);
    std::getline(in, o.database.url);
  }
  if (o.database.url.empty()) {
    if (const char* env = std::getenv("SECONDREAD_DATABASE_URL")) o.database.url = env;
  }
  if (o.database.url.empty()) {
    return absl::InvalidArgumentError(
        "no database: set database.url, database.url_file or SECONDREAD_DATABASE_URL");
  }
  ASSIGN_OR_RETURN(int64_t conns, t.Int("database.max_connections", o.database.max_connections, 1, 256));
  o.database.max_connections = static_cast<int>(conns);
  ASSIGN_OR_RETURN(o.database.synchronous_commit, t.Bool("database.synchronous_commit", o.database.synchronous_commit));
  ASSIGN_OR_RETURN(int64_t cto, t.Int("database.connect_timeout_seconds", o.database.connect_timeout_s, 1, 300));
  o.database.connect_timeout_s = static_cast<int>(cto);
  ASSIGN_OR_RETURN(int64_t sto, t.Int("database.statement_timeout_ms", o.database.statement_timeout_ms, 100, 3600000));
  o.database.statement_timeout_ms = static_cast<int>(sto);
  ASSIGN_OR_RETURN(int64_t check_ms, t.Int("database.restart_check_ms", o.rescan.check_interval.count(), 100, 600000));
  o.rescan.check_interval = std::chrono::milliseconds(check_ms);
  ASSIGN_OR_RETURN(o.migrate_on_start, t.Bool("database.migrate_on_start", o.migrate_on_start));

  ASSIGN_OR_RETURN(o.http.bind, t.String("http.bind", o.http.bind));
  ASSIGN_OR_RETURN(int64_t hport, t.Int("http.port", o.http.port, 0, 65535));
  o.http.port = static_cast<uint16_t>(hport);
  RETURN_IF_ERROR(ParseHttpLimits(t, "http.limits", o.http.limits));

  ASSIGN_OR_RETURN(o.log.level, t.String("log.level", o.log.level));
  ASSIGN_OR_RETURN(o.log.file, t.String("log.file", o.log.file));

  RETURN_IF_ERROR(ParsePipeline(t, o.pipeline, o.dicom.ae_title));
  RETURN_IF_ERROR(ParseApi(t, o.api));
  RETURN_IF_ERROR(ParseCluster(t, o.cluster));
  // With a shared spool every replica writes its own directory on it, so no
  // two replicas ever write, rename or remove the same file.
  if (o.cluster.enabled && !o.cluster.shared_spool_root.empty()) {
    o.spool.dir = o.cluster.shared_spool_root + "/" + o.cluster.node_id;
  }
  RETURN_IF_ERROR(ParseAudit(t, o));
  RETURN_IF_ERROR(ParseRetention(t, o));
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  o.pipeline.dispatch.node_id = std::string(host) + ":" + std::to_string(getpid());
  o.pipeline.exporter.node_id = o.pipeline.dispatch.node_id;
  o.pipeline.dispatch.software_version = SECONDREAD_VERSION_STRING;
  o.pipeline.volume.node_id = o.pipeline.dispatch.node_id;
  o.pipeline.volume.software_version = SECONDREAD_VERSION_STRING;

  RETURN_IF_ERROR(t.CheckNoUnknownKeys());
  return o;
}

}  // namespace secondread
