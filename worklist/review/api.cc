#include "worklist/review/api.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <variant>

#include "common/digest.h"
#include "common/log.h"

namespace secondread::web {
// Generated at build time from worklist/review/web/* (cmake/EmbedFiles.cmake).
std::vector<std::pair<std::string_view, std::string_view>> EmbeddedWebFiles();
}  // namespace secondread::web

namespace secondread::worklist {

namespace {

using nlohmann::json;

constexpr size_t kMaxFilterLength = 64;
constexpr size_t kMaxCommentChars = 2000;
constexpr int64_t kMaxOffset = 1000000;

constexpr char kPageCsp[] =
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'";

enum class Permission { kRead, kReview, kAudit, kManageTokens };

bool Allowed(const std::string& role, Permission p) {
  if (role == "radiologist") return p == Permission::kRead || p == Permission::kReview;
  if (role == "admin") return p == Permission::kRead || p == Permission::kAudit || p == Permission::kManageTokens;
  return false;
}

HttpResponse BadRequest(const std::string& field) { return HttpResponse::Error(400, "bad_request", field); }

HttpResponse Unauthenticated() {
  HttpResponse res = HttpResponse::Error(401, "unauthenticated");
  res.headers["WWW-Authenticate"] = "Bearer";
  return res;
}

// ---- parsing ----------------------------------------------------------------

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// A decimal integer of digits only (no sign, no spaces) that fits int64.
std::optional<int64_t> ParseInt64(std::string_view s) {
  if (!AllDigits(s)) return std::nullopt;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<int64_t> ParseId(std::string_view s) {
  auto v = ParseInt64(s);
  if (!v || *v <= 0) return std::nullopt;
  return v;
}

// A query parameter that is absent or empty counts as not given.
std::optional<std::string> Param(const HttpRequest& req, const std::string& name) {
  if (!req.HasQuery(name)) return std::nullopt;
  std::string v = req.Query(name);
  if (v.empty()) return std::nullopt;
  return v;
}

// An integer query parameter in [lo, hi]; default when absent.
bool IntParam(const HttpRequest& req, const std::string& name, int64_t lo, int64_t hi, int64_t def, int64_t& out) {
  auto raw = Param(req, name);
  if (!raw) {
    out = def;
    return true;
  }
  auto v = ParseInt64(*raw);
  if (!v || *v < lo || *v > hi) return false;
  out = *v;
  return true;
}

// YYYY-MM-DD, and a day that exists.
bool ValidDate(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  if (!AllDigits(s.substr(0, 4)) || !AllDigits(s.substr(5, 2)) || !AllDigits(s.substr(8, 2))) return false;
  int y = 0;
  unsigned m = 0, d = 0;
  std::from_chars(s.data(), s.data() + 4, y);
  std::from_chars(s.data() + 5, s.data() + 7, m);
  std::from_chars(s.data() + 8, s.data() + 10, d);
  if (y < 1) return false;
  return std::chrono::year_month_day{std::chrono::year{y}, std::chrono::month{m}, std::chrono::day{d}}.ok();
}

bool PrintableAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// Characters (code points) of a UTF-8 string; nlohmann::json has validated it.
size_t Utf8Length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

bool AsPositiveInt64(const json& v, int64_t& out) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u == 0 || u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i <= 0) return false;
    out = i;
    return true;
  }
  return false;
}

// Parses a JSON object body whose fields are all in `allowed`.
std::variant<json, HttpResponse> ParseBody(const HttpRequest& req, const std::set<std::string>& allowed) {
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return BadRequest("body: not valid JSON");
  if (!body.is_object()) return BadRequest("body: not a JSON object");
  for (const auto& [key, value] : body.items()) {
    if (allowed.count(key) == 0) {
      if (key.size() <= kMaxFilterLength && PrintableAscii(key)) return BadRequest("body: unknown field " + key);
      return BadRequest("body: unknown field");
    }
  }
  return body;
}

// expected_version: required, integer >= 1.
bool ExpectedVersion(const json& body, int64_t& out) {
  auto it = body.find("expected_version");
  return it != body.end() && AsPositiveInt64(*it, out);
}

