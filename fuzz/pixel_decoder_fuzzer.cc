// The pixel-decoder front end (scp/pixels/pixel_decoder.h): attribute checks, the
// DCMTK and GDCM codecs behind them and the rendering, on instances the
// structural scan accepted (the only ones the node ever stores).
#include <cstdlib>

#include "fuzz/part10_input.h"
#include "scp/pixels/pixel_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace secondread::scp;
  auto& input = secondread::fuzz::Part10Input::Instance();
  if (!input.SetAccepted(data, size)) return 0;
  DecodeOptions options;
  // Bounds well below the node's keep each run short; the checks that
  // enforce them are the same.
  options.max_frames = 8;
  options.max_pixels_per_frame = 512 * 512;
  options.max_total_pixels = 1 << 20;
  // Above the transfer syntax index, the first byte picks the output.
  size_t count = 0;
  secondread::fuzz::TransferSyntaxes(&count);
  const unsigned mode = (data[0] / count) % 3;
  options.apply_voi = mode != 1;
  options.modality_values = mode == 2;
  auto image = DecodeImageFile(input.path(), options);
  if (!image.ok()) return 0;
  if (image->frames.empty() || image->frames.size() > options.max_frames) std::abort();
  for (const auto& frame : image->frames) {
    const uint64_t pixels = uint64_t{frame.rows} * frame.columns;
    if (pixels == 0 || pixels > options.max_pixels_per_frame) std::abort();
    if ((options.modality_values ? frame.values.size() : frame.pixels.size()) != pixels) std::abort();
  }
  return 0;
}
