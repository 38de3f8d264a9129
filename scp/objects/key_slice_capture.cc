// Secondary Capture of a key slice, for viewers without SEG
// support: the slice as the volume holds it (modality values, not the
// source's stored pixels), the segmentation outlined over it, and the 2D
// Secondary Capture's banner above the image, never over the anatomy.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "scp/objects/internals/bitmap_font.h"
#include "scp/objects/internals/result_common.h"
#include "scp/objects/volumetric_results.h"

namespace secondread::scp {
namespace {

using internals::FromCondition;
using internals::Put;
using internals::Rgb;

// As the 2D Secondary Capture: a small render is magnified (nearest
// neighbour, whole voxels stay visible) until its long side reaches this,
// and a large one is reduced to at most kMaxLongSide.
constexpr double kMinLongSide = 256;
constexpr double kMaxLongSide = 2048;
constexpr int kMinCanvasWidth = 256;
constexpr Rgb kBannerBackground{24, 24, 24};
constexpr Rgb kWarningText{255, 220, 0};
constexpr Rgb kText{255, 255, 255};
// Segment outlines, by segment number modulo the palette: saturated colours
// that read against any grey.
constexpr Rgb kPalette[] = {{255, 40, 40}, {0, 220, 255}, {60, 255, 60}, {255, 0, 255}, {255, 160, 0}, {120, 120, 255}};
constexpr float kFillAlpha = 0.25f;
constexpr size_t kMaxBannerLesions = 8;

struct Window {
  double low = 0;
  double high = 1;
  bool inverted = false;
};

// CT: the soft-tissue window (W 400, L 40). PET: inverted grey from 0 to the
// slice's maximum SUV, as PET is read (uptake dark on white). Otherwise the
// slice's minimum to maximum.
Window WindowFor(const Volume& volume, const float* slice, size_t count) {
  if (volume.units == "HU") return {-160.0, 240.0, false};
  double low = INFINITY, high = -INFINITY;
  for (size_t p = 0; p < count; ++p) {
    if (!std::isfinite(slice[p])) continue;
    low = std::min(low, static_cast<double>(slice[p]));
    high = std::max(high, static_cast<double>(slice[p]));
  }
  if (!std::isfinite(low)) low = 0, high = 1;
  if (volume.modality == "PT") return {0.0, high > 0 ? high : 1.0, true};
  if (high <= low) high = low + 1;
  return {low, high, false};
}

uint8_t Grey(const Window& window, float value) {
  if (!std::isfinite(value)) return 0;
  const double t = std::clamp((value - window.low) / (window.high - window.low), 0.0, 1.0);
  const auto g = static_cast<uint8_t>(std::lround(255 * t));
  return window.inverted ? static_cast<uint8_t>(255 - g) : g;
}

std::string Format(double value, const char* format) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> BannerText(const Volume& volume, uint32_t z, const std::vector<LesionMeasurement>& lesions,
                                    const std::vector<SegmentDefinition>& segments, const AlgorithmInfo& algorithm) {
  std::vector<std::string> text;
  text.push_back("AI RESULT - FOR RADIOLOGIST REVIEW - NOT A DIAGNOSIS");
  text.push_back("MODEL " + algorithm.model_name + " V" + algorithm.model_version);
  text.push_back("KEY SLICE " + std::to_string(z + 1) + " OF " + std::to_string(volume.depth));
  if (volume.resampled_spacing_mm > 0) {
    text.push_back("SLICES UNEVENLY SPACED: READ AND MEASURED RESAMPLED TO " +
                   Format(volume.resampled_spacing_mm, "%.4g") + " MM");
  }
  size_t shown = 0, more = 0;
  for (const LesionMeasurement& lesion : lesions) {
    if (lesion.key_slice != z) continue;
    // The banner stays a banner: the SR lists every lesion.
    if (shown == kMaxBannerLesions) {
      ++more;
      continue;
    }
    ++shown;
    std::string line = Upper(segments[lesion.segment_number - 1].label) + " " + std::to_string(lesion.lesion_number) +
                       ": VOLUME " + Format(lesion.volume_mm3, "%.0f") + " MM3";
    if (lesion.has_values) {
      const std::string unit = lesion.units == "HU" ? " HU" : " SUVBW";
      line += ", MEAN " + Format(lesion.mean, "%.1f") + unit + ", MAX " + Format(lesion.maximum, "%.1f") + unit;
    }
    if (lesion.has_probability) line += ", P " + Format(lesion.probability, "%.2f");
    text.push_back(line);
  }
  if (more > 0) text.push_back("AND " + std::to_string(more) + " MORE LESIONS, SEE THE SR");
  return text;
}

absl::StatusOr<BuiltObject> Build(const Volume& volume, const std::vector<SourceImage>& series,
                                  const SegmentationResult& result, const std::vector<LesionMeasurement>& lesions,
                                  uint32_t z, const AlgorithmInfo& algorithm,
                                  const ResultIdentity& identity, const ContentTime& when,
                                  const LesionOptions& options) {
  const size_t w = volume.columns, h = volume.rows, d = volume.depth;
  const size_t slice_pixels = w * h;
  if (slice_pixels == 0 || volume.voxels.size() != slice_pixels * d || volume.sources.size() != d || z >= d) {
    return absl::InvalidArgumentError("volume sizes disagree or the key slice is outside the volume");
  }
  for (const LesionMeasurement& lesion : lesions) {
    if (lesion.segment_number == 0 || lesion.segment_number > result.segments.size()) {
      return absl::InvalidArgumentError("lesion of a segment the result does not have");
    }
  }
  if (result.label_map.empty() == result.probabilities.empty() ||
      (!result.label_map.empty() && result.label_map.size() != volume.voxels.size())) {
    return absl::InvalidArgumentError("result does not fit the volume");
  }
  for (const auto& map : result.probabilities) {
    if (map.size() != volume.voxels.size()) return absl::InvalidArgumentError("probability map does not fit");
  }
  const SliceSource& key = volume.sources[z];
  const SourceImage* source = nullptr;
  for (const SourceImage& image : series) {
    if (image.sop_instance_uid == key.sop_instance_uid) source = &image;
  }
  if (source == nullptr || source->sop_class_uid.empty()) {
    return absl::InvalidArgumentError("the key slice's source instance is not in the series");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<DcmFileFormat> source_file, internals::LoadSource(source->path, false));
  DcmDataset& src = *source_file->getDataset();

  // Square display pixels: the slice keeps its physical proportions even
  // where rows and columns are spaced differently.
  const double sy = volume.spacing_mm[1], sx = volume.spacing_mm[2];
  if (!(sx > 0) || !(sy > 0)) return absl::InvalidArgumentError("volume spacing is not positive");
  const double long_mm = std::max(w * sx, h * sy);
  double pixel_mm = std::min(sx, sy);
  if (long_mm / pixel_mm < kMinLongSide) pixel_mm = long_mm / kMinLongSide;
  if (long_mm / pixel_mm > kMaxLongSide) pixel_mm = long_mm / kMaxLongSide;
  const int image_w = std::max(1, static_cast<int>(std::lround(w * sx / pixel_mm)));
  const int image_h = std::max(1, static_cast<int>(std::lround(h * sy / pixel_mm)));
  std::vector<size_t> column_of(image_w), row_of(image_h);
  for (int x = 0; x < image_w; ++x) column_of[x] = std::min(w - 1, static_cast<size_t>((x + 0.5) * pixel_mm / sx));
  for (int y = 0; y < image_h; ++y) row_of[y] = std::min(h - 1, static_cast<size_t>((y + 0.5) * pixel_mm / sy));

  const size_t base = static_cast<size_t>(z) * slice_pixels;
  const float* slice = volume.voxels.data() + base;
  const Window window = WindowFor(volume, slice, slice_pixels);
  // The segment shown at each voxel of the slice: the label, or for
  // probability maps the most probable segment at or above the threshold.
  std::vector<uint16_t> label(slice_pixels, 0);
  for (size_t p = 0; p < slice_pixels; ++p) {
    if (!result.label_map.empty()) {
      label[p] = result.label_map[base + p];
      continue;
    }
    float best = 0;
    for (size_t s = 0; s < result.probabilities.size(); ++s) {
      const float v = result.probabilities[s][base + p];
      if (v >= options.probability_threshold && v > best) best = v, label[p] = static_cast<uint16_t>(s + 1);
    }
  }
  if (!result.label_map.empty()) {
    for (uint16_t& l : label) {
      if (l > result.segments.size()) l = 0;
    }
  }

  // Layout as the 2D Secondary Capture: banner band on top, image below.
  int canvas_w = std::max(image_w, kMinCanvasWidth);
  const int scale = std::max(1, (canvas_w + 160) / 320);
  const int margin = 3 * scale;
  const size_t max_chars =
      static_cast<size_t>(std::max(1, (canvas_w - 2 * margin + scale) / (internals::kGlyphAdvance * scale)));
  std::vector<std::pair<std::string, Rgb>> lines;
  const std::vector<std::string> text = BannerText(volume, z, lesions, result.segments, algorithm);
  for (size_t i = 0; i < text.size(); ++i) {
    for (std::string& line : internals::WrapText(text[i], max_chars)) {
      lines.emplace_back(std::move(line), i == 0 ? kWarningText : kText);
    }
  }
  const int line_height = internals::kLineAdvance * scale;
  const int banner = 2 * margin + static_cast<int>(lines.size()) * line_height - 2 * scale;
  const int canvas_h = banner + image_h;
  std::vector<uint8_t> rgb(static_cast<size_t>(canvas_w) * canvas_h * 3, 0);
  auto set = [&](int x, int y, Rgb c) {
    uint8_t* p = &rgb[(static_cast<size_t>(y) * canvas_w + x) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  };
  for (int y = 0; y < banner; ++y)
    for (int x = 0; x < canvas_w; ++x) set(x, y, kBannerBackground);
  auto label_at = [&](int x, int y) -> uint16_t {
    if (x < 0 || y < 0 || x >= image_w || y >= image_h) return 0;
    return label[row_of[y] * w + column_of[x]];
  };
  for (int y = 0; y < image_h; ++y) {
    for (int x = 0; x < image_w; ++x) {
      const uint8_t g = Grey(window, slice[row_of[y] * w + column_of[x]]);
      const uint16_t l = label_at(x, y);
      Rgb c{g, g, g};
      if (l != 0) {
        const Rgb s = kPalette[(l - 1) % std::size(kPalette)];
        // The outline: a segment pixel next to one of another segment or of
        // none. Inside, a light tint keeps the lesion's texture readable.
        const bool edge = label_at(x - 1, y) != l || label_at(x + 1, y) != l || label_at(x, y - 1) != l ||
                          label_at(x, y + 1) != l;
        if (edge) {
          c = s;
        } else {
          auto mix = [](uint8_t a, uint8_t b) {
            return static_cast<uint8_t>(std::lround(a * (1 - kFillAlpha) + b * kFillAlpha));
          };
          c = Rgb{mix(g, s.r), mix(g, s.g), mix(g, s.b)};
        }
      }
      set(x, banner + y, c);
    }
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    internals::DrawText(rgb, canvas_w, canvas_h, margin, margin + static_cast<int>(i) * line_height, lines[i].first,
                        scale, lines[i].second);
  }

  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  RETURN_IF_ERROR(internals::CopyPatientAndStudy(src, ds));
  RETURN_IF_ERROR(internals::AddResultCommon(ds, algorithm, identity, when, UID_SecondaryCaptureImageStorage, "OT",
                                             internals::ResultSeriesDescription(algorithm.model_name)));
  // General Series Laterality (Type 2C) and Body Part as the 2D Secondary
  // Capture writes them: the source's values, empty Laterality when unknown.
  OFString laterality, body_part_value;
  src.findAndGetOFString(DCM_Laterality, laterality);
  src.findAndGetOFString(DCM_BodyPartExamined, body_part_value);
  const std::string body_part = internals::NormalizedBodyPart(body_part_value.c_str());
  if (!laterality.empty() || body_part.empty() || internals::IsPairedBodyPart(body_part)) {
    RETURN_IF_ERROR(Put(ds, DCM_Laterality, laterality.c_str()));
  }
  if (!body_part.empty()) RETURN_IF_ERROR(Put(ds, DCM_BodyPartExamined, body_part));

  RETURN_IF_ERROR(Put(ds, DCM_ImageType, "DERIVED\\SECONDARY"));
  RETURN_IF_ERROR(FromCondition(ds.insertEmptyElement(DCM_PatientOrientation), "writing Patient Orientation"));
  RETURN_IF_ERROR(Put(ds, DCM_BurnedInAnnotation, "YES"));
  RETURN_IF_ERROR(Put(ds, DCM_DerivationDescription,
                      internals::TruncateValue("Key slice of a volumetric result rendered from the volume's " +
                                                   std::string(volume.units.empty() ? "values" : volume.units) +
                                                   ", segmentation outlined, result text burned in by " +
                                                   algorithm.model_name + " " + algorithm.model_version +
                                                   "; for review, not a diagnosis",
                                               1024)));
  RETURN_IF_ERROR(internals::AddRenderedCapture(ds, src, source->sop_class_uid, source->sop_instance_uid,
                                                key.frame_number, when, static_cast<uint32_t>(canvas_h),
                                                static_cast<uint32_t>(canvas_w), rgb));

  BuiltObject out;
  out.sop_class_uid = UID_SecondaryCaptureImageStorage;
  out.sop_instance_uid = identity.sop_instance_uid;
  out.series_instance_uid = identity.series_instance_uid;
  ASSIGN_OR_RETURN(out.part10, internals::SerializePart10(file));
  return out;
}

}  // namespace

absl::StatusOr<BuiltObject> BuildKeySliceCapture(const Volume& volume, const std::vector<SourceImage>& series,
                                                 const SegmentationResult& result,
                                                 const std::vector<LesionMeasurement>& lesions, uint32_t key_slice,
                                                 const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                                 const ContentTime& when, const LesionOptions& options) {
  try {
    return Build(volume, series, result, lesions, key_slice, algorithm, identity, when, options);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while building the key-slice Secondary Capture");
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("key-slice Secondary Capture failed: ") + e.what());
  } catch (...) {
    return absl::InternalError("key-slice Secondary Capture failed with an unknown exception");
  }
}

}  // namespace secondread::scp
