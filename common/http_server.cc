#include "common/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <regex>
#include <string_view>
#include <type_traits>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "httplib.h"

namespace secondread {

absl::Status ParseHttpLimits(config::ConfigTree& t, const std::string& prefix, HttpLimits& limits) {
  const std::string k = prefix + ".";
  ASSIGN_OR_RETURN(int64_t timeout, t.Int(k + "header_timeout_seconds", limits.header_timeout_s, 1, 300));
  limits.header_timeout_s = static_cast<int>(timeout);
  ASSIGN_OR_RETURN(uint64_t bytes, t.Bytes(k + "max_header_bytes", limits.max_header_bytes));
  // The upper end keeps one request's headers well inside a socket's receive
  // buffer and a thread's fair share of memory.
  if (bytes < 1024 || bytes > 64 * 1024) return absl::InvalidArgumentError(k + "max_header_bytes must be 1KiB..64KiB");
  limits.max_header_bytes = static_cast<size_t>(bytes);
  ASSIGN_OR_RETURN(int64_t headers, t.Int(k + "max_headers", limits.max_headers, 1, 1000));
  limits.max_headers = static_cast<int>(headers);
  ASSIGN_OR_RETURN(int64_t conns, t.Int(k + "max_connections", limits.max_connections, 1, 1024));
  limits.max_connections = static_cast<int>(conns);
  ASSIGN_OR_RETURN(int64_t per_peer,
                   t.Int(k + "max_connections_per_peer", std::min<int64_t>(limits.max_connections_per_peer, conns), 1,
                         1024));
  if (per_peer > conns) {
    return absl::InvalidArgumentError(k + "max_connections_per_peer cannot exceed " + k + "max_connections");
  }
  limits.max_connections_per_peer = static_cast<int>(per_peer);
  return absl::OkStatus();
}

bool LogRateLimiter::Allow(const std::string& key, int64_t& suppressed) {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  Window& w = windows_[key];
  if (now - w.start >= std::chrono::seconds(1)) {
    w.start = now;
    w.count = 0;
  }
  if (w.count >= per_second_) {
    ++w.suppressed;
    return false;
  }
  ++w.count;
  suppressed = w.suppressed;
  w.suppressed = 0;
  return true;
}

// Admission of connections, and the log line and metric of every refusal.
class ConnectionGuard {
 public:
  ConnectionGuard(std::string server, HttpLimits limits, metrics::MetricsRegistry* registry)
      : server_(std::move(server)), limits_(limits) {
    if (registry) {
      family_ = &registry->CounterFamily(
          "secondread_http_refused_total",
          "HTTP connections and requests refused or dropped by the server's limits, by server and reason");
    }
  }

  const HttpLimits& limits() const { return limits_; }
  const std::string& server() const { return server_; }

  // Why a connection from `peer` may not be served now, or "" when it is
  // admitted (then Release must follow).
  std::string Admit(const std::string& peer) {
    std::lock_guard<std::mutex> lock(mu_);
    if (total_ >= limits_.max_connections) return "too_many_connections";
    int& mine = per_peer_[peer];
    if (mine >= limits_.max_connections_per_peer) {
      if (mine == 0) per_peer_.erase(peer);
      return "too_many_connections_from_peer";
    }
    ++mine;
    ++total_;
    return "";
  }

  void Release(const std::string& peer) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = per_peer_.find(peer);
    if (it != per_peer_.end() && --it->second <= 0) per_peer_.erase(it);
    --total_;
  }

  void Refused(const std::string& peer, const std::string& reason) {
    if (family_) family_->Add({{"server", server_}, {"reason", reason}}).Increment();
    int64_t suppressed = 0;
    if (log_limiter_.Allow(reason, suppressed)) {
      nlohmann::json fields = {{"server", server_}, {"peer", peer}, {"reason", reason}};
      if (suppressed > 0) fields["suppressed"] = suppressed;
      log::Warn("http_refused", fields);
    }
  }

  void Stop() { stopping_ = true; }
  bool stopping() const { return stopping_; }

