#include "scp/receive/internals/acceptor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <vector>

#include "common/log.h"

namespace secondread::scp {

// ---- PeerTable --------------------------------------------------------------

PeerTable::Ticket::Ticket(Ticket&& other) noexcept
    : table_(std::move(other.table_)), peer_(std::move(other.peer_)) {
  other.table_.reset();
}

PeerTable::Ticket& PeerTable::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    if (table_) table_->Release(peer_);
    table_ = std::move(other.table_);
    peer_ = std::move(other.peer_);
    other.table_.reset();
  }
  return *this;
}

PeerTable::Ticket::~Ticket() {
  if (table_) table_->Release(peer_);
}

std::optional<PeerTable::Ticket> PeerTable::Take(const std::shared_ptr<PeerTable>& table, const std::string& peer,
                                                 int limit) {
  std::lock_guard<std::mutex> lock(table->mu_);
  int& n = table->counts_[peer];
  if (n >= limit) {
    if (n == 0) table->counts_.erase(peer);
    return std::nullopt;
  }
  ++n;
  return Ticket(table, peer);
}

void PeerTable::Release(const std::string& peer) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(peer);
  if (it == counts_.end()) return;
  if (--it->second <= 0) counts_.erase(it);
}

int PeerTable::Count(const std::string& peer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(peer);
  return it == counts_.end() ? 0 : it->second;
}

PeerTable::Stats PeerTable::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats out;
  out.peers = static_cast<int>(counts_.size());
  for (const auto& [peer, n] : counts_) {
    out.total += n;
    out.max_per_peer = std::max(out.max_per_peer, n);
  }
  return out;
}

// ---- Acceptor -----------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kPlainListenId = 1;
constexpr uint64_t kTlsListenId = 2;
constexpr uint64_t kWakeId = 3;
constexpr uint64_t kFirstConnectionId = 16;
constexpr size_t kHeaderBytes = 6;
// Protocol version, reserved, called and calling AE titles, reserved: the
// fixed part every A-ASSOCIATE-RQ has before its variable items.
constexpr uint32_t kMinAssociateRqBody = 68;

enum class Phase { kTlsStart, kTlsHandshake, kHeader, kBody };

struct Connection {
  uint64_t id = 0;
  int fd = -1;
  bool tls = false;
  SSL* ssl = nullptr;
  Phase phase = Phase::kHeader;
  std::string peer;
  std::string subject;
  std::string buf;
  size_t need = kHeaderBytes;
  Clock::time_point accepted;
  Clock::time_point deadline;
  uint32_t epoll_events = 0;
  PeerTable::Ticket ticket;
};

std::string OpenSslReason() {
  unsigned long e = ERR_peek_last_error();
  std::string reason;
  if (e != 0) {
    const char* r = ERR_reason_error_string(e);
    reason = r ? r : "openssl error " + std::to_string(e);
  }
  ERR_clear_error();
  return reason.empty() ? "connection closed during the handshake" : reason;
}

std::string SubjectOf(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return "";
  std::string out;
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    if (n > 0) out.assign(data, static_cast<size_t>(n));
  }
  BIO_free(bio);
  X509_free(cert);
  return out;
}

absl::StatusOr<int> Listen(const std::string& address, uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return absl::InvalidArgumentError("dicom.bind_address is not an IPv4 address: " + address);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    return absl::UnavailableError("cannot bind DICOM port " + std::to_string(port) + ": " + std::strerror(e));
  }
  if (::listen(fd, SOMAXCONN) != 0) {
    int e = errno;
    ::close(fd);
    return absl::UnavailableError(std::string("listen: ") + std::strerror(e));
  }
  return fd;
}

uint16_t BoundPort(int fd) {
  if (fd < 0) return 0;
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  return ntohs(addr.sin_port);
}

}  // namespace

