// JSON Web Tokens for worklist sign-in: a hospital's key set (JWKS) and the
// verification of a signed token (JWS compact form) against it. OpenSSL 3
// (EVP) checks the signatures and nlohmann::json reads the JSON; neither is
// used for tokens anywhere else. Only RS256 and ES256 are accepted: "none",
// the HMAC algorithms (whose "secret" an attacker can take from the public
// key) and everything else are refused before any key is looked at.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "nlohmann/json.hpp"

namespace secondread::worklist {

// RFC 4648 section 5, without padding; nullopt on any other character or a
// length no encoder produces.
std::optional<std::string> Base64UrlDecode(std::string_view in);
std::string Base64UrlEncode(std::string_view in);

// One public key of a JWKS, usable for exactly one algorithm.
struct Jwk {
  std::string kid;
  std::string alg;                // RS256 | ES256
  std::shared_ptr<void> pkey;     // EVP_PKEY, freed with EVP_PKEY_free
};

class Jwks {
 public:
  // Reads {"keys": [...]}. Keys that are not for signatures ("use" other
  // than "sig"), of other types or curves, RSA keys under 2048 bits, or
  // that name another algorithm are skipped; the set may end up empty.
  // INVALID_ARGUMENT when the text is not a JWKS at all.
  static absl::StatusOr<Jwks> Parse(std::string_view text);

  // The key with this kid (an empty kid matches only when the set holds a
  // single key for the algorithm); nullptr when none.
  const Jwk* Find(const std::string& kid, const std::string& alg) const;
  size_t size() const { return keys_.size(); }
  std::vector<std::string> Kids() const;

 private:
  std::vector<Jwk> keys_;
};

struct JwtPolicy {
  std::string issuer;    // compared exactly with "iss"
  std::string audience;  // must be "aud" or one of its entries
  int64_t clock_skew_s = 60;
  // Tokens without "exp" are refused: a bearer token must end.
};

// Why a token was refused; the reason goes to the audit log as is.
struct JwtVerdict {
  bool ok = false;
  std::string reason;  // malformed | algorithm | unknown_key | bad_signature | expired |
                       // not_yet_valid | issued_in_future | wrong_issuer | wrong_audience
  std::string alg;
  std::string kid;
  nlohmann::json claims;  // the payload, once the signature holds (also when refused after)
};

// Checks the header, the signature with the JWKS key named by "kid", then
// iss, aud, exp, nbf and iat against now_s (Unix seconds).
JwtVerdict VerifyJwt(std::string_view token, const Jwks& keys, const JwtPolicy& policy, int64_t now_s);

// True when the text has the shape of a JWS compact token (three
// base64url parts), so the caller can tell it from an opaque token.
bool LooksLikeJwt(std::string_view token);

// The value at a dotted path ("realm_access.roles") of a JSON object, or
// nullptr when a step is missing or not an object.
const nlohmann::json* ClaimAt(const nlohmann::json& claims, std::string_view path);

}  // namespace secondread::worklist
