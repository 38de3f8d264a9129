#include "scp/pixels/volume.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"

namespace secondread::scp {
namespace {

constexpr char kRefusalPayload[] = "type.secondread/volume.refusal";
constexpr double kPi = 3.14159265358979323846;

const char* const kDimensionNames[kStackDimensions] = {"stack", "temporal position", "echo", "trigger time",
                                                       "acquisition"};

double Dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
Vec3 Sub(const Vec3& a, const Vec3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
Vec3 Cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double Norm(const Vec3& a) { return std::sqrt(Dot(a, a)); }
Vec3 Normalized(const Vec3& a) {
  const double n = Norm(a);
  return {a[0] / n, a[1] / n, a[2] / n};
}
double AngleBetween(const Vec3& a, const Vec3& b) {
  return std::acos(std::clamp(Dot(Normalized(a), Normalized(b)), -1.0, 1.0));
}

// "2.5 mm", "0.625 mm", "202.5 mm": three decimals at most, trailing zeros
// dropped down to one.
std::string Mm(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  std::string s(buf);
  while (s.size() > 1 && s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
  return s + " mm";
}

std::string Degrees(double radians) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f°", radians * 180.0 / kPi);
  return buf;
}

std::string N(size_t v) { return std::to_string(v); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  double m = v[mid];
  if (v.size() % 2 == 0) {
    m = (m + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid))) / 2;
  }
  return m;
}

absl::Status Refuse(const std::string& label, const std::string& code, const std::string& sentence) {
  return VolumeRefusal(code, label.empty() ? sentence : label + ": " + sentence);
}

// Same orientation, matrix and pixel spacing on every slice, and one Frame of
// Reference. An orientation or spacing counts as the same when the
// difference moves the far edge of the image by less than half a pixel.
absl::Status CheckCommon(const std::vector<SliceGeometry>& slices, const std::vector<size_t>& idx,
                         const std::string& label) {
  const SliceGeometry& first = slices[idx[0]];
  const double min_spacing = std::min(first.row_spacing_mm, first.column_spacing_mm);
  const double extent = std::max(first.rows * first.row_spacing_mm, first.columns * first.column_spacing_mm);
  const double max_angle = 0.5 * min_spacing / extent;
  size_t other_orientation = 0, other_size = 0, other_spacing = 0, other_frame = 0;
  double worst_angle = 0;
  for (size_t i : idx) {
    const SliceGeometry& s = slices[i];
    if (s.frame_of_reference_uid != first.frame_of_reference_uid) ++other_frame;
    if (s.rows != first.rows || s.columns != first.columns) ++other_size;
    if (std::abs(s.row_spacing_mm - first.row_spacing_mm) * first.rows > 0.5 * first.row_spacing_mm ||
        std::abs(s.column_spacing_mm - first.column_spacing_mm) * first.columns > 0.5 * first.column_spacing_mm) {
      ++other_spacing;
    }
    const double angle = std::max(AngleBetween(s.row_direction, first.row_direction),
                                  AngleBetween(s.column_direction, first.column_direction));
    if (angle > max_angle) {
      ++other_orientation;
      worst_angle = std::max(worst_angle, angle);
    }
  }
  const std::string of = " of " + N(idx.size()) + " images ";
  if (other_frame > 0) {
    return Refuse(label, "multiple_frames_of_reference",
                  N(other_frame) + of + "belong to another Frame of Reference than the first; a volume needs one");
  }
  if (other_orientation > 0) {
    return Refuse(label, "mixed_orientation",
                  N(other_orientation) + of + "lie in another plane orientation than the first (up to " +
                      Degrees(worst_angle) + " apart); a volume needs one orientation");
  }
  if (other_size > 0) {
    return Refuse(label, "mixed_size",
                  N(other_size) + of + "have another matrix than the first (" + N(first.rows) + " x " +
                      N(first.columns) + "); a volume needs one");
  }
  if (other_spacing > 0) {
    return Refuse(label, "mixed_pixel_spacing",
                  N(other_spacing) + of + "have another pixel spacing than the first; a volume needs one");
  }
  return absl::OkStatus();
}

absl::StatusOr<StackPlan> CheckStack(const std::vector<SliceGeometry>& slices, std::vector<size_t> idx,
                                     const std::string& label, const VolumeOptions& options) {
  const size_t n = idx.size();
  // Two slices at least, whatever the options say: a spacing needs a gap.
  const size_t min_slices = std::max<size_t>(options.min_slices, 2);
  if (n < min_slices) {
    return Refuse(label, "too_few_slices",
                  "there " + std::string(n == 1 ? "is 1 slice" : "are " + N(n) + " slices") +
                      "; a volume needs at least " + N(min_slices));
  }
  if (n > options.max_slices) {
    return Refuse(label, "too_large", N(n) + " slices exceed the limit of " + N(options.max_slices));
  }
  RETURN_IF_ERROR(CheckCommon(slices, idx, label));
  const SliceGeometry& first_input = slices[idx[0]];
  const Vec3 row = Normalized(first_input.row_direction);
  const Vec3 column = Normalized(first_input.column_direction);
  const Vec3 normal = Normalized(Cross(row, column));

  // Sorted along the normal: never by Instance Number or arrival.
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return Dot(slices[a].position, normal) < Dot(slices[b].position, normal);
  });
  const Vec3 origin = slices[idx[0]].position;
  std::vector<double> offsets(n);
  for (size_t i = 0; i < n; ++i) offsets[i] = Dot(Sub(slices[idx[i]].position, origin), normal);
  std::vector<double> gaps(n - 1);
  for (size_t i = 0; i + 1 < n; ++i) gaps[i] = offsets[i + 1] - offsets[i];
  const double typical = Median(gaps);
  const double tol = std::max(options.slice_tolerance_mm, options.slice_tolerance * typical);
  const std::string of_n = " of " + N(n);

  for (size_t i = 0; i + 1 < n; ++i) {
    if (gaps[i] <= tol) {
      return Refuse(
          label, "duplicate_positions",
          "slices " + N(i + 1) + " and " + N(i + 2) + of_n + " are at the same position (" + Mm(gaps[i]) + " apart)");
    }
  }

  // Every origin must lie on the normal through the first: an offset across
  // the image plane that grows with the distance along the normal is a
  // gantry tilt (sheared stack), anything else is an inconsistent position.
  const double plane_tol = 0.5 * std::min(first_input.row_spacing_mm, first_input.column_spacing_mm);
  std::vector<double> u(n), v(n);
  double worst = 0;
  size_t worst_at = 0;
  for (size_t i = 0; i < n; ++i) {
    const Vec3 w = Sub(slices[idx[i]].position, origin);
    u[i] = Dot(w, row);
    v[i] = Dot(w, column);
    const double off = std::hypot(u[i], v[i]);
    if (off > worst) {
      worst = off;
      worst_at = i;
    }
  }
  if (worst > plane_tol) {
    double zz = 0, uz = 0, vz = 0;
    for (size_t i = 0; i < n; ++i) {
      zz += offsets[i] * offsets[i];
      uz += u[i] * offsets[i];
      vz += v[i] * offsets[i];
    }
    const double a = uz / zz, b = vz / zz;
    double residual = 0;
    for (size_t i = 0; i < n; ++i)
      residual = std::max(residual, std::hypot(u[i] - a * offsets[i], v[i] - b * offsets[i]));
    if (residual <= plane_tol) {
      return Refuse(label, "gantry_tilt",
                    "the slices are sheared by " + Degrees(std::atan(std::hypot(a, b))) + " (gantry tilt): slice " +
                        N(worst_at + 1) + of_n + " lies " + Mm(worst) +
                        " across the image plane from the line through the first slice");
    }
    return Refuse(label, "inconsistent_positions",
                  "slice " + N(worst_at + 1) + of_n + " lies " + Mm(worst) +
                      " across the image plane from the line through the first slice");
  }

  // Gaps that are a whole multiple of the typical spacing are missing
  // slices; any other departure is non-uniform spacing.
  size_t missing_gaps = 0, missing_total = 0, first_missing = 0, first_missing_count = 0;
  std::optional<size_t> first_uneven;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (std::abs(gaps[i] - typical) <= tol) continue;
    const double k = std::round(gaps[i] / typical);
    // A gap of more missing slices than a volume may hold is no missing
    // slice but a position that makes no sense.
    if (k >= 2 && k <= options.max_slices && std::abs(gaps[i] - k * typical) <= k * tol) {
      if (missing_gaps++ == 0) {
        first_missing = i;
        first_missing_count = static_cast<size_t>(k) - 1;
      }
      missing_total += static_cast<size_t>(k) - 1;
    } else if (!first_uneven) {
      first_uneven = i;
    }
  }
  if (missing_gaps > 0) {
    const size_t expected = n + missing_total;
    const size_t from = first_missing + 2;
    std::string sentence = first_missing_count == 1 ? "slice " + N(from) + " of " + N(expected) + " is missing"
                                                    : "slices " + N(from) + " to " + N(from + first_missing_count - 1) +
                                                          " of " + N(expected) + " are missing";
    sentence += ": a gap of " + Mm(gaps[first_missing]) + " where " + Mm(typical) + " is expected";
    if (missing_gaps > 1) sentence += " (and " + N(missing_gaps - 1) + " more gaps)";
    return Refuse(label, "missing_slices", sentence);
  }

  StackPlan plan;
  plan.label = label;
  plan.order = idx;
  plan.offsets_mm = offsets;
  plan.origin = origin;
  plan.row_direction = row;
  plan.column_direction = column;
  plan.normal = normal;
  plan.rows = first_input.rows;
  plan.columns = first_input.columns;
  plan.spacing_mm[1] = first_input.row_spacing_mm;
  plan.spacing_mm[2] = first_input.column_spacing_mm;

  std::string uneven;
  if (first_uneven) {
    const size_t i = *first_uneven;
    uneven = "the slice spacing is not uniform: " + Mm(gaps[i]) + " between slices " + N(i + 1) + " and " + N(i + 2) +
             of_n + " where " + Mm(typical) + " is expected";
  } else {
    // The spacing from every gap (the mean), and no slice may drift from
    // its place on that grid by more than the tolerance.
    const double spacing = offsets[n - 1] / static_cast<double>(n - 1);
    double drift = 0;
    size_t drift_at = 0;
    for (size_t i = 0; i < n; ++i) {
      const double d = std::abs(offsets[i] - static_cast<double>(i) * spacing);
      if (d > drift) {
        drift = d;
        drift_at = i;
      }
    }
    if (drift > tol) {
      uneven = "the slice spacing is not uniform: slice " + N(drift_at + 1) + of_n + " lies " + Mm(drift) +
               " from its place on a uniform grid of " + Mm(spacing);
    } else {
      plan.spacing_mm[0] = spacing;
      plan.depth = static_cast<uint32_t>(n);
    }
  }
  if (!uneven.empty()) {
    if (!options.allow_resample) return Refuse(label, "non_uniform_spacing", uneven);
    const double span = offsets[n - 1];
    const double steps = std::max(1.0, std::round(span / typical));
    if (steps + 1 > options.max_slices) {
      return Refuse(label, "too_large", "resampling would give more than " + N(options.max_slices) + " slices");
    }
    plan.depth = static_cast<uint32_t>(steps) + 1;
    plan.spacing_mm[0] = span / steps;
    plan.resample = true;
  }
  // A resampled volume keeps its source slices beside the grid: the SEG is
  // written on them.
  const uint64_t voxels = uint64_t{plan.resample ? plan.depth + n : n} * plan.rows * plan.columns;
  if (voxels > options.max_voxels) {
    return Refuse(label, "too_large",
                  N(plan.depth) + " x " + N(plan.rows) + " x " + N(plan.columns) + " voxels" +
                      (plan.resample ? " and the " + N(n) + " source slices beside them" : "") +
                      " exceed the limit of " + N(options.max_voxels));
  }
  return plan;
}

}  // namespace

