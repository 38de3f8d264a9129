#include "worklist/review/sign_in.h"

#include <openssl/rand.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <ctime>

#include "common/digest.h"
#include "common/log.h"
#include "worklist/review/jwt.h"

namespace secondread::worklist {

namespace {

using nlohmann::json;

constexpr size_t kMaxStaticTokenLength = 512;
constexpr size_t kMaxBearerLength = 8192;
constexpr size_t kMaxSignedIn = 100000;

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The token of "Bearer <token>" (scheme case-insensitive, one space,
// printable characters without spaces), or nullopt.
std::optional<std::string_view> BearerToken(const std::string& h, size_t max_length) {
  constexpr std::string_view kScheme = "bearer ";
  if (h.size() <= kScheme.size() || h.size() > kScheme.size() + max_length) return std::nullopt;
  for (size_t i = 0; i + 1 < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(h[i])) != kScheme[i]) return std::nullopt;
  }
  if (h[kScheme.size() - 1] != ' ') return std::nullopt;
  std::string_view token = std::string_view(h).substr(kScheme.size());
  for (unsigned char c : token) {
    if (c < 0x21 || c > 0x7e) return std::nullopt;
  }
  return token;
}

bool Digits(std::string_view s, size_t at, size_t n, int& out) {
  if (at + n > s.size()) return false;
  out = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

std::optional<ApiToken> Authenticate(const std::vector<ApiToken>& tokens, const std::string& authorization_header) {
  auto token = BearerToken(authorization_header, kMaxStaticTokenLength);
  if (!token) return std::nullopt;
  const std::string hash = Sha256Hex(*token);  // 64 lower-case hex characters

  // Every entry is compared over all 64 characters, whatever differs first.
  // Configured hashes may be upper-case hex: OR-ing 0x20 lower-cases A-F and
  // leaves digits unchanged.
  size_t match = tokens.size();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& expected = tokens[i].sha256;
    unsigned diff = expected.size() == hash.size() ? 0u : 1u;
    for (size_t k = 0; k < hash.size(); ++k) {
      unsigned char e = k < expected.size() ? static_cast<unsigned char>(expected[k]) : 0;
      diff |= static_cast<unsigned char>(hash[k]) ^ static_cast<unsigned char>(e | 0x20);
    }
    // The first matching entry wins; selected without an early exit.
    size_t is_match = static_cast<size_t>(diff == 0);
    size_t unset = static_cast<size_t>(match == tokens.size());
    size_t take = is_match & unset;
    match = take * i + (1 - take) * match;
  }
  if (match == tokens.size()) return std::nullopt;
  return tokens[match];
}

std::optional<int64_t> ParseTimestamp(const std::string& text) {
  std::string_view s = text;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!Digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2, mo) || s[7] != '-' ||
      !Digits(s, 8, 2, d)) {
    return std::nullopt;
  }
  auto ymd = std::chrono::year{y} / std::chrono::month{static_cast<unsigned>(mo)} /
             std::chrono::day{static_cast<unsigned>(d)};
  if (!ymd.ok()) return std::nullopt;
  int64_t offset_s = 0;
  if (s.size() > 10) {
    if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !Digits(s, 11, 2, h) || s.size() < 19 || s[13] != ':' ||
        !Digits(s, 14, 2, mi) || s[16] != ':' || !Digits(s, 17, 2, sec) || h > 23 || mi > 59 || sec > 60) {
      return std::nullopt;
    }
    std::string_view zone = s.substr(19);
    if (!zone.empty() && zone.front() == '.') {  // fractions of a second are dropped
      size_t n = 1;
      while (n < zone.size() && zone[n] >= '0' && zone[n] <= '9') ++n;
      if (n == 1) return std::nullopt;
      zone.remove_prefix(n);
    }
    if (zone == "Z" || zone == "z") {
      offset_s = 0;
    } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
      int oh = 0, om = 0;
      if (!Digits(zone, 1, 2, oh) || !Digits(zone, 4, 2, om) || oh > 23 || om > 59) return std::nullopt;
      offset_s = (oh * 3600 + om * 60) * (zone[0] == '+' ? 1 : -1);
    } else {
      return std::nullopt;  // a time without a zone is ambiguous
    }
  }
  int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  return days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
}

