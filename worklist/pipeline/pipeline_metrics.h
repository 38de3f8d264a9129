// Metrics of the path from a received study to delivered results.
#pragma once

#include <string>

#include "common/metrics.h"

namespace secondread::worklist {

// A volume's stages run from tens of milliseconds to minutes on a small CPU,
// past LatencyBuckets' last bound.
metrics::Histogram::BucketBoundaries VolumeStageBuckets();

struct PipelineMetrics {
  explicit PipelineMetrics(metrics::MetricsRegistry& registry);

  // result: done | failed | not_applicable
  metrics::Counter& Reads(const std::string& result) { return reads_family.Add({{"result", result}}); }
  // stage: completeness_wait | queue | decode | inference | results | export
  metrics::Histogram& Stage(const std::string& stage) {
    return stage_family.Add({{"stage", stage}}, metrics::LatencyBuckets());
  }
  // A volume read's stages, finer than Stage: decode | assemble | transfer |
  // resample | inference | results (VolumeStages in volume_dispatcher.cc).
  metrics::Histogram& VolumeStage(const std::string& stage) {
    return volume_stage_family.Add({{"stage", stage}}, VolumeStageBuckets());
  }
  // direction: sent (voxels to the worker) | received (maps back)
  metrics::Counter& VolumeTransferBytes(const std::string& direction) {
    return volume_bytes_family.Add({{"direction", direction}});
  }
  // result: sent | retry | dead
  metrics::Counter& Exports(const std::string& result) { return exports_family.Add({{"result", result}}); }
  metrics::Gauge& Jobs(const std::string& queue, const std::string& state) {
    return jobs_family.Add({{"queue", queue}, {"state", state}});
  }
  // reason: burned_in_annotation | burned_in_annotation_unknown
  metrics::Counter& ImagesSkipped(const std::string& reason) { return skipped_family.Add({{"reason", reason}}); }
  metrics::Gauge& EndpointUp(const std::string& endpoint) { return endpoint_family.Add({{"endpoint", endpoint}}); }

  prometheus::Family<metrics::Counter>& reads_family;
  metrics::Counter& flagged_reads;
  metrics::Counter& unmatched_studies;
  metrics::Counter& triggered_reads;
  prometheus::Family<metrics::Histogram>& stage_family;
  prometheus::Family<metrics::Histogram>& volume_stage_family;
  prometheus::Family<metrics::Counter>& volume_bytes_family;
  prometheus::Family<metrics::Counter>& exports_family;
  prometheus::Family<metrics::Gauge>& jobs_family;
  metrics::Gauge& dead_letters;
  prometheus::Family<metrics::Gauge>& endpoint_family;
  prometheus::Family<metrics::Counter>& skipped_family;
};

}  // namespace secondread::worklist
