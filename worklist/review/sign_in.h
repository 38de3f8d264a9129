// Worklist sign-in: who is behind a request's bearer token. Three kinds of
// token are accepted: OpenID Connect access tokens (JWTs signed by the
// hospital's identity provider), tokens issued through the admin API (kept
// in PostgreSQL as hashes) and tokens from the configuration (api.tokens).
// Every attempt is reported to a SignInAudit, which the node points at its
// audit log; other recipients (an audit-trail forwarder) can be attached
// behind the same interface.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/http_server.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worklist/review/oidc.h"
#include "worklist/review/review_store.h"

namespace secondread::worklist {

struct ApiToken {
  std::string name;    // shown in reviews and the audit log
  std::string role;    // radiologist | admin
  std::string sha256;  // lower-case hex SHA-256 of the token
  std::optional<int64_t> expires_unix = std::nullopt;  // none: never expires
};

// Returns the token's entry, or nullopt; constant-time comparison of hashes.
// Expiry is the caller's to check.
std::optional<ApiToken> Authenticate(const std::vector<ApiToken>& tokens, const std::string& authorization_header);

// "2027-06-30" (00:00 UTC that day) or RFC 3339 "2027-06-30T12:00:00Z" /
// "...+02:00"; Unix seconds.
std::optional<int64_t> ParseTimestamp(const std::string& text);

// One sign-in attempt, as the audit log and any other recipient see it.
struct SignInEvent {
  bool success = false;
  std::string reason;  // empty on success; see docs/security.md
  std::string method;  // oidc | issued_token | config_token | none
  std::string user;    // empty when nobody could be identified
  std::string role;    // the roles granted, comma-separated
  std::string remote_addr;
  nlohmann::json detail = nlohmann::json::object();  // kid, token id, subject, suppressed
};

class SignInAudit {
 public:
  virtual ~SignInAudit() = default;
  virtual void Record(const SignInEvent& event) = 0;
};

// Writes sign_in rows to the audit log through the review store.
class AuditLogSignIns : public SignInAudit {
 public:
  explicit AuditLogSignIns(ReviewStore* store) : store_(store) {}
  void Record(const SignInEvent& event) override;

 private:
  ReviewStore* store_;
};

// A token issued through the admin API.
struct IssuedToken {
  int64_t id = 0;
  std::string name;
  std::string role;
  bool expired = false;
  bool revoked = false;
};

// The issued tokens in PostgreSQL (token_store.h); an interface so the API
// can be tested without a database.
class TokenStore {
 public:
  virtual ~TokenStore() = default;
  virtual absl::StatusOr<std::optional<IssuedToken>> FindByHash(const std::string& sha256_hex) = 0;
  // The stored row as the API shows it; ALREADY_EXISTS for a used name.
  virtual absl::StatusOr<nlohmann::json> Issue(const std::string& name, const std::string& role,
                                               const std::string& sha256_hex, int64_t lifetime_s,
                                               const Actor& by) = 0;
  virtual absl::StatusOr<nlohmann::json> List(const Actor& by) = 0;
  // NOT_FOUND for an unknown id; revoking twice keeps the first revocation.
  virtual absl::StatusOr<nlohmann::json> Revoke(int64_t id, const Actor& by) = 0;
};

// Issued tokens carry this prefix, so an unknown opaque token costs a
// database lookup only when it could be one of them.
inline constexpr char kIssuedTokenPrefix[] = "srt_";

// A new random token (32 bytes from OpenSSL's generator) with the prefix.
std::string NewIssuedToken();

struct Principal {
  std::string name;
  std::vector<std::string> roles;
  std::string method;
};

class SignIn {
 public:
  // oidc, store and audit may be null.
  SignIn(std::vector<ApiToken> config_tokens, std::shared_ptr<OidcVerifier> oidc, TokenStore* store,
         SignInAudit* audit);

  // Why a request was not signed in, for the caller's log line.
  struct Refusal {
    int status = 401;  // 503 when the token could not be checked (database down)
    std::string reason;
    std::string method;
    std::string user;  // when known: an expired or revoked token's name
  };

  // The principal, or nullopt after recording the failure in `refusal`.
  std::optional<Principal> Authenticate(const HttpRequest& req, const std::string& client, Refusal& refusal);

 private:
  struct Attempt {
    std::optional<Principal> who;
    SignInEvent event;
    int status = 401;
  };
  Attempt Check(const std::string& authorization);
  void Report(Attempt& attempt, const std::string& client, const std::string& token_digest);

  const std::vector<ApiToken> config_tokens_;
  std::shared_ptr<OidcVerifier> oidc_;
  TokenStore* store_;
  SignInAudit* audit_;
  // A bearer token comes with every request; its first successful use is the
  // sign-in that is audited, not each request after it.
  std::mutex mu_;
  std::unordered_set<std::string> signed_in_;
  // Anyone can send bad tokens at will, and the audit log cannot be
  // pruned: at most ten failure rows a second for each reason, the next
  // row counting those held back.
  LogRateLimiter failure_audit_{10};
};

}  // namespace secondread::worklist