// comment: optional (null = absent), a string of at most 2,000 characters.
// JSON may carry U+0000, which PostgreSQL text cannot hold (libpq would cut
// the comment there), so it is refused.
bool Comment(const json& body, std::string& out) {
  auto it = body.find("comment");
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_string()) return false;
  out = it->get<std::string>();
  return Utf8Length(out) <= kMaxCommentChars && out.find('\0') == std::string::npos;
}

// ---- store results ----------------------------------------------------------

HttpResponse FromStatus(const absl::Status& st, const std::string& operation) {
  switch (st.code()) {
    case absl::StatusCode::kNotFound:
      return HttpResponse::Error(404, "not_found");
    case absl::StatusCode::kAborted: {
      json body = json::parse(std::string(st.message()), nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded() || !body.is_object()) body = json{{"error", "conflict"}};
      if (!body.contains("error")) body["error"] = "conflict";
      return HttpResponse::Json(409, body);
    }
    case absl::StatusCode::kUnavailable:
      log::Warn("api_store_unavailable", {{"operation", operation}});
      return HttpResponse::Error(503, "unavailable", "the database is unavailable; retry shortly");
    default:
      // No status message: it may quote stored values.
      log::Error("api_store_error", {{"operation", operation}, {"code", absl::StatusCodeToString(st.code())}});
      return HttpResponse::Error(500, "internal");
  }
}

template <typename T>
HttpResponse Answer(const absl::StatusOr<T>& r, int ok_status, const std::string& operation) {
  if (!r.ok()) return FromStatus(r.status(), operation);
  return HttpResponse::Json(ok_status, *r);
}

// ---- page -------------------------------------------------------------------

std::string ContentTypeFor(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html") || ends(".htm")) return "text/html; charset=utf-8";
  if (ends(".js") || ends(".mjs")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".json")) return "application/json";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  if (ends(".ico")) return "image/x-icon";
  if (ends(".txt")) return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

std::string RegexEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

HttpResponse PageFile(std::string_view name, std::string_view content) {
  HttpResponse res;
  res.status = 200;
  res.content_type = ContentTypeFor(name);
  res.body = std::string(content);
  res.headers["Content-Security-Policy"] = kPageCsp;
  res.headers["X-Frame-Options"] = "DENY";
  res.headers["Referrer-Policy"] = "no-referrer";
  res.headers["Cache-Control"] = "no-cache";
  return res;
}

// ---- routing helpers --------------------------------------------------------

struct Context {
  ApiOptions options;
  ReviewStore* store = nullptr;
  const ResultFiles* results = nullptr;
  PngRenderer render_png;
  std::function<absl::Status()> readiness;
  std::shared_ptr<SignIn> sign_in;
  TokenStore* token_store = nullptr;
  // Anyone can provoke 401s at will; at most ten lines a second each.
  LogRateLimiter denied_log{10};
  audit::AuditSink* audit = nullptr;
  // Every request carries the token, so a successful check is audited as a
  // login once per token and client address in kLoginAuditInterval.
  std::mutex logins_mu;
  std::map<std::pair<std::string, std::string>, std::chrono::steady_clock::time_point> logins;
};

constexpr std::chrono::minutes kLoginAuditInterval{10};

void AuditLogin(Context& ctx, const std::string& user, const std::string& client) {
  if (!ctx.audit) return;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(ctx.logins_mu);
    auto [it, fresh] = ctx.logins.try_emplace({user, client}, now);
    if (!fresh && now - it->second < kLoginAuditInterval) return;
    it->second = now;
    if (ctx.logins.size() > 10000) ctx.logins.clear();  // bounded; at worst a login is audited again
  }
  ctx.audit->Record(audit::UserAuthentication(ctx.audit->node(), {user, client}, true, ""));
}

// The request as the audit trail's query text: path and parameters.
std::string QueryText(const HttpRequest& req) {
  std::string q = req.path;
  char sep = '?';
  for (const auto& [k, v] : req.query) {
    q += sep + k + "=" + v;
    sep = '&';
  }
  return q;
}

audit::Outcome OutcomeOf(const HttpResponse& res) {
  return res.status < 400 ? audit::Outcome::kSuccess : audit::Outcome::kMinorFailure;
}

using Guarded = std::function<HttpResponse(const HttpRequest&, const Actor&)>;

