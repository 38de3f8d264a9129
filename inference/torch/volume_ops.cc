#include "inference/torch/volume_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace secondread::inference::torch_backend {

namespace {

using at::indexing::Slice;

// Source spatial axis a (0 = D, 1 = H, 2 = W) runs along these LPS cosines.
std::array<double, 3> AxisCosines(const std::array<double, 9>& direction, int a) {
  const int first = a == 0 ? 6 : (a == 1 ? 3 : 0);
  return {direction[first], direction[first + 1], direction[first + 2]};
}

}  // namespace

absl::StatusOr<ReorientPlan> PlanReorientation(const std::array<double, 9>& direction, Orientation target) {
  ReorientPlan plan;
  std::array<bool, 3> taken{false, false, false};
  for (int a = 0; a < 3; ++a) {
    const auto c = AxisCosines(direction, a);
    double norm = 0;
    for (double v : c) {
      if (!std::isfinite(v)) return absl::InvalidArgumentError("direction cosines must be finite");
      norm += v * v;
    }
    if (std::abs(std::sqrt(norm) - 1.0) > 0.01) {
      return absl::InvalidArgumentError("direction cosines must be unit vectors");
    }
    int p = 0;  // patient axis: 0 = x (L), 1 = y (P), 2 = z (S)
    for (int k = 1; k < 3; ++k) {
      if (std::abs(c[k]) > std::abs(c[p])) p = k;
    }
    const int canonical = 2 - p;  // canonical order is z, y, x
    if (taken[static_cast<size_t>(canonical)]) {
      return absl::InvalidArgumentError("direction cosines do not span three distinct patient axes");
    }
    taken[static_cast<size_t>(canonical)] = true;
    plan.perm[static_cast<size_t>(canonical)] = a;
    const bool toward_lps_positive = c[p] > 0;
    // LPS wants every index to grow toward +x, +y, +z of LPS; RAS toward
    // -x (right), -y (anterior) and +z (superior).
    const bool wants_lps_positive = target == Orientation::kLps || p == 2;
    plan.flip[static_cast<size_t>(canonical)] = toward_lps_positive != wants_lps_positive;
  }
  return plan;
}

Spacing3 ReorientSpacing(const Spacing3& source, const ReorientPlan& plan) {
  return {source[static_cast<size_t>(plan.perm[0])], source[static_cast<size_t>(plan.perm[1])],
          source[static_cast<size_t>(plan.perm[2])]};
}

Size3 ReorientSize(const Size3& source, const ReorientPlan& plan) {
  return {source[static_cast<size_t>(plan.perm[0])], source[static_cast<size_t>(plan.perm[1])],
          source[static_cast<size_t>(plan.perm[2])]};
}

namespace {

std::vector<int64_t> FlipDims(const ReorientPlan& plan) {
  std::vector<int64_t> dims;
  for (int i = 0; i < 3; ++i) {
    if (plan.flip[static_cast<size_t>(i)]) dims.push_back(2 + i);
  }
  return dims;
}

}  // namespace

at::Tensor Reorient(const at::Tensor& volume, const ReorientPlan& plan) {
  at::Tensor v = volume.permute({0, 1, 2 + plan.perm[0], 2 + plan.perm[1], 2 + plan.perm[2]});
  const auto dims = FlipDims(plan);
  if (!dims.empty()) v = v.flip(dims);
  return v.contiguous();
}

at::Tensor UndoReorient(const at::Tensor& volume, const ReorientPlan& plan) {
  at::Tensor v = volume;
  const auto dims = FlipDims(plan);
  if (!dims.empty()) v = v.flip(dims);
  std::array<int64_t, 3> inverse{};
  for (int i = 0; i < 3; ++i) inverse[static_cast<size_t>(plan.perm[static_cast<size_t>(i)])] = i;
  return v.permute({0, 1, 2 + inverse[0], 2 + inverse[1], 2 + inverse[2]}).contiguous();
}

Size3 ResampledSize(const Size3& size, const Spacing3& spacing, const Spacing3& target) {
  Size3 out = size;
  for (size_t i = 0; i < 3; ++i) {
    if (target[i] > 0 && spacing[i] > 0) {
      out[i] = std::max<int64_t>(1, std::llround(static_cast<double>(size[i]) * spacing[i] / target[i]));
    }
  }
  return out;
}

