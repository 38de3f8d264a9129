// Exports the newest window of each model's performance (the figures of
// GET /api/v1/models/performance) as Prometheus gauges, refreshed on a timer,
// so agreement and drift can be alerted on like any other metric.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/metrics.h"
#include "worklist/review/review_store.h"

namespace secondread::worklist {

class PerformanceGauges {
 public:
  PerformanceGauges(ReviewStore* store, metrics::MetricsRegistry& registry, std::chrono::seconds interval);
  ~PerformanceGauges();
  void Start();
  void Stop();
  // One refresh; exposed for tests.
  absl::Status Refresh();

 private:
  ReviewStore* store_;
  std::chrono::seconds interval_;
  prometheus::Family<metrics::Gauge>& studies_read_;
  prometheus::Family<metrics::Gauge>& flagged_rate_;
  prometheus::Family<metrics::Gauge>& agreement_rate_;
  prometheus::Family<metrics::Gauge>& ppv_;
  prometheus::Family<metrics::Gauge>& drift_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace secondread::worklist
