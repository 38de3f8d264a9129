#pragma once

#include <string>

#include "common/metrics.h"

namespace secondread::scp {

struct ScpMetrics {
  explicit ScpMetrics(metrics::MetricsRegistry& registry);

  metrics::Counter& Refused(const std::string& reason) { return refused_family.Add({{"reason", reason}}); }

  prometheus::Family<metrics::Counter>& associations_family;
  metrics::Counter& associations_accepted;
  metrics::Counter& associations_rejected;
  metrics::Counter& instances_stored;
  prometheus::Family<metrics::Counter>& refused_family;
  metrics::Counter& bytes_received;
  metrics::Histogram& store_latency;
  metrics::Gauge& active_associations;
};

}  // namespace secondread::scp
