#include "worklist/pipeline/routing.h"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <cmath>
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

bool HasAllValues(const std::string& image_type, const std::vector<std::string>& wanted) {
  auto values = SplitBackslash(image_type);
  for (const auto& w : wanted) {
    if (std::find(values.begin(), values.end(), w) == values.end()) return false;
  }
  return true;
}

absl::Status Invalid(const RoutingRule& rule, const std::string& problem) {
  return absl::InvalidArgumentError("routing rule '" + rule.name + "': " + problem);
}

absl::Status ValidateSeries(const RoutingRule& rule) {
  const SeriesCriteria& s = rule.series;
  if (rule.input == ReadInput::kImage) {
    if (s.resample) return Invalid(rule, "series.resample needs input: volume");
    if (!s.Empty()) return Invalid(rule, "series criteria need input: volume");
    return absl::OkStatus();
  }
  // A volume of one slice is an image; an image rule reads it.
  if (s.min_slices < 2) return Invalid(rule, "a volume rule needs series.min_slices of 2 or more");
  if (s.max_slices > 0 && s.max_slices < s.min_slices) {
    return Invalid(rule, "series.max_slices is below series.min_slices");
  }
  if (s.slice_thickness_lo_mm.has_value() != s.slice_thickness_hi_mm.has_value()) {
    return Invalid(rule, "series.slice_thickness_mm needs a low and a high bound");
  }
  if (s.slice_thickness_lo_mm) {
    const double lo = *s.slice_thickness_lo_mm, hi = *s.slice_thickness_hi_mm;
    if (!std::isfinite(lo) || !std::isfinite(hi) || lo < 0 || hi <= 0) {
      return Invalid(rule, "series.slice_thickness_mm bounds must be finite, not negative, and the high one above 0");
    }
    if (lo > hi) return Invalid(rule, "series.slice_thickness_mm is an empty range (low above high)");
  }
  for (const auto& o : s.orientations) {
    if (o != "axial" && o != "coronal" && o != "sagittal") {
      return Invalid(rule, "series.orientation '" + o + "' is not axial, coronal or sagittal");
    }
  }
  for (const auto& v : s.image_types) {
    if (Trim(v).empty()) return Invalid(rule, "series.image_type holds an empty value");
  }
  if (rule.completeness.trigger == Trigger::kInstance) {
    return Invalid(rule, "a volume rule reads whole series, so completeness.trigger cannot be instance");
  }
  return absl::OkStatus();
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
    RETURN_IF_ERROR(ValidateSeries(rule));
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
  if (!rule.image_types.empty() && !HasAllValues(f.image_type, rule.image_types)) return false;
  if (rule.series_description_re && !RE2::PartialMatch(f.series_description, *rule.series_description_re)) {
    return false;
  }
  return true;
}

bool UsuallyCarriesBurnedInText(const std::string& modality, const std::string& sop_class_uid) {
  static const char* const kModalities[] = {"US", "IVUS", "ES", "XC", "GM", "OP", "SM", "XA", "RF",
                                            "SC", "OT", "DOC", "ECG"};
  const std::string m = Trim(modality);
  for (const char* k : kModalities) {
    if (m == k) return true;
  }
  const std::string uid = Trim(sop_class_uid);
  // Every Secondary Capture Image Storage class (1.2.840.10008.5.1.4.1.1.7
  // and its multi-frame children) and every Visible Light class (endoscopy,
  // microscopy and slide labels, photographs, their videos).
  static const std::string kSecondaryCapture = "1.2.840.10008.5.1.4.1.1.7";
  static const std::string kVisibleLight = "1.2.840.10008.5.1.4.1.1.77.1.";
  if (uid == kSecondaryCapture || uid.rfind(kSecondaryCapture + ".", 0) == 0) return true;
  if (uid.rfind(kVisibleLight, 0) == 0) return true;
  return false;
}

std::string BurnedInTextSkipReason(const RoutingRule& rule, const InstanceFacts& facts) {
  if (rule.burned_in_text == BurnedInText::kAllow) return "";
  // Liberal in what it takes: some writers use lower case for this CS.
  std::string value = Trim(facts.burned_in_annotation);
  for (char& ch : value) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (value == "YES") return "burned_in_annotation";
  if (value == "NO") return "";
  // Absent, empty or a value PS3.3 does not define: unknown.
  return UsuallyCarriesBurnedInText(facts.modality, facts.sop_class_uid) ? "burned_in_annotation_unknown" : "";
}

bool MatchesImageCount(const RoutingRule& rule, int64_t images) {
  if (images < rule.min_images) return false;
  if (rule.max_images > 0 && images > rule.max_images) return false;
  return true;
}

bool MatchesSeries(const RoutingRule& rule, const SeriesFacts& f) {
  const SeriesCriteria& s = rule.series;
  if (f.instances <= 0) return false;
  if (f.slices < s.min_slices) return false;
  if (s.max_slices > 0 && f.slices > s.max_slices) return false;
  if (s.slice_thickness_lo_mm && s.slice_thickness_hi_mm) {
    // Slice Thickness is decimal text ("2.5"); a bound written the same way
    // must hold it whatever the binary rounding.
    constexpr double kSlack = 1e-6;
    if (!f.min_thickness_mm || !f.max_thickness_mm) return false;
    if (*f.min_thickness_mm < *s.slice_thickness_lo_mm - kSlack) return false;
    if (*f.max_thickness_mm > *s.slice_thickness_hi_mm + kSlack) return false;
  }
  if (!s.orientations.empty()) {
    if (f.orientations.empty()) return false;
    for (const auto& o : f.orientations) {
      if (std::find(s.orientations.begin(), s.orientations.end(), o) == s.orientations.end()) return false;
    }
  }
  if (!s.image_types.empty()) {
    if (f.image_types.empty()) return false;
    for (const auto& t : f.image_types) {
      if (!HasAllValues(t, s.image_types)) return false;
    }
  }
  if (s.multiframe) {
    if (*s.multiframe && f.multiframe_instances != f.instances) return false;
    if (!*s.multiframe && f.multiframe_instances != 0) return false;
  }
  return true;
}

std::vector<VolumeReadRequest> PlanVolumeReads(const RoutingRule& rule, const std::vector<SeriesFacts>& series) {
  std::vector<VolumeReadRequest> out;
  if (rule.input != ReadInput::kVolume) return out;
  for (const auto& f : series) {
    if (!MatchesSeries(rule, f)) continue;
    for (const auto& m : rule.models) {
      VolumeReadRequest r;
      r.rule = rule.name;
      r.series_id = f.series_id;
      r.series_instance_uid = f.series_instance_uid;
      r.model = m;
      r.priority = rule.priority;
      r.mode = rule.mode;
      r.resample = rule.series.resample;
      out.push_back(std::move(r));
    }
  }
  return out;
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

const char* InputName(ReadInput i) { return i == ReadInput::kVolume ? "volume" : "image"; }

}  // namespace secondread::worklist
