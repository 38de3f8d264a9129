#include "worklist/pipeline/model_input.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace secondread::worklist {
namespace {

namespace pb = ::secondread::inference::v1;

bool Accepts(const pb::InputSpec& spec, pb::DataType type) {
  // An empty list is a worker that predates the field: it takes every type.
  if (spec.accepted_dtypes().empty()) return true;
  return std::find(spec.accepted_dtypes().begin(), spec.accepted_dtypes().end(), type) !=
         spec.accepted_dtypes().end();
}

absl::StatusOr<bool> WantsModalityValues(const pb::InputSpec& spec) {
  const std::string& v = spec.pixel_values();
  if (v.empty() || v == "display") return false;
  if (v == "modality") return true;
  return absl::InvalidArgumentError("model input asks for pixel values '" + v +
                                    "', which this node does not produce (display, modality)");
}

}  // namespace

absl::StatusOr<scp::DecodeOptions> DecodeOptionsFor(const pb::InputSpec& spec) {
  ASSIGN_OR_RETURN(bool modality, WantsModalityValues(spec));
  scp::DecodeOptions options;
  if (modality) {
    if (!Accepts(spec, pb::DATA_TYPE_FLOAT32) && !Accepts(spec, pb::DATA_TYPE_INT16)) {
      return absl::InvalidArgumentError("model wants modality values but accepts neither float32 nor int16");
    }
    options.modality_values = true;
    options.apply_voi = false;
  } else if (!Accepts(spec, pb::DATA_TYPE_UINT16)) {
    return absl::InvalidArgumentError("model wants the display rendering but does not accept uint16");
  }
  return options;
}

absl::Status EncodePixels(const pb::InputSpec& spec, const scp::DecodedFrame& frame,
                          const std::string& source_photometric, pb::Image* image) {
  ASSIGN_OR_RETURN(bool modality, WantsModalityValues(spec));
  const size_t count = static_cast<size_t>(frame.rows) * frame.columns;
  image->clear_shape();
  image->add_shape(frame.rows);
  image->add_shape(frame.columns);
  // The decoder's output is host-endian; x86-64 and AArch64 hosts are
  // little-endian, as the contract requires.
  if (!modality) {
    if (frame.pixels.size() != count) return absl::InvalidArgumentError("frame holds no rendered pixels");
    image->set_dtype(pb::DATA_TYPE_UINT16);
    image->set_data(reinterpret_cast<const char*>(frame.pixels.data()), count * sizeof(uint16_t));
    image->set_photometric(pb::PHOTOMETRIC_MONOCHROME2);
    return absl::OkStatus();
  }
  if (frame.values.size() != count) return absl::InvalidArgumentError("frame holds no modality values");
  const bool mono1 = source_photometric.rfind("MONOCHROME1", 0) == 0;
  image->set_photometric(mono1 ? pb::PHOTOMETRIC_MONOCHROME1 : pb::PHOTOMETRIC_MONOCHROME2);
  if (Accepts(spec, pb::DATA_TYPE_FLOAT32)) {
    image->set_dtype(pb::DATA_TYPE_FLOAT32);
    image->set_data(reinterpret_cast<const char*>(frame.values.data()), count * sizeof(float));
    return absl::OkStatus();
  }
  std::vector<int16_t> narrow(count);
  for (size_t i = 0; i < count; ++i) {
    const float v = frame.values[i];
    if (!(v >= std::numeric_limits<int16_t>::min() && v <= std::numeric_limits<int16_t>::max()) ||
        v != std::trunc(v)) {
      return absl::InvalidArgumentError("modality values do not fit int16, the only type the model accepts for them");
    }
    narrow[i] = static_cast<int16_t>(v);
  }
  image->set_dtype(pb::DATA_TYPE_INT16);
  image->set_data(reinterpret_cast<const char*>(narrow.data()), count * sizeof(int16_t));
  return absl::OkStatus();
}

}  // namespace secondread::worklist
