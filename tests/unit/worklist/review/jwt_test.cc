#include "worklist/review/jwt.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <memory>
#include <string>

#include "worklist/review/oidc.h"

namespace secondread::worklist {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1900000000;
constexpr char kIssuer[] = "https://idp.hospital.example/realms/radiology";
constexpr char kAudience[] = "secondread";

// ---- key and token minting -------------------------------------------------

struct Key {
  std::shared_ptr<EVP_PKEY> pkey;
  std::string kid;
  std::string alg;
};

Key MakeRsa(const std::string& kid, unsigned bits = 2048) {
  EVP_PKEY* p = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits));
  return Key{std::shared_ptr<EVP_PKEY>(p, EVP_PKEY_free), kid, "RS256"};
}

Key MakeEc(const std::string& kid, const char* curve = "P-256") {
  EVP_PKEY* p = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve);
  return Key{std::shared_ptr<EVP_PKEY>(p, EVP_PKEY_free), kid, "ES256"};
}

std::string Bn(EVP_PKEY* p, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(p, name, &bn);
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

json JwkOf(const Key& k) {
  if (k.alg == "RS256") {
    return json{{"kty", "RSA"}, {"kid", k.kid}, {"use", "sig"}, {"alg", "RS256"},
                {"n", Base64UrlEncode(Bn(k.pkey.get(), OSSL_PKEY_PARAM_RSA_N))},
                {"e", Base64UrlEncode(Bn(k.pkey.get(), OSSL_PKEY_PARAM_RSA_E))}};
  }
  unsigned char point[65];
  size_t len = 0;
  EVP_PKEY_get_octet_string_param(k.pkey.get(), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &len);
  std::string pt(reinterpret_cast<char*>(point), len);
  return json{{"kty", "EC"}, {"kid", k.kid}, {"crv", "P-256"},
              {"x", Base64UrlEncode(pt.substr(1, 32))}, {"y", Base64UrlEncode(pt.substr(33, 32))}};
}

std::string JwksText(const std::vector<Key>& keys) {
  json doc{{"keys", json::array()}};
  for (const auto& k : keys) doc["keys"].push_back(JwkOf(k));
  return doc.dump();
}

Jwks ParseJwks(const std::vector<Key>& keys) {
  auto j = Jwks::Parse(JwksText(keys));
  EXPECT_TRUE(j.ok()) << j.status();
  return *j;
}

std::string Sign(const Key& k, const std::string& input) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, k.pkey.get());
  size_t len = 0;
  EVP_DigestSign(md, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  sig.resize(len);
  EVP_MD_CTX_free(md);
  if (k.alg != "ES256") return sig;
  // DER to the JWS form r || s.
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(es);
  return raw;
}

json Claims(int64_t exp_offset = 300) {
  return json{{"iss", kIssuer},        {"aud", kAudience},       {"sub", "8f1c"},
              {"exp", kNow + exp_offset}, {"iat", kNow - 10},    {"nbf", kNow - 10},
              {"preferred_username", "dr.lee"}, {"realm_access", {{"roles", {"radiologist", "offline_access"}}}}};
}

std::string Mint(const Key& k, const json& claims, json header = nullptr) {
  if (header.is_null()) header = json{{"alg", k.alg}, {"typ", "JWT"}, {"kid", k.kid}};
  std::string input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
  return input + "." + Base64UrlEncode(Sign(k, input));
}

JwtPolicy Policy() { return JwtPolicy{kIssuer, kAudience, 60}; }

// ---- base64url ---------------------------------------------------------------

TEST(Base64UrlTest, RoundTripsAndRefusesOtherAlphabets) {
  for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar",
                                                       std::string("\xff\xfe\x00\x01", 4)}) {
    auto d = Base64UrlDecode(Base64UrlEncode(s));
    ASSERT_TRUE(d.has_value()) << s;
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("Zm9v=").has_value());  // padding
  EXPECT_FALSE(Base64UrlDecode("+/8").has_value());    // standard alphabet
  EXPECT_FALSE(Base64UrlDecode("Z").has_value());      // impossible length
  EXPECT_FALSE(Base64UrlDecode("Zh").has_value());     // non-zero leftover bits
}