void LogDenied(Context& ctx, int status, const HttpRequest& req, const std::string& client, const std::string& token,
               const SignIn::Refusal* refusal = nullptr) {
  int64_t suppressed = 0;
  if (!ctx.denied_log.Allow(std::to_string(status), suppressed)) return;
  json fields = {{"status", status}, {"peer", client}, {"method", req.method}, {"path", req.path.substr(0, 128)}};
  if (client != req.remote_addr) fields["proxy"] = req.remote_addr;
  if (!token.empty()) fields["token"] = token;
  if (refusal != nullptr) {
    fields["reason"] = refusal->reason;
    fields["sign_in"] = refusal->method;
  }
  if (suppressed > 0) fields["suppressed"] = suppressed;
  log::Warn("api_denied", fields);
}

// Authenticates and checks the role before the handler sees the request.
HttpHandler Protect(std::shared_ptr<Context> ctx, Permission permission, Guarded fn) {
  return [ctx, permission, fn = std::move(fn)](const HttpRequest& req) -> HttpResponse {
    // httplib answers HEAD with the GET handler; a read here moves a study
    // to in_review and writes audit rows, which a HEAD must not do.
    if (req.method != "GET" && req.method != "POST") {
      HttpResponse res = HttpResponse::Error(405, "method_not_allowed");
      res.headers["Allow"] = "GET, POST";
      return res;
    }
    std::string client = ClientAddress(req, ctx->options.trusted_proxies);
    SignIn::Refusal refusal;
    auto who = ctx->sign_in->Authenticate(req, client, refusal);
    if (!who) {
      LogDenied(*ctx, refusal.status, req, client, refusal.user, &refusal);
      if (ctx->audit) {
        const std::string why = refusal.method + ": " + refusal.reason;
        ctx->audit->Record(audit::UserAuthentication(ctx->audit->node(), {refusal.user, client}, false, why));
        ctx->audit->Record(audit::SecurityAlert(ctx->audit->node(), audit::kUseOfRestrictedFunction,
                                                {refusal.user, client},
                                                std::to_string(refusal.status) + " " + req.method + " " +
                                                    req.path.substr(0, 128) + ": " + why));
      }
      if (refusal.status == 503) {
        return HttpResponse::Error(503, "unavailable", "the database is unavailable; retry shortly");
      }
      return Unauthenticated();
    }
    AuditLogin(*ctx, who->name, client);
    // A user with several roles acts in the first one this request needs.
    const std::string* role = nullptr;
    for (const auto& r : who->roles) {
      if (role == nullptr && Allowed(r, permission)) role = &r;
    }
    if (role == nullptr) {
      LogDenied(*ctx, 403, req, client, who->name);
      if (ctx->audit) {
        std::string roles;
        for (const auto& r : who->roles) roles += (roles.empty() ? "" : ",") + r;
        ctx->audit->Record(audit::SecurityAlert(ctx->audit->node(), audit::kUseOfRestrictedFunction,
                                                {who->name, client},
                                                "403 " + req.method + " " + req.path.substr(0, 128) + ": role " +
                                                    roles));
      }
      return HttpResponse::Error(403, "forbidden");
    }
    Actor actor{who->name, *role, client};
    return fn(req, actor);
  };
}

// ---- handlers ---------------------------------------------------------------

HttpResponse ListWorklist(Context& ctx, const HttpRequest& req, const Actor& actor) {
  static const std::set<std::string> kStatuses = {"new", "in_review", "agreed", "disagreed", "dismissed"};
  WorklistFilter filter;
  if (auto status = Param(req, "status")) {
    std::string_view rest = *status;
    while (true) {
      size_t comma = rest.find(',');
      std::string item(rest.substr(0, comma));
      if (kStatuses.count(item) == 0) return BadRequest("status");
      filter.statuses.push_back(item);
      if (comma == std::string_view::npos) break;
      rest = rest.substr(comma + 1);
    }
  }
  if (auto modality = Param(req, "modality")) {
    if (modality->size() > kMaxFilterLength || !PrintableAscii(*modality)) return BadRequest("modality");
    filter.modality = *modality;
  }
  if (auto model = Param(req, "model")) {
    if (model->size() > kMaxFilterLength || !PrintableAscii(*model)) return BadRequest("model");
    filter.model = *model;
  }
  if (auto flagged = Param(req, "flagged")) {
    if (*flagged == "true") {
      filter.flagged = true;
    } else if (*flagged == "false") {
      filter.flagged = false;
    } else {
      return BadRequest("flagged");
    }
  }
  if (auto from = Param(req, "from")) {
    if (!ValidDate(*from)) return BadRequest("from");
    filter.from = *from;
  }
  if (auto to = Param(req, "to")) {
    if (!ValidDate(*to)) return BadRequest("to");
    filter.to = *to;
  }
  int64_t limit = 0, offset = 0;
  if (!IntParam(req, "limit", 1, 200, 50, limit)) return BadRequest("limit");
  if (!IntParam(req, "offset", 0, kMaxOffset, 0, offset)) return BadRequest("offset");
  filter.limit = static_cast<int>(limit);
  filter.offset = static_cast<int>(offset);
  HttpResponse res = Answer(ctx.store->List(filter, actor), 200, "list");
  if (ctx.audit) {
    ctx.audit->Record(audit::Query(ctx.audit->node(), {actor.name, actor.remote_addr}, audit::kStudyRootFind,
                                   QueryText(req), OutcomeOf(res)));
  }
  return res;
}

