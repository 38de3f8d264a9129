// Lesion measurements on a volume: connected components of each segment,
// measured in the volume's own geometry and units.
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "scp/objects/volumetric_results.h"

namespace secondread::scp {
namespace {

// The voxels of segment `segment` (1-based), as a mask over the volume.
std::vector<uint8_t> SegmentMask(const SegmentationResult& result, size_t segment, double threshold) {
  if (!result.label_map.empty()) {
    std::vector<uint8_t> mask(result.label_map.size());
    for (size_t v = 0; v < mask.size(); ++v) mask[v] = result.label_map[v] == segment ? 1 : 0;
    return mask;
  }
  const std::vector<float>& map = result.probabilities[segment - 1];
  std::vector<uint8_t> mask(map.size());
  // NaN compares false: never part of a lesion.
  for (size_t v = 0; v < mask.size(); ++v) mask[v] = map[v] >= threshold ? 1 : 0;
  return mask;
}

}  // namespace

absl::StatusOr<std::vector<LesionMeasurement>> MeasureLesions(const Volume& volume, const SegmentationResult& result,
                                                              const LesionOptions& options) {
  const size_t w = volume.columns, h = volume.rows, d = volume.depth;
  const size_t voxels = w * h * d;
  if (voxels == 0 || volume.voxels.size() != voxels || volume.sources.size() != d) {
    return absl::InvalidArgumentError("volume has no voxels or its sizes disagree");
  }
  // Voxel volumes and centroids assume one slice spacing.
  if (!volume.slice_offsets_mm.empty()) {
    return absl::InvalidArgumentError(
        "lesions are measured on a uniform grid; this volume's slices are unevenly spaced");
  }
  if (result.segments.empty() || result.segments.size() > 255) {
    return absl::InvalidArgumentError("a result needs 1 to 255 segments");
  }
  if (result.label_map.empty() == result.probabilities.empty()) {
    return absl::InvalidArgumentError("a result has either a label map or probability maps");
  }
  if (!result.label_map.empty() && result.label_map.size() != voxels) {
    return absl::InvalidArgumentError("label map size does not match the volume");
  }
  if (!result.probabilities.empty()) {
    if (result.probabilities.size() != result.segments.size()) {
      return absl::InvalidArgumentError("one probability map per segment is needed");
    }
    for (const auto& map : result.probabilities) {
      if (map.size() != voxels) return absl::InvalidArgumentError("probability map size does not match the volume");
    }
  }
  if (!options.segment_probabilities.empty() && options.segment_probabilities.size() != result.segments.size()) {
    return absl::InvalidArgumentError("one probability per segment is needed");
  }
  for (double spacing : volume.spacing_mm) {
    if (!(spacing > 0) || !std::isfinite(spacing)) return absl::InvalidArgumentError("volume spacing is not positive");
  }

  const double voxel_mm3 = volume.spacing_mm[0] * volume.spacing_mm[1] * volume.spacing_mm[2];
  const bool has_values = volume.units == "HU" || volume.units == "SUVbw";
  std::vector<LesionMeasurement> lesions;
  std::vector<size_t> stack;
  for (size_t segment = 1; segment <= result.segments.size(); ++segment) {
    // 1: in the segment, not yet in a lesion; 2: visited. The mask doubles
    // as the visited set, so a volume costs one byte per voxel here.
    std::vector<uint8_t> mask = SegmentMask(result, segment, options.probability_threshold);
    uint32_t lesion_number = 0;
    for (size_t seed = 0; seed < voxels; ++seed) {
      if (mask[seed] != 1) continue;
      // Flood fill over the 26 neighbours, with an explicit stack: a lesion
      // may have millions of voxels.
      LesionMeasurement m;
      m.segment_number = static_cast<uint16_t>(segment);
      std::vector<uint64_t> per_slice(d, 0);
      double sum = 0, maximum = -INFINITY, probability_sum = 0;
      Vec3 index_sum{};
      mask[seed] = 2;
      stack.assign(1, seed);
      while (!stack.empty()) {
        const size_t v = stack.back();
        stack.pop_back();
        const size_t k = v / (w * h), j = (v / w) % h, i = v % w;
        ++m.voxel_count;
        ++per_slice[k];
        index_sum[0] += i;
        index_sum[1] += j;
        index_sum[2] += k;
        sum += volume.voxels[v];
        maximum = std::max(maximum, static_cast<double>(volume.voxels[v]));
        if (!result.probabilities.empty()) probability_sum += result.probabilities[segment - 1][v];
        for (int dk = -1; dk <= 1; ++dk) {
          if ((dk < 0 && k == 0) || (dk > 0 && k + 1 == d)) continue;
          for (int dj = -1; dj <= 1; ++dj) {
            if ((dj < 0 && j == 0) || (dj > 0 && j + 1 == h)) continue;
            for (int di = -1; di <= 1; ++di) {
              if ((di < 0 && i == 0) || (di > 0 && i + 1 == w)) continue;
              const size_t n = (k + dk) * w * h + (j + dj) * w + (i + di);
              if (mask[n] == 1) {
                mask[n] = 2;
                stack.push_back(n);
              }
            }
          }
        }
      }
      if (m.voxel_count < options.min_voxels) continue;
      m.lesion_number = ++lesion_number;
      const double count = static_cast<double>(m.voxel_count);
      m.volume_mm3 = count * voxel_mm3;
      m.has_values = has_values;
      if (has_values) {
        m.units = volume.units;
        m.mean = sum / count;
        m.maximum = maximum;
      }
      for (int a = 0; a < 3; ++a) m.centroid_index[a] = index_sum[a] / count;
      for (int a = 0; a < 3; ++a) {
        m.centroid_mm[a] = volume.origin[a] + m.centroid_index[0] * volume.spacing_mm[2] * volume.row_direction[a] +
                           m.centroid_index[1] * volume.spacing_mm[1] * volume.column_direction[a] +
                           m.centroid_index[2] * volume.spacing_mm[0] * volume.normal[a];
      }
      if (!result.probabilities.empty()) {
        m.has_probability = true;
        m.probability = probability_sum / count;
      } else if (!options.segment_probabilities.empty()) {
        m.has_probability = true;
        m.probability = options.segment_probabilities[segment - 1];
      }
      for (uint32_t k = 0; k < d; ++k) {
        if (per_slice[k] > m.key_slice_voxels) {
          m.key_slice_voxels = per_slice[k];
          m.key_slice = k;
        }
      }
      m.key_source = volume.sources[m.key_slice];
      lesions.push_back(std::move(m));
    }
  }
  return lesions;
}

absl::Status KeySlicesOnSourceSlices(const Volume& resampled, std::vector<LesionMeasurement>& lesions) {
  if (!resampled.resampled || resampled.source_stack.slices.empty()) {
    return absl::InvalidArgumentError("the volume is not resampled from source slices");
  }
  const std::vector<uint32_t> nearest = SourceSliceOfUniform(resampled);
  for (LesionMeasurement& m : lesions) {
    if (m.key_slice >= nearest.size()) return absl::InvalidArgumentError("a key slice lies outside the volume");
    m.key_slice = nearest[m.key_slice];
    m.key_source = resampled.source_stack.slices[m.key_slice];
  }
  return absl::OkStatus();
}

}  // namespace secondread::scp