 private:
  const std::string server_;
  const HttpLimits limits_;
  prometheus::Family<metrics::Counter>* family_ = nullptr;
  LogRateLimiter log_limiter_{10};
  std::mutex mu_;
  int total_ = 0;
  std::map<std::string, int> per_peer_;
  std::atomic<bool> stopping_{false};
};

namespace {

using Clock = std::chrono::steady_clock;

std::string AddressOf(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
    return buf;
  }
  if (ss.ss_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      inet_ntop(AF_INET, &a6.s6_addr[12], buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &a6, buf, sizeof buf);
    }
    return buf;
  }
  return "";
}

int PortOf(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
  return 0;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// One connection's byte stream as cpp-httplib's request parser sees it.
// Between the start of a request and the blank line after its headers, the
// bytes are read line by line and checked against the limits; a Range
// header is dropped there, so httplib never builds partial or multipart
// answers (nothing the node serves needs them, and overlapping ranges
// multiply a response). A request that breaks a limit is answered here
// (408, 413, 415 or 431) and the stream then fails every read and write, so
// httplib ends the connection without a second answer.
class GuardedStream : public httplib::Stream {
 public:
  enum class Phase { kHeaders, kBody, kResponding };

  GuardedStream(int fd, SSL* ssl, ConnectionGuard& guard, std::string peer, int write_timeout_s)
      : fd_(fd), ssl_(ssl), guard_(guard), peer_(std::move(peer)), write_timeout_s_(write_timeout_s) {}

  // Arms the limits for the next request on this connection.
  void BeginRequest(bool first) {
    phase_ = Phase::kHeaders;
    deadline_ = Clock::now() + std::chrono::seconds(guard_.limits().header_timeout_s);
    header_bytes_ = 0;
    header_lines_ = 0;
    line_.clear();
    content_type_.clear();
    content_length_ = 0;
    first_request_ = first;
  }
  bool dead() const { return dead_; }

  bool is_readable() const override {
    if (ready_pos_ < ready_.size() || raw_pos_ < raw_.size()) return true;
    if (ssl_ && SSL_pending(ssl_) > 0) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

  bool is_writable() const override {
    if (dead_) return false;
    pollfd p{fd_, POLLOUT, 0};
    return ::poll(&p, 1, write_timeout_s_ * 1000) > 0 && (p.revents & (POLLERR | POLLHUP)) == 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (dead_) return -1;
    if (phase_ == Phase::kHeaders) {
      while (ready_pos_ == ready_.size() && phase_ == Phase::kHeaders) {
        if (raw_pos_ == raw_.size()) {
          ssize_t n = Fill();
          if (n <= 0) return n;
        }
        ScanHeaderBytes();
        if (dead_) return -1;
      }
    }
    if (ready_pos_ < ready_.size()) return Take(ready_, ready_pos_, ptr, size);
    if (raw_pos_ < raw_.size()) return Take(raw_, raw_pos_, ptr, size);
    ssize_t n = Recv(ptr, size);
    if (n == kTimedOut) {
      Refuse(408, "request_timeout", "body_timeout");
      return -1;
    }
    return n;
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (dead_) return -1;
    phase_ = Phase::kResponding;
    return Send(ptr, size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      ip = AddressOf(ss);
      port = PortOf(ss);
    }
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      ip = AddressOf(ss);
      port = PortOf(ss);
    }
  }

  socket_t socket() const override { return fd_; }

 private:
  static constexpr ssize_t kTimedOut = -2;

  static ssize_t Take(const std::string& buf, size_t& pos, char* ptr, size_t size) {
    size_t n = std::min(size, buf.size() - pos);
    std::memcpy(ptr, buf.data() + pos, n);
    pos += n;
    return static_cast<ssize_t>(n);
  }

  // Waits for the socket until the request's deadline (or the server stops),
  // in slices so that a stopping server is noticed.
  bool WaitFor(short events, Clock::time_point deadline) {
    while (!guard_.stopping()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, events, 0};
      int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 200)));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
    return false;
  }

  // > 0 bytes, 0 at the end of the stream, -1 on an error, kTimedOut.
  ssize_t Recv(char* ptr, size_t size) {
    for (;;) {
      if (ssl_) {
        int n = SSL_read(ssl_, ptr, static_cast<int>(std::min<size_t>(size, 1 << 30)));
        if (n > 0) return n;
        int err = SSL_get_error(ssl_, n);
        if (err == SSL_ERROR_ZERO_RETURN) return 0;
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return -1;
        if (!WaitFor(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_)) {
          return guard_.stopping() ? -1 : kTimedOut;
        }
      } else {
        ssize_t n = ::recv(fd_, ptr, size, MSG_DONTWAIT);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        if (!WaitFor(POLLIN, deadline_)) return guard_.stopping() ? -1 : kTimedOut;
      }
    }
  }

  ssize_t Send(const char* ptr, size_t size) {
    for (;;) {
      auto deadline = Clock::now() + std::chrono::seconds(write_timeout_s_);
      if (ssl_) {
        int n = SSL_write(ssl_, ptr, static_cast<int>(std::min<size_t>(size, 1 << 30)));
        if (n > 0) return n;
        int err = SSL_get_error(ssl_, n);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return -1;
        if (!WaitFor(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return -1;
      } else {
        ssize_t n = ::send(fd_, ptr, size, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        if (!WaitFor(POLLOUT, deadline)) return -1;
      }
    }
  }

  // Reads more of the request's head into raw_; what read() returns.
  ssize_t Fill() {
    raw_.clear();
    raw_pos_ = 0;
    char buf[4096];
    ssize_t n = Recv(buf, sizeof buf);
    if (n == kTimedOut) {
      // A connection that never started its next request is simply idle.
      if (header_bytes_ > 0 || first_request_) {
        Refuse(408, "request_timeout", "header_timeout");
      } else {
        dead_ = true;
      }
      return -1;
    }
    if (n > 0) raw_.assign(buf, static_cast<size_t>(n));
    return n;
  }

  void ScanHeaderBytes() {
    const HttpLimits& limits = guard_.limits();
    while (raw_pos_ < raw_.size() && phase_ == Phase::kHeaders) {
      char c = raw_[raw_pos_++];
      line_ += c;
      if (++header_bytes_ > limits.max_header_bytes) {
        Refuse(431, "request_header_fields_too_large", "headers_too_large");
        return;
      }
      if (c != '\n') continue;
      ++header_lines_;
      bool blank = line_ == "\n" || line_ == "\r\n";
      if (blank) {
        ready_.append(line_);
        line_.clear();
        if (!EndOfHeaders()) return;
        phase_ = Phase::kBody;
        return;
      }
      // Line 1 is the request line.
      if (header_lines_ - 1 > limits.max_headers) {
        Refuse(431, "request_header_fields_too_large", "too_many_headers");
        return;
      }
      if (header_lines_ > 1 && StartsWithNoCase(line_, "content-type:")) {
        content_type_ = line_.substr(13);
      } else if (header_lines_ > 1 && StartsWithNoCase(line_, "content-length:")) {
        content_length_ = std::strtoull(line_.c_str() + 15, nullptr, 10);
      }
      if (header_lines_ == 1 || !StartsWithNoCase(line_, "range:")) ready_.append(line_);
      line_.clear();
    }
    if (ready_pos_ == ready_.size()) {
      ready_.clear();
      ready_pos_ = 0;
    }
  }

  // Checks what the whole head says about the body; false when refused.
  bool EndOfHeaders() {
    std::string type = content_type_;
    size_t start = type.find_first_not_of(" \t");
    type = start == std::string::npos ? "" : type.substr(start);
    // httplib caps form bodies at 8 KiB and parses multipart ones itself; no
    // route takes either, so every body has the one size limit.
    if (StartsWithNoCase(type, "application/x-www-form-urlencoded") || StartsWithNoCase(type, "multipart/")) {
      Refuse(415, "unsupported_media_type", "unsupported_media_type");
      return false;
    }
    return true;
  }

  void Refuse(int status, const std::string& error, const std::string& reason) {
    guard_.Refused(peer_, reason);
    std::string body = "{\"error\":\"" + error + "\"}\n";
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + ReasonPhrase(status) +
                       "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n";
    std::string all = head + body;
    size_t off = 0;
    while (off < all.size()) {
      ssize_t n = Send(all.data() + off, all.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    dead_ = true;
  }

  const int fd_;
  SSL* const ssl_;
  ConnectionGuard& guard_;
  const std::string peer_;
  const int write_timeout_s_;
  Phase phase_ = Phase::kHeaders;
  Clock::time_point deadline_;
  bool first_request_ = true;
  bool dead_ = false;
  size_t header_bytes_ = 0;
  int header_lines_ = 0;
  std::string line_;
  std::string content_type_;
  unsigned long long content_length_ = 0;
  std::string raw_;  // read from the socket, not yet scanned or returned
  size_t raw_pos_ = 0;
  std::string ready_;  // scanned head lines not yet returned
  size_t ready_pos_ = 0;
};

// A cpp-httplib server (plain or TLS) whose connections go through the
// guard: admission by peer and in total, then GuardedStream for every
// request. httplib's accept loop hands each connection to a worker, which
// lands here instead of in httplib's own connection handling.
class ListenBacklog {
 public:
  virtual ~ListenBacklog() = default;
  // httplib listens with a backlog of 5: a burst of connections beyond it
  // has its SYNs dropped and retried a second later, whoever sent them.
  virtual void Raise() = 0;
};

template <class Base>
class GuardedServer : public Base, public ListenBacklog {
 public:
  template <class... Args>
  explicit GuardedServer(std::shared_ptr<ConnectionGuard> guard, Args&&... args)
      : Base(std::forward<Args>(args)...), guard_(std::move(guard)) {}

  void Raise() override {
    // listen() on a listening socket only changes its backlog.
    ::listen(this->svr_sock_, std::max(SOMAXCONN, 2 * guard_->limits().max_connections));
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    bool ok = Serve(sock);
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
  }

  bool Serve(int sock) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    std::string peer = getpeername(sock, reinterpret_cast<sockaddr*>(&ss), &len) == 0 ? AddressOf(ss) : "";
    std::string refused = guard_->Admit(peer);
    if (!refused.empty()) {
      guard_->Refused(peer, refused);
      if constexpr (!std::is_same_v<Base, httplib::SSLServer>) {
        static constexpr char kBusy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: "
            "32\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{\"error\":\"too_many_connections\"}\n";
        (void)::send(sock, kBusy, sizeof kBusy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
      }
      // Unread bytes at close turn the FIN into a reset, which can destroy
      // the answer before the client reads it.
      ::shutdown(sock, SHUT_WR);
      char sink[4096];
      for (int i = 0; i < 16 && ::recv(sock, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
      }
      return false;
    }
    int flags = fcntl(sock, F_GETFL, 0);
    fcntl(sock, F_SETFL, flags | O_NONBLOCK);
    bool ok = false;
    SSL* ssl = nullptr;
    if constexpr (std::is_same_v<Base, httplib::SSLServer>) {
      ssl = SSL_new(this->ssl_context());
      if (ssl && SSL_set_fd(ssl, sock) == 1 && Handshake(ssl, sock, peer)) ok = Requests(sock, ssl, peer);
      if (ssl) {
        if (ok) SSL_shutdown(ssl);
        SSL_free(ssl);
      }
      ERR_clear_error();
    } else {
      ok = Requests(sock, nullptr, peer);
    }
    guard_->Release(peer);
    return ok;
  }

  bool Handshake(SSL* ssl, int sock, const std::string& peer) {
    auto deadline = Clock::now() + std::chrono::seconds(guard_->limits().header_timeout_s);
    for (;;) {
      int r = SSL_accept(ssl);
      if (r == 1) return true;
      int err = SSL_get_error(ssl, r);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return false;
      pollfd p{sock, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || guard_->stopping()) {
        if (!guard_->stopping()) guard_->Refused(peer, "header_timeout");
        return false;
      }
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 200)));
    }
  }

  // httplib's keep-alive loop, over the guarded stream.
  bool Requests(int sock, SSL* ssl, const std::string& peer) {
    GuardedStream stream(sock, ssl, *guard_, peer, static_cast<int>(std::max<time_t>(1, this->write_timeout_sec_)));
    size_t left = std::max<size_t>(1, this->keep_alive_max_count_);
    bool ok = false;
    for (bool first = true; left > 0 && !guard_->stopping(); first = false, --left) {
      stream.BeginRequest(first);
      bool closed = false;
      ok = this->process_request(stream, /*close_connection=*/left == 1, closed, nullptr);
      if (!ok || closed || stream.dead()) break;
    }
    return ok;
  }

  std::shared_ptr<ConnectionGuard> guard_;
};

// Every admitted connection gets a worker at once; two more answer the
// connections refused while all admitted ones are busy.
std::function<httplib::TaskQueue*()> PoolFor(const HttpLimits& limits, int threads) {
  size_t n = static_cast<size_t>(std::max(threads, limits.max_connections)) + 2;
  return [n] { return new httplib::ThreadPool(n); };
}

// Binds (port 0: any free port) and runs the accept loop on its own thread.
absl::StatusOr<uint16_t> BindAndListen(httplib::Server& srv, const std::string& bind, uint16_t wanted,
                                       std::thread& thread) {
  int port = 0;
  if (wanted == 0) {
    port = srv.bind_to_any_port(bind);
  } else {
    port = srv.bind_to_port(bind, wanted) ? wanted : -1;
  }
  if (port <= 0) {
    return absl::UnavailableError("cannot bind HTTP server to " + bind + ":" + std::to_string(wanted));
  }
  if (auto* backlog = dynamic_cast<ListenBacklog*>(&srv)) backlog->Raise();
  thread = std::thread([&srv] { srv.listen_after_bind(); });
  // stop() is a no-op until the accept loop runs; wait for it so that a
  // Stop() right after Start() cannot leave the thread running.
  for (int i = 0; i < 500 && !srv.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return static_cast<uint16_t>(port);
}

}  // namespace


absl::StatusOr<std::unique_ptr<OpsHttpServer>> OpsHttpServer::Start(const HttpOptions& options,
                                                                     metrics::MetricsRegistry* registry,
                                                                     ReadinessCheck readiness) {
  std::unique_ptr<OpsHttpServer> self(new OpsHttpServer());
  self->guard_ = std::make_shared<ConnectionGuard>("ops", options.limits, registry);
  self->server_ = std::make_unique<GuardedServer<httplib::Server>>(self->guard_);
  auto& srv = *self->server_;
  srv.new_task_queue = PoolFor(options.limits, 1);
  srv.set_keep_alive_timeout(options.limits.header_timeout_s);
  srv.Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry->Serialize(), "text/plain; version=0.0.4");
  });
  srv.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"alive\"}\n", "application/json");
  });
  srv.Get("/readyz", [readiness](const httplib::Request&, httplib::Response& res) {
    absl::Status st = readiness ? readiness() : absl::OkStatus();
    nlohmann::json body;
    body["status"] = st.ok() ? "ready" : "not_ready";
    if (!st.ok()) body["reason"] = std::string(st.message());
    res.status = st.ok() ? 200 : 503;
    res.set_content(body.dump() + "\n", "application/json");
  });
  ASSIGN_OR_RETURN(self->port_, BindAndListen(srv, options.bind, options.port, self->thread_));
  log::Info("http_listening", {{"bind", options.bind}, {"port", self->port_}});
  return self;
}

