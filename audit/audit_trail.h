// The node's audit trail: every recorded event becomes an RFC 5424 syslog
// message in a durable local spool before any send is tried; one sender
// thread delivers the spool, oldest first, to the audit record repository
// and retries with backoff while it is unreachable.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "audit/audit_sink.h"
#include "audit/audit_spool.h"
#include "audit/syslog.h"
#include "audit/transport.h"
#include "common/metrics.h"

namespace secondread::audit {

struct AuditOptions {
  bool enabled = false;
  RepositoryOptions repository;
  std::string spool_dir;             // empty: <storage.spool_dir>/audit
  uint64_t spool_max_bytes = 256ull << 20;
  std::chrono::milliseconds retry_initial{500};
  std::chrono::milliseconds retry_max{30000};
  NodeIdentity node;
  SyslogHeader syslog;
};

class AuditTrail : public AuditSink {
 public:
  // Opens the spool and loads the TLS files; starts nothing.
  static absl::StatusOr<std::unique_ptr<AuditTrail>> Create(const AuditOptions& options,
                                                            metrics::MetricsRegistry& registry);
  ~AuditTrail() override;

  void Start();
  // Gives the sender up to `drain` to empty the spool, then stops it. What
  // is left stays in the spool for the next start.
  void Stop(std::chrono::milliseconds drain = std::chrono::milliseconds(3000));

  void Record(const AuditMessage& message) override;
  const NodeIdentity& node() const override { return options_.node; }

 private:
  AuditTrail(AuditOptions options, std::unique_ptr<AuditSpool> spool, std::unique_ptr<Transport> transport,
             metrics::MetricsRegistry& registry);
  void Run();

  AuditOptions options_;
  std::unique_ptr<AuditSpool> spool_;
  std::unique_ptr<Transport> transport_;
  prometheus::Family<metrics::Counter>& messages_;
  metrics::Gauge& spool_bytes_;
  metrics::Counter& send_failures_;
  metrics::Counter& dropped_;
  metrics::Counter& sent_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::chrono::steady_clock::time_point drain_until_{};
  std::thread sender_;
};

}  // namespace secondread::audit
