#include "worklist/review/token_store.h"

#include <pqxx/pqxx>

namespace secondread::worklist {

namespace {

using nlohmann::json;

// The database's clock decides expiry, as it does for every other time the
// worklist keeps.
constexpr char kFind[] = R"SQL(
SELECT id, name, role, expires_at <= now(), revoked_at IS NOT NULL FROM api_tokens WHERE sha256 = $1
)SQL";

constexpr char kColumns[] = R"SQL(
id, name, role,
to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), created_by,
to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), revoked_by,
CASE WHEN revoked_at IS NOT NULL THEN 'revoked' WHEN expires_at <= now() THEN 'expired' ELSE 'active' END
)SQL";

const std::string kInsert = std::string(R"SQL(
INSERT INTO api_tokens (name, role, sha256, created_by, expires_at)
VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5::bigint))
ON CONFLICT (name) DO NOTHING
RETURNING )SQL") + kColumns;

const std::string kList = std::string("SELECT ") + kColumns + " FROM api_tokens ORDER BY id";

const std::string kRevoke = std::string(R"SQL(
UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, clock_timestamp()), revoked_by = COALESCE(revoked_by, $2)
WHERE id = $1
RETURNING )SQL") + kColumns;

constexpr char kInsertAudit[] = R"SQL(
INSERT INTO audit_log (actor, role, action, remote_addr, detail) VALUES ($1, $2, $3, $4, $5::jsonb)
)SQL";

json Null(const pqxx::field& f) { return f.is_null() ? json(nullptr) : json(f.as<std::string>()); }

json Row(const pqxx::row& r) {
  return json{{"id", r[0].as<int64_t>()},  {"name", r[1].as<std::string>()}, {"role", r[2].as<std::string>()},
              {"created_at", Null(r[3])}, {"created_by", Null(r[4])},       {"expires_at", Null(r[5])},
              {"revoked_at", Null(r[6])}, {"revoked_by", Null(r[7])},       {"state", r[8].as<std::string>()}};
}

void Audit(pqxx::work& tx, const Actor& by, const char* action, const json& detail) {
  tx.exec_params(kInsertAudit, by.name, by.role, action, by.remote_addr, detail.dump());
}

}  // namespace

absl::StatusOr<std::optional<IssuedToken>> PgTokenStore::FindByHash(const std::string& sha256_hex) {
  std::optional<IssuedToken> out;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    out.reset();
    pqxx::read_transaction tx(c);
    auto r = tx.exec_params(kFind, sha256_hex);
    tx.commit();
    if (r.empty()) return;
    out = IssuedToken{r[0][0].as<int64_t>(), r[0][1].as<std::string>(), r[0][2].as<std::string>(),
                      r[0][3].as<bool>(), r[0][4].as<bool>()};
  });
  if (!st.ok()) return st;
  return out;
}

absl::StatusOr<json> PgTokenStore::Issue(const std::string& name, const std::string& role,
                                         const std::string& sha256_hex, int64_t lifetime_s, const Actor& by) {
  json out;
  bool exists = false;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    exists = false;
    pqxx::work tx(c);
    auto r = tx.exec_params(kInsert, name, role, sha256_hex, by.name, lifetime_s);
    if (r.empty()) {
      exists = true;
      return;
    }
    out = Row(r[0]);
    Audit(tx, by, "issue_token", json{{"token_id", out["id"]}, {"name", name}, {"token_role", role},
                                      {"expires_at", out["expires_at"]}});
    tx.commit();
  });
  if (!st.ok()) return st;
  if (exists) return absl::AlreadyExistsError("a token with this name exists");
  return out;
}

absl::StatusOr<json> PgTokenStore::List(const Actor& by) {
  json out{{"items", json::array()}};
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    out["items"] = json::array();
    pqxx::work tx(c);
    Audit(tx, by, "view_tokens", json::object());
    for (const auto& r : tx.exec(kList)) out["items"].push_back(Row(r));
    tx.commit();
  });
  if (!st.ok()) return st;
  return out;
}

absl::StatusOr<json> PgTokenStore::Revoke(int64_t id, const Actor& by) {
  json out;
  bool found = false;
  absl::Status st = pool_->Run([&](pqxx::connection_base& c) {
    found = false;
    pqxx::work tx(c);
    auto r = tx.exec_params(kRevoke, id, by.name);
    if (r.empty()) return;
    found = true;
    out = Row(r[0]);
    Audit(tx, by, "revoke_token", json{{"token_id", id}, {"name", out["name"]}});
    tx.commit();
  });
  if (!st.ok()) return st;
  if (!found) return absl::NotFoundError("no such token");
  return out;
}

}  // namespace secondread::worklist
