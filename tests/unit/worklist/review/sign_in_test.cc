#include "worklist/review/sign_in.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>

#include "common/digest.h"

namespace secondread::worklist {
namespace {

using nlohmann::json;

struct RecordingAudit : SignInAudit {
  std::vector<SignInEvent> events;
  void Record(const SignInEvent& e) override { events.push_back(e); }
};

struct FakeTokens : TokenStore {
  std::map<std::string, IssuedToken> by_hash;
  bool down = false;
  absl::StatusOr<std::optional<IssuedToken>> FindByHash(const std::string& h) override {
    if (down) return absl::UnavailableError("down");
    auto it = by_hash.find(h);
    if (it == by_hash.end()) return std::optional<IssuedToken>();
    return std::optional<IssuedToken>(it->second);
  }
  absl::StatusOr<json> Issue(const std::string&, const std::string&, const std::string&, int64_t,
                             const Actor&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<json> List(const Actor&) override { return absl::UnimplementedError(""); }
  absl::StatusOr<json> Revoke(int64_t, const Actor&) override { return absl::UnimplementedError(""); }
};

HttpRequest Req(const std::string& token) {
  HttpRequest r;
  r.method = "GET";
  r.path = "/api/v1/worklist";
  r.remote_addr = "127.0.0.1";
  if (!token.empty()) r.headers["authorization"] = "Bearer " + token;
  return r;
}

TEST(ParseTimestampTest, DatesAndRfc3339) {
  EXPECT_EQ(ParseTimestamp("1970-01-02"), 86400);
  EXPECT_EQ(ParseTimestamp("2027-06-30T12:00:00Z"), 1814356800);
  EXPECT_EQ(ParseTimestamp("2027-06-30T14:00:00+02:00"), 1814356800);
  EXPECT_EQ(ParseTimestamp("2027-06-30T12:00:00.250Z"), 1814356800);
  for (const char* bad : {"", "2027-02-30", "2027-06-30T12:00:00", "2027-06-30T25:00:00Z", "30.06.2027",
                          "2027-06-30T12:00Z", "2027-06-30Z"}) {
    EXPECT_FALSE(ParseTimestamp(bad).has_value()) << bad;
  }
}

TEST(SignInTest, ConfiguredTokensExpire) {
  RecordingAudit audit;
  std::vector<ApiToken> tokens = {{"dr-lee", "radiologist", Sha256Hex("lee-token"), std::nullopt},
                                  {"old", "admin", Sha256Hex("old-token"), 1000},
                                  {"later", "admin", Sha256Hex("later-token"), 32503680000}};
  SignIn s(tokens, nullptr, nullptr, &audit);
  SignIn::Refusal why;
  auto lee = s.Authenticate(Req("lee-token"), "10.0.0.7", why);
  ASSERT_TRUE(lee.has_value());
  EXPECT_EQ(lee->name, "dr-lee");
  EXPECT_EQ(lee->method, "config_token");
  EXPECT_TRUE(s.Authenticate(Req("later-token"), "10.0.0.7", why).has_value());
  EXPECT_FALSE(s.Authenticate(Req("old-token"), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.reason, "expired");
  EXPECT_EQ(why.user, "old");
  EXPECT_EQ(why.status, 401);
  ASSERT_EQ(audit.events.size(), 3u);
  EXPECT_TRUE(audit.events[0].success);
  EXPECT_EQ(audit.events[0].user, "dr-lee");
  EXPECT_EQ(audit.events[0].role, "radiologist");
  EXPECT_EQ(audit.events[0].remote_addr, "10.0.0.7");
  EXPECT_FALSE(audit.events[2].success);
  EXPECT_EQ(audit.events[2].reason, "expired");
  EXPECT_EQ(audit.events[2].method, "config_token");
}

TEST(SignInTest, AConfiguredTokenShapedLikeAJwtStillSignsIn) {
  SignIn s({{"kiosk", "radiologist", Sha256Hex("abc.def.ghi"), std::nullopt}}, nullptr, nullptr, nullptr);
  SignIn::Refusal why;
  auto who = s.Authenticate(Req("abc.def.ghi"), "10.0.0.7", why);
  ASSERT_TRUE(who.has_value()) << why.reason;
  EXPECT_EQ(who->name, "kiosk");
}

TEST(SignInTest, ASuccessIsAuditedAtTheTokensFirstUseOnly) {
  RecordingAudit audit;
  SignIn s({{"dr-lee", "radiologist", Sha256Hex("lee-token"), std::nullopt}}, nullptr, nullptr, &audit);
  SignIn::Refusal why;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(s.Authenticate(Req("lee-token"), "10.0.0.7", why).has_value());
  EXPECT_EQ(audit.events.size(), 1u);
}

TEST(SignInTest, IssuedTokensAreLookedUpByHash) {
  RecordingAudit audit;
  FakeTokens store;
  store.by_hash[Sha256Hex("srt_good")] = IssuedToken{1, "reader-1", "radiologist", false, false};
  store.by_hash[Sha256Hex("srt_gone")] = IssuedToken{2, "reader-2", "radiologist", false, true};
  store.by_hash[Sha256Hex("srt_late")] = IssuedToken{3, "reader-3", "admin", true, false};
  SignIn s({}, nullptr, &store, &audit);
  SignIn::Refusal why;
  auto who = s.Authenticate(Req("srt_good"), "10.0.0.7", why);
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->name, "reader-1");
  EXPECT_EQ(who->method, "issued_token");
  EXPECT_FALSE(s.Authenticate(Req("srt_gone"), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.reason, "revoked");
  EXPECT_FALSE(s.Authenticate(Req("srt_late"), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.reason, "expired");
  EXPECT_FALSE(s.Authenticate(Req("srt_nobody"), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.reason, "unknown_token");
  EXPECT_FALSE(s.Authenticate(Req("no-prefix"), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.reason, "unknown_token");
  EXPECT_FALSE(s.Authenticate(Req(""), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.reason, "no_token");
  EXPECT_FALSE(s.Authenticate(Req("two words"), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.reason, "malformed");
  EXPECT_FALSE(s.Authenticate(Req("a.b.c"), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.reason, "oidc_not_configured");
  store.down = true;
  EXPECT_FALSE(s.Authenticate(Req("srt_good_but_db_down"), "10.0.0.7", why).has_value());
  EXPECT_EQ(why.status, 503);
  ASSERT_EQ(audit.events.size(), 9u);
  EXPECT_EQ(audit.events[1].detail.value("token_id", 0), 2);
  EXPECT_EQ(audit.events[1].user, "reader-2");
}

TEST(SignInTest, FailureAuditRowsAreRateLimitedAndCountWhatTheyHeldBack) {
  RecordingAudit audit;
  SignIn s({}, nullptr, nullptr, &audit);
  SignIn::Refusal why;
  for (int i = 0; i < 100; ++i) s.Authenticate(Req("guess-" + std::to_string(i)), "10.0.0.9", why);
  EXPECT_GE(audit.events.size(), 10u);
  EXPECT_LE(audit.events.size(), 40u) << "a burst of bad tokens must not flood the append-only audit log";
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  s.Authenticate(Req("guess-late"), "10.0.0.9", why);
  EXPECT_GT(audit.events.back().detail.value("suppressed", 0), 0) << audit.events.back().detail.dump();
}

TEST(SignInTest, NewIssuedTokensAreRandomAndPrefixed) {
  std::string a = NewIssuedToken(), b = NewIssuedToken();
  EXPECT_EQ(a.rfind(kIssuedTokenPrefix, 0), 0u);
  EXPECT_EQ(a.size(), 4u + 43u);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace secondread::worklist
