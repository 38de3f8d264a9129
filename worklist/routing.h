// Routing rules: which studies are read by which models, when a study counts
// as complete, and whether results go to the PACS (clinical) or are only kept
// (shadow). Rules are parsed once in main from the node's YAML; this module
// only evaluates them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

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

  std::vector<ModelRef> models;
  int priority = 1;  // 0 STAT, 1 routine
  ReadMode mode = ReadMode::kClinical;
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
};

// Compiles the pattern; INVALID_ARGUMENT names the rule and the problem.
absl::Status CompileRule(RoutingRule& rule);
// Checks names are unique and each rule has models; compiles every pattern.
absl::Status ValidateRules(std::vector<RoutingRule>& rules);

bool MatchesInstance(const RoutingRule& rule, const InstanceFacts& facts);
bool MatchesImageCount(const RoutingRule& rule, int64_t images);

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

}  // namespace secondread::worklist
