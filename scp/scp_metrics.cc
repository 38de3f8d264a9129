#include "scp/scp_metrics.h"

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
                              .Add({})) {
  for (const char* reason : {"invalid_uid", "uid_mismatch", "unparsable", "too_large", "disk_floor",
                             "storage_error", "database", "registry_error"}) {
    Refused(reason);
  }
}

}  // namespace secondread::scp
