// Prometheus metrics. prometheus-cpp is used only through this header: modules
// build their families from a MetricsRegistry and hold the returned handles.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace secondread::metrics {

using Counter = prometheus::Counter;
using Gauge = prometheus::Gauge;
using Histogram = prometheus::Histogram;
using Labels = std::map<std::string, std::string>;

class MetricsRegistry {
 public:
  MetricsRegistry();

  prometheus::Family<Counter>& CounterFamily(const std::string& name, const std::string& help);
  prometheus::Family<Gauge>& GaugeFamily(const std::string& name, const std::string& help);
  prometheus::Family<Histogram>& HistogramFamily(const std::string& name, const std::string& help);

  // Text exposition format 0.0.4.
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
};

// Latency buckets in seconds, from 100 us to 30 s.
Histogram::BucketBoundaries LatencyBuckets();

}  // namespace secondread::metrics
