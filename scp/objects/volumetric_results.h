// What a radiologist reads of a volumetric result besides the SEG: lesion
// measurements (volume, mean and maximum value, centroid, probability, key
// slice), a TID 1500 Measurement Report of them whose groups reference the
// SEG's segments (TID 1411 Volumetric ROI Measurements), and a Secondary
// Capture of a lesion's key slice with the segmentation outlined, for viewers
// without SEG support. DCMTK stays inside the implementation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "scp/objects/segmentation.h"
#include "scp/pixels/volume.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp {

// One lesion: a 26-connected component of one segment's voxels. Two
// metastases of one segment type are two lesions with their own volume and
// key slice, as a radiologist reports them; voxels touching only at an edge
// or corner (common across thick slices) stay one lesion.
struct LesionMeasurement {
  uint16_t segment_number = 0;  // 1-based, the SEG's Segment Number
  uint32_t lesion_number = 0;   // 1-based within the segment, in order of first voxel (z, y, x)
  uint64_t voxel_count = 0;
  double volume_mm3 = 0;  // voxel count x voxel volume
  // Mean and maximum in the volume's units; absent for MR, whose values have
  // no unit a measurement could carry.
  bool has_values = false;
  std::string units;  // "HU" or "SUVbw" when has_values
  double mean = 0;
  double maximum = 0;
  Vec3 centroid_index{};  // (column i, row j, slice k), continuous voxel indices
  // LPS mm, through the volume's origin, directions and spacing. The centre
  // of mass: for a ring- or crescent-shaped lesion it may lie outside it.
  Vec3 centroid_mm{};
  // The model's probability: the mean of the segment's probability map over
  // the lesion, or the caller's per-segment value for a label map.
  bool has_probability = false;
  double probability = 0;
  uint32_t key_slice = 0;  // z index where the lesion has the most voxels (the lowest on a tie)
  uint64_t key_slice_voxels = 0;
  SliceSource key_source;  // the source instance (and frame) of the key slice
};

struct LesionOptions {
  // A voxel belongs to a segment of a probability map at or above this.
  double probability_threshold = 0.5;
  // Components smaller than this are noise, not lesions, and are dropped.
  uint64_t min_voxels = 1;
  // For a label map: the model's probability per segment (index 0 = segment
  // 1); empty when the model gives none.
  std::vector<double> segment_probabilities;
};

// The lesions of `result` on `volume`, by segment, then by lesion number.
// INVALID_ARGUMENT when the label or probability maps do not fit the volume,
// or the volume's slices are unevenly spaced (Volume::slice_offsets_mm).
absl::StatusOr<std::vector<LesionMeasurement>> MeasureLesions(const Volume& volume, const SegmentationResult& result,
                                                              const LesionOptions& options = {});

// The lesions of a resampled volume (measured on its uniform grid, where
// volumes and centroids are right) made to point at its source slices: each
// key slice becomes the source slice nearest to it along the normal, an index
// into TakeSourceSlices' volume, and key_source names that slice. Volume,
// values, centroid and key_slice_voxels stay as measured on the grid.
absl::Status KeySlicesOnSourceSlices(const Volume& resampled, std::vector<LesionMeasurement>& lesions);

// The Segmentation the report refers to, as BuildSegmentation returned it.
struct SegmentationReference {
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::vector<SegmentDefinition> segments;  // index 0 = segment 1
};

// TID 1500 Measurement Report (Comprehensive 3D SR), Verification Flag
// UNVERIFIED, one TID 1411 group per lesion: Tracking Identifier and UID,
// Referenced Segment (the SEG and the segment number), Source series for
// segmentation, Finding (the segment's type), TID 4019 algorithm, Volume
// (mm3), Mean and Maximum with Derivation (HU as [hnsf'U], SUVbw as
// {SUVbw}g/ml), Probability, and the centroid as an SCOORD3D POINT in the
// source Frame of Reference. `series` lists every image of the series (as
// for BuildSegmentation); series[0] provides Patient, Study and Frame of
// Reference.
absl::StatusOr<BuiltObject> BuildVolumetricReport(const Volume& volume, const std::vector<SourceImage>& series,
                                                  const std::vector<LesionMeasurement>& lesions,
                                                  const SegmentationReference& segmentation,
                                                  const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                                  const ContentTime& when);

// Secondary Capture (RGB) of key slice `key_slice` (a z index): the slice
// windowed from the volume's values (CT soft tissue W400/L40; PET inverted
// grey from 0 to the slice maximum; MR the slice's minimum to maximum),
// resampled to square display pixels, every segment outlined in its colour,
// and the banner of the 2D Secondary Capture with the measurements of every
// lesion whose key slice it is. One per distinct key slice: two lesions
// sharing one share its image. The Source Image Sequence references the
// slice's source instance (and frame); ReadScUid of that source names it.
absl::StatusOr<BuiltObject> BuildKeySliceCapture(const Volume& volume, const std::vector<SourceImage>& series,
                                                 const SegmentationResult& result,
                                                 const std::vector<LesionMeasurement>& lesions, uint32_t key_slice,
                                                 const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                                 const ContentTime& when, const LesionOptions& options = {});

}  // namespace secondread::scp
