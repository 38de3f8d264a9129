// Routing rules: which studies are read by which models, when a study counts
// as complete, and whether results go to the PACS (clinical) or are only kept
// (shadow). Rules are parsed once in main from the node's YAML; this module
// only evaluates them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "worklist/db/queues.h"

namespace re2 {
class RE2;
}

namespace secondread::worklist {

enum class ReadMode { kClinical, kShadow };

// When a study (or an instance) is handed to its models.
enum class Trigger {
  kInstance,     // every matching instance on its own, at once (single-image modalities)
  kSilence,      // no new instance for silence_seconds
  kAssociation,  // the association that carried the study was released
};

enum class LatePolicy {
  kIgnore,  // instances arriving after the read are counted, not read
  kReread,  // they start a new read (a new generation) of the whole study
};

struct Completeness {
  Trigger trigger = Trigger::kSilence;
  std::chrono::seconds silence{30};
  // Upper bound from the study's first instance, whatever keeps arriving.
  std::chrono::seconds max_wait{600};
  // Trigger as soon as the sender's Number of Study Related Instances
  // (0020,1208) have arrived.
  bool use_expected_count = true;
  LatePolicy late = LatePolicy::kIgnore;
};

// Whether images that may show text burned into their pixels (a patient name
// on an ultrasound frame, a screen capture) go to the models. The inference
// tier is promised no patient data, and burned-in text is patient data that
// de-identifying the tensor cannot remove.
enum class BurnedInText {
  kExclude,  // left out of the read, and the read records why (the default)
  kAllow,    // the rule's models may see them, e.g. workers inside the node's own trust zone
};

// What a rule's models read: single images (today's 2D path) or a series
// assembled into a volume.
enum class ReadInput { kImage, kVolume };

// Series facts a volume rule asks for; unset keys match anything. Checked
// once the study is complete, over the rule's matching instances of each
// series.
struct SeriesCriteria {
  int64_t min_slices = 0;  // a volume rule needs 2 or more
  int64_t max_slices = 0;  // 0: no bound
  // Slice Thickness (0018,0050) of every image within [lo, hi] mm.
  std::optional<double> slice_thickness_lo_mm;
  std::optional<double> slice_thickness_hi_mm;
  // axial, coronal, sagittal: every image has one of these.
  std::vector<std::string> orientations;
  // Every value must appear in every image's Image Type.
  std::vector<std::string> image_types;
  // true: every object is multi-frame; false: none is.
  std::optional<bool> multiframe;
  // Not a criterion but how a matching series is read: one whose slices are
  // unevenly spaced is resampled onto a uniform grid instead of refused
  // (series.resample).
  bool resample = false;

  bool Empty() const {
    return min_slices == 0 && max_slices == 0 && !slice_thickness_lo_mm && !slice_thickness_hi_mm &&
           orientations.empty() && image_types.empty() && !multiframe && !resample;
  }
};

struct ModelRef {
  std::string name;
  int64_t version = 0;  // 0: the latest ready version
};

struct RoutingRule {
  std::string name;
  // Instance criteria; an empty list matches anything.
  std::vector<std::string> modalities;
  std::vector<std::string> body_parts;
  std::vector<std::string> sop_classes;
  std::vector<std::string> image_types;  // every value must appear in Image Type
  std::vector<std::string> calling_aes;
  std::vector<std::string> called_aes;
  std::string series_description;  // RE2 pattern, searched (not anchored); empty: any
  std::shared_ptr<re2::RE2> series_description_re;
  // Study criterion, checked when the study is complete: matching images.
  int64_t min_images = 1;
  int64_t max_images = 0;  // 0: no bound

  ReadInput input = ReadInput::kImage;
  SeriesCriteria series;  // only for input kVolume

