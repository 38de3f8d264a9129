#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "scp/objects/internals/bitmap_font.h"
#include "scp/objects/internals/result_common.h"
#include "scp/pixels/pixel_decoder.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp {
namespace {

using internals::FromCondition;
using internals::Put;
using internals::Rgb;

// Sources larger than this on the long side are downscaled: a review
// snapshot does not need full detector resolution, and it bounds the object
// (and every PACS hop) to about 12 MiB of RGB.
constexpr int kMaxLongSide = 2048;
// Narrower renders are padded to this width so the banner stays readable.
constexpr int kMinCanvasWidth = 256;
// Heatmap grids beyond this are not model outputs but corrupt input.
constexpr uint64_t kMaxHeatmapCells = 4096ull * 4096ull;
// Heatmap values below this are left transparent so low-level noise does not
// tint the whole image.
constexpr float kHeatmapFloor = 0.2f;

constexpr Rgb kBannerBackground{24, 24, 24};
constexpr Rgb kWarningText{255, 220, 0};
constexpr Rgb kText{255, 255, 255};
constexpr Rgb kMarker{0, 255, 255};
constexpr Rgb kMarkerOutline{0, 0, 0};

struct Canvas {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // interleaved, Planar Configuration 0

  void Set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    uint8_t* p = &rgb[(static_cast<size_t>(y) * width + x) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
};

// Grey image after VOI, 8 bits, possibly downscaled.
struct Grey {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;
};

uint8_t To8(uint16_t v) { return static_cast<uint8_t>((static_cast<uint32_t>(v) + 128) / 257); }

// Area-average downscale, so thin bright structures fade rather than
// aliasing away as they would with point sampling.
Grey Render(const DecodedFrame& frame) {
  const int w = static_cast<int>(frame.columns);
  const int h = static_cast<int>(frame.rows);
  const int long_side = std::max(w, h);
  Grey out;
  if (long_side <= kMaxLongSide) {
    out.width = w;
    out.height = h;
    out.pixels.resize(frame.pixels.size());
    std::transform(frame.pixels.begin(), frame.pixels.end(), out.pixels.begin(), To8);
    return out;
  }
  const double scale = static_cast<double>(kMaxLongSide) / long_side;
  out.width = std::max(1, static_cast<int>(std::lround(w * scale)));
  out.height = std::max(1, static_cast<int>(std::lround(h * scale)));
  out.pixels.resize(static_cast<size_t>(out.width) * out.height);
  std::vector<int> x0(out.width + 1), y0(out.height + 1);
  for (int x = 0; x <= out.width; ++x) x0[x] = static_cast<int>(static_cast<int64_t>(x) * w / out.width);
  for (int y = 0; y <= out.height; ++y) y0[y] = static_cast<int>(static_cast<int64_t>(y) * h / out.height);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      uint64_t sum = 0;
      uint32_t n = 0;
      for (int sy = y0[y]; sy < std::max(y0[y + 1], y0[y] + 1); ++sy)
        for (int sx = x0[x]; sx < std::max(x0[x + 1], x0[x] + 1); ++sx) {
          sum += frame.pixels[static_cast<size_t>(sy) * w + sx];
          ++n;
        }
      out.pixels[static_cast<size_t>(y) * out.width + x] = To8(static_cast<uint16_t>(sum / n));
    }
  }
  return out;
}

float HeatmapAt(const Heatmap& map, float hx, float hy) {
  hx = std::clamp(hx, 0.0f, static_cast<float>(map.columns - 1));
  hy = std::clamp(hy, 0.0f, static_cast<float>(map.rows - 1));
  const uint32_t x0 = static_cast<uint32_t>(hx), y0 = static_cast<uint32_t>(hy);
  const uint32_t x1 = std::min(x0 + 1, map.columns - 1), y1 = std::min(y0 + 1, map.rows - 1);
  const float fx = hx - x0, fy = hy - y0;
  auto v = [&map](uint32_t x, uint32_t y) {
    const float f = map.values[static_cast<size_t>(y) * map.columns + x];
    return std::isfinite(f) ? std::clamp(f, 0.0f, 1.0f) : 0.0f;
  };
  const float top = v(x0, y0) * (1 - fx) + v(x1, y0) * fx;
  const float bottom = v(x0, y1) * (1 - fx) + v(x1, y1) * fx;
  return top * (1 - fy) + bottom * fy;
}

