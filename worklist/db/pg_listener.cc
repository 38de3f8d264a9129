#include "worklist/db/pg_listener.h"

#include <pqxx/pqxx>
#include <thread>

namespace secondread::worklist {
namespace {

class Receiver : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& c, const std::string& channel, bool* flag)
      : pqxx::notification_receiver(c, channel), flag_(flag) {}
  void operator()(const std::string&, int) override { *flag_ = true; }

 private:
  bool* flag_;
};

}  // namespace

struct PgListener::Impl {
  DatabaseOptions options;
  std::string channel;
  std::unique_ptr<pqxx::connection> conn;
  std::unique_ptr<Receiver> receiver;
  bool notified = false;
};

PgListener::PgListener(DatabaseOptions options, std::string channel) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->channel = std::move(channel);
}

PgListener::~PgListener() {
  try {
    impl_->receiver.reset();
    impl_->conn.reset();
  } catch (...) {
  }
}

bool PgListener::Wait(std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  try {
    if (!s.conn || !s.conn->is_open()) {
      s.receiver.reset();
      s.conn = std::make_unique<pqxx::connection>(PgPool::ConnectionString(s.options));
      s.receiver = std::make_unique<Receiver>(*s.conn, s.channel, &s.notified);
      // Work may have arrived while we were not listening.
      return true;
    }
    s.notified = false;
    s.conn->get_notifs();
    if (s.notified) return true;
    long ms = static_cast<long>(timeout.count());
    s.conn->await_notification(ms / 1000, (ms % 1000) * 1000);
    return s.notified;
  } catch (const std::exception&) {
    try {
      s.receiver.reset();
    } catch (...) {
    }
    s.conn.reset();
    std::this_thread::sleep_for(timeout);
    return false;
  }
}

}  // namespace secondread::worklist