// ---- verification ------------------------------------------------------------

TEST(JwtTest, AcceptsRs256AndEs256) {
  Key rsa = MakeRsa("rsa-1");
  Key ec = MakeEc("ec-1");
  Jwks keys = ParseJwks({rsa, ec});
  ASSERT_EQ(keys.size(), 2u);
  for (const Key* k : {&rsa, &ec}) {
    JwtVerdict v = VerifyJwt(Mint(*k, Claims()), keys, Policy(), kNow);
    EXPECT_TRUE(v.ok) << k->alg << ": " << v.reason;
    EXPECT_EQ(v.kid, k->kid);
    EXPECT_EQ(v.claims.value("preferred_username", ""), "dr.lee");
  }
}

TEST(JwtTest, TimesAreCheckedWithTheClockSkew) {
  Key k = MakeEc("ec-1");
  Jwks keys = ParseJwks({k});
  json expired = Claims(-61);
  EXPECT_EQ(VerifyJwt(Mint(k, expired), keys, Policy(), kNow).reason, "expired");
  json within_skew = Claims(-30);
  EXPECT_TRUE(VerifyJwt(Mint(k, within_skew), keys, Policy(), kNow).ok);
  json no_exp = Claims();
  no_exp.erase("exp");
  EXPECT_EQ(VerifyJwt(Mint(k, no_exp), keys, Policy(), kNow).reason, "expired");
  json early = Claims();
  early["nbf"] = kNow + 120;
  EXPECT_EQ(VerifyJwt(Mint(k, early), keys, Policy(), kNow).reason, "not_yet_valid");
  early["nbf"] = kNow + 30;
  EXPECT_TRUE(VerifyJwt(Mint(k, early), keys, Policy(), kNow).ok);
  json future = Claims();
  future["iat"] = kNow + 3600;
  EXPECT_EQ(VerifyJwt(Mint(k, future), keys, Policy(), kNow).reason, "issued_in_future");
  json text_exp = Claims();
  text_exp["exp"] = "tomorrow";
  EXPECT_EQ(VerifyJwt(Mint(k, text_exp), keys, Policy(), kNow).reason, "malformed");
  JwtPolicy strict = Policy();
  strict.clock_skew_s = 0;
  EXPECT_EQ(VerifyJwt(Mint(k, within_skew), keys, strict, kNow).reason, "expired");
}

TEST(JwtTest, IssuerAndAudienceMustMatch) {
  Key k = MakeRsa("rsa-1");
  Jwks keys = ParseJwks({k});
  json c = Claims();
  c["aud"] = "another-app";
  JwtVerdict v = VerifyJwt(Mint(k, c), keys, Policy(), kNow);
  EXPECT_EQ(v.reason, "wrong_audience");
  // Signed by the hospital's key: who it was is known even when refused.
  EXPECT_EQ(v.claims.value("sub", ""), "8f1c");
  c["aud"] = json::array({"account", kAudience});
  EXPECT_TRUE(VerifyJwt(Mint(k, c), keys, Policy(), kNow).ok);
  c["aud"] = json::array({"account"});
  EXPECT_EQ(VerifyJwt(Mint(k, c), keys, Policy(), kNow).reason, "wrong_audience");
  c.erase("aud");
  EXPECT_EQ(VerifyJwt(Mint(k, c), keys, Policy(), kNow).reason, "wrong_audience");
  c = Claims();
  c["iss"] = "https://idp.hospital.example/realms/other";
  EXPECT_EQ(VerifyJwt(Mint(k, c), keys, Policy(), kNow).reason, "wrong_issuer");
}

