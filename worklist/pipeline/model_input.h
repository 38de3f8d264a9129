// What the dispatcher puts in an InferRequest image for a model, from the
// model's InputSpec: the node's VOI rendering as uint16 for most models, or
// modality values (Hounsfield units for CT) for a model that applies its own
// window or range. Sending a rendering to a windowing model would give it
// numbers on the wrong scale and a confidently wrong answer, so an InputSpec
// the node does not understand is refused rather than guessed at.
#pragma once

#include <string>

#include "common/status.h"
#include "scp/pixels/pixel_decoder.h"
#include "secondread/inference/v1/inference.pb.h"

namespace secondread::worklist {

// How the decoder must run for this model: modality values or a rendering.
// INVALID_ARGUMENT for a pixel_values the node does not know, or a model that
// accepts none of the data types those values can be sent as.
absl::StatusOr<scp::DecodeOptions> DecodeOptionsFor(const inference::v1::InputSpec& spec);

// Fills image's shape, dtype, data and photometric from a decoded frame.
// Display frames go as uint16 MONOCHROME2. Modality values go as float32, or
// as int16 where the model takes int16 but not float32 and every value fits;
// the photometric is MONOCHROME1 when the source was, so that the worker
// inverts after its own window. INVALID_ARGUMENT when the values do not fit
// any accepted type.
absl::Status EncodePixels(const inference::v1::InputSpec& spec, const scp::DecodedFrame& frame,
                          const std::string& source_photometric, inference::v1::Image* image);

}  // namespace secondread::worklist