void OpsHttpServer::Stop() {
  if (guard_) guard_->Stop();
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

OpsHttpServer::~OpsHttpServer() { Stop(); }

// ---- HttpRequest / HttpResponse -------------------------------------------

std::string HttpRequest::Query(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? std::string() : it->second;
}

bool HttpRequest::HasQuery(const std::string& name) const { return query.find(name) != query.end(); }

std::string HttpRequest::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

HttpResponse HttpResponse::Json(int status, const nlohmann::json& body) {
  HttpResponse res;
  res.status = status;
  res.content_type = "application/json";
  // Replace invalid UTF-8 rather than throw: a response is always produced.
  res.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return res;
}

HttpResponse HttpResponse::Error(int status, const std::string& error, const std::string& message) {
  nlohmann::json body = {{"error", error}};
  if (!message.empty()) body["message"] = message;
  return Json(status, body);
}

// ---- HttpServer ------------------------------------------------------------

namespace {

bool IsApiPath(const std::string& path) { return path.rfind("/api/", 0) == 0; }

void SetHeaderOnce(httplib::Response& res, const std::string& name, const std::string& value) {
  if (!res.has_header(name.c_str())) res.set_header(name.c_str(), value);
}

// Headers every answer carries, whichever path produced it.
void AddCommonHeaders(const httplib::Request& req, httplib::Response& res, bool tls) {
  SetHeaderOnce(res, "X-Content-Type-Options", "nosniff");
  // Range headers never reach httplib (GuardedStream drops them).
  SetHeaderOnce(res, "Accept-Ranges", "none");
  if (tls) SetHeaderOnce(res, "Strict-Transport-Security", "max-age=31536000");
  if (IsApiPath(req.path)) SetHeaderOnce(res, "Cache-Control", "no-store");
}

const char* ErrorNameFor(int status) {
  switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthenticated";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 415: return "unsupported_media_type";
    case 416: return "range_not_satisfiable";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal" : "error";
  }
}

HttpRequest ToRequest(const httplib::Request& req) {
  HttpRequest out;
  out.method = req.method;
  out.path = req.path;
  out.remote_addr = req.remote_addr;
  out.body = req.body;
  for (const auto& [name, value] : req.headers) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // The first of repeated headers wins, except X-Forwarded-For: proxies may
    // add their hop as a header line of its own, and the last hop is the one
    // a trusted proxy vouches for.
    if (lower == "x-forwarded-for") {
      auto [it, inserted] = out.headers.emplace(lower, value);
      if (!inserted) it->second += ", " + value;
      continue;
    }
    out.headers.emplace(std::move(lower), value);
  }
  // The query is split here rather than taken from req.params: httplib keeps
  // only the text after the last '=' of a parameter ("a=1=2" gives "2").
  size_t q = req.target.find('?');
  if (q != std::string::npos) {
    std::string_view query = std::string_view(req.target).substr(q + 1);
    query = query.substr(0, query.find('#'));
    while (!query.empty()) {
      size_t amp = query.find('&');
      std::string_view piece = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (piece.empty()) continue;
      size_t eq = piece.find('=');
      std::string name(piece.substr(0, eq));
      std::string value(eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1));
      out.query.emplace(httplib::detail::decode_url(name, true), httplib::detail::decode_url(value, true));
    }
  }
  for (size_t i = 1; i < req.matches.size(); ++i) out.path_params.push_back(req.matches[i].str());
  return out;
}