HttpResponse GetStudy(Context& ctx, const HttpRequest& req, const Actor& actor) {
  auto id = ParseId(req.path_params.at(0));
  if (!id) return BadRequest("study_id");
  auto study = ctx.store->Study(*id, actor);
  if (ctx.audit && study.ok()) {
    const json& s = *study;
    audit::StudyRef ref;
    ref.study_uid = s.value("study_instance_uid", "");
    ref.accession = s.value("accession_number", "");
    if (auto p = s.find("patient"); p != s.end() && p->is_object()) {
      ref.patient_id = p->value("id", "");
      ref.patient_name = p->value("name", "");
    }
    const audit::Party user{actor.name, actor.remote_addr};
    ctx.audit->Record(audit::InstancesAccessed(ctx.audit->node(), user, ref, audit::Outcome::kSuccess));
    ctx.audit->Record(audit::PatientRecord(ctx.audit->node(), user, ref, audit::Outcome::kSuccess));
  }
  return Answer(std::move(study), 200, "study");
}

bool IsHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

HttpResponse GetImage(Context& ctx, const HttpRequest& req, const Actor& actor) {
  auto study_id = ParseId(req.path_params.at(0));
  if (!study_id) return BadRequest("study_id");
  auto result_id = ParseId(req.path_params.at(1));
  if (!result_id) return BadRequest("result_id");
  audit::StudyRef identity;
  auto name = ctx.store->ScFileName(*study_id, *result_id, actor, &identity);
  if (!name.ok()) return FromStatus(name.status(), "image");
  if (!IsHex64(*name) || ctx.results == nullptr || !ctx.render_png) {
    log::Error("api_image_unavailable", {{"study_id", *study_id}, {"result_id", *result_id}});
    return HttpResponse::Error(500, "internal");
  }
  auto png = ctx.render_png(ctx.results->PathFor(*name));
  if (!png.ok()) {
    if (png.status().code() == absl::StatusCode::kNotFound) return HttpResponse::Error(404, "not_found");
    log::Error("api_image_render_failed",
               {{"study_id", *study_id}, {"result_id", *result_id}, {"code", absl::StatusCodeToString(png.status().code())}});
    return HttpResponse::Error(500, "internal");
  }
  HttpResponse res;
  res.status = 200;
  res.content_type = "image/png";
  res.body = std::move(*png);
  if (ctx.audit) {
    ctx.audit->Record(audit::InstancesAccessed(ctx.audit->node(), {actor.name, actor.remote_addr}, identity,
                                               audit::Outcome::kSuccess));
  }
  return res;
}

HttpResponse PostReview(Context& ctx, const HttpRequest& req, const Actor& actor) {
  auto study_id = ParseId(req.path_params.at(0));
  if (!study_id) return BadRequest("study_id");
  auto parsed = ParseBody(req, {"verdict", "finding_id", "comment", "expected_version"});
  if (auto* err = std::get_if<HttpResponse>(&parsed)) return *err;
  const json& body = std::get<json>(parsed);
  ReviewInput input;
  auto verdict = body.find("verdict");
  if (verdict == body.end() || !verdict->is_string()) return BadRequest("verdict");
  input.verdict = verdict->get<std::string>();
  if (input.verdict != "agree" && input.verdict != "disagree" && input.verdict != "uncertain") {
    return BadRequest("verdict");
  }
  auto finding = body.find("finding_id");
  if (finding != body.end() && !finding->is_null()) {
    int64_t id = 0;
    if (!AsPositiveInt64(*finding, id)) return BadRequest("finding_id");
    input.finding_id = id;
  }
  if (!Comment(body, input.comment)) return BadRequest("comment");
  if (!ExpectedVersion(body, input.expected_version)) return BadRequest("expected_version");
  return Answer(ctx.store->Review(*study_id, input, actor), 201, "review");
}