at::Tensor Resample(const at::Tensor& volume, const Size3& size, Interpolation mode) {
  if (volume.size(2) == size[0] && volume.size(3) == size[1] && volume.size(4) == size[2]) return volume;
  const std::vector<int64_t> out(size.begin(), size.end());
  if (mode == Interpolation::kNearest) return at::upsample_nearest3d(volume, out);
  return at::upsample_trilinear3d(volume, out, /*align_corners=*/false);
}

namespace {

// The source index PyTorch's nearest upsampling takes for each output index
// (upsample_nearest3d without scales: a float32 ratio, floor, clamp), so
// that gathering reproduces it exactly.
at::Tensor NearestIndices(int64_t in, int64_t out) {
  std::vector<int64_t> idx(static_cast<size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t i = 0; i < out; ++i) {
    idx[static_cast<size_t>(i)] =
        in == out ? i : std::min(static_cast<int64_t>(std::floor(static_cast<float>(i) * scale)), in - 1);
  }
  return at::tensor(idx, at::kLong);
}

}  // namespace

at::Tensor ResampleLabels(const at::Tensor& labels, const Size3& size) {
  at::Tensor v = labels;
  // Innermost axis first, while the tensor is smallest; gathering whole
  // slices along the outer axes is then plain copying.
  for (int64_t axis = 2; axis >= 0; --axis) {
    const int64_t in = v.size(2 + axis);
    const int64_t out = size[static_cast<size_t>(axis)];
    if (in != out) v = v.index_select(2 + axis, NearestIndices(in, out).to(v.device()));
  }
  return v;
}

at::Tensor ApplyIntensity(const at::Tensor& volume, const VolumeConfig& c) {
  switch (c.intensity) {
    case Intensity::kNone: return volume;
    case Intensity::kWindow: {
      const double low = c.window_center - c.window_width / 2;
      return ((volume - low) / c.window_width).clamp(0, 1);
    }
    case Intensity::kRange:
    case Intensity::kSuvRange: {
      at::Tensor x = (volume - c.low) / (c.high - c.low);
      return c.clip ? x.clamp(0, 1) : x;
    }
    case Intensity::kZScore: {
      // Population statistics and a flat volume left unscaled, as MONAI's
      // NormalizeIntensity does, so a model trained there sees the same values.
      if (c.zscore_nonzero) {
        at::Tensor mask = volume != 0;
        at::Tensor values = volume.masked_select(mask);
        if (values.numel() == 0) return volume;
        const double mean = values.mean().item<double>();
        double sd = values.std(/*unbiased=*/false).item<double>();
        if (!(sd > 0)) sd = 1;
        return at::where(mask, (volume - mean) / sd, volume);
      }
      const double mean = volume.mean().item<double>();
      double sd = volume.std(/*unbiased=*/false).item<double>();
      if (!(sd > 0)) sd = 1;
      return (volume - mean) / sd;
    }
  }
  return volume;
}

at::Tensor ImportanceMap(const Size3& roi, Blending blending, double sigma_scale, const at::TensorOptions& options) {
  if (blending == Blending::kConstant) return at::ones({roi[0], roi[1], roi[2]}, options.dtype(at::kFloat));
  at::Tensor map;
  for (size_t i = 0; i < 3; ++i) {
    const double sigma = static_cast<double>(roi[i]) * sigma_scale;
    const double half = static_cast<double>(roi[i] - 1) / 2.0;
    at::Tensor x = at::arange(roi[i], options.dtype(at::kDouble)) - half;
    at::Tensor g = at::exp(x * x / (-2.0 * sigma * sigma));
    if (i == 0) map = g.view({roi[0], 1, 1});
    else if (i == 1) map = map * g.view({1, roi[1], 1});
    else map = map * g.view({1, 1, roi[2]});
  }
  // Zero weights would divide by zero where only window edges reach.
  const double min_positive = map.masked_select(map > 0).min().item<double>();
  return map.clamp_min(min_positive).to(at::kFloat);
}

