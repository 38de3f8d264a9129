// Deterministic UIDs for the objects the node creates. The same inputs always
// give the same UID, so re-sending a result replaces the earlier object in
// the PACS instead of duplicating it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace secondread::scp {

// "2.25." followed by the decimal value of the first 128 bits of SHA-256 over
// the length-prefixed parts (PS3.5 B.2: a UUID-derived UID; at most 44
// characters). Parts are e.g. {study UID, model, version, "sr"}.
std::string DerivedUid(const std::vector<std::string_view>& parts);

// What a read is, for naming the objects it produces: every field that can
// tell two reads of one study apart.
struct ReadIdentity {
  std::string study_uid;
  std::string rule;     // the routing rule that asked for the read
  std::string model;
  std::string version;  // the served model version, decimal
  // The SOP Instance UID of the one image a per-instance read reads; empty
  // for a read of the study's images.
  std::string instance_uid;
};

// An image a read fed to the model (frame 0: a single-frame object).
struct ImageKey {
  std::string sop_instance_uid;
  uint32_t frame = 0;
};

// The SR covers all the images read, so its UID names them too: a re-read
// of the same images (a re-send, a job run again) keeps the UID and the PACS
// replaces the object; a re-read of a study that gained images gets a new
// UID. The order of `images` does not matter.
std::string ReadSrUid(const ReadIdentity& read, const std::vector<ImageKey>& images);

// A Secondary Capture shows one source frame and the model's result on it,
// which does not depend on the other images read, so its UID names only that
// frame: a re-read of a grown study replaces it rather than adding a copy.
std::string ReadScUid(const ReadIdentity& read, const ImageKey& source);

// The result series: one SR and one SC series per study, rule, model and
// version ("sr" or "sc").
std::string ReadSeriesUid(const ReadIdentity& read, std::string_view kind);

}  // namespace secondread::scp
