#include "worklist/review/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>


namespace secondread::worklist {

namespace {

using nlohmann::json;

constexpr size_t kMaxJwtBytes = 8192;

int8_t DecodeChar(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return static_cast<int8_t>(c - 'A');
  if (c >= 'a' && c <= 'z') return static_cast<int8_t>(c - 'a' + 26);
  if (c >= '0' && c <= '9') return static_cast<int8_t>(c - '0' + 52);
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::shared_ptr<void> Share(EVP_PKEY* p) {
  return std::shared_ptr<void>(p, [](void* q) { EVP_PKEY_free(static_cast<EVP_PKEY*>(q)); });
}

// An RSA public key from the JWK's modulus and exponent.
EVP_PKEY* RsaKey(const std::string& n, const std::string& e) {
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY_CTX* ctx = nullptr;
  EVP_PKEY* key = nullptr;
  if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1 && (params = OSSL_PARAM_BLD_to_param(bld)) &&
      (ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr)) && EVP_PKEY_fromdata_init(ctx) == 1) {
    if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = nullptr;
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  return key;
}

// A P-256 public key from the JWK's coordinates; the point is checked to
// lie on the curve.
EVP_PKEY* EcKey(const std::string& x, const std::string& y) {
  if (x.size() != 32 || y.size() != 32) return nullptr;
  std::string point = std::string(1, '\x04') + x + y;
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY_CTX* ctx = nullptr;
  EVP_PKEY* key = nullptr;
  if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1 &&
      (params = OSSL_PARAM_BLD_to_param(bld)) && (ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr)) &&
      EVP_PKEY_fromdata_init(ctx) == 1) {
    if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = nullptr;
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  if (key != nullptr) {
    EVP_PKEY_CTX* check = EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr);
    bool on_curve = check != nullptr && EVP_PKEY_public_check(check) == 1;
    EVP_PKEY_CTX_free(check);
    if (!on_curve) {
      EVP_PKEY_free(key);
      key = nullptr;
    }
  }
  return key;
}

