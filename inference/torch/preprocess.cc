#include "inference/torch/preprocess.h"

namespace secondread::inference::torch_backend {

namespace {

at::ScalarType StorageType(DType t) {
  switch (t) {
    case DType::kUint8: return at::kByte;
    case DType::kUint16:
    case DType::kInt16: return at::kShort;
    case DType::kFloat16: return at::kHalf;
    case DType::kFloat32: return at::kFloat;
  }
  return at::kByte;
}

std::vector<int64_t> Chw(const ImageView& image) {
  if (image.shape.size() == 3) return image.shape;
  return {1, image.shape[0], image.shape[1]};
}

at::Tensor ToFloat(const at::Tensor& raw, DType dtype) {
  if (dtype == DType::kUint16) {
    // Stored as int16: widen and undo the sign extension.
    return raw.to(at::kInt).bitwise_and(0xFFFF).to(at::kFloat);
  }
  return raw.to(at::kFloat);
}

}  // namespace

at::Tensor RawTensor(const ImageView& image) {
  // from_blob never writes through the pointer; the const_cast only satisfies
  // its signature.
  void* data = const_cast<char*>(image.data.data());
  return at::from_blob(data, Chw(image), at::TensorOptions().dtype(StorageType(image.dtype)));
}

at::Tensor PreprocessBatch(const at::Tensor& raw, DType dtype, const std::vector<bool>& monochrome1,
                           const InputConfig& input) {
  at::Tensor x = ToFloat(raw, dtype);
  const int64_t n = x.size(0);

  switch (input.scaling) {
    case Scaling::kMinMax: {
      at::Tensor lo = x.amin({1, 2, 3}, /*keepdim=*/true);
      at::Tensor hi = x.amax({1, 2, 3}, /*keepdim=*/true);
      at::Tensor span = hi - lo;
      // A flat image carries no information; it becomes all zeros, not NaN.
      x = at::where(span > 0, (x - lo) / span.clamp_min(1e-12), at::zeros_like(x));
      break;
    }
    case Scaling::kRange:
      x = ((x - input.range_low) / (input.range_high - input.range_low)).clamp(0, 1);
      break;
    case Scaling::kWindow: {
      // DICOM PS3.3 C.11.2.1.2.1 linear window, to [0, 1].
      const double c = input.window_center - 0.5;
      const double w = input.window_width - 1.0;
      x = ((x - c) / std::max(w, 1.0) + 0.5).clamp(0, 1);
      break;
    }
  }

  bool any_inverted = false;
  for (bool b : monochrome1) any_inverted = any_inverted || b;
  if (any_inverted) {
    std::vector<float> flags(monochrome1.begin(), monochrome1.end());
    at::Tensor mask = at::tensor(flags).to(x.device()).view({n, 1, 1, 1});
    x = x + mask * (1 - 2 * x);  // x where mask is 0, 1 - x where it is 1
  }

  const int64_t h = x.size(2), w = x.size(3);
  if (h != input.height || w != input.width) {
    if (h >= input.height && w >= input.width) {
      // What torch.nn.functional.interpolate(mode="area") does.
      x = at::adaptive_avg_pool2d(x, {input.height, input.width});
    } else {
      x = at::upsample_bilinear2d(x, {input.height, input.width}, /*align_corners=*/false);
    }
  }

  const int64_t c = x.size(1);
  if (c == 1 && input.channels > 1) {
    x = x.expand({n, input.channels, input.height, input.width});
  } else if (c == 3 && input.channels == 1) {
    x = x.mean(1, /*keepdim=*/true);
  }

  auto per_channel = [&](const std::vector<double>& v) {
    std::vector<float> f(static_cast<size_t>(input.channels));
    for (int i = 0; i < input.channels; ++i) f[static_cast<size_t>(i)] = static_cast<float>(v.size() == 1 ? v[0] : v[static_cast<size_t>(i)]);
    return at::tensor(f).to(x.device()).view({1, input.channels, 1, 1});
  };
  x = (x - per_channel(input.mean)) / per_channel(input.std);
  return x.contiguous();
}

at::Tensor Preprocess(const std::vector<const ImageView*>& images, const InputConfig& input, const at::Device& device,
                      bool pinned) {
  auto to_device = [&](at::Tensor host) {
    if (device.is_cpu()) return host;
    if (pinned) host = host.pin_memory();
    return host.to(device, /*non_blocking=*/pinned);
  };
  bool uniform = true;
  for (const auto* img : images) {
    uniform = uniform && img->shape == images[0]->shape && img->dtype == images[0]->dtype;
  }
  std::vector<bool> mono1;
  for (const auto* img : images) mono1.push_back(img->photometric == PhotometricKind::kMonochrome1);

  if (uniform) {
    std::vector<at::Tensor> raws;
    raws.reserve(images.size());
    for (const auto* img : images) raws.push_back(RawTensor(*img));
    // One contiguous host buffer, one copy to the device.
    return PreprocessBatch(to_device(at::stack(raws)), images[0]->dtype, mono1, input);
  }
  std::vector<at::Tensor> outs;
  outs.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    at::Tensor raw = to_device(RawTensor(*images[i]).unsqueeze(0).clone());
    outs.push_back(PreprocessBatch(raw, images[i]->dtype, {mono1[i]}, input));
  }
  return at::cat(outs);
}

}  // namespace secondread::inference::torch_backend
