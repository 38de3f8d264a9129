// Worker metrics in Triton's style: requests by model and outcome, queue and
// compute durations in seconds, batch sizes, pending requests, and device
// memory where CUDA is present.
#pragma once

#include <string>

#include "common/metrics.h"

namespace secondread::inference {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(metrics::MetricsRegistry& registry);

  // `code` is the gRPC status code name, e.g. OK, INVALID_ARGUMENT.
  void Request(const std::string& model, const std::string& version, const std::string& code);
  void Images(const std::string& model, const std::string& version, double n);
  void QueueDuration(const std::string& model, const std::string& version, double seconds);
  void ComputeDuration(const std::string& model, const std::string& version, double seconds);
  void BatchSize(const std::string& model, const std::string& version, int n);
  // One InferVolume call's steps. step: receive (the volume's data
  // arriving) | resample | inference | resample_back (VolumeTimings).
  void VolumeStep(const std::string& model, const std::string& version, const std::string& step, double seconds);
  void Pending(const std::string& model, const std::string& version, double n);
  void ModelReady(const std::string& model, const std::string& version, bool ready);
  void DeviceMemory(const std::string& device, double used_bytes, double total_bytes);

 private:
  prometheus::Family<metrics::Counter>& requests_;
  prometheus::Family<metrics::Counter>& images_;
  prometheus::Family<metrics::Histogram>& queue_;
  prometheus::Family<metrics::Histogram>& compute_;
  prometheus::Family<metrics::Histogram>& batch_;
  prometheus::Family<metrics::Histogram>& volume_step_;
  prometheus::Family<metrics::Gauge>& pending_;
  prometheus::Family<metrics::Gauge>& ready_;
  prometheus::Family<metrics::Gauge>& memory_used_;
  prometheus::Family<metrics::Gauge>& memory_total_;
};

}  // namespace secondread::inference
