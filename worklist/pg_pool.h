// A small PostgreSQL connection pool. libpqxx is used only in worklist/, and
// its exceptions never leave this module: every call returns absl::Status.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace pqxx {
class connection_base;
}

namespace secondread::worklist {

struct DatabaseOptions {
  std::string url;
  int max_connections = 8;
  // Off by default: the fsynced spool file is the journal, and start-up
  // recovery re-registers any row whose commit had not reached disk.
  bool synchronous_commit = false;
  int connect_timeout_s = 5;
  int statement_timeout_ms = 15000;
};

class PgPool {
 public:
  using Prepare = std::function<void(pqxx::connection_base&)>;

  PgPool(DatabaseOptions options, Prepare prepare);
  ~PgPool();

  // Runs fn on a pooled connection. A broken connection is replaced and the
  // call retried once (callers pass idempotent work); a database that cannot
  // be reached gives UNAVAILABLE.
  absl::Status Run(const std::function<void(pqxx::connection_base&)>& fn);

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
