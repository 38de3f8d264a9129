// DICOM Segmentation (PS3.3 A.51) of a model's volumetric result on a volume
// read from a series (scp/pixels/series_reader.h): BINARY from a label map,
// FRACTIONAL (PROBABILITY) from per-segment probability maps. The object
// lands in the source study (Patient and Study copied from the source),
// shares the source's Frame of Reference, and each frame carries the exact
// Image Position (Patient) of the source slice it segments and a Derivation
// Image reference to that instance (and frame). DCMTK stays inside the
// implementation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "scp/objects/derived_uid.h"
#include "scp/pixels/volume.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp {

// One segment: its label and what it is (PS3.16 CID 7150 Segmentation
// Property Categories and CID 7151 Segmentation Property Types).
struct SegmentDefinition {
  std::string label;  // Segment Label, LO
  CodedConcept category;
  CodedConcept type;
};

// SNOMED CT concepts for common findings, as PS3.16 lists them (CID 7150 for
// the category; CID 7159 Lesion Segmentation Types, included in CID 7151).
namespace segmentation_codes {
inline const CodedConcept kMorphologicallyAbnormalStructure{"SCT", "49755003", "Morphologically Abnormal Structure"};
inline const CodedConcept kLesion{"SCT", "52988006", "Lesion"};
inline const CodedConcept kMass{"SCT", "4147007", "Mass"};
inline const CodedConcept kHemorrhage{"SCT", "50960005", "Hemorrhage"};
inline const CodedConcept kNodule{"SCT", "27925004", "Nodule"};
}  // namespace segmentation_codes

// A morphologically abnormal structure of the given type (one of the
// constants above), labelled `label`.
SegmentDefinition AbnormalStructureSegment(const std::string& label, const CodedConcept& type);

// The Series Number of SEG series, after the SR's 9901 and the Secondary
// Capture's 9902.
inline constexpr int kSegmentationSeriesNumber = 9903;

// The model's output on `volume`, voxels in the volume's order
// [depth][rows][columns]. Exactly one of the two is filled.
struct SegmentationResult {
  // BINARY: 0 = background, k (1..segments.size()) = segment k.
  std::vector<uint8_t> label_map;
  // FRACTIONAL (PROBABILITY): one map per segment, values 0..1, written as
  // 0..255 (Maximum Fractional Value 255).
  std::vector<std::vector<float>> probabilities;
  std::vector<SegmentDefinition> segments;
};

// Builds the SEG. `series` lists every image of the series the volume was
// read from (path, SOP Class and Instance UIDs); each of volume.sources must
// be one of them. The source files are read again for the exact slice
// positions and the Patient, Study and Frame of Reference attributes.
//
// Frames without any pixel of their segment are omitted (as dcmqi and
// highdicom do by default; OHIF, 3D Slicer and Weasis place each frame by its
// own Plane Position, so a sparse SEG displays correctly and stays small). A
// segment with no pixel at all keeps one empty frame on the first slice, so
// that every listed segment has a frame and the segment numbers the caller
// chose stay valid.
//
// FAILED_PRECONDITION for a resampled volume (Volume::resampled or any
// interpolated slice): a SEG must lie on the source slices, so the caller
// carries its result back onto them (LabelMapOnSourceSlices) and passes the
// volume of those slices (TakeSourceSlices), whose uneven positions
// (Volume::slice_offsets_mm) each frame keeps. INVALID_ARGUMENT for sizes,
// labels or probabilities that do not fit the volume, and for slices whose
// source is missing from `series` or whose position disagrees with the
// volume's geometry.
absl::StatusOr<BuiltObject> BuildSegmentation(const Volume& volume, const std::vector<SourceImage>& series,
                                              const SegmentationResult& result, const AlgorithmInfo& algorithm,
                                              const ResultIdentity& identity, const ContentTime& when);

// The SEG's UID names the read and the source frames it segments (like the
// SR's): a re-run over the same slices writes the same UID and the PACS
// replaces the object.
std::string ReadSegUid(const ReadIdentity& read, const Volume& volume);

}  // namespace secondread::scp
