#pragma once

#include <array>
#include <string>

#include "common/status.h"
#include "scp/receive/instance_sink.h"

namespace secondread::scp {

// Reads the registry attributes of a Part 10 file. The whole element
// structure is parsed (so truncated or corrupt data is caught), but values
// over 4 KiB, pixel data among them, are skipped rather than loaded.
// INVALID_ARGUMENT when the file is not a parsable DICOM object.
absl::StatusOr<InstanceRecord> ReadInstanceRecord(const std::string& path);

// The plane of an image from Image Orientation (Patient) (0020,0037) as
// received (six decimal strings, backslash-separated): "axial", "coronal" or
// "sagittal" when the normal (row x column) is within 20 degrees of the
// patient's foot-head, anterior-posterior or right-left axis; "oblique"
// beyond that; "" (unknown) when the value is absent or malformed: not six
// finite numbers, or row and column not unit vectors at right angles within
// 0.05.
std::string OrientationLabel(const std::string& image_orientation);

// Slice Thickness (0018,0050) as received, in mm; -1 (unknown) unless it is
// one finite number above 0 and at most 1000.
double SliceThicknessMm(const std::string& slice_thickness);

}  // namespace secondread::scp
