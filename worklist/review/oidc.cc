#include "worklist/review/oidc.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/log.h"
#include "httplib.h"

namespace secondread::worklist {

namespace {

using nlohmann::json;

constexpr size_t kMaxJwksBytes = 1 << 20;
constexpr size_t kMaxUserName = 128;

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

absl::StatusOr<std::string> ReadJwksFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError("cannot open the JWKS file");
  std::string text;
  text.resize(kMaxJwksBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxJwksBytes) return absl::InvalidArgumentError("the JWKS file is over 1 MiB");
  return text;
}

struct HttpsUrl {
  std::string host;
  int port = 443;
  std::string path;
};

std::optional<HttpsUrl> ParseHttpsUrl(const std::string& url) {
  constexpr std::string_view kScheme = "https://";
  if (url.rfind(kScheme, 0) != 0) return std::nullopt;
  std::string rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  HttpsUrl out;
  std::string authority = rest.substr(0, slash);
  out.path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.empty() || authority.find('@') != std::string::npos) return std::nullopt;
  std::string port;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return std::nullopt;
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return std::nullopt;
      port = authority.substr(close + 2);
      if (port.empty()) return std::nullopt;
    }
    authority = authority.substr(1, close - 1);
  } else if (size_t colon = authority.rfind(':'); colon != std::string::npos) {
    port = authority.substr(colon + 1);
    if (port.empty()) return std::nullopt;
    authority = authority.substr(0, colon);
  }
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    out.port = std::stoi(port);
    if (out.port < 1 || out.port > 65535) return std::nullopt;
  }
  if (authority.empty()) return std::nullopt;
  out.host = authority;
  return out;
}

absl::StatusOr<std::string> FetchJwksUrl(const HttpsUrl& url, const std::string& ca_file, int timeout_s) {
  httplib::SSLClient client(url.host, url.port);
  client.enable_server_certificate_verification(true);
  if (!ca_file.empty()) client.set_ca_cert_path(ca_file.c_str());
  client.set_connection_timeout(timeout_s, 0);
  client.set_read_timeout(timeout_s, 0);
  client.set_follow_location(false);
  auto res = client.Get(url.path.c_str());
  if (!res) return absl::UnavailableError("JWKS fetch failed: " + httplib::to_string(res.error()));
  if (res->status != 200) return absl::UnavailableError("JWKS fetch answered HTTP " + std::to_string(res->status));
  if (res->body.size() > kMaxJwksBytes) return absl::InvalidArgumentError("the JWKS is over 1 MiB");
  return res->body;
}

bool UsableName(const std::string& s) {
  if (s.empty() || s.size() > kMaxUserName) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::vector<std::string> ClaimValues(const json& claims, const std::string& path) {
  std::vector<std::string> out;
  const json* v = ClaimAt(claims, path);
  if (v == nullptr) return out;
  if (v->is_string()) out.push_back(v->get<std::string>());
  if (v->is_array()) {
    for (const json& e : *v) {
      if (e.is_string()) out.push_back(e.get<std::string>());
    }
  }
  return out;
}

bool AnyOf(const std::vector<std::string>& have, const std::vector<std::string>& granting) {
  for (const auto& h : have) {
    if (std::find(granting.begin(), granting.end(), h) != granting.end()) return true;
  }
  return false;
}

}  // namespace

JwksFetcher MakeJwksFetcher(const OidcOptions& options) {
  if (!options.jwks_file.empty()) {
    std::string path = options.jwks_file;
    return [path] { return ReadJwksFile(path); };
  }
  auto url = ParseHttpsUrl(options.jwks_url);
  if (!url) {
    return [] { return absl::StatusOr<std::string>(absl::InvalidArgumentError("api.oidc.jwks_url is not https")); };
  }
  std::string ca = options.jwks_ca_file;
  int timeout = options.jwks_timeout_s;
  return [u = *url, ca, timeout] { return FetchJwksUrl(u, ca, timeout); };
}

OidcVerifier::OidcVerifier(OidcOptions options, JwksFetcher fetch, Clock now)
    : options_(std::move(options)), fetch_(std::move(fetch)), now_(now ? std::move(now) : Clock(UnixNow)) {}

size_t OidcVerifier::KeyCount() {
  auto keys = Keys(false);
  return keys ? keys->size() : 0;
}

std::shared_ptr<const Jwks> OidcVerifier::Keys(bool unknown_kid) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = now_();
  bool stale = !keys_ || now - fetched_at_ >= options_.jwks_refresh_s;
  bool allowed = !ever_attempted_ || now - attempted_at_ >= options_.jwks_min_refresh_s;
  if ((stale || unknown_kid) && allowed) {
    ever_attempted_ = true;
    attempted_at_ = now;
    absl::StatusOr<std::string> text = fetch_();
    absl::StatusOr<Jwks> parsed = text.ok() ? Jwks::Parse(*text) : absl::StatusOr<Jwks>(text.status());
    if (parsed.ok()) {
      bool changed = !keys_ || keys_->Kids() != parsed->Kids();
      keys_ = std::make_shared<const Jwks>(std::move(*parsed));
      fetched_at_ = now;
      if (changed) log::Info("oidc_keys_loaded", {{"keys", keys_->size()}, {"kids", keys_->Kids()}});
    } else {
      // The previous keys stay in use: an identity provider that is briefly
      // unreachable must not sign everybody out.
      log::Warn("oidc_keys_fetch_failed",
                {{"error", std::string(parsed.status().message())}, {"keeping", keys_ ? keys_->size() : 0}});
    }
  }
  return keys_;
}

OidcUser OidcVerifier::Verify(const std::string& token) {
  OidcUser user;
  std::shared_ptr<const Jwks> keys = Keys(false);
  if (!keys) {
    user.reason = "keys_unavailable";
    return user;
  }
  JwtPolicy policy{options_.issuer, options_.audience, options_.clock_skew_s};
  JwtVerdict v = VerifyJwt(token, *keys, policy, now_());
  if (!v.ok && v.reason == "unknown_key") {
    std::shared_ptr<const Jwks> again = Keys(true);
    if (again && again != keys) v = VerifyJwt(token, *again, policy, now_());
  }
  user.kid = v.kid;
  if (v.claims.is_object()) {
    if (auto sub = v.claims.find("sub"); sub != v.claims.end() && sub->is_string()) {
      user.subject = sub->get<std::string>().substr(0, kMaxUserName);
    }
  }
  if (!v.ok) {
    user.reason = v.reason;
    return user;
  }
  const json* name = ClaimAt(v.claims, options_.username_claim);
  if (name != nullptr && name->is_string()) user.name = name->get<std::string>();
  if (user.name.empty()) user.name = user.subject;
  if (!UsableName(user.name)) {
    user.name.clear();
    user.reason = "no_user";
    return user;
  }
  std::vector<std::string> values = ClaimValues(v.claims, options_.roles_claim);
  if (AnyOf(values, options_.radiologist_values)) user.roles.push_back("radiologist");
  if (AnyOf(values, options_.admin_values)) user.roles.push_back("admin");
  if (user.roles.empty()) {
    user.reason = "no_role";
    return user;
  }
  user.ok = true;
  return user;
}

}  // namespace secondread::worklist