void AuditLogSignIns::Record(const SignInEvent& e) {
  json detail = e.detail;
  detail["result"] = e.success ? "success" : "failure";
  detail["method"] = e.method;
  if (!e.success) detail["reason"] = e.reason;
  absl::Status st = store_->Audit(Actor{e.user, e.role, e.remote_addr}, "sign_in", std::nullopt, detail);
  if (!st.ok()) {
    log::Error("sign_in_audit_failed", {{"code", absl::StatusCodeToString(st.code())}});
  }
}

std::string NewIssuedToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return "";
  return kIssuedTokenPrefix + Base64UrlEncode(std::string_view(reinterpret_cast<char*>(bytes), sizeof(bytes)));
}

SignIn::SignIn(std::vector<ApiToken> config_tokens, std::shared_ptr<OidcVerifier> oidc, TokenStore* store,
               SignInAudit* audit)
    : config_tokens_(std::move(config_tokens)), oidc_(std::move(oidc)), store_(store), audit_(audit) {}

SignIn::Attempt SignIn::Check(const std::string& authorization) {
  Attempt a;
  a.event.method = "none";
  if (authorization.empty()) {
    a.event.reason = "no_token";
    return a;
  }
  auto token = BearerToken(authorization, kMaxBearerLength);
  if (!token) {
    a.event.reason = "malformed";
    return a;
  }
  // Configured tokens first: they may have any shape, a JWT's included.
  if (auto cfg = worklist::Authenticate(config_tokens_, authorization)) {
    a.event.method = "config_token";
    a.event.user = cfg->name;
    if (cfg->expires_unix && UnixNow() >= *cfg->expires_unix) {
      a.event.reason = "expired";
      return a;
    }
    a.who = Principal{cfg->name, {cfg->role}, "config_token"};
    return a;
  }
  if (LooksLikeJwt(*token)) {
    a.event.method = "oidc";
    if (!oidc_) {
      a.event.reason = "oidc_not_configured";
      return a;
    }
    OidcUser u = oidc_->Verify(std::string(*token));
    if (!u.kid.empty()) a.event.detail["kid"] = u.kid;
    if (!u.subject.empty()) a.event.detail["subject"] = u.subject;
    if (!u.ok) {
      a.event.reason = u.reason;
      a.event.user = u.name;
      return a;
    }
    a.event.user = u.name;
    a.who = Principal{u.name, u.roles, "oidc"};
    return a;
  }
  if (store_ != nullptr && token->rfind(kIssuedTokenPrefix, 0) == 0) {
    a.event.method = "issued_token";
    auto found = store_->FindByHash(Sha256Hex(*token));
    if (!found.ok()) {
      a.event.reason = "store_unavailable";
      a.status = 503;
      return a;
    }
    if (!found->has_value()) {
      a.event.reason = "unknown_token";
      return a;
    }
    const IssuedToken& t = **found;
    a.event.user = t.name;
    a.event.detail["token_id"] = t.id;
    if (t.revoked) {
      a.event.reason = "revoked";
      return a;
    }
    if (t.expired) {
      a.event.reason = "expired";
      return a;
    }
    a.who = Principal{t.name, {t.role}, "issued_token"};
    return a;
  }
  a.event.reason = "unknown_token";
  return a;
}

void SignIn::Report(Attempt& a, const std::string& client, const std::string& digest) {
  a.event.success = a.who.has_value();
  a.event.remote_addr = client;
  if (a.who) a.event.role = Join(a.who->roles);
  if (a.event.success) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (signed_in_.size() >= kMaxSignedIn) signed_in_.clear();
      if (!signed_in_.insert(digest).second) return;
    }
    log::Info("sign_in", {{"user", a.event.user}, {"method", a.event.method}, {"roles", a.event.role}, {"peer", client}});
    if (audit_ != nullptr) audit_->Record(a.event);
    return;
  }
  int64_t suppressed = 0;
  if (audit_ != nullptr && failure_audit_.Allow(a.event.reason, suppressed)) {
    if (suppressed > 0) a.event.detail["suppressed"] = suppressed;
    audit_->Record(a.event);
  }
}

std::optional<Principal> SignIn::Authenticate(const HttpRequest& req, const std::string& client, Refusal& refusal) {
  const std::string authorization = req.Header("authorization");
  Attempt a = Check(authorization);
  refusal = Refusal{a.status, a.event.reason, a.event.method, a.event.user};
  Report(a, client, a.who ? Sha256Hex(authorization) : std::string());
  return a.who;
}

}  // namespace secondread::worklist
