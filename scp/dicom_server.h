// The DICOM receiver: C-ECHO and C-STORE over a bounded pool of concurrent
// associations. DCMTK network headers stay in scp/internals/.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "scp/instance_sink.h"
#include "scp/scp_metrics.h"
#include "scp/store_processor.h"

namespace secondread::scp {

struct CallerRule {
  std::string ae_title;
  std::string host;  // empty: any host
};

// Parses "AE" or "AE@host".
absl::StatusOr<CallerRule> ParseCallerRule(const std::string& text);

struct ScpOptions {
  std::string ae_title = "SECONDREAD";
  uint16_t port = 11112;
  std::vector<CallerRule> allowed_callers;
  bool check_called_ae = true;
  int max_associations = 16;
  int idle_timeout_s = 60;
  uint32_t max_pdu_bytes = 131072;
};

// Decides whether a calling AE (from a host) may associate.
bool CallerAllowed(const std::vector<CallerRule>& rules, const std::string& calling_ae, const std::string& peer_host);

class DicomServer {
 public:
  static absl::StatusOr<std::unique_ptr<DicomServer>> Create(const ScpOptions& options, StoreProcessor* processor,
                                                             InstanceSink* sink, ScpMetrics* metrics);
  ~DicomServer();
  // Serves until Stop() is called; then waits for running associations.
  absl::Status Run();
  void Stop();

 private:
  struct Impl;
  explicit DicomServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace secondread::scp
