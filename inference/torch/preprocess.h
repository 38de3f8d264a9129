// Preprocessing to a model's input, on the device the model runs on: one
// host-to-device copy per batch, then conversion, scaling, MONOCHROME1
// inversion, resize, channel adaptation and normalisation as batched tensor
// operations. This matches tools/models/ exactly; a model trained there sees
// the same numbers here.
#pragma once

#include <vector>

#include <ATen/ATen.h>

#include "inference/backend.h"
#include "inference/model_config.h"

namespace secondread::inference::torch_backend {

// Wraps the caller's bytes as a CPU tensor without copying. uint16 has no
// LibTorch dtype on every version we support, so it arrives as int16 and is
// widened later; `WidenRaw` knows.
at::Tensor RawTensor(const ImageView& image);

// Converts a batch of same-shaped raw images [N, C, H, W] (any supported
// dtype, already on the target device) to the model's float input.
at::Tensor PreprocessBatch(const at::Tensor& raw, DType dtype, const std::vector<bool>& monochrome1,
                           const InputConfig& input);

// Builds the model input for any mix of images, grouping nothing: images of
// equal shape and dtype go through one batched pass, others one by one.
at::Tensor Preprocess(const std::vector<const ImageView*>& images, const InputConfig& input, const at::Device& device,
                      bool pinned);

}  // namespace secondread::inference::torch_backend
