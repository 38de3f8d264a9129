// The DICOM objects the node writes back into a study: a TID 1500 Measurement
// Report (Comprehensive 3D SR) and a Secondary Capture with the heatmap
// overlaid and a burned-in banner. Both copy the Patient and General Study
// modules from a source instance, so they land in the source study. They
// follow the IHE AI Results profile and must pass dciodvfy without errors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "scp/pixels/pixel_decoder.h"

namespace secondread::scp {

struct CodedConcept {
  std::string scheme;   // Coding Scheme Designator, e.g. SCT
  std::string value;    // Code Value
  std::string meaning;  // Code Meaning
};

// The algorithm that produced the results (TID 4019).
struct AlgorithmInfo {
  std::string model_name;
  std::string model_version;  // decimal text
  std::string parameters;     // free text, e.g. "threshold nodule=0.277"
  std::string manufacturer = "secondread";
  std::string software_version;  // the node's version
};

// A source image the model read.
struct SourceImage {
  std::string path;  // the spool file (never derived from a DICOM field)
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  uint32_t frame = 0;  // 1-based frame of a multi-frame image; 0: single frame
  uint32_t rows = 0;
  uint32_t columns = 0;
};

struct Heatmap {
  uint32_t rows = 0;
  uint32_t columns = 0;
  std::vector<float> values;  // row-major, 0..1
};

// One label's result on one source image.
struct Finding {
  std::string label;
  CodedConcept code;
  double score = 0;      // probability, 0..1
  double threshold = 0;  // the model's operating point
  bool above_threshold = false;
  size_t image_index = 0;  // into the sources vector
  // Heatmap peak in source-image pixel coordinates (column, row; 0-based,
  // pixel centres at .5), when the model gives a heatmap.
  bool has_peak = false;
  double peak_column = 0;
  double peak_row = 0;
};

// An object the node wrote before, referred to by a later one.
struct ObjectReference {
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string sop_class_uid;
  std::string sop_instance_uid;
};

struct ResultIdentity {
  std::string sop_instance_uid;
  std::string series_instance_uid;
  int series_number = 0;
  int instance_number = 1;
  // SR only: the reports this one replaces (a re-read of a study that gained
  // images), written as the Predecessor Documents Sequence (PS3.3 C.17.2).
  std::vector<ObjectReference> predecessors;
};

struct BuiltObject {
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::string part10;  // the complete Part 10 file, Explicit VR Little Endian
};

struct ContentTime {
  std::string date;  // YYYYMMDD
  std::string time;  // HHMMSS
};

// TID 1500 Measurement Report, Comprehensive 3D SR, VerificationFlag
// UNVERIFIED, Contributing Equipment (Processing Equipment), an image library
// of every source, one measurement group per finding with TID 4019 algorithm
// identification, the probability as a NUM, the above-threshold assessment
// and, where given, the heatmap peak as an SCOORD POINT on the source image.
// sources[0] provides the Patient and Study modules.
absl::StatusOr<BuiltObject> BuildStructuredReport(const std::vector<SourceImage>& sources,
                                                  const std::vector<Finding>& findings,
                                                  const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                                  const ContentTime& when);

// Secondary Capture Image Storage, RGB: the source frame rendered to 8 bits,
// the heatmap blended over it, and a burned-in banner ("AI RESULT - FOR
// RADIOLOGIST REVIEW - NOT A DIAGNOSIS", model name and version, each
// finding's score against its threshold). Image Type DERIVED\SECONDARY,
// Burned In Annotation YES, Source Image Sequence referencing the source.
// The source is decoded again, in a decoder process under `decoder`.
absl::StatusOr<BuiltObject> BuildSecondaryCapture(const SourceImage& source, const Heatmap* heatmap,
                                                  const std::vector<Finding>& findings,
                                                  const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                                  const ContentTime& when, const DecoderLimits& decoder = {});

}  // namespace secondread::scp