TEST(JwtTest, AnotherKeyOrAnAlteredTokenIsABadSignature) {
  Key real = MakeRsa("rsa-1");
  Key forger = MakeRsa("rsa-1");  // same kid, another key
  Jwks keys = ParseJwks({real});
  EXPECT_EQ(VerifyJwt(Mint(forger, Claims()), keys, Policy(), kNow).reason, "bad_signature");
  Key ec_real = MakeEc("ec-1");
  Key ec_forger = MakeEc("ec-1");
  Jwks ec_keys = ParseJwks({ec_real});
  EXPECT_EQ(VerifyJwt(Mint(ec_forger, Claims()), ec_keys, Policy(), kNow).reason, "bad_signature");

  std::string token = Mint(real, Claims());
  size_t d1 = token.find('.'), d2 = token.rfind('.');
  json more = Claims();
  more["realm_access"]["roles"] = {"admin"};
  std::string altered = token.substr(0, d1 + 1) + Base64UrlEncode(more.dump()) + token.substr(d2);
  EXPECT_EQ(VerifyJwt(altered, keys, Policy(), kNow).reason, "bad_signature");
  EXPECT_EQ(VerifyJwt(token.substr(0, d2 + 1), keys, Policy(), kNow).reason, "bad_signature");
  EXPECT_EQ(VerifyJwt(token.substr(0, d2), keys, Policy(), kNow).reason, "malformed");
}

TEST(JwtTest, NoneAndHmacAreRefusedWhateverTheSignature) {
  Key k = MakeRsa("rsa-1");
  Jwks keys = ParseJwks({k});
  std::string payload = Base64UrlEncode(Claims().dump());
  // alg none, with and without a signature part.
  std::string none = Base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
  EXPECT_EQ(VerifyJwt(none, keys, Policy(), kNow).reason, "algorithm");
  EXPECT_EQ(VerifyJwt(none + "AAAA", keys, Policy(), kNow).reason, "algorithm");
  // HS256 keyed with the public key: the classic confusion attack.
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, k.pkey.get());
  char* pem = nullptr;
  long pem_len = BIO_get_mem_data(bio, &pem);
  std::string secret(pem, static_cast<size_t>(pem_len));
  BIO_free(bio);
  std::string input = Base64UrlEncode(R"({"alg":"HS256","typ":"JWT","kid":"rsa-1"})") + "." + payload;
  unsigned char mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len);
  std::string hs = input + "." + Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), mac_len));
  EXPECT_EQ(VerifyJwt(hs, keys, Policy(), kNow).reason, "algorithm");
  for (const char* alg : {"RS384", "PS256", "ES384", "EdDSA", "rs256"}) {
    std::string t = Base64UrlEncode(json{{"alg", alg}, {"kid", "rsa-1"}}.dump()) + "." + payload + ".AAAA";
    EXPECT_EQ(VerifyJwt(t, keys, Policy(), kNow).reason, "algorithm") << alg;
  }
  // An RS256 key does not verify a token that claims ES256.
  json es_header{{"alg", "ES256"}, {"kid", "rsa-1"}};
  EXPECT_EQ(VerifyJwt(Mint(k, Claims(), es_header), keys, Policy(), kNow).reason, "unknown_key");
  // Critical extensions are not understood, so refused.
  json crit{{"alg", "RS256"}, {"kid", "rsa-1"}, {"crit", {"exp"}}, {"exp", 1}};
  EXPECT_EQ(VerifyJwt(Mint(k, Claims(), crit), keys, Policy(), kNow).reason, "malformed");
}

TEST(JwtTest, UnknownKidAndKidlessTokens) {
  Key a = MakeEc("a");
  Key b = MakeEc("b");
  EXPECT_EQ(VerifyJwt(Mint(b, Claims()), ParseJwks({a}), Policy(), kNow).reason, "unknown_key");
  json no_kid{{"alg", "ES256"}};
  // Without a kid, only a set with a single key for the algorithm will do.
  EXPECT_TRUE(VerifyJwt(Mint(a, Claims(), no_kid), ParseJwks({a}), Policy(), kNow).ok);
  EXPECT_EQ(VerifyJwt(Mint(a, Claims(), no_kid), ParseJwks({a, b}), Policy(), kNow).reason, "unknown_key");
}

