#pragma once

#include <string>

#include "common/metrics.h"

namespace secondread::scp {

struct ScpMetrics {
  explicit ScpMetrics(metrics::MetricsRegistry& registry);

  metrics::Counter& Refused(const std::string& reason) { return refused_family.Add({{"reason", reason}}); }
  // attribute: sop_class | sop_instance | study | series; quirk: see CheckUid
  metrics::Counter& LegacyUid(const std::string& attribute, const std::string& quirk) {
    return legacy_uid_family.Add({{"attribute", attribute}, {"quirk", quirk}});
  }

  // Connections the node closed (or the peer closed) before association
  // negotiation; reasons in docs/configuration.md.
  metrics::Counter& ConnectionDropped(const std::string& reason) {
    return connections_dropped_family.Add({{"reason", reason}});
  }

  prometheus::Family<metrics::Counter>& associations_family;
  metrics::Counter& associations_accepted;
  metrics::Counter& associations_rejected;
  metrics::Counter& instances_stored;
  prometheus::Family<metrics::Counter>& refused_family;
  metrics::Counter& bytes_received;
  metrics::Histogram& store_latency;
  metrics::Gauge& active_associations;
  prometheus::Family<metrics::Counter>& legacy_uid_family;
  prometheus::Family<metrics::Counter>& connections_dropped_family;
  metrics::Gauge& connections_pending;   // accepted, A-ASSOCIATE-RQ not complete yet
  metrics::Gauge& connections_open;      // every open DICOM connection
  metrics::Gauge& connections_peer_max;  // most open connections held by one peer address
  metrics::Gauge& connection_peers;      // peer addresses with an open connection
  metrics::Histogram& tls_handshake;
};

}  // namespace secondread::scp