HttpResponse PostDismiss(Context& ctx, const HttpRequest& req, const Actor& actor) {
  auto study_id = ParseId(req.path_params.at(0));
  if (!study_id) return BadRequest("study_id");
  auto parsed = ParseBody(req, {"comment", "expected_version"});
  if (auto* err = std::get_if<HttpResponse>(&parsed)) return *err;
  const json& body = std::get<json>(parsed);
  std::string comment;
  if (!Comment(body, comment)) return BadRequest("comment");
  int64_t expected_version = 0;
  if (!ExpectedVersion(body, expected_version)) return BadRequest("expected_version");
  return Answer(ctx.store->Dismiss(*study_id, expected_version, comment, actor), 201, "dismiss");
}

HttpResponse GetPerformance(Context& ctx, const HttpRequest& req) {
  PerformanceQuery query;
  if (auto window = Param(req, "window")) {
    if (*window != "day" && *window != "week" && *window != "month") return BadRequest("window");
    query.window = *window;
  }
  int64_t windows = 0;
  if (!IntParam(req, "windows", 1, 52, 8, windows)) return BadRequest("windows");
  query.windows = static_cast<int>(windows);
  return Answer(ctx.store->Performance(query), 200, "performance");
}

HttpResponse GetAudit(Context& ctx, const HttpRequest& req, const Actor& actor) {
  int64_t limit = 0, offset = 0;
  if (!IntParam(req, "limit", 1, 500, 100, limit)) return BadRequest("limit");
  if (!IntParam(req, "offset", 0, kMaxOffset, 0, offset)) return BadRequest("offset");
  std::optional<int64_t> study_id;
  if (auto raw = Param(req, "study_id")) {
    study_id = ParseId(*raw);
    if (!study_id) return BadRequest("study_id");
  }
  return Answer(ctx.store->AuditLog(static_cast<int>(limit), static_cast<int>(offset), study_id, actor), 200, "audit");
}

// ---- issued tokens ----------------------------------------------------------

HttpResponse NoTokenStore() {
  return HttpResponse::Error(404, "not_found", "this node does not issue tokens");
}

HttpResponse NoStore(HttpResponse res) {
  res.headers["Cache-Control"] = "no-store";
  return res;
}

HttpResponse ListTokens(Context& ctx, const HttpRequest&, const Actor& actor) {
  if (ctx.token_store == nullptr) return NoTokenStore();
  return Answer(ctx.token_store->List(actor), 200, "list_tokens");
}

// {"name": "...", "role": "radiologist" | "admin", "expires_in_seconds": N}:
// the answer carries the token, the only time it is shown.
HttpResponse PostToken(Context& ctx, const HttpRequest& req, const Actor& actor) {
  if (ctx.token_store == nullptr) return NoTokenStore();
  auto parsed = ParseBody(req, {"name", "role", "expires_in_seconds"});
  if (auto* err = std::get_if<HttpResponse>(&parsed)) return *err;
  const json& body = std::get<json>(parsed);
  auto name = body.find("name");
  if (name == body.end() || !name->is_string()) return BadRequest("name");
  std::string n = name->get<std::string>();
  if (n.empty() || n.size() > 64 || !PrintableAscii(n)) return BadRequest("name");
  // A name in the configuration would make reviews signed with it ambiguous.
  for (const auto& t : ctx.options.tokens) {
    if (t.name == n) return HttpResponse::Error(409, "conflict", "a configured token has this name");
  }
  auto role = body.find("role");
  if (role == body.end() || !role->is_string()) return BadRequest("role");
  std::string r = role->get<std::string>();
  if (r != "radiologist" && r != "admin") return BadRequest("role");
  int64_t lifetime = ctx.options.issued_token_default_lifetime_s;
  if (auto e = body.find("expires_in_seconds"); e != body.end() && !e->is_null()) {
    if (!AsPositiveInt64(*e, lifetime) || lifetime > ctx.options.issued_token_max_lifetime_s) {
      return BadRequest("expires_in_seconds");
    }
  }
  std::string token = NewIssuedToken();
  if (token.empty()) {
    log::Error("api_token_random_failed", {});
    return HttpResponse::Error(500, "internal");
  }
  auto issued = ctx.token_store->Issue(n, r, Sha256Hex(token), lifetime, actor);
  if (!issued.ok() && issued.status().code() == absl::StatusCode::kAlreadyExists) {
    return HttpResponse::Error(409, "conflict", "a token with this name exists; names are never reused");
  }
  if (!issued.ok()) return FromStatus(issued.status(), "issue_token");
  json out = *issued;
  out["token"] = token;
  log::Info("api_token_issued", {{"id", out["id"]}, {"name", n}, {"role", r}, {"by", actor.name}});
  return NoStore(HttpResponse::Json(201, out));
}

