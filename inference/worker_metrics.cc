#include "inference/worker_metrics.h"

namespace secondread::inference {

namespace {
metrics::Histogram::BucketBoundaries BatchBuckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
}
// A volume's steps take from tens of milliseconds on a GPU to minutes on a
// small CPU, past LatencyBuckets' last bound.
metrics::Histogram::BucketBoundaries VolumeStepBuckets() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}
}  // namespace

WorkerMetrics::WorkerMetrics(metrics::MetricsRegistry& r)
    : requests_(r.CounterFamily("secondread_inference_requests_total",
                                "Inference requests by model, version and gRPC status code")),
      images_(r.CounterFamily("secondread_inference_images_total", "Images inferred successfully")),
      queue_(r.HistogramFamily("secondread_inference_queue_duration_seconds",
                               "Time a request waited in the batcher queue")),
      compute_(r.HistogramFamily("secondread_inference_compute_duration_seconds",
                                 "Preprocessing plus forward pass, per batch")),
      batch_(r.HistogramFamily("secondread_inference_batch_size", "Images per executed batch")),
      volume_step_(r.HistogramFamily("secondread_inference_volume_step_duration_seconds",
                                     "Time per step of one volume: receive, resample, inference, resample_back")),
      pending_(r.GaugeFamily("secondread_inference_pending_requests", "Requests waiting in the batcher queue")),
      ready_(r.GaugeFamily("secondread_inference_model_ready", "1 when a model version is loaded and serving")),
      memory_used_(r.GaugeFamily("secondread_inference_gpu_memory_used_bytes", "GPU memory in use on the device")),
      memory_total_(r.GaugeFamily("secondread_inference_gpu_memory_total_bytes", "GPU memory on the device")) {}

void WorkerMetrics::Request(const std::string& model, const std::string& version, const std::string& code) {
  requests_.Add({{"model", model}, {"version", version}, {"code", code}}).Increment();
}
void WorkerMetrics::Images(const std::string& model, const std::string& version, double n) {
  images_.Add({{"model", model}, {"version", version}}).Increment(n);
}
void WorkerMetrics::QueueDuration(const std::string& model, const std::string& version, double seconds) {
  queue_.Add({{"model", model}, {"version", version}}, metrics::LatencyBuckets()).Observe(seconds);
}
void WorkerMetrics::ComputeDuration(const std::string& model, const std::string& version, double seconds) {
  compute_.Add({{"model", model}, {"version", version}}, metrics::LatencyBuckets()).Observe(seconds);
}
void WorkerMetrics::BatchSize(const std::string& model, const std::string& version, int n) {
  batch_.Add({{"model", model}, {"version", version}}, BatchBuckets()).Observe(n);
}
void WorkerMetrics::VolumeStep(const std::string& model, const std::string& version, const std::string& step,
                               double seconds) {
  volume_step_.Add({{"model", model}, {"version", version}, {"step", step}}, VolumeStepBuckets()).Observe(seconds);
}
void WorkerMetrics::Pending(const std::string& model, const std::string& version, double n) {
  pending_.Add({{"model", model}, {"version", version}}).Set(n);
}
void WorkerMetrics::ModelReady(const std::string& model, const std::string& version, bool ready) {
  ready_.Add({{"model", model}, {"version", version}}).Set(ready ? 1 : 0);
}
void WorkerMetrics::DeviceMemory(const std::string& device, double used_bytes, double total_bytes) {
  memory_used_.Add({{"device", device}}).Set(used_bytes);
  memory_total_.Add({{"device", device}}).Set(total_bytes);
}

}  // namespace secondread::inference