// Yellow at the floor through to red at 1, opacity rising with the value,
// so weak evidence stays see-through and the anatomy under it readable.
void BlendHeatmap(Canvas& canvas, int top, int image_w, int image_h, const Heatmap& map) {
  for (int y = 0; y < image_h; ++y) {
    // Pixel centres of the image mapped onto heatmap cell centres.
    const float hy = (y + 0.5f) * map.rows / image_h - 0.5f;
    for (int x = 0; x < image_w; ++x) {
      const float hx = (x + 0.5f) * map.columns / image_w - 0.5f;
      const float value = HeatmapAt(map, hx, hy);
      if (value < kHeatmapFloor) continue;
      const float t = (value - kHeatmapFloor) / (1 - kHeatmapFloor);
      const float alpha = 0.6f * value;
      const float colour[3] = {255.0f, 255.0f * (1 - t), 0.0f};
      uint8_t* p = &canvas.rgb[(static_cast<size_t>(y + top) * canvas.width + x) * 3];
      for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(std::lround(p[c] * (1 - alpha) + colour[c] * alpha));
    }
  }
}

// A ring around the peak with four ticks pointing at it; the centre is left
// clear so the marked structure itself stays visible.
void DrawMarker(Canvas& canvas, double cx, double cy, int long_side) {
  const double radius = std::max(6.0, long_side / 32.0);
  const double half = std::max(1.0, long_side / 512.0) / 2.0;
  const int reach = static_cast<int>(std::ceil(radius * 1.6 + half + 2));
  for (int pass = 0; pass < 2; ++pass) {
    const double pad = pass == 0 ? 1.0 : 0.0;  // outline first, then colour
    const Rgb colour = pass == 0 ? kMarkerOutline : kMarker;
    for (int y = static_cast<int>(cy) - reach; y <= static_cast<int>(cy) + reach; ++y) {
      for (int x = static_cast<int>(cx) - reach; x <= static_cast<int>(cx) + reach; ++x) {
        const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        const double d = std::hypot(dx, dy);
        const bool ring = std::abs(d - radius) <= half + pad;
        const bool tick = d >= radius && d <= radius * 1.6 + pad &&
                          (std::abs(dx) <= half + pad || std::abs(dy) <= half + pad);
        if (ring || tick) canvas.Set(x, y, colour);
      }
    }
  }
}

