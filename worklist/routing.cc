#include "worklist/routing.h"

#include <re2/re2.h>

#include <algorithm>
#include <set>

namespace secondread::worklist {
namespace {

bool AnyOf(const std::vector<std::string>& allowed, const std::string& value) {
  if (allowed.empty()) return true;
  return std::find(allowed.begin(), allowed.end(), value) != allowed.end();
}

// DICOM pads code strings with spaces and senders vary in case for AE titles
// and Image Type values; compare on the trimmed text.
std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

std::vector<std::string> SplitBackslash(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find('\\', start);
    out.push_back(Trim(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start)));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return out;
}

}  // namespace

absl::Status CompileRule(RoutingRule& rule) {
  if (rule.series_description.empty()) {
    rule.series_description_re.reset();
    return absl::OkStatus();
  }
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(1 << 20);
  auto re = std::make_shared<RE2>(rule.series_description, options);
  if (!re->ok()) {
    return absl::InvalidArgumentError("routing rule '" + rule.name + "': series_description pattern: " + re->error());
  }
  rule.series_description_re = std::move(re);
  return absl::OkStatus();
}

absl::Status ValidateRules(std::vector<RoutingRule>& rules) {
  std::set<std::string> names;
  for (auto& rule : rules) {
    if (rule.name.empty()) return absl::InvalidArgumentError("a routing rule has no name");
    if (!names.insert(rule.name).second) {
      return absl::InvalidArgumentError("routing rule name '" + rule.name + "' is used twice");
    }
    if (rule.models.empty()) return absl::InvalidArgumentError("routing rule '" + rule.name + "' names no model");
    if (rule.max_images > 0 && rule.max_images < rule.min_images) {
      return absl::InvalidArgumentError("routing rule '" + rule.name + "': max_images is below min_images");
    }
    if (rule.completeness.max_wait < rule.completeness.silence) {
      return absl::InvalidArgumentError("routing rule '" + rule.name + "': max_wait_seconds is below silence_seconds");
    }
    RETURN_IF_ERROR(CompileRule(rule));
  }
  return absl::OkStatus();
}

bool MatchesInstance(const RoutingRule& rule, const InstanceFacts& f) {
  if (!AnyOf(rule.modalities, Trim(f.modality))) return false;
  if (!AnyOf(rule.body_parts, Trim(f.body_part))) return false;
  if (!AnyOf(rule.sop_classes, Trim(f.sop_class_uid))) return false;
  if (!AnyOf(rule.calling_aes, Trim(f.calling_ae))) return false;
  if (!AnyOf(rule.called_aes, Trim(f.called_ae))) return false;
  if (!rule.image_types.empty()) {
    auto values = SplitBackslash(f.image_type);
    for (const auto& wanted : rule.image_types) {
      if (std::find(values.begin(), values.end(), wanted) == values.end()) return false;
    }
  }
  if (rule.series_description_re && !RE2::PartialMatch(f.series_description, *rule.series_description_re)) {
    return false;
  }
  return true;
}

bool MatchesImageCount(const RoutingRule& rule, int64_t images) {
  if (images < rule.min_images) return false;
  if (rule.max_images > 0 && images > rule.max_images) return false;
  return true;
}

Due ComputeDue(const Completeness& c, const CandidateProgress& p) {
  const auto cap = p.first_at + c.max_wait;
  if (c.trigger == Trigger::kInstance) return {p.last_at, "expected_count"};
  if (c.use_expected_count && p.expected > 0 && p.instances >= p.expected) return {p.last_at, "expected_count"};
  if (c.trigger == Trigger::kAssociation && p.released) return {p.last_at, "association"};
  // An association-triggered rule still falls back to silence, so a sender
  // that never releases (an abort, a crash) does not strand the study.
  const auto silence = p.last_at + c.silence;
  if (silence <= cap) return {silence, "silence"};
  return {cap, "max_wait"};
}

const char* TriggerName(Trigger t) {
  switch (t) {
    case Trigger::kInstance: return "instance";
    case Trigger::kSilence: return "silence";
    case Trigger::kAssociation: return "association";
  }
  return "silence";
}

const char* ModeName(ReadMode m) { return m == ReadMode::kShadow ? "shadow" : "clinical"; }

}  // namespace secondread::worklist
