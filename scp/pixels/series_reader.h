// Reads a received series (its Part 10 files) into volumes: classic
// single-frame CT, MR and PET images, and Enhanced and Legacy Converted
// Enhanced CT, MR and PET multi-frame objects. DCMTK stays inside this file's
// implementation; pixels are decoded through scp/pixels/pixel_decoder.h.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "scp/pixels/volume.h"

namespace secondread::scp {

// The geometry of every frame of the series, in the order of the files and
// their frames, without reading any pixel. A refusal (RefusalCode) for an
// object that is not a CT, MR or PET image, or a series that mixes series,
// modalities or greyscale and colour.
absl::StatusOr<std::vector<SliceGeometry>> ReadSeriesGeometry(const std::vector<std::string>& paths);

// The series as one volume, or several when it only is one once split along
// a stack dimension (PlanVolumes). Voxels are modality values as float32:
// Rescale Slope/Intercept applied per image (per frame from the Pixel Value
// Transformation of enhanced objects), Hounsfield units for CT, SUVbw for PET
// (suv.h). A series that is not a consistent volume, or whose values cannot
// be computed, is refused (RefusalCode non-empty); other errors (scratch
// space, memory) are plain statuses.
// Where reading a series spent its time, for the node's per-stage figures.
struct SeriesReadStats {
  // Decoding pixel data (in the decoder process, with the stored-value
  // copies some objects need first); the rest is parsing headers, checking
  // the geometry and placing values in the volume.
  double decode_ms = 0;
};

absl::StatusOr<std::vector<Volume>> ReadSeriesVolumes(const std::vector<std::string>& paths,
                                                      const VolumeOptions& options,
                                                      SeriesReadStats* stats = nullptr);

}  // namespace secondread::scp
