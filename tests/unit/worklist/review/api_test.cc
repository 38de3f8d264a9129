// The worklist API without PostgreSQL: authentication, roles, validation and
// the generic HTTP server. The store is given a pool pointing at a port that
// refuses connections, so a request that passes validation gets 503, and the
// tests here check everything that is decided before the store is reached.
#include "worklist/review/api.h"

#include <gtest/gtest.h>

#include <cctype>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/digest.h"
#include "common/log.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "worklist/db/pg_pool.h"

namespace secondread::web {
std::vector<std::pair<std::string_view, std::string_view>> EmbeddedWebFiles();
}  // namespace secondread::web

namespace secondread::worklist {
namespace {

using nlohmann::json;

constexpr char kRadToken[] = "rad-token-0123456789";
constexpr char kAdminToken[] = "admin-token-abcdef";
constexpr char kOddToken[] = "odd-role-token";

std::vector<ApiToken> Tokens() {
  return {{"dr-lee", "radiologist", Sha256Hex(kRadToken)},
          {"ops", "admin", Sha256Hex(kAdminToken)},
          {"odd", "viewer", Sha256Hex(kOddToken)}};
}

// ---- Authenticate -----------------------------------------------------------

TEST(AuthenticateTest, AcceptsAValidBearerToken) {
  auto t = Authenticate(Tokens(), std::string("Bearer ") + kRadToken);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->name, "dr-lee");
  EXPECT_EQ(t->role, "radiologist");
  auto a = Authenticate(Tokens(), std::string("Bearer ") + kAdminToken);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->name, "ops");
  EXPECT_EQ(a->role, "admin");
}

TEST(AuthenticateTest, SchemeIsCaseInsensitive) {
  EXPECT_TRUE(Authenticate(Tokens(), std::string("bearer ") + kRadToken).has_value());
  EXPECT_TRUE(Authenticate(Tokens(), std::string("BEARER ") + kRadToken).has_value());
  EXPECT_TRUE(Authenticate(Tokens(), std::string("BeArEr ") + kRadToken).has_value());
}

TEST(AuthenticateTest, RefusesMalformedHeaders) {
  const std::string tok = kRadToken;
  for (const std::string& h : std::vector<std::string>{
           "", "Bearer", "Bearer ", "Bearer  " + tok, " Bearer " + tok, "Bearer\t" + tok, "Basic " + tok, tok,
           "Bearer " + tok + " ", "Bearer " + tok + " x", "Bearer " + tok + "\n", "Bearerx " + tok,
           "Bearer " + tok + "\x7f", "Bearer " + tok + "\xc3\xa9", "Token " + tok}) {
    EXPECT_FALSE(Authenticate(Tokens(), h).has_value()) << "header: " << h;
  }
}

TEST(AuthenticateTest, RefusesUnknownTokens) {
  EXPECT_FALSE(Authenticate(Tokens(), "Bearer not-a-token").has_value());
  EXPECT_FALSE(Authenticate(Tokens(), std::string("Bearer ") + kRadToken + "x").has_value());
  // The hash itself is not a token.
  EXPECT_FALSE(Authenticate(Tokens(), "Bearer " + Sha256Hex(kRadToken)).has_value());
  EXPECT_FALSE(Authenticate({}, std::string("Bearer ") + kRadToken).has_value());
}

TEST(AuthenticateTest, TokenLengthLimitIs512) {
  const std::string max(512, 'a'), over(513, 'a');
  std::vector<ApiToken> tokens = {{"max", "radiologist", Sha256Hex(max)}, {"over", "radiologist", Sha256Hex(over)}};
  auto t = Authenticate(tokens, "Bearer " + max);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->name, "max");
  EXPECT_FALSE(Authenticate(tokens, "Bearer " + over).has_value());
}

TEST(AuthenticateTest, ComparesEveryEntryAndToleratesUpperCaseHex) {
  std::string upper = Sha256Hex(kRadToken);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::vector<ApiToken> tokens = {{"broken", "admin", ""},
                                  {"short", "admin", Sha256Hex(kRadToken).substr(0, 63)},
                                  {"other", "admin", Sha256Hex("other")},
                                  {"upper", "radiologist", upper},
                                  {"dup", "admin", Sha256Hex(kRadToken)}};
  auto t = Authenticate(tokens, std::string("Bearer ") + kRadToken);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->name, "upper");  // the first matching entry
  EXPECT_TRUE(Authenticate(tokens, "Bearer other").has_value());
  EXPECT_FALSE(Authenticate(tokens, "Bearer ").has_value());
}