absl::Status VolumeRefusal(const std::string& code, const std::string& sentence) {
  absl::Status status = absl::FailedPreconditionError(sentence);
  status.SetPayload(kRefusalPayload, absl::Cord(code));
  return status;
}

std::string RefusalCode(const absl::Status& status) {
  absl::optional<absl::Cord> code = status.GetPayload(kRefusalPayload);
  return code ? std::string(*code) : std::string();
}

absl::StatusOr<std::vector<StackPlan>> PlanVolumes(const std::vector<SliceGeometry>& slices,
                                                   const VolumeOptions& options) {
  if (slices.empty()) return VolumeRefusal("too_few_slices", "the series has no images");
  size_t no_position = 0, bad_orientation = 0, no_spacing = 0;
  for (const SliceGeometry& s : slices) {
    if (!s.has_position) ++no_position;
    const double rn = Norm(s.row_direction), cn = Norm(s.column_direction);
    if (!s.has_orientation || std::abs(rn - 1) > 0.01 || std::abs(cn - 1) > 0.01 ||
        std::abs(Dot(s.row_direction, s.column_direction)) > 0.01) {
      ++bad_orientation;
    }
    if (!(s.row_spacing_mm > 0) || !(s.column_spacing_mm > 0) || s.rows == 0 || s.columns == 0) ++no_spacing;
  }
  const std::string of = " of " + N(slices.size()) + " images ";
  if (no_position > 0)
    return VolumeRefusal("missing_geometry", N(no_position) + of + "have no Image Position (Patient)");
  if (bad_orientation > 0) {
    return VolumeRefusal(
        "missing_geometry",
        N(bad_orientation) + of + "have no Image Orientation (Patient) of two perpendicular unit vectors");
  }
  if (no_spacing > 0) return VolumeRefusal("missing_geometry", N(no_spacing) + of + "have no Pixel Spacing");

  std::vector<size_t> all(slices.size());
  std::iota(all.begin(), all.end(), 0);
  absl::StatusOr<StackPlan> whole = CheckStack(slices, all, "", options);
  if (whole.ok()) return std::vector<StackPlan>{*std::move(whole)};

  // Split only when the whole series is not one volume: 4D, multi-echo and
  // multi-acquisition series become one volume per group if every group is
  // itself consistent. Some scanners number every slice of one volume as
  // its own acquisition, so a consistent series is never split.
  std::vector<int> varying;
  for (int d = 0; d < kStackDimensions; ++d) {
    for (const SliceGeometry& s : slices) {
      if (s.stack_key[d] != slices[0].stack_key[d]) {
        varying.push_back(d);
        break;
      }
    }
  }
  std::optional<absl::Status> group_failure;
  auto try_split = [&](const std::vector<int>& dims) -> std::optional<std::vector<StackPlan>> {
    std::vector<std::string> keys;
    std::map<std::string, std::vector<size_t>> groups;
    std::map<std::string, std::string> labels;
    for (size_t i = 0; i < slices.size(); ++i) {
      std::string key, label;
      for (int d : dims) {
        key += slices[i].stack_key[d] + '\x1f';
        if (!label.empty()) label += ", ";
        label += std::string(kDimensionNames[d]) + " " +
                 (slices[i].stack_key[d].empty() ? std::string("(none)") : slices[i].stack_key[d]);
      }
      if (groups.find(key) == groups.end()) keys.push_back(key);
      groups[key].push_back(i);
      labels[key] = label;
    }
    std::vector<StackPlan> plans;
    for (const std::string& key : keys) {
      absl::StatusOr<StackPlan> plan = CheckStack(slices, groups[key], labels[key], options);
      if (!plan.ok()) {
        if (!group_failure) group_failure = plan.status();
        return std::nullopt;
      }
      plans.push_back(*std::move(plan));
    }
    return plans;
  };
  // The split volumes are read at once, so they share the voxel bound.
  auto bounded = [&](std::vector<StackPlan> plans) -> absl::StatusOr<std::vector<StackPlan>> {
    uint64_t voxels = 0;
    for (const StackPlan& p : plans) {
      voxels += uint64_t{p.resample ? p.depth + p.order.size() : p.depth} * p.rows * p.columns;
    }
    if (voxels > options.max_voxels) {
      return VolumeRefusal("too_large", "the " + N(plans.size()) + " volumes of the series hold " + N(voxels) +
                                            " voxels together, more than the limit of " + N(options.max_voxels));
    }
    return plans;
  };
  for (int d : varying) {
    if (auto plans = try_split({d})) return bounded(*std::move(plans));
  }
  if (varying.size() > 1) {
    if (auto plans = try_split(varying)) return bounded(*std::move(plans));
  }
  if (group_failure && RefusalCode(whole.status()) == "duplicate_positions") {
    return VolumeRefusal("multiple_acquisitions",
                         "the series holds several stacks at the same positions and they are not each a volume: " +
                             std::string(group_failure->message()));
  }
  return whole.status();
}