namespace {

uint16_t Be16(std::string_view b, size_t at) {
  return static_cast<uint16_t>((static_cast<unsigned char>(b[at]) << 8) | static_cast<unsigned char>(b[at + 1]));
}

// Sub-items (type, reserved, 16-bit length) that must tile [begin, end),
// each of a type `allowed` accepts; `types` collects them in order.
template <typename Allowed>
std::string SubItemsProblem(std::string_view pdu, size_t begin, size_t end, const char* where, Allowed allowed,
                            std::string* types) {
  size_t at = begin;
  while (at < end) {
    if (end - at < 4) return std::string("truncated sub-item header in ") + where;
    unsigned type = static_cast<unsigned char>(pdu[at]);
    size_t length = Be16(pdu, at + 2);
    if (length > end - at - 4) return std::string("sub-item overruns its ") + where;
    if (!allowed(type)) return "unexpected sub-item type " + std::to_string(type) + " in " + where;
    types->push_back(static_cast<char>(type));
    at += 4 + length;
  }
  return "";
}

// Fields inside a user information sub-item, each a 16-bit length and that
// many bytes, must fill [at, end) exactly.
bool LengthPrefixedFieldsFill(std::string_view pdu, size_t at, size_t end, int fields) {
  for (int i = 0; i < fields; ++i) {
    if (end - at < 2) return false;
    size_t n = Be16(pdu, at);
    if (n > end - at - 2) return false;
    at += 2 + n;
  }
  return at == end;
}

// The inner layout of the user information sub-items DCMTK parses (PS3.7
// D.3.3, PS3.8 9.3.2.3): DCMTK 3.6.7 keeps memory of a request whose SOP
// Class Extended Negotiation sub-item holds a UID length past its end.
std::string UserInformationProblem(std::string_view pdu, size_t begin, size_t end) {
  for (size_t at = begin; at < end;) {
    unsigned type = static_cast<unsigned char>(pdu[at]);
    size_t length = Be16(pdu, at + 2);
    size_t v = at + 4, v_end = v + length;
    bool ok = true;
    switch (type) {
      case 0x51:  // maximum length
      case 0x53:  // asynchronous operations window
        ok = length == 4;
        break;
      case 0x52:  // implementation class UID
        ok = length >= 1 && length <= 64;
        break;
      case 0x55:  // implementation version name
        ok = length >= 1 && length <= 16;
        break;
      case 0x54:  // SCP/SCU role selection: UID, then two role bytes
        ok = length >= 4 && size_t{Be16(pdu, v)} + 4 == length;
        break;
      case 0x56:  // SOP class extended negotiation: UID, then application information
        ok = length >= 2 && size_t{Be16(pdu, v)} + 2 <= length;
        break;
      case 0x57: {  // SOP class common extended negotiation
        // SOP class UID, service class UID, then a 16-bit length of related
        // general SOP class UIDs, each length-prefixed, filling the rest.
        size_t r = v;
        auto field = [&] {
          if (v_end - r < 2 || Be16(pdu, r) > v_end - r - 2) return false;
          r += 2 + Be16(pdu, r);
          return true;
        };
        ok = field() && field() && v_end - r >= 2 && Be16(pdu, r) == v_end - r - 2;
        if (ok) r += 2;
        while (ok && r < v_end) ok = field();
        break;
      }
      case 0x58: {  // user identity (request): type, response wanted, two fields
        // Only type 2 (username and passcode) has a secondary field: DCMTK
        // skips it for the other types and misreads what follows.
        unsigned identity = length >= 1 ? static_cast<unsigned char>(pdu[v]) : 0;
        ok = length >= 6 && identity >= 1 && identity <= 5 && LengthPrefixedFieldsFill(pdu, v + 2, v_end, 2) &&
             (identity == 2 || Be16(pdu, v + 4 + Be16(pdu, v + 2)) == 0);
        break;
      }
      case 0x59:  // user identity (acceptor's answer) has no place in a request
        ok = false;
        break;
      default:
        break;
    }
    if (!ok) return "malformed user information sub-item " + std::to_string(type);
    at = v_end;
  }
  return "";
}

// An AE title field as DCMTK reads it: up to the first NUL, trailing spaces
// dropped. NUL padding after the title is tolerated (legacy senders write
// it); an empty title or a control character is not.
std::string AeTitleProblem(std::string_view field, const char* which) {
  size_t end = field.find('\0');
  std::string_view title = field.substr(0, end == std::string_view::npos ? field.size() : end);
  if (end != std::string_view::npos) {
    for (char c : field.substr(end)) {
      if (c != '\0' && c != ' ') return std::string(which) + " AE title has bytes after a NUL";
    }
  }
  for (char c : title) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      return std::string(which) + " AE title has a control character";
    }
  }
  if (title.find_first_not_of(' ') == std::string_view::npos) return std::string(which) + " AE title is empty";
  return "";
}

}  // namespace