// ---- HttpServer -------------------------------------------------------------

TEST(HttpServerTest, RoutesRequestsAndCatchesExceptions) {
  std::vector<HttpRoute> routes;
  routes.push_back({"GET", R"(/echo/(\d+)/(\w+))", [](const HttpRequest& r) {
                      return HttpResponse::Json(200, json{{"method", r.method},
                                                          {"path", r.path},
                                                          {"params", r.path_params},
                                                          {"q", r.Query("q")},
                                                          {"has_q", r.HasQuery("q")},
                                                          {"has_z", r.HasQuery("z")},
                                                          {"has_w", r.HasQuery("w")},
                                                          {"header", r.Header("x-custom")},
                                                          {"remote", r.remote_addr}});
                    }});
  routes.push_back({"POST", "/body", [](const HttpRequest& r) {
                      HttpResponse res;
                      res.status = 202;
                      res.content_type = "text/plain";
                      res.body = r.body;
                      res.headers["X-Extra"] = "1";
                      return res;
                    }});
  routes.push_back({"GET", "/throw", [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("P12345"); }});
  routes.push_back({"GET", "/api/v1/thing", [](const HttpRequest&) { return HttpResponse::Error(418, "teapot", "m"); }});
  HttpServerOptions opt;
  opt.port = 0;
  opt.max_body_bytes = 1024;
  opt.threads = 2;
  auto server = HttpServer::Start(opt, std::move(routes));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_NE((*server)->port(), 0);
  httplib::Client cli("127.0.0.1", (*server)->port());
  cli.set_url_encode(false);

  auto r = cli.Get("/echo/42/abc?q=x%20y+z%3D1=2&&q=second&z", {{"X-Custom", "hello"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_FALSE(r->has_header("Cache-Control"));
  json body = json::parse(r->body);
  EXPECT_EQ(body["method"], "GET");
  EXPECT_EQ(body["path"], "/echo/42/abc");
  EXPECT_EQ(body["params"], json::array({"42", "abc"}));
  EXPECT_EQ(body["q"], "x y z=1=2");
  EXPECT_EQ(body["has_q"], true);
  EXPECT_EQ(body["has_z"], true);
  EXPECT_EQ(body["has_w"], false);
  EXPECT_EQ(body["header"], "hello");
  EXPECT_EQ(body["remote"], "127.0.0.1");

  // The pattern must match the whole path.
  r = cli.Get("/echo/42/abc/more");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(json::parse(r->body)["error"], "not_found");
  EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");

  r = cli.Post("/body", "payload", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->body, "payload");
  EXPECT_EQ(r->get_header_value("X-Extra"), "1");

  r = cli.Post("/body", std::string(2048, 'x'), "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);

  r = cli.Get("/throw");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(json::parse(r->body)["error"], "internal");
  EXPECT_EQ(r->body.find("P12345"), std::string::npos);

  // A handler's own error body is kept; /api/ answers are not cached.
  r = cli.Get("/api/v1/thing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 418);
  EXPECT_EQ(json::parse(r->body)["error"], "teapot");
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");

  r = cli.Get("/api/v1/none");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");

  (*server)->Stop();
}

TEST(HttpServerTest, RefusesABadPatternAndStopsRightAfterStart) {
  HttpServerOptions opt;
  opt.port = 0;
  EXPECT_FALSE(HttpServer::Start(opt, {{"GET", "(", [](const HttpRequest&) { return HttpResponse(); }}}).ok());
  EXPECT_FALSE(HttpServer::Start(opt, {{"PUT", "/x", [](const HttpRequest&) { return HttpResponse(); }}}).ok());
  for (int i = 0; i < 5; ++i) {
    auto s = HttpServer::Start(opt, {});
    ASSERT_TRUE(s.ok());
    (*s)->Stop();
  }
}

// ---- the API ----------------------------------------------------------------

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DatabaseOptions db;
    db.url = "postgresql://postgres@127.0.0.1:1/none";  // refuses connections
    db.connect_timeout_s = 1;
    db.max_connections = 2;
    pool_ = std::make_unique<PgPool>(db, nullptr);
    store_ = std::make_unique<ReviewStore>(pool_.get());
    ApiOptions options;
    options.tokens = Tokens();
    options.http.port = 0;
    auto routes = WorklistRoutes(
        options, store_.get(), nullptr,
        [](const std::string&) -> absl::StatusOr<std::string> { return absl::InternalError("no renderer"); },
        [this]() { return ready_ ? absl::OkStatus() : absl::UnavailableError("disk below floor"); });
    auto server = HttpServer::Start(options.http, std::move(routes));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_url_encode(false);
    client_->set_read_timeout(10, 0);
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  static httplib::Headers Auth(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

  httplib::Result Get(const std::string& path, const std::string& token = kRadToken) {
    return client_->Get(path, token.empty() ? httplib::Headers{} : Auth(token));
  }
  httplib::Result Post(const std::string& path, const std::string& body, const std::string& token = kRadToken) {
    return client_->Post(path, token.empty() ? httplib::Headers{} : Auth(token), body, "application/json");
  }

  // Expects a 400 whose message names the field.
  void ExpectBadRequest(const httplib::Result& r, const std::string& field, const std::string& what) {
    ASSERT_TRUE(r) << what;
    EXPECT_EQ(r->status, 400) << what << ": " << r->body;
    json body = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << what;
    EXPECT_EQ(body.value("error", ""), "bad_request") << what;
    EXPECT_NE(body.value("message", "").find(field), std::string::npos) << what << ": " << r->body;
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store") << what;
  }

  bool ready_ = true;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<ReviewStore> store_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

const std::vector<std::pair<std::string, std::string>> kReadEndpoints = {
    {"GET", "/api/v1/worklist"},         {"GET", "/api/v1/studies/1"},
    {"GET", "/api/v1/studies/1/images/2.png"}, {"GET", "/api/v1/models/performance"},
    {"GET", "/api/v1/audit"},            {"POST", "/api/v1/studies/1/reviews"},
    {"POST", "/api/v1/studies/1/dismiss"}};

TEST_F(ApiTest, HealthNeedsNoToken) {
  auto r = Get("/healthz", "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["status"], "alive");
  EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");
  r = Get("/readyz", "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ready_ = false;
  r = Get("/readyz", "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(json::parse(r->body)["status"], "not_ready");
  // Only the state: no database host, port or error on this port.
  EXPECT_EQ(json::parse(r->body), json({{"status", "not_ready"}})) << r->body;
  EXPECT_EQ(r->body.find("disk"), std::string::npos) << r->body;
}

TEST_F(ApiTest, HeadChangesNothing) {
  // A GET of a study moves it to in_review and writes audit rows; a HEAD
  // must not get as far as the store.
  for (const std::string path : {"/api/v1/studies/1", "/api/v1/worklist", "/api/v1/studies/1/images/2.png",
                                  "/api/v1/audit"}) {
    auto r = client_->Head(path, Auth(path == "/api/v1/audit" ? kAdminToken : kRadToken));
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 405) << path;
    EXPECT_EQ(r->get_header_value("Allow"), "GET, POST") << path;
  }
  // The page and health still answer HEAD.
  auto r = client_->Head("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ApiTest, RefusalsAreLoggedWithThePeerAndRateLimited) {
  std::string path = ::testing::TempDir() + "api_denied_" + std::to_string(::getpid()) + ".log";
  std::remove(path.c_str());
  ASSERT_TRUE(log::Configure({"info", path}).ok());
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(Get("/api/v1/worklist", "wrong-token"));
  ASSERT_TRUE(Get("/api/v1/audit", kRadToken));
  ASSERT_TRUE(log::Configure({"info", ""}).ok());
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  int denied401 = 0, denied403 = 0;
  std::string line;
  while (std::getline(text, line)) {
    json j = json::parse(line.substr(line.find('{')), nullptr, false);
    if (!j.is_object() || j.value("event", "") != "api_denied") continue;
    EXPECT_EQ(j.value("level", ""), "warn") << line;
    EXPECT_EQ(j.value("peer", ""), "127.0.0.1") << line;
    if (j.value("status", 0) == 401) ++denied401;
    if (j.value("status", 0) == 403) {
      ++denied403;
      EXPECT_EQ(j.value("token", ""), "dr-lee") << line;
    }
  }
  EXPECT_GE(denied401, 1);
  // Ten lines a second: sixty refusals would need over four seconds to
  // reach forty lines.
  EXPECT_LE(denied401, 40) << "60 refusals in a burst are not all logged";
  EXPECT_EQ(denied403, 1);
  std::remove(path.c_str());
}

TEST(ClientAddressTest, XForwardedForOnlyFromTrustedProxies) {
  std::vector<AddressRange> trusted;
  for (const char* p : {"10.0.0.0/24", "::1", "192.168.7.7"}) {
    auto r = ParseAddressRange(p);
    ASSERT_TRUE(r.ok()) << p;
    trusted.push_back(*r);
  }
  for (const char* bad : {"10.0.0.0/33", "host.example", "10.0.0.1/", "", "::1/129"}) {
    EXPECT_FALSE(ParseAddressRange(bad).ok()) << bad;
  }
  auto req = [](const std::string& peer, const std::string& xff) {
    HttpRequest r;
    r.remote_addr = peer;
    if (!xff.empty()) r.headers["x-forwarded-for"] = xff;
    return r;
  };
  // No trusted proxies: always the peer.
  EXPECT_EQ(ClientAddress(req("10.0.0.5", "1.2.3.4"), {}), "10.0.0.5");
  // An untrusted peer's header is ignored.
  EXPECT_EQ(ClientAddress(req("172.16.0.1", "1.2.3.4"), trusted), "172.16.0.1");
  // A trusted proxy: the nearest address it was given.
  EXPECT_EQ(ClientAddress(req("10.0.0.5", "1.2.3.4"), trusted), "1.2.3.4");
  EXPECT_EQ(ClientAddress(req("::1", " 1.2.3.4 "), trusted), "1.2.3.4");
  // A client's own forged entries sit left of what the proxy appended.
  EXPECT_EQ(ClientAddress(req("10.0.0.5", "6.6.6.6, 1.2.3.4"), trusted), "1.2.3.4");
  // Chains of trusted proxies are walked.
  EXPECT_EQ(ClientAddress(req("10.0.0.5", "6.6.6.6, 1.2.3.4, 192.168.7.7, 10.0.0.9"), trusted), "1.2.3.4");
  // Garbage stops the walk at the last address a trusted proxy vouched for.
  EXPECT_EQ(ClientAddress(req("10.0.0.5", "1.2.3.4, junk"), trusted), "10.0.0.5");
  EXPECT_EQ(ClientAddress(req("10.0.0.5", ""), trusted), "10.0.0.5");
  EXPECT_EQ(ClientAddress(req("10.0.0.5", "::ffff:1.2.3.4"), trusted), "::ffff:1.2.3.4");
}

TEST_F(ApiTest, UnauthenticatedWithoutOrWithABadToken) {
  const std::string body = R"({"verdict":"agree","expected_version":1})";
  for (const auto& [method, path] : kReadEndpoints) {
    for (const std::string& header : std::vector<std::string>{std::string(), std::string("Bearer wrong"), std::string("Basic abc"),
                                      std::string("Bearer  ") + kRadToken, std::string(kRadToken)}) {
      httplib::Headers h;
      if (!header.empty()) h.emplace("Authorization", header);
      auto r = method == "GET" ? client_->Get(path, h) : client_->Post(path, h, body, "application/json");
      ASSERT_TRUE(r) << path;
      EXPECT_EQ(r->status, 401) << method << " " << path << " [" << header << "]";
      EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
      EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
      EXPECT_EQ(json::parse(r->body)["error"], "unauthenticated");
    }
  }
}

TEST_F(ApiTest, ForbiddenForTheWrongRole) {
  const std::string review = R"({"verdict":"agree","expected_version":1})";
  auto r = Post("/api/v1/studies/1/reviews", review, kAdminToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(json::parse(r->body)["error"], "forbidden");
  r = Post("/api/v1/studies/1/dismiss", R"({"expected_version":1})", kAdminToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  r = Get("/api/v1/audit", kRadToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
  // A role the API does not know may do nothing.
  for (const auto& [method, path] : kReadEndpoints) {
    auto o = method == "GET" ? Get(path, kOddToken) : Post(path, review, kOddToken);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->status, 403) << path;
  }
  // Role checks come before validation: no hint about the parameters.
  r = Get("/api/v1/audit?limit=0", kRadToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
}

TEST_F(ApiTest, WorklistParametersAreValidated) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"status=foo", "status"},
      {"status=NEW", "status"},
      {"status=new,,agreed", "status"},
      {"status=new,", "status"},
      {"status=new%27%20OR%201=1--", "status"},
      {"flagged=yes", "flagged"},
      {"flagged=1", "flagged"},
      {"from=2026-02-30", "from"},
      {"from=2025-02-29", "from"},
      {"from=2026-13-01", "from"},
      {"from=2026-1-01", "from"},
      {"from=20261130", "from"},
      {"from=2026-11-30T00:00", "from"},
      {"from=0000-01-01", "from"},
      {"to=2026-00-10", "to"},
      {"to=2026-11-31", "to"},
      {"to=yesterday", "to"},
      {"limit=0", "limit"},
      {"limit=201", "limit"},
      {"limit=-1", "limit"},
      {"limit=abc", "limit"},
      {"limit=+5", "limit"},
      {"limit=5.0", "limit"},
      {"limit=99999999999999999999999", "limit"},
      {"offset=-1", "offset"},
      {"offset=1000001", "offset"},
      {"offset=1e3", "offset"},
      {"modality=" + std::string(65, 'C'), "modality"},
      {"modality=C%01R", "modality"},
      {"modality=C%0AR", "modality"},
      {"model=" + std::string(65, 'm'), "model"},
      {"model=m%C3%A9", "model"},
  };
  for (const auto& [query, field] : cases) {
    ExpectBadRequest(Get("/api/v1/worklist?" + query), field, query);
    ExpectBadRequest(Get("/api/v1/worklist?" + query, kAdminToken), field, query);
  }
}

TEST_F(ApiTest, ValidWorklistParametersReachTheStore) {
  // The store's database is unreachable: 503 proves validation passed.
  for (const std::string& query : std::vector<std::string>{"", "status=new,in_review,agreed,disagreed,dismissed", "flagged=true", "flagged=false", "from=2024-02-29",
        "to=2026-12-31", "limit=1", "limit=200", "offset=0", "offset=1000000", "modality=CR",
        "model=" + std::string(64, 'm'), "modality=CR%27%3B%20DROP%20TABLE%20studies%3B--"}) {
    auto r = Get("/api/v1/worklist?" + query);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << query << ": " << r->body;
    EXPECT_EQ(json::parse(r->body)["error"], "unavailable");
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
  }
}

TEST_F(ApiTest, IdsArePositive64BitIntegers) {
  ExpectBadRequest(Get("/api/v1/studies/0"), "study_id", "zero");
  ExpectBadRequest(Get("/api/v1/studies/9223372036854775808"), "study_id", "overflow");
  ExpectBadRequest(Get("/api/v1/studies/99999999999999999999999999"), "study_id", "overflow");
  ExpectBadRequest(Get("/api/v1/studies/0/images/1.png"), "study_id", "image study zero");
  ExpectBadRequest(Get("/api/v1/studies/1/images/0.png"), "result_id", "image result zero");
  ExpectBadRequest(Get("/api/v1/studies/1/images/18446744073709551616.png"), "result_id", "image overflow");
  ExpectBadRequest(Post("/api/v1/studies/0/reviews", R"({"verdict":"agree","expected_version":1})"), "study_id",
                   "review zero");
  ExpectBadRequest(Post("/api/v1/studies/0/dismiss", R"({"expected_version":1})"), "study_id", "dismiss zero");
  for (const std::string& path : std::vector<std::string>{"/api/v1/studies/-1", "/api/v1/studies/abc", "/api/v1/studies/1/images/2.jpg",
                                  "/api/v1/studies/1/images/x.png", "/api/v1/studies/1.5"}) {
    auto r = Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path;
  }
  auto r = Get("/api/v1/studies/9223372036854775807");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);  // valid: reaches the store
}

TEST_F(ApiTest, ReviewBodiesAreValidated) {
  const std::string path = "/api/v1/studies/12/reviews";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "body"},
      {"not json", "body"},
      {"[1,2]", "body"},
      {"\"agree\"", "body"},
      {"{", "body"},
      {R"({"expected_version":1})", "verdict"},
      {R"({"verdict":"yes","expected_version":1})", "verdict"},
      {R"({"verdict":"AGREE","expected_version":1})", "verdict"},
      {R"({"verdict":1,"expected_version":1})", "verdict"},
      {R"({"verdict":null,"expected_version":1})", "verdict"},
      {R"({"verdict":"agree","finding_id":0,"expected_version":1})", "finding_id"},
      {R"({"verdict":"agree","finding_id":-7,"expected_version":1})", "finding_id"},
      {R"({"verdict":"agree","finding_id":"7","expected_version":1})", "finding_id"},
      {R"({"verdict":"agree","finding_id":7.5,"expected_version":1})", "finding_id"},
      {R"({"verdict":"agree","finding_id":true,"expected_version":1})", "finding_id"},
      {R"({"verdict":"agree","finding_id":9223372036854775808,"expected_version":1})", "finding_id"},
      {R"({"verdict":"agree","comment":5,"expected_version":1})", "comment"},
      {R"({"verdict":"agree","comment":["x"],"expected_version":1})", "comment"},
      {R"({"verdict":"agree","comment":")" + std::string(2001, 'c') + R"(","expected_version":1})", "comment"},
      {R"({"verdict":"agree"})", "expected_version"},
      {R"({"verdict":"agree","expected_version":0})", "expected_version"},
      {R"({"verdict":"agree","expected_version":-1})", "expected_version"},
      {R"({"verdict":"agree","expected_version":"2"})", "expected_version"},
      {R"({"verdict":"agree","expected_version":2.5})", "expected_version"},
      {R"({"verdict":"agree","expected_version":null})", "expected_version"},
      {R"({"verdict":"agree","expected_version":1,"reviewer":"dr-kim"})", "reviewer"},
      {R"({"verdict":"agree","expected_version":1,"status":"agreed"})", "status"},
  };
  for (const auto& [body, field] : cases) ExpectBadRequest(Post(path, body), field, body);

  // Valid bodies reach the store (503: its database is unreachable).
  const std::string comment2000 = [] {
    std::string s;
    for (int i = 0; i < 2000; ++i) s += "\xc3\xa9";  // 2,000 characters, 4,000 bytes
    return s;
  }();
  for (const std::string& body : std::vector<std::string>{std::string(R"({"verdict":"agree","expected_version":1})"),
        std::string(R"({"verdict":"disagree","finding_id":7,"comment":"no","expected_version":3})"),
        std::string(R"({"verdict":"uncertain","finding_id":null,"comment":null,"expected_version":9223372036854775807})"),
        R"({"verdict":"agree","comment":")" + comment2000 + R"(","expected_version":2})"}) {
    auto r = Post(path, body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << body.substr(0, 80) << ": " << r->body;
  }
}

TEST_F(ApiTest, DismissBodiesAreValidated) {
  const std::string path = "/api/v1/studies/12/dismiss";
  ExpectBadRequest(Post(path, "{}"), "expected_version", "empty");
  ExpectBadRequest(Post(path, R"({"expected_version":0})"), "expected_version", "zero");
  ExpectBadRequest(Post(path, R"({"expected_version":1,"comment":false})"), "comment", "comment type");
  ExpectBadRequest(Post(path, R"({"expected_version":1,"verdict":"agree"})"), "verdict", "unknown field");
  ExpectBadRequest(Post(path, "[]"), "body", "array");
  auto r = Post(path, R"({"expected_version":2,"comment":"duplicate study"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
}

TEST_F(ApiTest, PerformanceAndAuditParametersAreValidated) {
  for (const std::string& q : std::vector<std::string>{"window=year", "window=WEEK", "window=day%00"}) {
    ExpectBadRequest(Get("/api/v1/models/performance?" + q), "window", q);
  }
  for (const std::string& q : std::vector<std::string>{"windows=0", "windows=53", "windows=x", "windows=-1"}) {
    ExpectBadRequest(Get("/api/v1/models/performance?" + q, kAdminToken), "windows", q);
  }
  auto r = Get("/api/v1/models/performance?window=month&windows=52");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);

  for (const std::string& q : std::vector<std::string>{"limit=0", "limit=501", "limit=x"}) {
    ExpectBadRequest(Get("/api/v1/audit?" + q, kAdminToken), "limit", q);
  }
  ExpectBadRequest(Get("/api/v1/audit?offset=-5", kAdminToken), "offset", "offset");
  ExpectBadRequest(Get("/api/v1/audit?study_id=0", kAdminToken), "study_id", "study_id");
  ExpectBadRequest(Get("/api/v1/audit?study_id=1%20OR%201=1", kAdminToken), "study_id", "study_id sql");
  r = Get("/api/v1/audit?limit=500&offset=10&study_id=3", kAdminToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
}

TEST_F(ApiTest, UnknownPathsAndMethodsAre404) {
  for (const std::string& path : std::vector<std::string>{"/api/v1/nothing", "/api/v2/worklist", "/nothing", "/api/v1/worklist/",
                                  "/app.js.map", "/../etc/passwd"}) {
    auto r = Get(path);
    ASSERT_TRUE(r);
    if (path == "/../etc/passwd") {
      EXPECT_NE(r->status, 200);
      continue;
    }
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_EQ(json::parse(r->body)["error"], "not_found") << path;
  }
  auto r = Post("/api/v1/worklist", "{}");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = Get("/api/v1/studies/1/reviews");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = Get("/api/v1/nothing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
}

TEST_F(ApiTest, OneBodyLimitWhateverTheType) {
  // Under 64 KiB a body reaches validation (and here the unreachable store),
  // JSON or not; form bodies, which httplib would cap at 8 KiB, are refused
  // whatever their size.
  std::string padded = R"({"verdict":"agree","expected_version":1})" + std::string(60 * 1024, ' ');
  for (const char* type : {"application/json", "text/plain"}) {
    auto r = client_->Post("/api/v1/studies/1/reviews", Auth(kRadToken), padded, type);
    ASSERT_TRUE(r) << type;
    EXPECT_EQ(r->status, 503) << type << ": " << r->body;
  }
  for (size_t size : {size_t{100}, size_t{20 * 1024}}) {
    auto r = client_->Post("/api/v1/studies/1/reviews", Auth(kRadToken), std::string(size, 'a'),
                           "application/x-www-form-urlencoded");
    ASSERT_TRUE(r) << size;
    EXPECT_EQ(r->status, 415) << size;
  }
}

TEST_F(ApiTest, CommentsWithNulAreRefused) {
  auto r = Post("/api/v1/studies/1/reviews", R"({"verdict":"agree","expected_version":1,"comment":"left\u0000right"})");
  ExpectBadRequest(r, "comment", "NUL in a review comment");
  r = Post("/api/v1/studies/1/dismiss", R"({"expected_version":1,"comment":"\u0000"})");
  ExpectBadRequest(r, "comment", "NUL in a dismissal comment");
}

TEST_F(ApiTest, BodiesOver64KiBAre413) {
  std::string big = R"({"verdict":"agree","expected_version":1,"comment":")" + std::string(70 * 1024, 'x') + "\"}";
  auto r = Post("/api/v1/studies/1/reviews", big);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  // Even without a token the body is refused before anything else.
  r = Post("/api/v1/studies/1/dismiss", big, "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(ApiTest, ThePageIsServedWithAContentSecurityPolicy) {
  const std::string csp =
      "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
      "base-uri 'none'; form-action 'self'";
  auto files = web::EmbeddedWebFiles();
  bool has_index = false;
  for (const auto& [name, content] : files) {
    auto r = Get("/" + std::string(name), "");
    ASSERT_TRUE(r) << name;
    EXPECT_EQ(r->status, 200) << name;
    EXPECT_EQ(r->body, content) << name;
    EXPECT_EQ(r->get_header_value("Content-Security-Policy"), csp) << name;
    EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff") << name;
    EXPECT_FALSE(r->has_header("Strict-Transport-Security")) << "HSTS over plain HTTP: " << name;
    std::string type = r->get_header_value("Content-Type");
    std::string_view n = name;
    if (n.ends_with(".html")) {
      EXPECT_EQ(type.rfind("text/html", 0), 0u) << type;
    }
    if (n.ends_with(".js")) {
      EXPECT_EQ(type.rfind("text/javascript", 0), 0u) << type;
    }
    if (n.ends_with(".css")) {
      EXPECT_EQ(type.rfind("text/css", 0), 0u) << type;
    }
    if (name == "index.html") {
      has_index = true;
      auto root = Get("/", "");
      ASSERT_TRUE(root);
      EXPECT_EQ(root->status, 200);
      EXPECT_EQ(root->body, content);
      EXPECT_EQ(root->get_header_value("Content-Security-Policy"), csp);
      EXPECT_EQ(root->get_header_value("Content-Type").rfind("text/html", 0), 0u);
    }
  }
  EXPECT_TRUE(has_index) << "worklist/review/web/index.html is not embedded";
}

}  // namespace
}  // namespace secondread::worklist
