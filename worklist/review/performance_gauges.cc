#include "worklist/review/performance_gauges.h"

#include "common/log.h"

namespace secondread::worklist {

PerformanceGauges::PerformanceGauges(ReviewStore* store, metrics::MetricsRegistry& r, std::chrono::seconds interval)
    : store_(store),
      interval_(interval),
      studies_read_(r.GaugeFamily("secondread_model_studies_read",
                                  "Studies read by a model version in the current performance window")),
      flagged_rate_(r.GaugeFamily("secondread_model_flagged_rate", "Share of read studies the model flagged")),
      agreement_rate_(r.GaugeFamily("secondread_model_agreement_rate",
                                    "Share of reviewed studies where the radiologist agreed with the model")),
      ppv_(r.GaugeFamily("secondread_model_ppv", "Positive predictive value of flags as judged by reviewers")),
      drift_(r.GaugeFamily("secondread_model_flagged_rate_drift",
                           "Change of the flagged rate against the previous window")) {}

PerformanceGauges::~PerformanceGauges() { Stop(); }

void PerformanceGauges::Start() {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      absl::Status st = Refresh();
      if (!st.ok()) log::Warn("performance_gauges_failed", {{"error", std::string(st.message())}});
      lock.lock();
      cv_.wait_for(lock, interval_, [this] { return stop_; });
    }
  });
}

void PerformanceGauges::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status PerformanceGauges::Refresh() {
  PerformanceQuery query;
  query.window = "week";
  query.windows = 2;
  ASSIGN_OR_RETURN(nlohmann::json perf, store_->Performance(query));
  for (const auto& m : perf.value("models", nlohmann::json::array())) {
    const auto& windows = m.value("windows", nlohmann::json::array());
    if (windows.empty()) continue;
    const auto& w = windows.back();
    // Model names come from the operator's configuration, not from senders.
    metrics::Labels labels{{"model", m.value("model", "")}, {"version", std::to_string(m.value("version", 0))}};
    auto number = [](const nlohmann::json& j, const char* key) {
      return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0;
    };
    studies_read_.Add(labels).Set(number(w, "studies_read"));
    flagged_rate_.Add(labels).Set(number(w, "flagged_rate"));
    agreement_rate_.Add(labels).Set(number(w, "agreement_rate"));
    ppv_.Add(labels).Set(number(w, "ppv"));
    drift_.Add(labels).Set(w.contains("drift") ? number(w["drift"], "flagged_rate_delta") : 0.0);
  }
  return absl::OkStatus();
}

}  // namespace secondread::worklist