std::string AssociateRqProblem(std::string_view pdu) {
  if (pdu.size() < kHeaderBytes + kMinAssociateRqBody) return "shorter than the fixed part";
  if (static_cast<unsigned char>(pdu[0]) != 0x01) return "not an A-ASSOCIATE-RQ";
  for (auto [offset, which] : {std::pair<size_t, const char*>{10, "called"}, {26, "calling"}}) {
    std::string p = AeTitleProblem(pdu.substr(offset, 16), which);
    if (!p.empty()) return p;
  }
  size_t at = kHeaderBytes + kMinAssociateRqBody;
  int application_contexts = 0, user_information = 0, presentation_contexts = 0;
  while (at < pdu.size()) {
    if (pdu.size() - at < 4) return "truncated item header";
    unsigned type = static_cast<unsigned char>(pdu[at]);
    size_t length = Be16(pdu, at + 2);
    if (length > pdu.size() - at - 4) return "item overruns the PDU";
    size_t begin = at + 4, end = begin + length;
    switch (type) {
      case 0x10:
        ++application_contexts;
        // DCMTK refuses a UID longer than 64 bytes, keeping what it parsed.
        if (length > 64) return "application context name longer than 64 bytes";
        break;
      case 0x20: {
        ++presentation_contexts;
        if (length < 4) return "presentation context item too short";
        // One abstract syntax, then one or more transfer syntaxes.
        std::string types;
        std::string p = SubItemsProblem(
            pdu, begin + 4, end, "presentation context", [](unsigned t) { return t == 0x30 || t == 0x40; }, &types);
        if (!p.empty()) return p;
        if (types.size() < 2 || types[0] != '\x30' || types.find('\x30', 1) != std::string::npos) {
          return "presentation context without one abstract syntax followed by transfer syntaxes";
        }
        for (size_t sub = begin + 4; sub < end; sub += 4 + Be16(pdu, sub + 2)) {
          if (Be16(pdu, sub + 2) > 64) return "abstract or transfer syntax longer than 64 bytes";
        }
        break;
      }
      case 0x50: {
        ++user_information;
        // Sub-items DCMTK does not know are skipped, as PS3.7 D.3.3 allows.
        std::string types;
        std::string p = SubItemsProblem(
            pdu, begin, end, "user information", [](unsigned) { return true; }, &types);
        if (!p.empty()) return p;
        p = UserInformationProblem(pdu, begin, end);
        if (!p.empty()) return p;
        break;
      }
      default:
        return "unexpected item type " + std::to_string(type);
    }
    at = end;
  }
  if (application_contexts != 1) return "application context items: " + std::to_string(application_contexts);
  if (user_information != 1) return "user information items: " + std::to_string(user_information);
  if (presentation_contexts == 0) return "no presentation context";
  return "";
}

struct Acceptor::Impl {
  AcceptorOptions options;
  SSL_CTX* tls_ctx = nullptr;
  ScpMetrics* metrics = nullptr;
  audit::AuditSink* audit = nullptr;
  std::shared_ptr<PeerTable> peers = std::make_shared<PeerTable>();
  int plain_fd = -1;
  int tls_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;
  // Held open so that, at the descriptor limit, one can be freed to accept
  // and close a connection instead of leaving it spinning in the backlog.
  int reserve_fd = -1;
  std::atomic<bool> stop{false};
  uint64_t next_id = kFirstConnectionId;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections;
  // Deadlines are accept time plus one constant, so accept order is deadline
  // order; entries of connections already gone are skipped.
  std::deque<std::pair<Clock::time_point, uint64_t>> by_deadline;

  ~Impl() {
    for (auto& [id, c] : connections) CloseConnection(*c);
    for (int fd : {plain_fd, tls_fd, epoll_fd, wake_fd, reserve_fd}) {
      if (fd >= 0) ::close(fd);
    }
  }

