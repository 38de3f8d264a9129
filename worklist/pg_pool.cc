#include "worklist/pg_pool.h"

#include <chrono>
#include <pqxx/pqxx>

namespace secondread::worklist {

struct PgPool::Conn {
  std::unique_ptr<pqxx::connection> c;
};

PgPool::PgPool(DatabaseOptions options, Prepare prepare) : options_(std::move(options)), prepare_(std::move(prepare)) {}
PgPool::~PgPool() = default;

std::string PgPool::ConnectionString(const DatabaseOptions& o) {
  std::string url = o.url;
  std::string settings = "-c statement_timeout=" + std::to_string(o.statement_timeout_ms) +
                         " -c synchronous_commit=" + (o.synchronous_commit ? "on" : "off");
  bool uri = url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
  if (uri) {
    std::string enc;
    for (char ch : settings) enc += (ch == ' ') ? std::string("%20") : (ch == '=') ? std::string("%3D") : std::string(1, ch);
    url += (url.find('?') == std::string::npos ? "?" : "&");
    url += "connect_timeout=" + std::to_string(o.connect_timeout_s) + "&options=" + enc;
  } else {
    url += " connect_timeout=" + std::to_string(o.connect_timeout_s) + " options='" + settings + "'";
  }
  return url;
}

std::unique_ptr<PgPool::Conn> PgPool::Acquire(absl::Status& status) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(options_.connect_timeout_s),
                      [&] { return !idle_.empty() || open_ < options_.max_connections; })) {
      status = absl::UnavailableError("no database connection free within the connect timeout");
      return nullptr;
    }
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
    ++open_;
  }
  auto conn = std::make_unique<Conn>();
  try {
    conn->c = std::make_unique<pqxx::connection>(ConnectionString(options_));
    if (prepare_) prepare_(*conn->c);
    return conn;
  } catch (const std::exception& e) {
    status = absl::UnavailableError(std::string("database unreachable: ") + e.what());
  }
  std::lock_guard<std::mutex> lock(mu_);
  --open_;
  cv_.notify_one();
  return nullptr;
}

void PgPool::Release(std::unique_ptr<Conn> conn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (conn && conn->c && conn->c->is_open()) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  cv_.notify_one();
}

absl::Status PgPool::Run(const std::function<void(pqxx::connection_base&)>& fn) {
  absl::Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::Status st;
    auto conn = Acquire(st);
    if (!conn) return st;
    try {
      fn(*conn->c);
      Release(std::move(conn));
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      last = absl::UnavailableError(std::string("database connection lost: ") + e.what());
      conn->c.reset();
      Release(std::move(conn));
      continue;  // a stale pooled connection after a server restart: retry fresh
    } catch (const pqxx::sql_error& e) {
      std::string state = e.sqlstate();
      bool transient = state.rfind("08", 0) == 0 || state.rfind("57P", 0) == 0 || state == "40001" || state == "40P01";
      if (!conn->c->is_open()) conn->c.reset();
      Release(std::move(conn));
      if (transient) {
        last = absl::UnavailableError("database unavailable, SQLSTATE " + state);
        continue;
      }
      // The server's message may quote received values: keep it out of the
      // status, which ends up in logs.
      return absl::InternalError("database error SQLSTATE " + state);
    } catch (const std::exception& e) {
      bool open = conn->c && conn->c->is_open();
      if (!open) conn->c.reset();
      Release(std::move(conn));
      if (!open) {
        last = absl::UnavailableError(std::string("database connection lost: ") + e.what());
        continue;
      }
      return absl::InternalError(std::string("database call failed: ") + e.what());
    }
  }
  return last;
}

}  // namespace secondread::worklist