  std::vector<ModelRef> models;
  int priority = 1;  // 0 STAT, 1 routine
  ReadMode mode = ReadMode::kClinical;
  BurnedInText burned_in_text = BurnedInText::kExclude;
  Completeness completeness;
};

// What the tracker knows of one received instance.
struct InstanceFacts {
  std::string modality;
  std::string body_part;
  std::string sop_class_uid;
  std::string image_type;  // backslash-separated values
  std::string calling_ae;
  std::string called_ae;
  std::string series_description;
  // Burned In Annotation (0028,0301) as received; empty when absent.
  std::string burned_in_annotation;
};

// What the tracker gathers of one series' matching instances in a complete
// study, for a volume rule.
struct SeriesFacts {
  int64_t series_id = 0;  // the registry's row; 0 in tests
  std::string series_instance_uid;
  int64_t instances = 0;
  // The images the volume has: one per single-frame object, Number of Frames
  // per multi-frame object.
  int64_t slices = 0;
  int64_t multiframe_instances = 0;  // objects with Number of Frames above 1
  // Distinct orientation labels of the instances (OrientationLabel in
  // scp/receive/dataset_reader.h): axial, coronal, sagittal, oblique, or "" unknown.
  std::vector<std::string> orientations;
  // Thinnest and thickest Slice Thickness; unset when any image lacks one.
  std::optional<double> min_thickness_mm;
  std::optional<double> max_thickness_mm;
  // Image Type of every instance as received (backslash-separated values).
  std::vector<std::string> image_types;
};

// The per-series result of a volume rule: one read of the series by each
// model. Recorded as a `reads` row with input 'volume' and the series, state
// queued, with a job on kVolumeQueue: the image dispatcher never takes it.
struct VolumeReadRequest {
  std::string rule;
  int64_t series_id = 0;
  std::string series_instance_uid;
  ModelRef model;
  int priority = 1;
  ReadMode mode = ReadMode::kClinical;
  bool resample = false;  // the rule's series.resample, kept on the read
  std::string queue = kVolumeQueue;
};

// Compiles the pattern; INVALID_ARGUMENT names the rule and the problem.
absl::Status CompileRule(RoutingRule& rule);
// Checks names are unique and each rule has models, that series criteria
// come only with input volume and a volume rule's are consistent (at least 2
// slices, non-empty ranges, known orientations, not triggered per instance);
// compiles every pattern.
absl::Status ValidateRules(std::vector<RoutingRule>& rules);

bool MatchesInstance(const RoutingRule& rule, const InstanceFacts& facts);
bool MatchesImageCount(const RoutingRule& rule, int64_t images);
// The series criteria of a volume rule against one series' facts.
bool MatchesSeries(const RoutingRule& rule, const SeriesFacts& series);
// The volume reads a complete study gets under a volume rule: one per
// matching series and model, in the order given. Empty for an image rule.
std::vector<VolumeReadRequest> PlanVolumeReads(const RoutingRule& rule, const std::vector<SeriesFacts>& series);

// Why a matching image is left out of the rule's reads, or "" when it may be
// read: "burned_in_annotation" when the image says YES;
// "burned_in_annotation_unknown" when it does not say and it is of a kind
// that usually carries burned-in text (see UsuallyCarriesBurnedInText).
// Nothing is left out when the rule allows burned-in text.
std::string BurnedInTextSkipReason(const RoutingRule& rule, const InstanceFacts& facts);

// Ultrasound, endoscopy and other photographic or video modalities, X-ray
// angiography and fluoroscopy, secondary captures and documents write
// patient details into their pixels more often than not, and many never
// fill Burned In Annotation: silence from them is not taken as a NO.
bool UsuallyCarriesBurnedInText(const std::string& modality, const std::string& sop_class_uid);

// The completeness decision for a collecting study.
struct CandidateProgress {
  std::chrono::system_clock::time_point first_at;
  std::chrono::system_clock::time_point last_at;
  int64_t instances = 0;
  int64_t expected = -1;  // -1: the sender gave no count
  bool released = false;  // its association was released
};

struct Due {
  std::chrono::system_clock::time_point at;
  std::string reason;  // silence | max_wait | expected_count | association
};

Due ComputeDue(const Completeness& completeness, const CandidateProgress& progress);

const char* TriggerName(Trigger trigger);
const char* ModeName(ReadMode mode);
const char* InputName(ReadInput input);

}  // namespace secondread::worklist
