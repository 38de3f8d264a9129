#include "worklist/db/migrations.h"

#include <algorithm>
#include <map>
#include <pqxx/pqxx>
#include <regex>

namespace secondread::sql {
std::vector<std::pair<std::string_view, std::string_view>> EmbeddedMigrationFiles();
}

namespace secondread::worklist {
namespace {

// Arbitrary constant shared by every replica: "secondread" in ASCII, truncated.
constexpr int64_t kAdvisoryLockKey = 0x7365636f6e64;

constexpr char kBookkeeping[] = R"SQL(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version     integer PRIMARY KEY,
  name        text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
))SQL";

// Migrations that change audit_log (0005, secondread_audit_actions from
// 0013) may join its owner to act for it. The login does not stay a member
// once the run is over: a member could get around the append-only triggers.
// Left at the end of the run, not by each migration, so that one run applies
// several of them with a single grant from the DBA.
constexpr char kLeaveAuditOwner[] = R"SQL(
DO $$
DECLARE
  me CONSTANT name := session_user;
  owner_role name;
BEGIN
  SELECT pg_get_userbyid(relowner) INTO owner_role FROM pg_class WHERE oid = to_regclass('audit_log');
  IF owner_role IS NULL OR owner_role = me OR (SELECT rolsuper FROM pg_roles WHERE rolname = me)
     OR NOT pg_has_role(me, owner_role, 'MEMBER') THEN
    RETURN;
  END IF;
  EXECUTE format('REVOKE %I FROM %I', owner_role, me);
EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
  RAISE NOTICE '% cannot leave %; the DBA must revoke the membership', me, owner_role;
END $$)SQL";

}  // namespace

absl::StatusOr<std::vector<Migration>> EmbeddedMigrations() {
  static const std::regex kName(R"(^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$)");
  std::map<int, Migration> by_version;
  for (const auto& [file, content] : sql::EmbeddedMigrationFiles()) {
    std::smatch m;
    std::string name(file);
    if (!std::regex_match(name, m, kName)) return absl::InternalError("bad migration file name " + name);
    int version = std::stoi(m[1]);
    Migration& mig = by_version[version];
    if (!mig.name.empty() && mig.name != m[2].str()) {
      return absl::InternalError("two names for migration " + m[1].str());
    }
    mig.version = version;
    mig.name = m[2];
    (m[3] == "up" ? mig.up_sql : mig.down_sql) = std::string(content);
  }
  std::vector<Migration> out;
  int expected = 1;
  for (auto& [version, mig] : by_version) {
    if (version != expected) return absl::InternalError("migration versions must be contiguous from 0001");
    if (mig.up_sql.empty() || mig.down_sql.empty()) {
      return absl::InternalError("migration " + std::to_string(version) + " needs both up and down files");
    }
    out.push_back(std::move(mig));
    ++expected;
  }
  return out;
}

absl::StatusOr<MigrationResult> Migrate(const DatabaseOptions& options, int target_version) {
  ASSIGN_OR_RETURN(std::vector<Migration> migrations, EmbeddedMigrations());
  int latest = migrations.empty() ? 0 : migrations.back().version;
  if (target_version < 0) target_version = latest;
  if (target_version > latest) {
    return absl::InvalidArgumentError("target version " + std::to_string(target_version) + " is beyond the latest " +
                                      std::to_string(latest));
  }
  MigrationResult result;
  try {
    pqxx::connection conn(PgPool::ConnectionString(options));
    {
      pqxx::nontransaction tx(conn);
      tx.exec_params("SELECT pg_advisory_lock($1)", kAdvisoryLockKey);
      tx.exec(kBookkeeping);
    }
    int current = 0;
    {
      pqxx::nontransaction tx(conn);
      current = tx.exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0].as<int>();
    }
    result.from_version = current;
    if (current > latest) {
      pqxx::nontransaction(conn).exec_params("SELECT pg_advisory_unlock($1)", kAdvisoryLockKey);
      return absl::FailedPreconditionError("database schema version " + std::to_string(current) +
                                           " is newer than this binary knows (" + std::to_string(latest) + ")");
    }
    while (current < target_version) {
      const Migration& m = migrations[current];
      pqxx::work tx(conn);
      tx.exec(m.up_sql);
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name);
      tx.commit();
      result.applied.push_back(std::to_string(m.version) + "_" + m.name + ".up");
      ++current;
    }
    while (current > target_version) {
      const Migration& m = migrations[current - 1];
      pqxx::work tx(conn);
      tx.exec(m.down_sql);
      tx.exec_params("DELETE FROM schema_migrations WHERE version = $1", m.version);
      tx.commit();
      result.applied.push_back(std::to_string(m.version) + "_" + m.name + ".down");
      --current;
    }
    result.to_version = current;
    if (!result.applied.empty()) pqxx::nontransaction(conn).exec(kLeaveAuditOwner);
    pqxx::nontransaction(conn).exec_params("SELECT pg_advisory_unlock($1)", kAdvisoryLockKey);
  } catch (const pqxx::broken_connection& e) {
    return absl::UnavailableError(std::string("database unreachable: ") + e.what());
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("migration failed: ") + e.what());
  }
  return result;
}

absl::StatusOr<int> CurrentSchemaVersion(const DatabaseOptions& options) {
  try {
    pqxx::connection conn(PgPool::ConnectionString(options));
    pqxx::nontransaction tx(conn);
    auto exists = tx.exec("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0].as<bool>();
    if (!exists) return 0;
    return tx.exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0].as<int>();
  } catch (const pqxx::broken_connection& e) {
    return absl::UnavailableError(std::string("database unreachable: ") + e.what());
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("cannot read schema version: ") + e.what());
  }
}

}  // namespace secondread::worklist
