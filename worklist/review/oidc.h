// OpenID Connect access tokens for the worklist: the hospital's key set,
// read from a file or fetched over HTTPS, cached and refreshed, and the
// mapping of a verified token to a user name and node roles.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "worklist/review/jwt.h"

namespace secondread::worklist {

struct OidcOptions {
  std::string issuer;  // empty: OIDC sign-in is off
  std::string audience;
  std::string jwks_file;     // one of jwks_file and jwks_url
  std::string jwks_url;      // https:// only
  std::string jwks_ca_file;  // CA bundle for jwks_url; empty: the system's
  int jwks_refresh_s = 300;  // a key set older than this is fetched again
  // At most one fetch per this interval, however many unknown kids arrive:
  // anyone can send tokens with made-up kids.
  int jwks_min_refresh_s = 30;
  int jwks_timeout_s = 5;
  int clock_skew_s = 60;
  std::string username_claim = "preferred_username";  // "sub" when absent
  std::string roles_claim = "roles";                  // a dotted path
  // Claim values that grant each node role.
  std::vector<std::string> radiologist_values;
  std::vector<std::string> admin_values;

  bool enabled() const { return !issuer.empty(); }
};

// Reads the key set's text from wherever it is configured.
using JwksFetcher = std::function<absl::StatusOr<std::string>()>;

// A fetcher for options.jwks_file or options.jwks_url.
JwksFetcher MakeJwksFetcher(const OidcOptions& options);

struct OidcUser {
  bool ok = false;
  std::string reason;  // as JwtVerdict, or no_user | no_role | keys_unavailable
  std::string name;
  std::vector<std::string> roles;  // radiologist and/or admin
  std::string kid;
  std::string subject;
};

class OidcVerifier {
 public:
  using Clock = std::function<int64_t()>;  // Unix seconds
  OidcVerifier(OidcOptions options, JwksFetcher fetch, Clock now = nullptr);

  // Verifies the token; an unknown kid or an aged key set triggers a fetch
  // (rate-limited), so rotated keys are picked up and removed keys stop
  // working.
  OidcUser Verify(const std::string& token);

  // Number of keys currently held (for start-up logs).
  size_t KeyCount();

 private:
  // Fetches again when allowed; keeps the old set when the fetch fails.
  std::shared_ptr<const Jwks> Keys(bool unknown_kid);

  const OidcOptions options_;
  const JwksFetcher fetch_;
  const Clock now_;
  std::mutex mu_;
  std::shared_ptr<const Jwks> keys_;
  int64_t fetched_at_ = 0;   // last successful fetch
  int64_t attempted_at_ = 0; // last fetch, successful or not
  bool ever_attempted_ = false;
};

}  // namespace secondread::worklist