TEST(JwksTest, SkipsKeysItMustNotUse) {
  Key small = MakeRsa("small", 1024);
  Key p384 = MakeEc("p384", "P-384");
  Key good = MakeEc("good");
  json doc = json::parse(JwksText({small, good}));
  json enc = JwkOf(MakeRsa("enc"));
  enc["use"] = "enc";
  doc["keys"].push_back(enc);
  json wrong_alg = JwkOf(MakeRsa("hs"));
  wrong_alg["alg"] = "HS256";
  doc["keys"].push_back(wrong_alg);
  json p384_jwk{{"kty", "EC"}, {"kid", "p384"}, {"crv", "P-384"}, {"x", "AAAA"}, {"y", "AAAA"}};
  doc["keys"].push_back(p384_jwk);
  json off_curve = JwkOf(good);
  off_curve["kid"] = "off";
  off_curve["y"] = Base64UrlEncode(std::string(32, '\x01'));
  doc["keys"].push_back(off_curve);
  doc["keys"].push_back(json{{"kty", "oct"}, {"kid", "sym"}, {"k", "c2VjcmV0"}});
  auto keys = Jwks::Parse(doc.dump());
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->Kids(), std::vector<std::string>{"good"});
  EXPECT_FALSE(Jwks::Parse("[]").ok());
  EXPECT_FALSE(Jwks::Parse("{\"keys\": 1}").ok());
  EXPECT_FALSE(Jwks::Parse("not json").ok());
}

TEST(JwtTest, ClaimPaths) {
  json c = Claims();
  ASSERT_NE(ClaimAt(c, "realm_access.roles"), nullptr);
  EXPECT_TRUE(ClaimAt(c, "realm_access.roles")->is_array());
  EXPECT_EQ(ClaimAt(c, "realm_access.missing"), nullptr);
  EXPECT_EQ(ClaimAt(c, "sub.deeper"), nullptr);
  EXPECT_EQ(*ClaimAt(c, "sub"), "8f1c");
  EXPECT_TRUE(LooksLikeJwt("a.b.c"));
  EXPECT_FALSE(LooksLikeJwt("a.b"));
  EXPECT_FALSE(LooksLikeJwt("a.b.c.d"));
  EXPECT_FALSE(LooksLikeJwt("srt_abc"));
  EXPECT_FALSE(LooksLikeJwt("a.b+.c"));
}

// ---- the verifier with its key cache -----------------------------------------

struct FakeIdp {
  std::string jwks;
  int fetches = 0;
  bool down = false;
};

OidcOptions Oidc() {
  OidcOptions o;
  o.issuer = kIssuer;
  o.audience = kAudience;
  o.jwks_file = "unused";
  o.jwks_refresh_s = 300;
  o.jwks_min_refresh_s = 30;
  o.roles_claim = "realm_access.roles";
  o.radiologist_values = {"radiologist"};
  o.admin_values = {"secondread-admin"};
  return o;
}

class OidcVerifierTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeIdp> idp_ = std::make_shared<FakeIdp>();
  std::shared_ptr<int64_t> now_ = std::make_shared<int64_t>(kNow);
  std::unique_ptr<OidcVerifier> Make(OidcOptions o = Oidc()) {
    auto idp = idp_;
    auto now = now_;
    return std::make_unique<OidcVerifier>(
        o,
        [idp]() -> absl::StatusOr<std::string> {
          ++idp->fetches;
          if (idp->down) return absl::UnavailableError("down");
          return idp->jwks;
        },
        [now] { return *now; });
  }
};

