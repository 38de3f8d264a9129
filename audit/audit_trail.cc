#include "audit/audit_trail.h"

#include "common/log.h"

namespace secondread::audit {
namespace {

const char* OutcomeLabel(Outcome o) {
  switch (o) {
    case Outcome::kSuccess: return "success";
    case Outcome::kMinorFailure: return "minor_failure";
    case Outcome::kSeriousFailure: return "serious_failure";
    case Outcome::kMajorFailure: return "major_failure";
  }
  return "unknown";
}

}  // namespace

absl::StatusOr<std::unique_ptr<AuditTrail>> AuditTrail::Create(const AuditOptions& options,
                                                               metrics::MetricsRegistry& registry) {
  ASSIGN_OR_RETURN(auto spool, AuditSpool::Open(options.spool_dir, options.spool_max_bytes));
  ASSIGN_OR_RETURN(auto transport, MakeTransport(options.repository));
  return std::unique_ptr<AuditTrail>(new AuditTrail(options, std::move(spool), std::move(transport), registry));
}

AuditTrail::AuditTrail(AuditOptions options, std::unique_ptr<AuditSpool> spool, std::unique_ptr<Transport> transport,
                       metrics::MetricsRegistry& registry)
    : options_(std::move(options)),
      spool_(std::move(spool)),
      transport_(std::move(transport)),
      messages_(registry.CounterFamily("secondread_audit_messages_total",
                                       "Audit messages recorded, by event and outcome")),
      spool_bytes_(registry.GaugeFamily("secondread_audit_spool_bytes", "Bytes of audit messages not yet sent")
                       .Add({})),
      send_failures_(registry.CounterFamily("secondread_audit_send_failures_total",
                                            "Failed attempts to deliver an audit message to the repository")
                         .Add({})),
      dropped_(registry.CounterFamily("secondread_audit_messages_dropped_total",
                                      "Audit messages refused because the spool was full or could not be written")
                   .Add({})),
      sent_(registry.CounterFamily("secondread_audit_messages_sent_total",
                                   "Audit messages delivered to the repository")
                .Add({})) {
  spool_bytes_.Set(static_cast<double>(spool_->bytes()));
}

AuditTrail::~AuditTrail() { Stop(std::chrono::milliseconds(0)); }

void AuditTrail::Start() {
  if (sender_.joinable()) return;
  log::Info("audit_trail_started", {{"repository", options_.repository.host + ":" +
                                                       std::to_string(options_.repository.port)},
                                    {"transport", options_.repository.transport},
                                    {"spooled", spool_->count()}});
  sender_ = std::thread([this] { Run(); });
}

void AuditTrail::Stop(std::chrono::milliseconds drain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
    drain_until_ = std::chrono::steady_clock::now() + drain;
  }
  cv_.notify_all();
  if (sender_.joinable()) sender_.join();
  transport_->Close();
}

void AuditTrail::Record(const AuditMessage& message) {
  messages_.Add({{"event", message.kind}, {"outcome", OutcomeLabel(message.outcome)}}).Increment();
  const std::string xml = ToXml(message, options_.node);
  const std::string syslog = SyslogMessage(options_.syslog, message.time, message.outcome == Outcome::kSuccess, xml);
  absl::Status st = spool_->Append(syslog);
  if (!st.ok()) {
    dropped_.Increment();
    // The event's kind only: the message itself may hold patient data.
    log::Error("audit_message_dropped", {{"event", message.kind}, {"error", std::string(st.message())}});
    return;
  }
  spool_bytes_.Set(static_cast<double>(spool_->bytes()));
  cv_.notify_all();
}

void AuditTrail::Run() {
  auto backoff = options_.retry_initial;
  bool failing = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_ && (spool_->count() == 0 || std::chrono::steady_clock::now() >= drain_until_)) break;
      if (!stop_ && spool_->count() == 0) {
        cv_.wait_for(lock, std::chrono::seconds(1));
        continue;
      }
    }
    auto oldest = spool_->Oldest();
    absl::Status st = oldest.ok() ? absl::OkStatus() : oldest.status();
    if (st.ok() && !oldest->has_value()) continue;
    if (st.ok()) st = transport_->Send((*oldest)->message);
    if (st.ok()) {
      if (failing) log::Info("audit_repository_reachable", {{"spooled", spool_->count()}});
      failing = false;
      backoff = options_.retry_initial;
      sent_.Increment();
      if (absl::Status removed = spool_->Remove((*oldest)->name); !removed.ok()) {
        log::Error("audit_spool_remove_failed", {{"error", removed.ToString()}});
      }
      spool_bytes_.Set(static_cast<double>(spool_->bytes()));
      continue;
    }
    send_failures_.Increment();
    if (!failing) {
      log::Error("audit_repository_unreachable", {{"error", std::string(st.message())}, {"spooled", spool_->count()}});
    }
    failing = true;
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_ && std::chrono::steady_clock::now() >= drain_until_) break;
    cv_.wait_for(lock, backoff, [this] { return stop_; });
    if (stop_ && std::chrono::steady_clock::now() >= drain_until_) break;
    backoff = std::min(backoff * 2, options_.retry_max);
  }
}

}  // namespace secondread::audit
