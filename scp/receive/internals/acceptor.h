// The DICOM listeners' front door. One thread accepts every connection on the
// plain and TLS ports and holds it, non-blocking, until the peer has sent a
// whole A-ASSOCIATE-RQ PDU (after the TLS handshake on the TLS port). Only
// then is the connection handed to DCMTK, which reads that PDU from memory
// and negotiates at once. A peer that sends nothing, trickles, or stops
// halfway costs one socket and a small buffer until its deadline; it never
// holds a thread that another peer is waiting on.
//
// DCMTK-free: OpenSSL only through the SSL_CTX the caller configured.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "audit/audit_sink.h"
#include "common/status.h"
#include "scp/receive/scp_metrics.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace secondread::scp {

struct AcceptorOptions {
  std::string bind_address = "0.0.0.0";
  uint16_t plain_port = 11112;  // 0: no plain listener
  uint16_t tls_port = 0;        // 0: no TLS listener
  // From accept() to a complete A-ASSOCIATE-RQ (including the TLS handshake).
  std::chrono::milliseconds association_deadline{10000};
  // Open connections per peer address, pending and associated together.
  int max_connections_per_peer = 64;
  // Connections accepted but not yet handed over (no complete A-ASSOCIATE-RQ).
  int max_pending_connections = 256;
  // Largest A-ASSOCIATE-RQ PDU accepted (header included).
  uint32_t max_associate_rq_bytes = 65536;
};

// Counts open connections per peer address. A ticket is held for the whole
// life of a connection, from accept() until the association's socket is
// closed, so the per-peer cap covers associated connections too.
class PeerTable {
 public:
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept;
    Ticket& operator=(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket();
    const std::string& peer() const { return peer_; }

   private:
    friend class PeerTable;
    Ticket(std::shared_ptr<PeerTable> table, std::string peer) : table_(std::move(table)), peer_(std::move(peer)) {}
    std::shared_ptr<PeerTable> table_;
    std::string peer_;
  };

  // A ticket, or nothing when the peer already holds `limit` connections.
  static std::optional<Ticket> Take(const std::shared_ptr<PeerTable>& table, const std::string& peer, int limit);
  int Count(const std::string& peer) const;
  struct Stats {
    int total = 0;         // open connections
    int max_per_peer = 0;  // most held by one address
    int peers = 0;         // addresses holding one
  };
  // One pass under the lock, for the gauges.
  Stats Snapshot() const;

 private:
  void Release(const std::string& peer);
  mutable std::mutex mu_;
  std::map<std::string, int> counts_;
};

// A connection whose A-ASSOCIATE-RQ is complete. The receiver owns the
// descriptor (now blocking) and, for TLS, the SSL object.
struct ReadyConnection {
  int fd = -1;
  SSL* ssl = nullptr;
  bool tls = false;
  std::string peer;            // dotted IPv4 address
  std::string peer_subject;    // TLS client certificate subject (RFC 2253), empty without one
  std::string associate_rq;    // the whole PDU, header included, already read off the wire
  PeerTable::Ticket ticket;
};

// Why a complete A-ASSOCIATE-RQ PDU (header included) is not well formed, or
// empty when it is: every item and sub-item must lie inside its container,
// the items must be those PS3.8 9.3.2 allows, with exactly one application
// context and one user information item. DCMTK 3.6.7's parser leaks memory
// on some requests whose items overrun the PDU, before any allow-list check,
// so such a request never reaches it.
std::string AssociateRqProblem(std::string_view pdu);

class Acceptor {
 public:
  using ReadyFn = std::function<void(ReadyConnection)>;
  using TickFn = std::function<void()>;

  // tls_ctx may be null when no TLS port is configured. Binds the ports now,
  // so a port in use is reported at start.
  // audit, when given, hears of TLS failures and wrong-port protocols as
  // security alerts.
  static absl::StatusOr<std::unique_ptr<Acceptor>> Create(const AcceptorOptions& options, SSL_CTX* tls_ctx,
                                                          ScpMetrics* metrics, audit::AuditSink* audit = nullptr);
  ~Acceptor();

  // Runs the accept loop on the calling thread until Stop(). on_ready runs on
  // this thread and must not block on the network; on_tick runs at least
  // every 500 ms.
  void Run(const ReadyFn& on_ready, const TickFn& on_tick);
  void Stop();

  // The ports bound (0: that listener is off).
  uint16_t plain_port() const;
  uint16_t tls_port() const;
  const std::shared_ptr<PeerTable>& peers() const;

  struct Impl;

 private:
  explicit Acceptor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace secondread::scp