  static void CloseConnection(Connection& c) {
    if (c.ssl) {
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
  }

  void Watch(Connection& c, uint32_t events) {
    if (c.epoll_events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = c.id;
    ::epoll_ctl(epoll_fd, c.epoll_events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev);
    c.epoll_events = events;
  }

  void Drop(uint64_t id, const std::string& reason, const std::string& detail = "") {
    auto it = connections.find(id);
    if (it == connections.end()) return;
    Connection& c = *it->second;
    auto held = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - c.accepted).count();
    nlohmann::json fields = {{"reason", reason},
                             {"peer", c.peer},
                             {"port", c.tls ? "tls" : "plain"},
                             {"held_ms", held},
                             {"bytes", c.buf.size()}};
    if (!detail.empty()) fields["detail"] = detail;
    // A peer that connects and goes away (a port probe, a health check) is
    // not an attack; everything the node itself cuts off is a warning.
    if (reason == "peer_closed") {
      log::Info("connection_closed_before_association", std::move(fields));
    } else {
      log::Warn("connection_dropped", std::move(fields));
    }
    metrics->ConnectionDropped(reason).Increment();
    // A failed handshake or the wrong protocol on a port is a peer that could
    // not authenticate as a node: a security alert for the audit trail.
    if (audit && (reason == "tls_handshake_failed" || reason == "plaintext_on_tls_port" ||
                  reason == "tls_on_plain_port")) {
      audit->Record(audit::SecurityAlert(audit->node(), audit::kNodeAuthentication, {"", c.peer},
                                         detail.empty() ? reason : reason + ": " + detail));
    }
    if (c.epoll_events != 0) ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
    CloseConnection(c);
    connections.erase(it);
  }


  void AcceptAll(int listen_fd, bool tls) {
    for (;;) {
      sockaddr_in addr{};
      socklen_t len = sizeof addr;
      int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE) {
          // Out of descriptors: accept and close one so the backlog does not
          // wake this loop forever, and say so.
          if (reserve_fd >= 0) {
            ::close(reserve_fd);
            reserve_fd = -1;
            int victim = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (victim >= 0) ::close(victim);
            reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          }
          log::Warn("connection_dropped", {{"reason", "fd_limit"}, {"port", tls ? "tls" : "plain"}});
          metrics->ConnectionDropped("fd_limit").Increment();
        }
        return;  // EAGAIN, or an error the next wake-up retries
      }
      char text[INET_ADDRSTRLEN] = {0};
      ::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof text);
      std::string peer = text;
      auto ticket = PeerTable::Take(peers, peer, options.max_connections_per_peer);
      if (!ticket) {
        log::Warn("connection_dropped", {{"reason", "per_peer_limit"},
                                         {"peer", peer},
                                         {"port", tls ? "tls" : "plain"},
                                         {"limit", options.max_connections_per_peer}});
        metrics->ConnectionDropped("per_peer_limit").Increment();
        ::close(fd);
        continue;
      }
      // The bound on pending connections makes room by closing the oldest:
      // a flood of silent connections then cannot lock out a peer that
      // completes its request promptly.
      while (static_cast<int>(connections.size()) >= options.max_pending_connections && !by_deadline.empty()) {
        uint64_t oldest = by_deadline.front().second;
        by_deadline.pop_front();
        Drop(oldest, "pending_limit");
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<Connection>();
      c->id = next_id++;
      c->fd = fd;
      c->tls = tls;
      c->phase = tls ? Phase::kTlsStart : Phase::kHeader;
      c->peer = std::move(peer);
      c->accepted = Clock::now();
      c->deadline = c->accepted + options.association_deadline;
      c->ticket = std::move(*ticket);
      by_deadline.emplace_back(c->deadline, c->id);
      Connection& ref = *c;
      connections.emplace(c->id, std::move(c));
      Watch(ref, EPOLLIN | EPOLLRDHUP);
    }
  }

  // Moves a connection as far as its bytes allow; hands it over when its
  // A-ASSOCIATE-RQ is complete.
  void Advance(uint64_t id, const ReadyFn& on_ready) {
    auto it = connections.find(id);
    if (it == connections.end()) return;
    Connection& c = *it->second;
    if (c.phase == Phase::kTlsStart) {
      unsigned char first = 0;
      ssize_t n = ::recv(c.fd, &first, 1, MSG_PEEK);
      if (n == 0) return Drop(id, "peer_closed");
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        return Drop(id, "read_error", std::strerror(errno));
      }
      if (first == 0x01) return Drop(id, "plaintext_on_tls_port");
      c.ssl = SSL_new(tls_ctx);
      if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1) return Drop(id, "tls_handshake_failed", OpenSslReason());
      c.phase = Phase::kTlsHandshake;
    }
    if (c.phase == Phase::kTlsHandshake) {
      ERR_clear_error();
      int r = SSL_accept(c.ssl);
      if (r != 1) {
        int err = SSL_get_error(c.ssl, r);
        if (err == SSL_ERROR_WANT_READ) return Watch(c, EPOLLIN | EPOLLRDHUP);
        if (err == SSL_ERROR_WANT_WRITE) return Watch(c, EPOLLOUT | EPOLLRDHUP);
        std::string reason = OpenSslReason();
        long verify = SSL_get_verify_result(c.ssl);
        if (verify != X509_V_OK) reason += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
        return Drop(id, "tls_handshake_failed", reason);
      }
      metrics->tls_handshake.Observe(std::chrono::duration<double>(Clock::now() - c.accepted).count());
      c.subject = SubjectOf(c.ssl);
      c.phase = Phase::kHeader;
      Watch(c, EPOLLIN | EPOLLRDHUP);
    }
    char chunk[16384];
    while (c.buf.size() < c.need) {
      size_t want = std::min(sizeof chunk, c.need - c.buf.size());
      ssize_t n;
      if (c.ssl) {
        ERR_clear_error();
        int r = SSL_read(c.ssl, chunk, static_cast<int>(want));
        if (r <= 0) {
          int err = SSL_get_error(c.ssl, r);
          if (err == SSL_ERROR_WANT_READ) return Watch(c, EPOLLIN | EPOLLRDHUP);
          if (err == SSL_ERROR_WANT_WRITE) return Watch(c, EPOLLOUT | EPOLLRDHUP);
          if (err == SSL_ERROR_ZERO_RETURN) return Drop(id, "peer_closed");
          if (err == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) return Drop(id, "peer_closed");
          return Drop(id, "read_error", OpenSslReason());
        }
        n = r;
      } else {
        n = ::recv(c.fd, chunk, want, 0);
        if (n == 0) return Drop(id, "peer_closed");
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) return;
          return Drop(id, "read_error", std::strerror(errno));
        }
      }
      bool had_type = !c.buf.empty();
      c.buf.append(chunk, static_cast<size_t>(n));
      if (!had_type) {
        unsigned char type = static_cast<unsigned char>(c.buf[0]);
        if (type != 0x01) {
          return Drop(id, (!c.tls && type == 0x16) ? "tls_on_plain_port" : "not_associate_rq");
        }
      }
      if (c.phase == Phase::kHeader && c.buf.size() == kHeaderBytes) {
        const auto* h = reinterpret_cast<const unsigned char*>(c.buf.data());
        uint32_t length = (uint32_t{h[2]} << 24) | (uint32_t{h[3]} << 16) | (uint32_t{h[4]} << 8) | h[5];
        if (length < kMinAssociateRqBody) return Drop(id, "malformed_associate_rq", "PDU length " + std::to_string(length));
        if (uint64_t{length} + kHeaderBytes > options.max_associate_rq_bytes) {
          return Drop(id, "associate_rq_too_large", "PDU length " + std::to_string(length));
        }
        c.need = kHeaderBytes + length;
        c.phase = Phase::kBody;
      }
    }
    std::string problem = AssociateRqProblem(c.buf);
    if (!problem.empty()) return Drop(id, "malformed_associate_rq", problem);
    HandOver(it, on_ready);
  }

  void HandOver(std::unordered_map<uint64_t, std::unique_ptr<Connection>>::iterator it, const ReadyFn& on_ready) {
    std::unique_ptr<Connection> c = std::move(it->second);
    connections.erase(it);
    if (c->epoll_events != 0) ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, nullptr);
    // DCMTK reads and writes with blocking calls and its own timeouts.
    int flags = ::fcntl(c->fd, F_GETFL);
    if (flags >= 0) ::fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
    ReadyConnection ready;
    ready.fd = c->fd;
    ready.ssl = c->ssl;
    ready.tls = c->tls;
    ready.peer = std::move(c->peer);
    ready.peer_subject = std::move(c->subject);
    ready.associate_rq = std::move(c->buf);
    ready.ticket = std::move(c->ticket);
    c->fd = -1;
    c->ssl = nullptr;
    on_ready(std::move(ready));
  }

  void ExpireDeadlines() {
    auto now = Clock::now();
    while (!by_deadline.empty() && by_deadline.front().first <= now) {
      uint64_t id = by_deadline.front().second;
      by_deadline.pop_front();
      auto it = connections.find(id);
      if (it == connections.end()) continue;
      const char* phase = it->second->phase == Phase::kTlsStart || it->second->phase == Phase::kTlsHandshake
                              ? "tls_handshake"
                              : "associate_rq";
      Drop(id, "deadline", phase);
    }
    // Bounded by connections ever accepted in one deadline window.
    while (!by_deadline.empty() && connections.find(by_deadline.front().second) == connections.end()) {
      by_deadline.pop_front();
    }
  }

  int WaitMs() const {
    int ms = 500;
    if (!by_deadline.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(by_deadline.front().first - Clock::now());
      ms = static_cast<int>(std::clamp<int64_t>(left.count() + 1, 0, ms));
    }
    return ms;
  }

  void UpdateGauges() {
    metrics->connections_pending.Set(static_cast<double>(connections.size()));
    const PeerTable::Stats stats = peers->Snapshot();
    metrics->connections_open.Set(stats.total);
    metrics->connections_peer_max.Set(stats.max_per_peer);
    metrics->connection_peers.Set(stats.peers);
  }
};