std::string FormatScore(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

// Three decimals at most, two at least: an operating point of 0.277 must not
// read as 0.28.
std::string FormatThreshold(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", v);
  std::string s = buf;
  if (s.size() > 4 && s.back() == '0' && s[s.size() - 4] == '.') s.pop_back();
  return s;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> BannerText(const std::vector<Finding>& findings, const AlgorithmInfo& algorithm) {
  std::vector<std::string> text;
  text.push_back("AI RESULT - FOR RADIOLOGIST REVIEW - NOT A DIAGNOSIS");
  text.push_back("MODEL " + algorithm.model_name + " V" + algorithm.model_version);
  for (const Finding& f : findings) {
    text.push_back(Upper(f.label) + " " + FormatScore(f.score) + " (THRESHOLD " + FormatThreshold(f.threshold) +
                   ") " + (f.above_threshold ? "FLAGGED" : "NOT FLAGGED"));
  }
  return text;
}


absl::StatusOr<BuiltObject> Build(const SourceImage& source, const Heatmap* heatmap,
                                  const std::vector<Finding>& findings, const AlgorithmInfo& algorithm,
                                  const ResultIdentity& identity, const ContentTime& when,
                                  const DecoderLimits& decoder) {
  if (heatmap != nullptr) {
    const uint64_t cells = uint64_t{heatmap->rows} * heatmap->columns;
    if (cells == 0 || cells > kMaxHeatmapCells || heatmap->values.size() != cells) {
      return absl::InvalidArgumentError("heatmap size does not match its rows and columns");
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<DcmFileFormat> source_file, internals::LoadSource(source.path, false));
  DcmDataset* src = source_file->getDataset();
  std::string ref_class = source.sop_class_uid, ref_instance = source.sop_instance_uid;
  OFString v;
  if (ref_class.empty() && src->findAndGetOFString(DCM_SOPClassUID, v).good()) ref_class = v.c_str();
  if (ref_instance.empty() && src->findAndGetOFString(DCM_SOPInstanceUID, v).good()) ref_instance = v.c_str();
  if (ref_class.empty() || ref_instance.empty()) {
    return absl::InvalidArgumentError("source has no SOP Class or SOP Instance UID");
  }

  DecodeOptions options;
  options.apply_voi = true;
  options.decoder = decoder;
  ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImageFile(source.path, options));
  const size_t frame_index = source.frame > 0 ? source.frame - 1 : 0;
  if (frame_index >= decoded.frames.size()) {
    return absl::InvalidArgumentError("source frame " + std::to_string(source.frame) + " does not exist");
  }
  const DecodedFrame& frame = decoded.frames[frame_index];
  const Grey grey = Render(frame);
  decoded.frames.clear();

  // Layout: banner band on top, the image below it, never over the anatomy.
  Canvas canvas;
  canvas.width = std::max(grey.width, kMinCanvasWidth);
  const int scale = std::max(1, (canvas.width + 160) / 320);
  const int margin = 3 * scale;
  const size_t max_chars = static_cast<size_t>(
      std::max(1, (canvas.width - 2 * margin + scale) / (internals::kGlyphAdvance * scale)));
  std::vector<std::pair<std::string, Rgb>> lines;
  const std::vector<std::string> text = BannerText(findings, algorithm);
  for (size_t i = 0; i < text.size(); ++i) {
    for (std::string& line : internals::WrapText(text[i], max_chars)) {
      lines.emplace_back(std::move(line), i == 0 ? kWarningText : kText);
    }
  }
  const int line_height = internals::kLineAdvance * scale;
  const int banner = 2 * margin + static_cast<int>(lines.size()) * line_height - 2 * scale;
  canvas.height = banner + grey.height;
  canvas.rgb.assign(static_cast<size_t>(canvas.width) * canvas.height * 3, 0);

  for (int y = 0; y < banner; ++y)
    for (int x = 0; x < canvas.width; ++x) canvas.Set(x, y, kBannerBackground);
  for (int y = 0; y < grey.height; ++y) {
    for (int x = 0; x < grey.width; ++x) {
      const uint8_t g = grey.pixels[static_cast<size_t>(y) * grey.width + x];
      canvas.Set(x, banner + y, Rgb{g, g, g});
    }
  }
  if (heatmap != nullptr) BlendHeatmap(canvas, banner, grey.width, grey.height, *heatmap);
  // Every finding passed in is drawn on this image: the caller hands over the
  // findings of this source.
  const double sx = static_cast<double>(grey.width) / frame.columns;
  const double sy = static_cast<double>(grey.height) / frame.rows;
  for (const Finding& f : findings) {
    if (!f.has_peak || !std::isfinite(f.peak_column) || !std::isfinite(f.peak_row)) continue;
    if (f.peak_column < 0 || f.peak_row < 0 || f.peak_column > frame.columns || f.peak_row > frame.rows) continue;
    DrawMarker(canvas, f.peak_column * sx, banner + f.peak_row * sy, std::max(grey.width, grey.height));
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    internals::DrawText(canvas.rgb, canvas.width, canvas.height, margin,
                        margin + static_cast<int>(i) * line_height, lines[i].first, scale, lines[i].second);
  }

  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  RETURN_IF_ERROR(internals::CopyPatientAndStudy(*src, ds));
  RETURN_IF_ERROR(internals::AddResultCommon(ds, algorithm, identity, when, UID_SecondaryCaptureImageStorage, "OT",
                                             internals::ResultSeriesDescription(algorithm.model_name)));

  // General Series Laterality is Type 2C: the source's own value, else its
  // Image Laterality; with neither, empty (unknown) for a paired body part or
  // an unknown one, and absent for a body part known to be unpaired, as
  // PS3.3 C.7.3.1 asks.
  OFString laterality;
  if (src->findAndGetOFString(DCM_Laterality, laterality).bad() || laterality.empty()) {
    OFString image_laterality;
    if (src->findAndGetOFString(DCM_ImageLaterality, image_laterality).good() &&
        (image_laterality == "L" || image_laterality == "R")) {
      laterality = image_laterality;
    }
  }
  OFString source_body_part;
  src->findAndGetOFString(DCM_BodyPartExamined, source_body_part);
  // A non-conformant source value (lower case, too long) is normalised or,
  // failing that, left out rather than copied into an object we sign.
  const std::string body_part = internals::NormalizedBodyPart(source_body_part.c_str());
  if (!laterality.empty() || body_part.empty() || internals::IsPairedBodyPart(body_part)) {
    RETURN_IF_ERROR(Put(ds, DCM_Laterality, laterality.c_str()));
  }
  // The result shows the source's body part; carrying it lets viewers' hanging
  // protocols place the series and tells a reader why Laterality is absent.
  if (!body_part.empty()) RETURN_IF_ERROR(Put(ds, DCM_BodyPartExamined, body_part.c_str()));

  // General Image
  RETURN_IF_ERROR(Put(ds, DCM_ImageType, "DERIVED\\SECONDARY"));
  RETURN_IF_ERROR(FromCondition(ds.insertEmptyElement(DCM_PatientOrientation), "writing Patient Orientation"));
  RETURN_IF_ERROR(Put(ds, DCM_BurnedInAnnotation, "YES"));
  RETURN_IF_ERROR(Put(ds, DCM_DerivationDescription,
                      internals::TruncateValue("Source image rendered with its VOI, " +
                                                   std::string(heatmap ? "model heatmap overlaid, " : "") +
                                                   "result text burned in by " + algorithm.model_name + " " +
                                                   algorithm.model_version + "; for review, not a diagnosis",
                                               1024)));
  // A frame number on a single-frame object is invalid (PS3.3 C.7.6.1.1.2).
  const uint32_t ref_frame = source.frame > 0 && src->tagExists(DCM_NumberOfFrames) ? source.frame : 0;
  RETURN_IF_ERROR(internals::AddRenderedCapture(ds, *src, ref_class, ref_instance, ref_frame, when,
                                                static_cast<uint32_t>(canvas.height),
                                                static_cast<uint32_t>(canvas.width), canvas.rgb));

  BuiltObject out;
  out.sop_class_uid = UID_SecondaryCaptureImageStorage;
  out.sop_instance_uid = identity.sop_instance_uid;
  out.series_instance_uid = identity.series_instance_uid;
  ASSIGN_OR_RETURN(out.part10, internals::SerializePart10(file));
  return out;
}

}  // namespace

absl::StatusOr<BuiltObject> BuildSecondaryCapture(const SourceImage& source, const Heatmap* heatmap,
                                                  const std::vector<Finding>& findings,
                                                  const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                                  const ContentTime& when, const DecoderLimits& decoder) {
  try {
    return Build(source, heatmap, findings, algorithm, identity, when, decoder);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while building the Secondary Capture");
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("Secondary Capture failed: ") + e.what());
  } catch (...) {
    return absl::InternalError("Secondary Capture failed with an unknown exception");
  }
}

}  // namespace secondread::scp