std::vector<uint32_t> NearestOffsets(const std::vector<double>& from, const std::vector<double>& to) {
  std::vector<uint32_t> out;
  out.reserve(to.size());
  if (from.empty()) return out;
  size_t j = 0;
  for (double z : to) {
    while (j + 1 < from.size() && from[j + 1] <= z) ++j;
    size_t best = j;
    if (j + 1 < from.size() && std::abs(from[j + 1] - z) < std::abs(z - from[j])) best = j + 1;
    out.push_back(static_cast<uint32_t>(best));
  }
  return out;
}

double SliceOffset(const Volume& volume, uint32_t k) {
  if (k < volume.slice_offsets_mm.size()) return volume.slice_offsets_mm[k];
  return k * volume.spacing_mm[0];
}

Vec3 SlicePosition(const Volume& volume, uint32_t k) {
  const double offset = SliceOffset(volume, k);
  return {volume.origin[0] + offset * volume.normal[0], volume.origin[1] + offset * volume.normal[1],
          volume.origin[2] + offset * volume.normal[2]};
}

namespace {

std::vector<double> UniformOffsets(const Volume& volume) {
  std::vector<double> offsets(volume.depth);
  for (uint32_t k = 0; k < volume.depth; ++k) offsets[k] = k * volume.spacing_mm[0];
  return offsets;
}

absl::Status CheckResampled(const Volume& v) {
  const SourceStack& s = v.source_stack;
  if (!v.resampled || v.depth == 0 || s.slices.size() < 2 || s.offsets_mm.size() != s.slices.size()) {
    return absl::InvalidArgumentError("the volume is not resampled from source slices");
  }
  if (!std::is_sorted(s.offsets_mm.begin(), s.offsets_mm.end())) {
    return absl::InvalidArgumentError("the source slices are not in order along the normal");
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<uint32_t> UniformSliceOfSources(const Volume& resampled) {
  return NearestOffsets(UniformOffsets(resampled), resampled.source_stack.offsets_mm);
}

std::vector<uint32_t> SourceSliceOfUniform(const Volume& resampled) {
  return NearestOffsets(resampled.source_stack.offsets_mm, UniformOffsets(resampled));
}

absl::StatusOr<std::vector<uint8_t>> LabelMapOnSourceSlices(const Volume& resampled,
                                                            const std::vector<uint8_t>& label_map) {
  RETURN_IF_ERROR(CheckResampled(resampled));
  const size_t slice = size_t{resampled.rows} * resampled.columns;
  if (label_map.size() != slice * resampled.depth) {
    return absl::InvalidArgumentError("the label map does not fit the resampled volume");
  }
  const std::vector<uint32_t> nearest = UniformSliceOfSources(resampled);
  std::vector<uint8_t> out(slice * nearest.size());
  for (size_t s = 0; s < nearest.size(); ++s) {
    std::copy_n(label_map.begin() + static_cast<std::ptrdiff_t>(nearest[s] * slice), slice,
                out.begin() + static_cast<std::ptrdiff_t>(s * slice));
  }
  return out;
}

absl::StatusOr<Volume> TakeSourceSlices(Volume& resampled) {
  RETURN_IF_ERROR(CheckResampled(resampled));
  SourceStack& stack = resampled.source_stack;
  const size_t n = stack.slices.size();
  if (stack.voxels.size() != n * resampled.rows * resampled.columns) {
    return absl::InvalidArgumentError("the source slices' voxels do not fit the volume");
  }
  Volume v;
  v.depth = static_cast<uint32_t>(n);
  v.rows = resampled.rows;
  v.columns = resampled.columns;
  v.voxels = std::move(stack.voxels);
  stack.voxels.clear();
  v.origin = resampled.origin;
  v.spacing_mm = resampled.spacing_mm;
  v.row_direction = resampled.row_direction;
  v.column_direction = resampled.column_direction;
  v.normal = resampled.normal;
  v.sources = stack.slices;
  v.modality = resampled.modality;
  v.units = resampled.units;
  v.stack_label = resampled.stack_label;
  v.slice_offsets_mm = stack.offsets_mm;
  v.resampled_spacing_mm = resampled.spacing_mm[0];
  return v;
}

std::vector<float> ResampleAlongZ(const std::vector<float>& source, const std::vector<double>& offsets,
                                  size_t slice_pixels, uint32_t depth, double spacing) {
  std::vector<float> out(size_t{depth} * slice_pixels);
  const size_t n = offsets.size();
  size_t j = 0;
  for (uint32_t k = 0; k < depth; ++k) {
    const double z = k * spacing;
    while (j + 2 < n && offsets[j + 1] < z) ++j;
    const size_t hi = std::min(j + 1, n - 1);
    double w = 0;
    if (hi != j && offsets[hi] > offsets[j]) w = std::clamp((z - offsets[j]) / (offsets[hi] - offsets[j]), 0.0, 1.0);
    const float* a = source.data() + j * slice_pixels;
    const float* b = source.data() + hi * slice_pixels;
    float* o = out.data() + size_t{k} * slice_pixels;
    for (size_t p = 0; p < slice_pixels; ++p) {
      o[p] = static_cast<float>((1 - w) * a[p] + w * b[p]);
    }
  }
  return out;
}

}  // namespace secondread::scp