absl::StatusOr<std::unique_ptr<Acceptor>> Acceptor::Create(const AcceptorOptions& options, SSL_CTX* tls_ctx,
                                                           ScpMetrics* metrics, audit::AuditSink* audit) {
  if (options.plain_port == 0 && options.tls_port == 0) {
    return absl::InvalidArgumentError("neither the plain DICOM port nor the TLS port is configured");
  }
  if (options.tls_port != 0 && tls_ctx == nullptr) return absl::InvalidArgumentError("TLS port without a TLS context");
  if (options.max_connections_per_peer < 1 || options.max_pending_connections < 1) {
    return absl::InvalidArgumentError("connection limits must be at least 1");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->tls_ctx = tls_ctx;
  impl->metrics = metrics;
  impl->audit = audit;
  if (options.plain_port != 0) {
    ASSIGN_OR_RETURN(impl->plain_fd, Listen(options.bind_address, options.plain_port));
  }
  if (options.tls_port != 0) {
    ASSIGN_OR_RETURN(impl->tls_fd, Listen(options.bind_address, options.tls_port));
  }
  impl->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  impl->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  impl->reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (impl->epoll_fd < 0 || impl->wake_fd < 0) return absl::InternalError("epoll/eventfd failed");
  auto add = [&](int fd, uint64_t id) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    ::epoll_ctl(impl->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  };
  if (impl->plain_fd >= 0) add(impl->plain_fd, kPlainListenId);
  if (impl->tls_fd >= 0) add(impl->tls_fd, kTlsListenId);
  add(impl->wake_fd, kWakeId);
  return std::unique_ptr<Acceptor>(new Acceptor(std::move(impl)));
}

Acceptor::Acceptor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Acceptor::~Acceptor() = default;

void Acceptor::Run(const ReadyFn& on_ready, const TickFn& on_tick) {
  Impl& s = *impl_;
  std::vector<epoll_event> events(256);
  while (!s.stop.load()) {
    int n = ::epoll_wait(s.epoll_fd, events.data(), static_cast<int>(events.size()), s.WaitMs());
    for (int i = 0; i < n; ++i) {
      uint64_t id = events[i].data.u64;
      if (id == kPlainListenId) {
        s.AcceptAll(s.plain_fd, false);
      } else if (id == kTlsListenId) {
        s.AcceptAll(s.tls_fd, true);
      } else if (id == kWakeId) {
        uint64_t v;
        while (::read(s.wake_fd, &v, sizeof v) > 0) {
        }
      } else {
        s.Advance(id, on_ready);
      }
    }
    s.ExpireDeadlines();
    if (on_tick) on_tick();
    s.UpdateGauges();
  }
}

void Acceptor::Stop() {
  impl_->stop.store(true);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(impl_->wake_fd, &one, sizeof one);
}

uint16_t Acceptor::plain_port() const { return BoundPort(impl_->plain_fd); }
uint16_t Acceptor::tls_port() const { return BoundPort(impl_->tls_fd); }
const std::shared_ptr<PeerTable>& Acceptor::peers() const { return impl_->peers; }

}  // namespace secondread::scp
