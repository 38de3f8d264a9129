// A dedicated PostgreSQL connection that LISTENs on one channel, so loops
// sleep until the database says there is work instead of polling.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "worklist/db/pg_pool.h"

namespace secondread::worklist {

class PgListener {
 public:
  PgListener(DatabaseOptions options, std::string channel);
  ~PgListener();
  // true when a notification arrived, false at the timeout. While the
  // database is unreachable it sleeps for the timeout and reconnects later.
  bool Wait(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace secondread::worklist
