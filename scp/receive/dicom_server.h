// The DICOM receiver: C-ECHO and C-STORE over a bounded pool of concurrent
// associations. DCMTK network headers stay in scp/receive/internals/.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "audit/audit_sink.h"
#include "common/status.h"
#include "scp/receive/instance_sink.h"
#include "scp/receive/scp_metrics.h"
#include "scp/receive/store_processor.h"

namespace secondread::scp {

struct CallerRule {
  std::string ae_title;
  std::string host;  // empty: any host
};

// Parses "AE" or "AE@host".
absl::StatusOr<CallerRule> ParseCallerRule(const std::string& text);

// Binds a calling AE title to the subject of the client certificate it must
// present on the TLS port.
struct CallerSubject {
  std::string ae_title;
  std::string subject;  // RFC 2253, as `openssl x509 -noout -subject -nameopt RFC2253` prints it
};

struct TlsListenerOptions {
  uint16_t port = 0;  // 0: no TLS listener; 2762 by convention
  std::string certificate;  // PEM
  std::string private_key;  // PEM
  std::string ca;           // PEM: CAs trusted for client certificates
  bool require_client_certificate = true;
  // On the TLS port a calling AE title is accepted only with a certificate
  // whose subject is bound to it in caller_subjects.
  bool require_subject_binding = true;
  std::vector<CallerSubject> caller_subjects;
};

struct ScpOptions {
  std::string ae_title = "SECONDREAD";
  std::string bind_address = "0.0.0.0";
  uint16_t port = 11112;  // 0: no plain listener
  std::vector<CallerRule> allowed_callers;
  bool check_called_ae = true;
  int max_associations = 16;
  int idle_timeout_s = 60;
  uint32_t max_pdu_bytes = 131072;
  // Before association: see scp/receive/internals/acceptor.h.
  int association_deadline_ms = 10000;
  int max_connections_per_peer = 64;
  int max_pending_connections = 256;
  uint32_t max_associate_rq_bytes = 65536;
  TlsListenerOptions tls;
};

// Whether a certificate subject may use a calling AE title on the TLS port.
bool SubjectBound(const std::vector<CallerSubject>& bindings, const std::string& calling_ae,
                  const std::string& subject);

// Decides whether a calling AE (from a host) may associate.
bool CallerAllowed(const std::vector<CallerRule>& rules, const std::string& calling_ae, const std::string& peer_host);

class DicomServer {
 public:
  static absl::StatusOr<std::unique_ptr<DicomServer>> Create(const ScpOptions& options, StoreProcessor* processor,
                                                             InstanceSink* sink, ScpMetrics* metrics,
                                                             audit::AuditSink* audit = nullptr);
  ~DicomServer();
  // Serves until Stop() is called; then waits for running associations.
  absl::Status Run();
  void Stop();
  // The ports listened on (0: that listener is off).
  uint16_t plain_port() const;
  uint16_t tls_port() const;

 private:
  struct Impl;
  explicit DicomServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace secondread::scp
