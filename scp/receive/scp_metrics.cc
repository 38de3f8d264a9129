#include "scp/receive/scp_metrics.h"

namespace secondread::scp {

ScpMetrics::ScpMetrics(metrics::MetricsRegistry& r)
    : associations_family(r.CounterFamily("secondread_scp_associations_total",
                                          "DICOM associations by negotiation result")),
      associations_accepted(associations_family.Add({{"result", "accepted"}})),
      associations_rejected(associations_family.Add({{"result", "rejected"}})),
      instances_stored(r.CounterFamily("secondread_scp_instances_stored_total",
                                       "Instances made durable and answered with Success")
                           .Add({})),
      refused_family(r.CounterFamily("secondread_scp_instances_refused_total",
                                     "C-STORE requests answered with a failure status, by reason")),
      bytes_received(r.CounterFamily("secondread_scp_bytes_received_total",
                                     "Dataset bytes received in C-STORE requests")
                         .Add({})),
      store_latency(r.HistogramFamily("secondread_scp_store_duration_seconds",
                                      "Time from the C-STORE command to the response, in seconds")
                        .Add({}, metrics::LatencyBuckets())),
      active_associations(r.GaugeFamily("secondread_scp_active_associations",
                                        "Associations being served now")
                              .Add({})),
      legacy_uid_family(r.CounterFamily("secondread_scp_legacy_uids_total",
                                        "UIDs accepted although they break PS3.5 9.1 harmlessly, by attribute and quirk")),
      connections_dropped_family(
          r.CounterFamily("secondread_scp_connections_dropped_total",
                          "DICOM connections closed before association negotiation completed, by reason")),
      connections_pending(r.GaugeFamily("secondread_scp_connections_pending",
                                        "DICOM connections accepted whose A-ASSOCIATE-RQ is not complete yet")
                              .Add({})),
      connections_open(
          r.GaugeFamily("secondread_scp_connections_open", "Open DICOM connections, pending and associated").Add({})),
      connections_peer_max(r.GaugeFamily("secondread_scp_connections_peer_max",
                                         "Most open DICOM connections held by one peer address")
                               .Add({})),
      connection_peers(
          r.GaugeFamily("secondread_scp_connection_peers", "Peer addresses with an open DICOM connection").Add({})),
      tls_handshake(r.HistogramFamily("secondread_scp_tls_handshake_duration_seconds",
                                      "Completed DICOM TLS handshakes, from accept() on, in seconds")
                        .Add({}, metrics::LatencyBuckets())) {
  for (const char* reason : {"deadline", "per_peer_limit", "pending_limit", "not_associate_rq",
                             "associate_rq_too_large", "malformed_associate_rq", "tls_handshake_failed",
                             "plaintext_on_tls_port", "tls_on_plain_port", "fd_limit", "read_error", "peer_closed",
                             "handover_failed"}) {
    ConnectionDropped(reason);
  }
  for (const char* reason : {"invalid_uid", "uid_mismatch", "unparsable", "too_large", "disk_floor",
                             "storage_error", "database", "registry_error", "nesting_too_deep",
                             "too_many_elements", "length_beyond_data"}) {
    Refused(reason);
  }
}

}  // namespace secondread::scp
