// Decodes the pixels of a stored instance into display-ready grey levels for
// the inference tier and for the Secondary Capture. DCMTK decodes the
// uncompressed, JPEG, JPEG-LS and RLE transfer syntaxes; GDCM decodes JPEG
// 2000. Nothing here knows about patients: the output is pixels and physical
// facts only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace secondread::scp {

struct DecodeOptions {
  // Apply the VOI LUT or the first Window Center/Width of the object (or a
  // min-max window when it has none). Off: Modality LUT/rescale only, linearly
  // mapped to the output range.
  bool apply_voi = true;
  // Instead of grey levels, the values after the Modality LUT or rescale (for
  // CT, Hounsfield units) in DecodedFrame::values; no VOI, no inversion of
  // MONOCHROME1, which only concerns display. DCMTK holds these values as
  // integers: a fractional rescale result is cut toward zero.
  bool modality_values = false;
  // Refuse objects beyond these bounds before allocating anything: a lying
  // Rows/Columns/Number of Frames must not exhaust memory.
  uint32_t max_frames = 256;
  uint64_t max_pixels_per_frame = 64ull << 20;  // 8192 x 8192
  // Bound on frames x rows x columns: the rendering keeps every frame's
  // intermediate values in memory at once.
  uint64_t max_total_pixels = 512ull << 20;
};

// One frame, MONOCHROME2 (MONOCHROME1 already inverted), after Modality LUT
// and VOI, as unsigned 16-bit grey levels over the full 0..65535 range; or,
// with DecodeOptions::modality_values, the modality values instead.
struct DecodedFrame {
  uint32_t rows = 0;
  uint32_t columns = 0;
  std::vector<uint16_t> pixels;  // row-major, rows * columns; empty for modality values
  std::vector<float> values;     // row-major, rows * columns; only for modality values
};

struct DecodedImage {
  std::vector<DecodedFrame> frames;
  // Pixel Spacing, else Imager Pixel Spacing, else 0 (unknown).
  double row_spacing_mm = 0;
  double column_spacing_mm = 0;
  std::string source_photometric;  // as found in the object, e.g. MONOCHROME1
  std::string modality;            // (0008,0060)
  std::string body_part;           // (0018,0015)
  std::string view_position;       // (0018,5101)
  std::string sop_class_uid;
};

// Registers DCMTK's JPEG, JPEG-LS and RLE decoders. Idempotent, thread-safe.
void RegisterDecoders();

// INVALID_ARGUMENT for an object without usable pixel data, attributes that
// contradict the pixel data, or bounds exceeded; UNIMPLEMENTED for a transfer
// syntax no decoder handles; never throws.
absl::StatusOr<DecodedImage> DecodeImageFile(const std::string& path, const DecodeOptions& options);

}  // namespace secondread::scp