std::optional<std::string> Member(const json& o, const char* name) {
  auto it = o.find(name);
  if (it == o.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<std::string> B64Member(const json& o, const char* name) {
  auto s = Member(o, name);
  if (!s) return std::nullopt;
  return Base64UrlDecode(*s);
}

// JWS ES256 signatures are r || s, 32 bytes each; OpenSSL verifies DER.
std::optional<std::string> EcdsaDer(const std::string& raw) {
  if (raw.size() != 64) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = BN_bin2bn(p, 32, nullptr);
  BIGNUM* s = BN_bin2bn(p + 32, 32, nullptr);
  ECDSA_SIG* sig = ECDSA_SIG_new();
  if (!r || !s || !sig || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

bool VerifySignature(const Jwk& key, std::string_view signed_part, const std::string& signature) {
  std::string sig = signature;
  if (key.alg == "ES256") {
    auto der = EcdsaDer(signature);
    if (!der) return false;
    sig = *der;
  }
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  if (md == nullptr) return false;
  bool ok = EVP_DigestVerifyInit(md, nullptr, EVP_sha256(), nullptr, static_cast<EVP_PKEY*>(key.pkey.get())) == 1 &&
            EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) == 1;
  EVP_MD_CTX_free(md);
  return ok;
}

// A NumericDate claim; absent is nullopt, anything but a number is an error.
bool NumericDate(const json& claims, const char* name, std::optional<int64_t>& out) {
  auto it = claims.find(name);
  if (it == claims.end()) return true;
  if (it->is_number_integer()) {
    out = it->get<int64_t>();
    return true;
  }
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (!(d > -1e15 && d < 1e15)) return false;
    out = static_cast<int64_t>(d);
    return true;
  }
  return false;
}

JwtVerdict Refuse(JwtVerdict v, const char* reason) {
  v.ok = false;
  v.reason = reason;
  return v;
}

}  // namespace

std::optional<std::string> Base64UrlDecode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    int8_t v = DecodeChar(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero, or two encodings would decode alike.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string Base64UrlEncode(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

absl::StatusOr<Jwks> Jwks::Parse(std::string_view text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return absl::InvalidArgumentError("JWKS is not a JSON object");
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) return absl::InvalidArgumentError("JWKS has no \"keys\" array");
  Jwks out;
  for (const json& k : *keys) {
    if (!k.is_object()) continue;
    auto use = Member(k, "use");
    if (use && *use != "sig") continue;
    auto kty = Member(k, "kty");
    auto alg = Member(k, "alg");
    Jwk jwk;
    jwk.kid = Member(k, "kid").value_or("");
    EVP_PKEY* key = nullptr;
    if (kty == "RSA") {
      if (alg && *alg != "RS256") continue;
      auto n = B64Member(k, "n");
      auto e = B64Member(k, "e");
      if (!n || !e) continue;
      key = RsaKey(*n, *e);
      if (key != nullptr && EVP_PKEY_get_bits(key) < 2048) {
        EVP_PKEY_free(key);
        key = nullptr;
      }
      jwk.alg = "RS256";
    } else if (kty == "EC") {
      if (alg && *alg != "ES256") continue;
      if (Member(k, "crv") != "P-256") continue;
      auto x = B64Member(k, "x");
      auto y = B64Member(k, "y");
      if (!x || !y) continue;
      key = EcKey(*x, *y);
      jwk.alg = "ES256";
    }
    if (key == nullptr) continue;
    jwk.pkey = Share(key);
    out.keys_.push_back(std::move(jwk));
  }
  return out;
}

const Jwk* Jwks::Find(const std::string& kid, const std::string& alg) const {
  const Jwk* only = nullptr;
  int for_alg = 0;
  for (const Jwk& k : keys_) {
    if (k.alg != alg) continue;
    if (!kid.empty() && k.kid == kid) return &k;
    ++for_alg;
    only = &k;
  }
  return kid.empty() && for_alg == 1 ? only : nullptr;
}

std::vector<std::string> Jwks::Kids() const {
  std::vector<std::string> out;
  for (const Jwk& k : keys_) out.push_back(k.kid);
  return out;
}

bool LooksLikeJwt(std::string_view token) {
  size_t dots = 0;
  for (char c : token) {
    if (c == '.') {
      ++dots;
    } else if (DecodeChar(static_cast<unsigned char>(c)) < 0) {
      return false;
    }
  }
  return dots == 2;
}

const json* ClaimAt(const json& claims, std::string_view path) {
  const json* cur = &claims;
  while (true) {
    if (!cur->is_object()) return nullptr;
    size_t dot = path.find('.');
    auto it = cur->find(std::string(path.substr(0, dot)));
    if (it == cur->end()) return nullptr;
    cur = &*it;
    if (dot == std::string_view::npos) return cur;
    path.remove_prefix(dot + 1);
  }
}

JwtVerdict VerifyJwt(std::string_view token, const Jwks& keys, const JwtPolicy& policy, int64_t now_s) {
  JwtVerdict v;
  if (token.size() > kMaxJwtBytes || !LooksLikeJwt(token)) return Refuse(v, "malformed");
  size_t d1 = token.find('.');
  size_t d2 = token.find('.', d1 + 1);
  auto header_text = Base64UrlDecode(token.substr(0, d1));
  auto payload_text = Base64UrlDecode(token.substr(d1 + 1, d2 - d1 - 1));
  auto signature = Base64UrlDecode(token.substr(d2 + 1));
  if (!header_text || !payload_text || !signature) return Refuse(v, "malformed");
  json header = json::parse(*header_text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return Refuse(v, "malformed");
  auto alg = Member(header, "alg");
  if (!alg) return Refuse(v, "malformed");
  v.alg = alg->substr(0, 16);
  if (*alg != "RS256" && *alg != "ES256") return Refuse(v, "algorithm");
  // No extension this verifier knows is ever critical (RFC 7515 4.1.11).
  if (header.contains("crit")) return Refuse(v, "malformed");
  if (header.contains("kid") && !header["kid"].is_string()) return Refuse(v, "malformed");
  v.kid = Member(header, "kid").value_or("").substr(0, 128);
  const Jwk* key = keys.Find(Member(header, "kid").value_or(""), *alg);
  if (key == nullptr) return Refuse(v, "unknown_key");
  if (!VerifySignature(*key, token.substr(0, d2), *signature)) return Refuse(v, "bad_signature");

  json claims = json::parse(*payload_text, nullptr, /*allow_exceptions=*/false);
  if (claims.is_discarded() || !claims.is_object()) return Refuse(v, "malformed");
  // Signed by a key of the hospital: the claims name who it was, even when
  // the checks below refuse the token.
  v.claims = claims;
  if (Member(claims, "iss") != policy.issuer) return Refuse(v, "wrong_issuer");
  bool audience = false;
  if (auto aud = claims.find("aud"); aud != claims.end()) {
    if (aud->is_string()) audience = aud->get<std::string>() == policy.audience;
    if (aud->is_array()) {
      for (const json& a : *aud) audience = audience || (a.is_string() && a.get<std::string>() == policy.audience);
    }
  }
  if (!audience) return Refuse(v, "wrong_audience");
  std::optional<int64_t> exp, nbf, iat;
  if (!NumericDate(claims, "exp", exp) || !NumericDate(claims, "nbf", nbf) || !NumericDate(claims, "iat", iat)) {
    return Refuse(v, "malformed");
  }
  const int64_t skew = policy.clock_skew_s;
  if (!exp || now_s - skew >= *exp) return Refuse(v, "expired");
  if (nbf && now_s + skew < *nbf) return Refuse(v, "not_yet_valid");
  if (iat && now_s + skew < *iat) return Refuse(v, "issued_in_future");
  v.ok = true;
  v.reason.clear();
  return v;
}

}  // namespace secondread::worklist