TEST_F(OidcVerifierTest, MapsUserAndRolesFromConfiguredClaims) {
  Key k = MakeRsa("k1");
  idp_->jwks = JwksText({k});
  auto v = Make();
  OidcUser u = v->Verify(Mint(k, Claims()));
  ASSERT_TRUE(u.ok) << u.reason;
  EXPECT_EQ(u.name, "dr.lee");
  EXPECT_EQ(u.roles, std::vector<std::string>{"radiologist"});
  json both = Claims();
  both["realm_access"]["roles"] = {"radiologist", "secondread-admin"};
  EXPECT_EQ(v->Verify(Mint(k, both)).roles, (std::vector<std::string>{"radiologist", "admin"}));
  json none = Claims();
  none["realm_access"]["roles"] = {"offline_access"};
  EXPECT_EQ(v->Verify(Mint(k, none)).reason, "no_role");
  json sub_only = Claims();
  sub_only.erase("preferred_username");
  EXPECT_EQ(v->Verify(Mint(k, sub_only)).name, "8f1c");
  json nobody = sub_only;
  nobody.erase("sub");
  EXPECT_EQ(v->Verify(Mint(k, nobody)).reason, "no_user");
  // A flat claim holding a single string works too.
  OidcOptions flat = Oidc();
  flat.roles_claim = "role";
  flat.username_claim = "email";
  json f = Claims();
  f["role"] = "secondread-admin";
  f["email"] = "lee@hospital.example";
  OidcUser fu = Make(flat)->Verify(Mint(k, f));
  ASSERT_TRUE(fu.ok) << fu.reason;
  EXPECT_EQ(fu.name, "lee@hospital.example");
  EXPECT_EQ(fu.roles, std::vector<std::string>{"admin"});
}

TEST_F(OidcVerifierTest, KeyRotationIsPickedUpAndRemovedKeysStopWorking) {
  Key old_key = MakeRsa("2026-11");
  Key new_key = MakeEc("2026-12");
  idp_->jwks = JwksText({old_key});
  auto v = Make();
  EXPECT_TRUE(v->Verify(Mint(old_key, Claims())).ok);
  EXPECT_EQ(idp_->fetches, 1);
  // The new key appears: its first token triggers a fetch, once the minimum
  // interval since the last one has passed.
  idp_->jwks = JwksText({old_key, new_key});
  EXPECT_EQ(v->Verify(Mint(new_key, Claims())).reason, "unknown_key");
  EXPECT_EQ(idp_->fetches, 1);
  *now_ += 31;
  OidcUser u = v->Verify(Mint(new_key, Claims()));
  EXPECT_TRUE(u.ok) << u.reason;
  EXPECT_EQ(u.kid, "2026-12");
  EXPECT_EQ(idp_->fetches, 2);
  EXPECT_TRUE(v->Verify(Mint(old_key, Claims())).ok);
  // The old key is removed; after the refresh interval its tokens are refused.
  idp_->jwks = JwksText({new_key});
  *now_ += 301;
  OidcUser refused = v->Verify(Mint(old_key, Claims()));
  EXPECT_EQ(refused.reason, "unknown_key");
  EXPECT_EQ(idp_->fetches, 3);
  EXPECT_TRUE(v->Verify(Mint(new_key, Claims())).ok);
}

TEST_F(OidcVerifierTest, UnknownKidsAreRateLimitedAndAnUnreachableIdpKeepsTheKeys) {
  Key k = MakeEc("k1");
  idp_->jwks = JwksText({k});
  auto v = Make();
  EXPECT_TRUE(v->Verify(Mint(k, Claims())).ok);
  for (int i = 0; i < 100; ++i) {
    Key stranger = MakeEc("made-up-" + std::to_string(i));
    EXPECT_EQ(v->Verify(Mint(stranger, Claims())).reason, "unknown_key");
    if (i % 10 == 0) *now_ += 1;
  }
  EXPECT_LE(idp_->fetches, 2) << "made-up kids must not make the node hammer the identity provider";
  idp_->down = true;
  *now_ += 1000;
  OidcUser kept = v->Verify(Mint(k, Claims(2000)));
  EXPECT_TRUE(kept.ok) << kept.reason;
  // Nothing fetched yet: no keys.
  auto fresh_idp = std::make_shared<FakeIdp>();
  fresh_idp->down = true;
  OidcVerifier cold(Oidc(), [fresh_idp]() -> absl::StatusOr<std::string> { return absl::UnavailableError("down"); },
                    [] { return kNow; });
  EXPECT_EQ(cold.Verify(Mint(k, Claims())).reason, "keys_unavailable");
}

}  // namespace
}  // namespace secondread::worklist
