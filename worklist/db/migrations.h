// Schema migrations, embedded in the binary from sql/migrations/ and applied
// under a PostgreSQL advisory lock so that several replicas may start at once.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "worklist/db/pg_pool.h"

namespace secondread::worklist {

struct Migration {
  int version = 0;
  std::string name;
  std::string up_sql;
  std::string down_sql;
};

// The embedded migrations, validated (every up has its down) and ordered.
absl::StatusOr<std::vector<Migration>> EmbeddedMigrations();

struct MigrationResult {
  int from_version = 0;
  int to_version = 0;
  std::vector<std::string> applied;  // "0001_registry.up" ...
};

// Moves the schema to target_version (-1: latest). Each step runs in its own
// transaction together with the bookkeeping row.
absl::StatusOr<MigrationResult> Migrate(const DatabaseOptions& options, int target_version);

// The version recorded in the database (0 when never migrated).
absl::StatusOr<int> CurrentSchemaVersion(const DatabaseOptions& options);

}  // namespace secondread::worklist
