// Series to volume: the geometry of a stack of 2D frames, the checks that
// make it a volume a model may read, and the volume itself. Nothing here knows
// DICOM encodings (series_reader.h reads the objects) or the patient: a volume
// carries voxels, geometry and the source of each slice, and no weight, date
// or time.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

#include "scp/pixels/pixel_decoder.h"

namespace secondread::scp {

using Vec3 = std::array<double, 3>;

// The attributes that tell apart stacks sharing positions in one series, in
// the order a split is tried (see PlanVolumes).
enum StackDimension : int {
  kStackId = 0,        // Stack ID (0020,9056), enhanced objects
  kTemporalPosition,   // Temporal Position Index (0020,9128) / Identifier (0020,0100) / PET Frame Reference Time
  kEchoNumber,         // Echo Numbers (0018,0086) / Effective Echo Time (0018,9082) of enhanced MR
  kTriggerTime,        // Trigger Time (0018,1060)
  kAcquisitionNumber,  // Acquisition Number (0020,0012) / Frame Acquisition Number (0020,9156)
  kStackDimensions
};

// One 2D frame of a series as the geometry sees it.
struct SliceGeometry {
  std::string sop_instance_uid;
  uint32_t frame_number = 0;  // 1-based within a multi-frame object; 0 for a single-frame object
  bool has_position = false;
  bool has_orientation = false;
  Vec3 position{};               // Image Position (Patient): centre of the first pixel, LPS mm
  Vec3 row_direction{};          // Image Orientation (Patient) values 1-3: along a row
  Vec3 column_direction{};       // values 4-6: down a column
  double row_spacing_mm = 0;     // Pixel Spacing value 1: between the centres of adjacent rows
  double column_spacing_mm = 0;  // value 2: between adjacent columns
  uint32_t rows = 0;
  uint32_t columns = 0;
  std::string frame_of_reference_uid;
  std::array<std::string, kStackDimensions> stack_key;  // empty where the object has none
};

struct VolumeOptions {
  // Resample a series whose slices are unevenly spaced onto a uniform grid
  // (linear along z) instead of refusing it. Tilt, shear, mixed orientation,
  // duplicates and missing slices are refused regardless.
  bool allow_resample = false;
  // A slice may sit this fraction of the slice spacing (or slice_tolerance_mm,
  // whichever is larger) away from its place on the uniform grid.
  double slice_tolerance = 0.02;
  double slice_tolerance_mm = 0.02;
  uint32_t min_slices = 3;
  uint32_t max_slices = 4096;
  uint64_t max_voxels = 256ull << 20;  // 1 GiB of float32
  // Where de-rescaled copies of objects are written for decoding, in a
  // private directory removed afterwards; empty: $TMPDIR, else /tmp.
  std::string scratch_dir;
  // The process each object decodes in (pixel_decoder.h).
  DecoderLimits decoder;
};

// Where one z index of a volume comes from.
struct SliceSource {
  std::string sop_instance_uid;
  uint32_t frame_number = 0;  // 1-based; 0 for a single-frame object
  // Resampled slices lie between two sources: this is the nearer one.
  bool interpolated = false;
};

// A stack that passed every check, before any pixel is read.
struct StackPlan {
  std::string label;               // empty for the whole series, else e.g. "echo 2"
  std::vector<size_t> order;       // indices into the slices, ascending along the normal
  std::vector<double> offsets_mm;  // each ordered slice's distance from the first along the normal
  Vec3 origin{};
  Vec3 row_direction{};
  Vec3 column_direction{};
  Vec3 normal{};
  std::array<double, 3> spacing_mm{};  // z, y (between rows), x (between columns)
  uint32_t rows = 0;
  uint32_t columns = 0;
  uint32_t depth = 0;  // slices of the volume: order.size() unless resampled
  bool resample = false;
};

// The series' own slices behind a resampled volume, ascending along the
// normal: what a SEG must lie on, since the PACS holds these and not the grid.
struct SourceStack {
  std::vector<SliceSource> slices;
  std::vector<double> offsets_mm;  // each slice's distance from the volume's origin along the normal
  std::vector<float> voxels;       // [slices][rows][columns], the values as read, before resampling
};

// A float32 volume [depth][rows][columns], slice 0 at the origin and slices
// ascending along the normal; voxel (k, j, i) lies at
//   origin + i * spacing_mm[2] * row_direction + j * spacing_mm[1] * column_direction
//          + SliceOffset(k) * normal   (LPS mm),
// SliceOffset(k) = k * spacing_mm[0] unless slice_offsets_mm says otherwise.
struct Volume {
  uint32_t depth = 0;
  uint32_t rows = 0;
  uint32_t columns = 0;
  std::vector<float> voxels;
  Vec3 origin{};
  std::array<double, 3> spacing_mm{};  // z, y, x
  Vec3 row_direction{};
  Vec3 column_direction{};
  Vec3 normal{};
  std::vector<SliceSource> sources;  // one per z index
  std::string modality;              // CT, MR, PT
  std::string units;                 // HU for CT, SUVbw for PET, empty for MR
  std::string stack_label;           // as StackPlan::label
  bool resampled = false;
  // When resampled: the source slices the grid was interpolated from.
  SourceStack source_stack;
  // Each z index's distance from the origin along the normal (mm); empty
  // when slice k lies at k * spacing_mm[0]. Only the volume of a resampled
  // read's unevenly spaced source slices (TakeSourceSlices) has them: models
  // and measurements always get a uniform grid.
  std::vector<double> slice_offsets_mm;
  // On that volume of source slices: the uniform slice spacing the model read
  // and the measurements used, so that results can say so; 0 otherwise.
  double resampled_spacing_mm = 0;
};

// Slice k's distance from the origin along the normal, and its position
// (the first pixel's centre, LPS mm).
double SliceOffset(const Volume& volume, uint32_t k);
Vec3 SlicePosition(const Volume& volume, uint32_t k);

// For each of `to`, the index of the nearest of `from` (the lower one on a
// tie); both ascending.
std::vector<uint32_t> NearestOffsets(const std::vector<double>& from, const std::vector<double>& to);

// For a resampled volume: the uniform slice nearest to each source slice
// along the normal (the lower one on a tie), indexed like source_stack.
std::vector<uint32_t> UniformSliceOfSources(const Volume& resampled);
// For a resampled volume: the source slice nearest to each uniform slice (the
// one sources[k] names), an index into source_stack.
std::vector<uint32_t> SourceSliceOfUniform(const Volume& resampled);

// A label map on a resampled volume's uniform grid, carried back onto its
// source slices: each source slice takes the labels of the uniform slice
// nearest to it along the normal. Labels are categories, so nothing is
// interpolated. INVALID_ARGUMENT when the volume is not resampled or the map
// does not fit it.
absl::StatusOr<std::vector<uint8_t>> LabelMapOnSourceSlices(const Volume& resampled,
                                                            const std::vector<uint8_t>& label_map);

// The source slices of a resampled volume as a volume of their own, with
// their true positions (slice_offsets_mm), the values as read, and
// resampled_spacing_mm set; its spacing_mm[0] stays the uniform spacing, the
// nominal thickness of a slice. The SEG, the key-slice captures and the
// report's references to slices are written on it. Moves the source voxels
// out of `resampled`. INVALID_ARGUMENT when `resampled` is not resampled or
// its source stack is inconsistent.
absl::StatusOr<Volume> TakeSourceSlices(Volume& resampled);

// A refusal: FAILED_PRECONDITION whose message is a sentence for a
// radiologist and whose payload is a machine code such as "missing_slices".
absl::Status VolumeRefusal(const std::string& code, const std::string& sentence);
// The machine code of a refusal; empty for any other status.
std::string RefusalCode(const absl::Status& status);

// Checks the slices of one series and plans its volume(s): one plan for a
// consistent series; several when the series only becomes consistent once
// split along one stack dimension (or all of them together), each part a
// consistent volume; otherwise a refusal.
absl::StatusOr<std::vector<StackPlan>> PlanVolumes(const std::vector<SliceGeometry>& slices,
                                                   const VolumeOptions& options);

// Linear interpolation along z of `source` (offsets.size() slices of
// slice_pixels values, at `offsets` mm from the first, ascending) onto
// `depth` slices spaced `spacing` mm from offset 0.
std::vector<float> ResampleAlongZ(const std::vector<float>& source, const std::vector<double>& offsets,
                                  size_t slice_pixels, uint32_t depth, double spacing);

}  // namespace secondread::scp
