// A small PostgreSQL connection pool. libpqxx is used only in worklist/, and
// its exceptions never leave this module: every call returns absl::Status.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pqxx {
class connection_base;
}

namespace secondread::worklist {

struct DatabaseOptions {
  std::string url;
  int max_connections = 8;
  // Off by default: the fsynced spool file is the journal, and the start-up
  // recovery and the rescan after a database restart re-register any row
  // whose commit had not reached disk.
  bool synchronous_commit = false;
  int connect_timeout_s = 5;
  int statement_timeout_ms = 15000;
};

// What an SQL error means for the caller, by its SQLSTATE.
enum class SqlErrorKind {
  kRetryNow,   // the connection or transaction died: retry once on a fresh connection
  kTransient,  // the server is busy or short of something: UNAVAILABLE at once, the sender retries later
  kPermanent,  // the statement or its data is at fault: a retry fails the same way
};
SqlErrorKind ClassifySqlState(std::string_view sqlstate);

class PgPool {
 public:
  using Prepare = std::function<void(pqxx::connection_base&)>;

  PgPool(DatabaseOptions options, Prepare prepare);
  ~PgPool();

  // Runs fn on a pooled connection. A broken connection is replaced and the
  // call retried once (callers pass idempotent work); a database that cannot
  // be reached, or a transient SQL error (ClassifySqlState), gives
  // UNAVAILABLE; any other SQL error INTERNAL. When a connection broke while
  // fn ran, its statements may have committed without our hearing of it: a
  // failed status then carries kOutcomeUnknownPayload.
  absl::Status Run(const std::function<void(pqxx::connection_base&)>& fn);

  static constexpr char kOutcomeUnknownPayload[] = "secondread/outcome-unknown";
  static bool OutcomeUnknown(const absl::Status& status) {
    return status.GetPayload(kOutcomeUnknownPayload).has_value();
  }

  // The server's start time (pg_postmaster_start_time()): it changes when
  // PostgreSQL restarts, which with synchronous_commit off may have lost the
  // newest rows.
  absl::StatusOr<std::string> ServerStartTime();

  // Adds connect_timeout and the session settings to a libpq URL or keyword string.
  static std::string ConnectionString(const DatabaseOptions& options);

 private:
  struct Conn;
  std::unique_ptr<Conn> Acquire(absl::Status& status);
  void Release(std::unique_ptr<Conn> conn);

  DatabaseOptions options_;
  Prepare prepare_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  int open_ = 0;
};

}  // namespace secondread::worklist