void Write(const HttpResponse& from, httplib::Response& to) {
  if (!from.file_path.empty()) {
    int fd = ::open(from.file_path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      if (fd >= 0) ::close(fd);
      Write(HttpResponse::Error(404, "not_found"), to);
      return;
    }
    to.status = from.status;
    for (const auto& [name, value] : from.headers) to.set_header(name.c_str(), value);
    to.set_content_provider(
        static_cast<size_t>(st.st_size), from.content_type,
        [fd](size_t offset, size_t length, httplib::DataSink& sink) {
          char buf[256 * 1024];
          const size_t want = std::min(length, sizeof buf);
          ssize_t n = ::pread(fd, buf, want, static_cast<off_t>(offset));
          if (n <= 0) return false;  // ends the connection: the peer sees a short body
          return sink.write(buf, static_cast<size_t>(n));
        },
        [fd](bool) { ::close(fd); });
    return;
  }
  to.status = from.status;
  for (const auto& [name, value] : from.headers) to.set_header(name.c_str(), value);
  to.set_content(from.body, from.content_type.c_str());
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                             std::vector<HttpRoute> routes,
                                                             metrics::MetricsRegistry* registry) {
  std::unique_ptr<HttpServer> self(new HttpServer());
  self->guard_ = std::make_shared<ConnectionGuard>(options.name, options.limits, registry);
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both a certificate file and a key file");
  }
  if (options.tls()) {
    auto tls = std::make_unique<GuardedServer<httplib::SSLServer>>(self->guard_, options.tls_cert_file.c_str(),
                                                                    options.tls_key_file.c_str());
    // The constructor reports nothing; an unreadable file, a key that does not
    // match the certificate or a malformed PEM all leave it invalid.
    if (!tls->is_valid() || SSL_CTX_set_min_proto_version(tls->ssl_context(), TLS1_2_VERSION) != 1) {
      return absl::InvalidArgumentError("cannot use the TLS certificate " + options.tls_cert_file + " with key " +
                                        options.tls_key_file + " (unreadable, not PEM, or not a matching pair)");
    }
    self->server_ = std::move(tls);
  } else {
    self->server_ = std::make_unique<GuardedServer<httplib::Server>>(self->guard_);
  }
  auto& srv = *self->server_;
  srv.new_task_queue = PoolFor(options.limits, options.threads);
  srv.set_keep_alive_timeout(options.limits.header_timeout_s);
  srv.set_payload_max_length(options.max_body_bytes);

  for (auto& route : routes) {
    if (route.method != "GET" && route.method != "POST") {
      return absl::InvalidArgumentError("unsupported HTTP method in route: " + route.method);
    }
    try {
      std::regex check(route.pattern);
    } catch (const std::regex_error&) {
      return absl::InvalidArgumentError("invalid route pattern: " + route.pattern);
    }
    auto handler = [pattern = route.pattern, fn = std::move(route.handler), tls = options.tls()](
                       const httplib::Request& req, httplib::Response& res) {
      HttpResponse out;
      try {
        out = fn(ToRequest(req));
      } catch (const std::exception&) {
        // No exception text: it may quote request data.
        log::Error("http_handler_exception", {{"method", req.method}, {"route", pattern}});
        out = HttpResponse::Error(500, "internal");
      } catch (...) {
        log::Error("http_handler_exception", {{"method", req.method}, {"route", pattern}});
        out = HttpResponse::Error(500, "internal");
      }
      Write(out, res);
      AddCommonHeaders(req, res, tls);
    };
    if (route.method == "GET") {
      srv.Get(route.pattern, std::move(handler));
    } else {
      srv.Post(route.pattern, std::move(handler));
    }
  }

  // httplib itself answers unknown paths (404), oversized bodies (413) and
  // malformed requests (400) with an empty body; give them a JSON one. Called
  // for every status >= 400, so handler answers that have a body are kept.
  srv.set_error_handler([tls = options.tls()](const httplib::Request& req, httplib::Response& res) {
    if (res.body.empty()) {
      Write(HttpResponse::Error(res.status, ErrorNameFor(res.status)), res);
    }
    AddCommonHeaders(req, res, tls);
  });
  // Handlers catch everything themselves; this is the backstop for anything
  // thrown inside httplib's own routing.
  srv.set_exception_handler([tls = options.tls()](const httplib::Request& req, httplib::Response& res,
                                                   std::exception_ptr) {
    log::Error("http_exception", {{"method", req.method}});
    Write(HttpResponse::Error(500, "internal"), res);
    AddCommonHeaders(req, res, tls);
  });

  ASSIGN_OR_RETURN(self->port_, BindAndListen(srv, options.bind, options.port, self->thread_));
  log::Info("http_listening",
            {{"bind", options.bind}, {"port", self->port_}, {"server", options.name}, {"tls", options.tls()}});
  return self;
}

void HttpServer::Stop() {
  if (guard_) guard_->Stop();
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace secondread