std::array<std::vector<int64_t>, 3> WindowStarts(const Size3& size, const Size3& roi, double overlap) {
  std::array<std::vector<int64_t>, 3> starts;
  for (size_t i = 0; i < 3; ++i) {
    int64_t interval = roi[i];
    if (roi[i] != size[i]) {
      interval = static_cast<int64_t>(static_cast<double>(roi[i]) * (1.0 - overlap));
      if (interval <= 0) interval = 1;
    }
    int64_t count = 1;
    const int64_t limit = (size[i] + interval - 1) / interval;
    for (int64_t d = 0; d < limit; ++d) {
      if (d * interval + roi[i] >= size[i]) {
        count = d + 1;
        break;
      }
    }
    for (int64_t k = 0; k < count; ++k) {
      const int64_t start = k * interval;
      starts[i].push_back(start - std::max<int64_t>(start + roi[i] - size[i], 0));
    }
  }
  return starts;
}

std::array<std::pair<int64_t, int64_t>, 3> PaddingFor(const Size3& size, const Size3& roi) {
  std::array<std::pair<int64_t, int64_t>, 3> pad;
  for (size_t i = 0; i < 3; ++i) {
    const int64_t diff = std::max<int64_t>(roi[i] - size[i], 0);
    pad[i] = {diff / 2, diff - diff / 2};
  }
  return pad;
}

at::Tensor SlidingWindow(const at::Tensor& volume, const SlidingWindowOptions& o, const Predictor& predict) {
  TORCH_CHECK(volume.dim() == 5 && volume.size(0) == 1, "sliding window takes one [1, C, D, H, W] volume");
  const Size3 size{volume.size(2), volume.size(3), volume.size(4)};
  const auto pad = PaddingFor(size, o.roi);
  at::Tensor x = volume;
  if (pad[0].first + pad[0].second + pad[1].first + pad[1].second + pad[2].first + pad[2].second > 0) {
    x = at::constant_pad_nd(volume, {pad[2].first, pad[2].second, pad[1].first, pad[1].second, pad[0].first,
                                     pad[0].second},
                            0);
  }
  const Size3 padded{x.size(2), x.size(3), x.size(4)};
  const Size3 roi{std::min(o.roi[0], padded[0]), std::min(o.roi[1], padded[1]), std::min(o.roi[2], padded[2])};
  const auto starts = WindowStarts(padded, roi, o.overlap);
  std::vector<Size3> windows;
  for (int64_t d : starts[0]) {
    for (int64_t h : starts[1]) {
      for (int64_t w : starts[2]) windows.push_back({d, h, w});
    }
  }
  const at::Tensor importance = ImportanceMap(roi, o.blending, o.sigma_scale, x.options());
  at::Tensor sum;
  at::Tensor weight = at::zeros({1, 1, padded[0], padded[1], padded[2]}, x.options().dtype(at::kFloat));
  const size_t batch = static_cast<size_t>(std::max(1, o.batch_size));
  for (size_t first = 0; first < windows.size(); first += batch) {
    const size_t last = std::min(windows.size(), first + batch);
    std::vector<at::Tensor> parts;
    for (size_t j = first; j < last; ++j) {
      const auto& s = windows[j];
      parts.push_back(x.index({Slice(), Slice(), Slice(s[0], s[0] + roi[0]), Slice(s[1], s[1] + roi[1]),
                               Slice(s[2], s[2] + roi[2])}));
    }
    at::Tensor out = predict(at::cat(parts, 0)).to(at::kFloat);
    TORCH_CHECK(out.dim() == 5 && out.size(0) == static_cast<int64_t>(last - first) && out.size(2) == roi[0] &&
                    out.size(3) == roi[1] && out.size(4) == roi[2],
                "the model must return [batch, channels, d, h, w] on the window's grid");
    if (!sum.defined()) sum = at::zeros({1, out.size(1), padded[0], padded[1], padded[2]}, weight.options());
    for (size_t j = first; j < last; ++j) {
      const auto& s = windows[j];
      const std::vector<at::indexing::TensorIndex> region = {
          Slice(), Slice(), Slice(s[0], s[0] + roi[0]), Slice(s[1], s[1] + roi[1]), Slice(s[2], s[2] + roi[2])};
      at::Tensor one = out.index({static_cast<int64_t>(j - first)}).unsqueeze(0);
      sum.index(region).add_(one * importance);
      weight.index(region).add_(importance);
    }
  }
  at::Tensor blended = sum / weight;
  return blended
      .index({Slice(), Slice(), Slice(pad[0].first, pad[0].first + size[0]), Slice(pad[1].first, pad[1].first + size[1]),
              Slice(pad[2].first, pad[2].first + size[2])})
      .contiguous();
}

}  // namespace secondread::inference::torch_backend
