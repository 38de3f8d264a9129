#include "worklist/pipeline/pipeline_metrics.h"

#include "scp/pixels/pixel_decoder.h"

namespace secondread::worklist {

metrics::Histogram::BucketBoundaries VolumeStageBuckets() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}

PipelineMetrics::PipelineMetrics(metrics::MetricsRegistry& r)
    : reads_family(r.CounterFamily("secondread_pipeline_reads_total", "Model reads finished, by result")),
      flagged_reads(r.CounterFamily("secondread_pipeline_flagged_reads_total",
                                    "Reads with at least one finding above its operating point")
                        .Add({})),
      unmatched_studies(r.CounterFamily("secondread_pipeline_unmatched_studies_total",
                                        "Studies that no routing rule matched, or whose image count was outside every matching rule's bounds")
                            .Add({})),
      triggered_reads(r.CounterFamily("secondread_pipeline_reads_triggered_total",
                                      "Reads created by the study tracker")
                          .Add({})),
      stage_family(r.HistogramFamily("secondread_pipeline_stage_duration_seconds",
                                     "Time spent per stage of a read, from the last instance to export")),
      volume_stage_family(r.HistogramFamily("secondread_volume_stage_duration_seconds",
                                            "Time per stage of a volume read, node and worker")),
      volume_bytes_family(r.CounterFamily("secondread_volume_transfer_bytes_total",
                                          "Bytes of volume reads streamed to and from workers, by direction")),
      exports_family(r.CounterFamily("secondread_export_attempts_total", "Export attempts, by result")),
      jobs_family(r.GaugeFamily("secondread_queue_jobs", "Jobs in the PostgreSQL queue, by queue and state")),
      dead_letters(r.GaugeFamily("secondread_export_dead_letters",
                                 "Exports that ran out of attempts or were refused for good").Add({})),
      endpoint_family(r.GaugeFamily("secondread_inference_endpoint_up",
                                    "1 when an inference endpoint passes its health check")),
      skipped_family(r.CounterFamily("secondread_pipeline_images_skipped_total",
                                     "Images a routing rule matched but left out of a read (burned-in text, or pixel data that did not decode), by reason")) {
  for (const char* result : {"done", "failed", "not_applicable"}) Reads(result);
  for (const char* stage : {"completeness_wait", "queue", "decode", "inference", "results", "export"}) Stage(stage);
  for (const char* stage : {"decode", "assemble", "transfer", "resample", "inference", "results"}) VolumeStage(stage);
  for (const char* direction : {"sent", "received"}) VolumeTransferBytes(direction);
  for (const char* result : {"sent", "retry", "dead"}) Exports(result);
  for (const char* reason : {"burned_in_annotation", "burned_in_annotation_unknown"}) ImagesSkipped(reason);
  for (const char* reason : scp::kDecodeFailureReasons) ImagesSkipped(reason);
}

}  // namespace secondread::worklist
