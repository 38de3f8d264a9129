// The volume pipeline's arithmetic, one small function per step so that each
// can be checked against an independent reference: reorientation to the
// model's patient convention, resampling, the intensity transform and
// MONAI-style sliding-window inference. Tensors are [N, C, D, H, W] float on
// whatever device the caller chose; nothing here moves data between devices.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/ATen.h>

#include "common/status.h"
#include "inference/model_config.h"

namespace secondread::inference::torch_backend {

using Size3 = std::array<int64_t, 3>;
using Spacing3 = std::array<double, 3>;

// How the source array maps onto the canonical (z, y, x) array the model
// sees: canonical axis i is source spatial axis perm[i] (0 = D, 1 = H,
// 2 = W), reversed when flip[i].
struct ReorientPlan {
  std::array<int, 3> perm{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};
};

// `direction` is the header's LPS cosines: row direction (along W), column
// direction (along H), slice normal (along D). Each source axis goes to the
// patient axis it is closest to; INVALID_ARGUMENT when two source axes would
// share one (a degenerate or wildly oblique orientation).
absl::StatusOr<ReorientPlan> PlanReorientation(const std::array<double, 9>& direction, Orientation target);

// Spacing in source axis order (D, H, W) to canonical order (z, y, x).
Spacing3 ReorientSpacing(const Spacing3& source, const ReorientPlan& plan);
Size3 ReorientSize(const Size3& source, const ReorientPlan& plan);

at::Tensor Reorient(const at::Tensor& volume, const ReorientPlan& plan);
at::Tensor UndoReorient(const at::Tensor& volume, const ReorientPlan& plan);

// The grid size that covers the same extent at `target` spacing; a zero
// target keeps that axis.
Size3 ResampledSize(const Size3& size, const Spacing3& spacing, const Spacing3& target);

// Trilinear (align_corners false, so the grid's outer edges stay put) or
// nearest resampling to `size`.
at::Tensor Resample(const at::Tensor& volume, const Size3& size, Interpolation mode);

// Nearest resampling of a uint8 label map [N, C, D, H, W] to `size`, voxel
// for voxel what Resample(kNearest) gives on the same values as float, but
// gathered in bytes: a label map on a 512 x 512 x 300 source grid is 79 MB
// here against 315 MB of float and three passes over it.
at::Tensor ResampleLabels(const at::Tensor& labels, const Size3& size);

// The manifest's intensity transform; statistics are per volume.
at::Tensor ApplyIntensity(const at::Tensor& volume, const VolumeConfig& config);

// MONAI's importance map for one window: a separable gaussian with sigma
// roi * sigma_scale centred on the window, or all ones.
at::Tensor ImportanceMap(const Size3& roi, Blending blending, double sigma_scale, const at::TensorOptions& options);

// Window start positions per axis, as MONAI's dense_patch_slices: a step of
// roi * (1 - overlap) (at least 1, the whole axis when it equals the ROI),
// the last window pulled back so it ends at the edge.
std::array<std::vector<int64_t>, 3> WindowStarts(const Size3& size, const Size3& roi, double overlap);

// Symmetric zero padding that brings every axis up to the ROI, as
// (before, after) per axis.
std::array<std::pair<int64_t, int64_t>, 3> PaddingFor(const Size3& size, const Size3& roi);

// [B, C, d, h, w] windows to [B, K, d, h, w] outputs.
using Predictor = std::function<at::Tensor(const at::Tensor&)>;

struct SlidingWindowOptions {
  Size3 roi{1, 1, 1};
  double overlap = 0.25;
  Blending blending = Blending::kGaussian;
  double sigma_scale = 0.125;
  int batch_size = 1;
};

// Runs `predict` over overlapping windows of a [1, C, D, H, W] volume and
// blends the outputs: sum(output * importance) / sum(importance). The
// result is [1, K, D, H, W], on the unpadded grid.
at::Tensor SlidingWindow(const at::Tensor& volume, const SlidingWindowOptions& options, const Predictor& predict);

}  // namespace secondread::inference::torch_backend