HttpResponse RevokeToken(Context& ctx, const HttpRequest& req, const Actor& actor) {
  if (ctx.token_store == nullptr) return NoTokenStore();
  auto id = ParseId(req.path_params.at(0));
  if (!id) return BadRequest("token_id");
  auto revoked = ctx.token_store->Revoke(*id, actor);
  if (revoked.ok()) log::Info("api_token_revoked", {{"id", *id}, {"by", actor.name}});
  return Answer(revoked, 200, "revoke_token");
}

}  // namespace

absl::StatusOr<AddressRange> ParseAddressRange(const std::string& text) {
  AddressRange out;
  std::string addr = text;
  int prefix = -1;
  size_t slash = text.find('/');
  if (slash != std::string::npos) {
    addr = text.substr(0, slash);
    auto bits = ParseInt64(std::string_view(text).substr(slash + 1));
    if (!bits || *bits > 128) return absl::InvalidArgumentError("not an address or network: " + text);
    prefix = static_cast<int>(*bits);
  }
  if (inet_pton(AF_INET, addr.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET;
    if (prefix > 32) return absl::InvalidArgumentError("not an address or network: " + text);
    out.prefix_bits = prefix < 0 ? 32 : prefix;
  } else if (inet_pton(AF_INET6, addr.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET6;
    out.prefix_bits = prefix < 0 ? 128 : prefix;
  } else {
    return absl::InvalidArgumentError("not an address or network: " + text);
  }
  return out;
}

namespace {

// An address as family and bytes; an IPv4-mapped IPv6 address counts as IPv4.
std::optional<AddressRange> ParseAddress(std::string_view text) {
  std::string s(text);
  AddressRange a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
    a.prefix_bits = 32;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(kMapped, kMapped + 12, a.bytes.begin())) {
      std::array<unsigned char, 16> v4{};
      std::copy(a.bytes.begin() + 12, a.bytes.end(), v4.begin());
      a.bytes = v4;
      a.family = AF_INET;
      a.prefix_bits = 32;
      return a;
    }
    a.family = AF_INET6;
    a.prefix_bits = 128;
    return a;
  }
  return std::nullopt;
}

bool InRange(const AddressRange& a, const AddressRange& r) {
  if (a.family != r.family) return false;
  int bits = r.prefix_bits;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if ((a.bytes[i] & mask) != (r.bytes[i] & mask)) return false;
  }
  return true;
}

