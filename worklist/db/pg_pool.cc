#include "worklist/db/pg_pool.h"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <initializer_list>
#include <pqxx/pqxx>

#include "absl/strings/cord.h"

namespace secondread::worklist {

struct PgPool::Conn {
  std::unique_ptr<pqxx::connection> c;
};

SqlErrorKind ClassifySqlState(std::string_view state) {
  auto in = [&](std::initializer_list<std::string_view> codes) {
    for (auto c : codes) {
      if (state == c) return true;
    }
    return false;
  };
  auto cls = state.substr(0, 2);
  // 08 connection exception; 57P01-03 and 57P05 the server ended the session
  // (shutdown, crash, starting up, idle timeout); 40001 and 40P01 lost a
  // serialization or deadlock race; 25006 read-only transaction: connected to
  // a standby, and a fresh connection may reach the new primary.
  if (cls == "08" || in({"57P01", "57P02", "57P03", "57P05", "40001", "40P01", "25006"})) {
    return SqlErrorKind::kRetryNow;
  }
  // 53 insufficient resources (disk full, out of memory, too many
  // connections); 57014 statement timeout or cancel; 55P03 lock not
  // available; 55006 object in use; 58030 I/O error. None is caused by the
  // instance, all may clear. Waiting out a timeout or a lock a second time
  // would only hold the sender longer, so they are not retried here.
  if (cls == "53" || in({"57014", "55P03", "55006", "58030"})) return SqlErrorKind::kTransient;
  return SqlErrorKind::kPermanent;
}

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

namespace {

// Whether an idle connection can be used: nothing may have arrived on it
// since its last call. A server that shut down or ended the session sent a
// FATAL message and closed it; a statement sent on such a connection would
// fail with its outcome unknown, though nothing ran. Peeking does not block
// and consumes nothing.
bool StillOpen(pqxx::connection& c) {
  if (!c.is_open()) return false;
  char byte;
  ssize_t n = ::recv(c.sock(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::unique_ptr<PgPool::Conn> PgPool::Acquire(absl::Status& status) {
  for (;;) {
    std::unique_ptr<Conn> idle;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, std::chrono::seconds(options_.connect_timeout_s),
                        [&] { return !idle_.empty() || open_ < options_.max_connections; })) {
        status = absl::UnavailableError("no database connection free within the connect timeout");
        return nullptr;
      }
      if (idle_.empty()) {
        ++open_;
        break;
      }
      idle = std::move(idle_.back());
      idle_.pop_back();
    }
    if (StillOpen(*idle->c)) return idle;
    idle->c.reset();
    Release(std::move(idle));
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
  bool in_doubt = false;
  auto finish = [&](absl::Status st) {
    if (!st.ok() && in_doubt) st.SetPayload(kOutcomeUnknownPayload, absl::Cord("1"));
    return st;
  };
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::Status st;
    auto conn = Acquire(st);
    if (!conn) return finish(st);
    try {
      fn(*conn->c);
      Release(std::move(conn));
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      in_doubt = true;
      last = absl::UnavailableError(std::string("database connection lost: ") + e.what());
      conn->c.reset();
      Release(std::move(conn));
      continue;  // the server went away during the call: retry fresh
    } catch (const pqxx::sql_error& e) {
      std::string state = e.sqlstate();
      SqlErrorKind kind = ClassifySqlState(state);
      bool open = conn->c->is_open();
      // The server ended the session during the call (a FATAL error): the
      // statement may have committed before it did.
      if (!open) in_doubt = true;
      // A session the server ended is not pooled again.
      if (!open || kind == SqlErrorKind::kRetryNow) conn->c.reset();
      Release(std::move(conn));
      if (kind == SqlErrorKind::kRetryNow) {
        last = absl::UnavailableError("database unavailable, SQLSTATE " + state);
        continue;
      }
      if (kind == SqlErrorKind::kTransient) return finish(absl::UnavailableError("database busy, SQLSTATE " + state));
      // The server's message may quote received values: keep it out of the
      // status, which ends up in logs.
      return finish(absl::InternalError("database error SQLSTATE " + state));
    } catch (const std::exception& e) {
      bool open = conn->c && conn->c->is_open();
      if (!open || dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) in_doubt = true;
      if (!open) conn->c.reset();
      Release(std::move(conn));
      if (!open) {
        last = absl::UnavailableError(std::string("database connection lost: ") + e.what());
        continue;
      }
      return finish(absl::InternalError(std::string("database call failed: ") + e.what()));
    }
  }
  return finish(last);
}

absl::StatusOr<std::string> PgPool::ServerStartTime() {
  std::string started;
  RETURN_IF_ERROR(Run([&](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    started = tx.exec("SELECT pg_postmaster_start_time()::text")[0][0].c_str();
  }));
  return started;
}

}  // namespace secondread::worklist
