// Routing rules (worklist/pipeline/routing.h) against the instance facts a sender
// controls: a Series Description pattern compiled from configuration, then
// matched against whatever text arrives; and a volume rule's series criteria
// against the series facts gathered from what arrived.
#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "worklist/pipeline/routing.h"

namespace {

std::vector<std::string> List(FuzzedDataProvider& in) {
  std::vector<std::string> out(in.ConsumeIntegralInRange<size_t>(0, 3));
  for (auto& s : out) s = in.ConsumeRandomLengthString(32);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace secondread::worklist;
  FuzzedDataProvider in(data, size);
  RoutingRule rule;
  rule.name = "fuzz";
  rule.models.push_back({"model", 0});
  rule.series_description = in.ConsumeRandomLengthString(128);
  rule.modalities = List(in);
  rule.body_parts = List(in);
  rule.image_types = List(in);
  rule.burned_in_text = in.ConsumeBool() ? BurnedInText::kAllow : BurnedInText::kExclude;
  // Within the bounds the configuration parser enforces.
  rule.min_images = in.ConsumeIntegralInRange<int64_t>(1, 1000000);
  rule.max_images = in.ConsumeIntegralInRange<int64_t>(0, 1000000);
  auto& c = rule.completeness;
  c.trigger = static_cast<Trigger>(in.ConsumeIntegralInRange<int>(0, 2));
  c.silence = std::chrono::seconds(in.ConsumeIntegralInRange<int64_t>(0, 86400));
  c.max_wait = std::chrono::seconds(in.ConsumeIntegralInRange<int64_t>(0, 7 * 86400));
  c.use_expected_count = in.ConsumeBool();
  // Series criteria, also on image rules, which validation must refuse.
  if (in.ConsumeBool()) rule.input = ReadInput::kVolume;
  auto& s = rule.series;
  s.min_slices = in.ConsumeIntegralInRange<int64_t>(0, 100000);
  s.max_slices = in.ConsumeIntegralInRange<int64_t>(0, 100000);
  if (in.ConsumeBool()) s.slice_thickness_lo_mm = in.ConsumeFloatingPoint<double>();
  if (in.ConsumeBool()) s.slice_thickness_hi_mm = in.ConsumeFloatingPoint<double>();
  s.orientations = List(in);
  s.image_types = List(in);
  if (in.ConsumeBool()) s.multiframe = in.ConsumeBool();
  s.resample = in.ConsumeBool();
  std::vector<RoutingRule> rules{rule};
  if (!ValidateRules(rules).ok()) return 0;
  const RoutingRule& compiled = rules.front();

  InstanceFacts facts;
  facts.modality = in.ConsumeRandomLengthString(16);
  facts.body_part = in.ConsumeRandomLengthString(16);
  facts.sop_class_uid = in.ConsumeRandomLengthString(64);
  facts.image_type = in.ConsumeRandomLengthString(64);
  facts.burned_in_annotation = in.ConsumeRandomLengthString(8);
  SeriesFacts series;
  series.series_id = 1;
  series.instances = in.ConsumeIntegralInRange<int64_t>(0, 1000);
  series.slices = in.ConsumeIntegralInRange<int64_t>(0, 1000000);
  series.multiframe_instances = in.ConsumeIntegralInRange<int64_t>(0, series.instances);
  series.orientations = List(in);
  if (in.ConsumeBool()) {
    series.min_thickness_mm = in.ConsumeFloatingPoint<double>();
    series.max_thickness_mm = in.ConsumeFloatingPoint<double>();
  }
  series.image_types = List(in);
  facts.series_description = in.ConsumeRemainingBytesAsString();
  (void)MatchesInstance(compiled, facts);
  const std::string skip = BurnedInTextSkipReason(compiled, facts);
  if (!skip.empty() && skip != "burned_in_annotation" && skip != "burned_in_annotation_unknown") std::abort();
  (void)MatchesImageCount(compiled, static_cast<int64_t>(size));

  // A validated rule with series criteria is a volume rule of 2 or more
  // slices and a real thickness range; what it plans matches its criteria.
  if (!compiled.series.Empty() && compiled.input != ReadInput::kVolume) std::abort();
  if (compiled.input == ReadInput::kVolume) {
    if (compiled.series.min_slices < 2) std::abort();
    if (compiled.series.slice_thickness_lo_mm &&
        !(*compiled.series.slice_thickness_lo_mm <= *compiled.series.slice_thickness_hi_mm)) {
      std::abort();
    }
  }
  const bool matches = MatchesSeries(compiled, series);
  if (matches && series.slices < compiled.series.min_slices) std::abort();
  const auto plan = PlanVolumeReads(compiled, {series});
  const size_t expected = compiled.input == ReadInput::kVolume && matches ? compiled.models.size() : 0;
  if (plan.size() != expected) std::abort();
  for (const auto& r : plan) {
    if (r.resample != compiled.series.resample) std::abort();
  }

  CandidateProgress p;
  p.first_at = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  p.last_at = p.first_at + std::chrono::seconds(size);
  p.instances = static_cast<int64_t>(size % 7);
  p.expected = static_cast<int64_t>(size % 5) - 1;
  p.released = (size & 1) != 0;
  const Due due = ComputeDue(compiled.completeness, p);
  if (due.at > p.first_at + c.max_wait && due.at > p.last_at) std::abort();
  return 0;
}