bool Trusted(const AddressRange& a, const std::vector<AddressRange>& trusted) {
  for (const auto& r : trusted) {
    if (InRange(a, r)) return true;
  }
  return false;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string ClientAddress(const HttpRequest& req, const std::vector<AddressRange>& trusted_proxies) {
  if (trusted_proxies.empty()) return req.remote_addr;
  auto peer = ParseAddress(req.remote_addr);
  if (!peer || !Trusted(*peer, trusted_proxies)) return req.remote_addr;
  // Each proxy appends the address it received the request from; only the
  // entries added by trusted proxies can be believed, so walk from the right
  // and stop at the first address that is not one of them.
  std::string client = req.remote_addr;
  const std::string forwarded = req.Header("x-forwarded-for");
  std::string_view rest = forwarded;
  while (!rest.empty()) {
    size_t comma = rest.rfind(',');
    std::string_view item = Trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
    auto addr = ParseAddress(item);
    if (!addr) break;  // not an address: nothing to its left can be believed
    client = std::string(item);
    if (!Trusted(*addr, trusted_proxies)) break;
  }
  return client;
}

std::vector<HttpRoute> WorklistRoutes(const ApiOptions& options, ReviewStore* store, const ResultFiles* results,
                                      PngRenderer render_png, std::function<absl::Status()> readiness,
                                      audit::AuditSink* audit, std::shared_ptr<SignIn> sign_in,
                                      TokenStore* token_store) {
  auto ctx = std::make_shared<Context>();
  ctx->options = options;
  ctx->store = store;
  ctx->results = results;
  ctx->render_png = std::move(render_png);
  ctx->readiness = std::move(readiness);
  ctx->audit = audit;
  ctx->sign_in = sign_in ? std::move(sign_in) : std::make_shared<SignIn>(options.tokens, nullptr, nullptr, nullptr);
  ctx->token_store = token_store;
  std::vector<HttpRoute> routes;

  // Health, without a token.
  routes.push_back({"GET", "/healthz", [](const HttpRequest&) {
                      return HttpResponse::Json(200, json{{"status", "alive"}});
                    }});
  // Only the state: this port faces the hospital network, and the reason
  // names database hosts and errors (the operations port still gives it).
  routes.push_back({"GET", "/readyz", [ctx](const HttpRequest&) {
                      absl::Status st = ctx->readiness ? ctx->readiness() : absl::OkStatus();
                      return HttpResponse::Json(st.ok() ? 200 : 503, json{{"status", st.ok() ? "ready" : "not_ready"}});
                    }});

  // The API.
  routes.push_back({"GET", "/api/v1/worklist", Protect(ctx, Permission::kRead, [ctx](const HttpRequest& r, const Actor& a) {
                      return ListWorklist(*ctx, r, a);
                    })});
  routes.push_back({"GET", R"(/api/v1/studies/(\d+))",
                    Protect(ctx, Permission::kRead,
                            [ctx](const HttpRequest& r, const Actor& a) { return GetStudy(*ctx, r, a); })});
  routes.push_back({"GET", R"(/api/v1/studies/(\d+)/images/(\d+)\.png)",
                    Protect(ctx, Permission::kRead,
                            [ctx](const HttpRequest& r, const Actor& a) { return GetImage(*ctx, r, a); })});
  routes.push_back({"POST", R"(/api/v1/studies/(\d+)/reviews)",
                    Protect(ctx, Permission::kReview,
                            [ctx](const HttpRequest& r, const Actor& a) { return PostReview(*ctx, r, a); })});
  routes.push_back({"POST", R"(/api/v1/studies/(\d+)/dismiss)",
                    Protect(ctx, Permission::kReview,
                            [ctx](const HttpRequest& r, const Actor& a) { return PostDismiss(*ctx, r, a); })});
  routes.push_back({"GET", "/api/v1/models/performance",
                    Protect(ctx, Permission::kRead,
                            [ctx](const HttpRequest& r, const Actor&) { return GetPerformance(*ctx, r); })});
  routes.push_back({"GET", "/api/v1/audit",
                    Protect(ctx, Permission::kAudit,
                            [ctx](const HttpRequest& r, const Actor& a) { return GetAudit(*ctx, r, a); })});

  // Issued tokens, for admins.
  routes.push_back({"GET", "/api/v1/tokens",
                    Protect(ctx, Permission::kManageTokens,
                            [ctx](const HttpRequest& r, const Actor& a) { return ListTokens(*ctx, r, a); })});
  routes.push_back({"POST", "/api/v1/tokens",
                    Protect(ctx, Permission::kManageTokens,
                            [ctx](const HttpRequest& r, const Actor& a) { return PostToken(*ctx, r, a); })});
  routes.push_back({"POST", R"(/api/v1/tokens/(\d+)/revoke)",
                    Protect(ctx, Permission::kManageTokens,
                            [ctx](const HttpRequest& r, const Actor& a) { return RevokeToken(*ctx, r, a); })});

  // The page: index.html at / and every embedded file under its own name.
  for (const auto& [name, content] : web::EmbeddedWebFiles()) {
    auto serve = [name = name, content = content](const HttpRequest&) { return PageFile(name, content); };
    if (name == "index.html") routes.push_back({"GET", "/", serve});
    routes.push_back({"GET", "/" + RegexEscape(name), serve});
  }
  return routes;
}

}  // namespace secondread::worklist
