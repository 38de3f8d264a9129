#include "scp/pixel_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dcmtk/dcmdata/dccodec.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmimage/diregist.h"  // links in colour image support for DicomImage
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmimgle/dipixel.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "gdcmImageReader.h"
#include "gdcmTrace.h"

namespace secondread::scp {
namespace {

std::once_flag g_register_once;

std::string Str(DcmItem* item, const DcmTagKey& tag) {
  OFString v;
  if (item->findAndGetOFStringArray(tag, v).good()) return std::string(v.c_str(), v.length());
  return {};
}

// Attribute values are untrusted text: anything that does not parse as a
// finite number is treated as absent.
bool ParseDouble(const std::string& text, double* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  while (end && (*end == ' ')) ++end;
  if (end == text.c_str() || (end && *end != '\0') || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

// Reads a two-valued spacing attribute from `item`; true only when both values
// are positive numbers.
bool ReadSpacing(DcmItem* item, const DcmTagKey& tag, double* row, double* column) {
  OFString r, c;
  if (item->findAndGetOFString(tag, r, 0).bad() || item->findAndGetOFString(tag, c, 1).bad()) return false;
  double rv = 0, cv = 0;
  if (!ParseDouble(r.c_str(), &rv) || !ParseDouble(c.c_str(), &cv) || rv <= 0 || cv <= 0) return false;
  *row = rv;
  *column = cv;
  return true;
}

// Enhanced multi-frame objects keep Pixel Spacing in the Pixel Measures
// Sequence of the Shared (or first Per-Frame) Functional Groups.
bool ReadFunctionalGroupSpacing(DcmDataset* ds, double* row, double* column) {
  for (const DcmTagKey& group : {DCM_SharedFunctionalGroupsSequence, DCM_PerFrameFunctionalGroupsSequence}) {
    DcmItem* fg = nullptr;
    if (ds->findAndGetSequenceItem(group, fg, 0).bad() || fg == nullptr) continue;
    DcmItem* measures = nullptr;
    if (fg->findAndGetSequenceItem(DCM_PixelMeasuresSequence, measures, 0).bad() || measures == nullptr) continue;
    if (ReadSpacing(measures, DCM_PixelSpacing, row, column)) return true;
  }
  return false;
}

bool IsJpeg2000(const std::string& ts) {
  return ts == "1.2.840.10008.1.2.4.90" || ts == "1.2.840.10008.1.2.4.91" || ts == "1.2.840.10008.1.2.4.92" ||
         ts == "1.2.840.10008.1.2.4.93";
}

// The image pixel attributes that bound every allocation a decoder makes.
struct PixelGeometry {
  uint32_t rows = 0;
  uint32_t columns = 0;
  uint32_t bits_allocated = 0;
  uint32_t bits_stored = 0;
  uint32_t samples_per_pixel = 0;
  uint32_t frames = 1;
  std::string photometric;
};

absl::StatusOr<PixelGeometry> ReadGeometry(DcmDataset* ds, const DecodeOptions& options) {
  PixelGeometry g;
  Uint16 v = 0;
  if (ds->findAndGetUint16(DCM_Rows, v).bad() || v == 0) {
    return absl::InvalidArgumentError("Rows is missing or zero");
  }
  g.rows = v;
  if (ds->findAndGetUint16(DCM_Columns, v).bad() || v == 0) {
    return absl::InvalidArgumentError("Columns is missing or zero");
  }
  g.columns = v;
  if (ds->findAndGetUint16(DCM_BitsAllocated, v).bad()) return absl::InvalidArgumentError("Bits Allocated is missing");
  g.bits_allocated = v;
  if (g.bits_allocated != 1 && g.bits_allocated != 8 && g.bits_allocated != 16 && g.bits_allocated != 32) {
    return absl::InvalidArgumentError("Bits Allocated " + std::to_string(g.bits_allocated) + " is not 1, 8, 16 or 32");
  }
  if (ds->findAndGetUint16(DCM_BitsStored, v).bad()) return absl::InvalidArgumentError("Bits Stored is missing");
  g.bits_stored = v;
  if (g.bits_stored == 0 || g.bits_stored > g.bits_allocated) {
    return absl::InvalidArgumentError("Bits Stored " + std::to_string(g.bits_stored) + " does not fit Bits Allocated " +
                                      std::to_string(g.bits_allocated));
  }
  Uint16 high_bit = 0;
  if (ds->findAndGetUint16(DCM_HighBit, high_bit).good() && high_bit >= g.bits_allocated) {
    return absl::InvalidArgumentError("High Bit " + std::to_string(high_bit) + " is outside Bits Allocated");
  }
  if (ds->findAndGetUint16(DCM_SamplesPerPixel, v).bad()) v = 1;
  if (v != 1 && v != 3) {
    return absl::InvalidArgumentError("Samples per Pixel " + std::to_string(v) + " is not 1 or 3");
  }
  g.samples_per_pixel = v;
  g.photometric = Str(ds, DCM_PhotometricInterpretation);
  if (g.photometric.empty()) return absl::InvalidArgumentError("Photometric Interpretation is missing");

  OFString frames_text;
  if (ds->findAndGetOFString(DCM_NumberOfFrames, frames_text).good() && !frames_text.empty()) {
    char* end = nullptr;
    long long n = std::strtoll(frames_text.c_str(), &end, 10);
    if (end == frames_text.c_str() || n <= 0) {
      return absl::InvalidArgumentError("Number of Frames '" + std::string(frames_text.c_str()) + "' is not positive");
    }
    if (static_cast<unsigned long long>(n) > options.max_frames) {
      return absl::InvalidArgumentError("Number of Frames " + std::to_string(n) + " exceeds the limit of " +
                                        std::to_string(options.max_frames));
    }
    g.frames = static_cast<uint32_t>(n);
  }
  const uint64_t per_frame = uint64_t{g.rows} * g.columns;
  if (per_frame > options.max_pixels_per_frame) {
    return absl::InvalidArgumentError("frame of " + std::to_string(g.rows) + " x " + std::to_string(g.columns) +
                                      " pixels exceeds the limit of " + std::to_string(options.max_pixels_per_frame));
  }
  if (per_frame * g.frames > options.max_total_pixels) {
    return absl::InvalidArgumentError(std::to_string(g.frames) + " frames of " + std::to_string(per_frame) +
                                      " pixels exceed the limit of " + std::to_string(options.max_total_pixels));
  }
  return g;
}

// Bytes an uncompressed Pixel Data value must hold for `g`; the 4:2:2
// photometrics store two samples per pixel.
uint64_t ExpectedNativeBytes(const PixelGeometry& g) {
  uint64_t samples = uint64_t{g.rows} * g.columns * g.samples_per_pixel;
  if (g.samples_per_pixel == 3 && (g.photometric == "YBR_FULL_422" || g.photometric == "YBR_PARTIAL_422")) {
    samples = uint64_t{g.rows} * g.columns * 2;
  }
  const uint64_t bits = samples * g.frames * g.bits_allocated;
  return (bits + 7) / 8;
}

DcmPixelData* FindPixelData(DcmDataset* ds) {
  DcmElement* elem = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, elem).bad() || elem == nullptr) return nullptr;
  if (elem->ident() != EVR_PixelData) return nullptr;
  return static_cast<DcmPixelData*>(elem);
}

absl::Status CheckNativeLength(const PixelGeometry& g, uint64_t length) {
  const uint64_t expected = ExpectedNativeBytes(g);
  if (length < expected) {
    return absl::InvalidArgumentError("Pixel Data holds " + std::to_string(length) + " bytes but " +
                                      std::to_string(g.frames) + " frame(s) of " + std::to_string(g.rows) + " x " +
                                      std::to_string(g.columns) + " need " + std::to_string(expected));
  }
  return absl::OkStatus();
}

// Checks the pixel data of `ds` as stored against its attributes, before any
// decoder sizes a buffer from them.
absl::Status CheckStoredPixelData(DcmDataset* ds, const PixelGeometry& g) {
  if (ds->tagExists(DCM_FloatPixelData) || ds->tagExists(DCM_DoubleFloatPixelData)) {
    return absl::InvalidArgumentError("float pixel data is not supported");
  }
  DcmPixelData* px = FindPixelData(ds);
  if (px == nullptr) return absl::InvalidArgumentError("the object has no Pixel Data");
  DcmXfer xfer(ds->getOriginalXfer());
  if (!xfer.isEncapsulated()) {
    const Uint32 length = px->getLengthField();
    if (length == DCM_UndefinedLength) return absl::InvalidArgumentError("native Pixel Data has undefined length");
    return CheckNativeLength(g, length);
  }
  DcmPixelSequence* seq = nullptr;
  if (px->getEncapsulatedRepresentation(xfer.getXfer(), nullptr, seq).bad() || seq == nullptr) {
    return absl::InvalidArgumentError("encapsulated Pixel Data has no fragments");
  }
  // The first item is the Basic Offset Table; every frame needs at least one
  // fragment of its own.
  const unsigned long fragments = seq->card() > 0 ? seq->card() - 1 : 0;
  if (fragments == 0) return absl::InvalidArgumentError("encapsulated Pixel Data has no fragments");
  if (fragments < g.frames) {
    return absl::InvalidArgumentError("Number of Frames " + std::to_string(g.frames) + " exceeds the " +
                                      std::to_string(fragments) + " compressed fragment(s)");
  }
  return absl::OkStatus();
}

// GDCM decodes the JPEG 2000 codestream and the native frames replace the
// encapsulated Pixel Data in the DCMTK dataset. Only the pixels cross over:
// GDCM's writer would "correct" attributes on the way (SOP Class, Bits Stored,
// rescale moved into functional groups), and the LUT/VOI path must see the
// object exactly as every other syntax does.
absl::Status DecodeJpeg2000Into(const std::string& path, DcmDataset* ds, const PixelGeometry& geometry) {
  gdcm::ImageReader reader;
  reader.SetFileName(path.c_str());
  if (!reader.Read()) return absl::InvalidArgumentError("GDCM could not read the JPEG 2000 object");
  const gdcm::Image& image = reader.GetImage();
  const uint64_t expected = ExpectedNativeBytes(geometry);
  if (image.GetBufferLength() != expected) {
    return absl::InvalidArgumentError("JPEG 2000 pixel data decodes to " + std::to_string(image.GetBufferLength()) +
                                      " bytes, the attributes describe " + std::to_string(expected));
  }
  std::vector<char> buffer(expected);
  if (!image.GetBuffer(buffer.data())) return absl::InvalidArgumentError("GDCM could not decode the JPEG 2000 pixel data");

  delete ds->remove(DCM_PixelData);
  OFCondition cond;
  if (geometry.bits_allocated <= 8) {
    cond = ds->putAndInsertUint8Array(DCM_PixelData, reinterpret_cast<const Uint8*>(buffer.data()), expected);
  } else {
    // GDCM's buffer is in host byte order, as DCMTK holds OW in memory.
    cond = ds->putAndInsertUint16Array(DCM_PixelData, reinterpret_cast<const Uint16*>(buffer.data()), expected / 2);
  }
  if (cond.bad()) return absl::InternalError(std::string("storing decoded JPEG 2000 pixels: ") + cond.text());
  if (geometry.samples_per_pixel == 3) {
    // The codec undoes the reversible/irreversible colour transform and
    // returns interleaved RGB.
    if (geometry.photometric == "YBR_RCT" || geometry.photometric == "YBR_ICT") {
      ds->putAndInsertString(DCM_PhotometricInterpretation, "RGB");
    }
    ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
  }
  return absl::OkStatus();
}

// The frames DicomImage will hand out, checked against the bounds once for
// both outputs.
struct FrameLayout {
  unsigned long frames = 0;
  uint32_t rows = 0;
  uint32_t columns = 0;
  uint64_t pixels = 0;  // per frame
};

absl::StatusOr<FrameLayout> LayoutOf(const DicomImage& mono, const PixelGeometry& geometry,
                                     const DecodeOptions& options) {
  FrameLayout l;
  l.frames = std::min<unsigned long>(mono.getFrameCount(), geometry.frames);
  if (l.frames == 0) return absl::InvalidArgumentError("the object has no frames");
  l.rows = static_cast<uint32_t>(mono.getHeight());
  l.columns = static_cast<uint32_t>(mono.getWidth());
  l.pixels = uint64_t{l.rows} * l.columns;
  if (l.pixels == 0 || l.pixels > options.max_pixels_per_frame) {
    return absl::InvalidArgumentError("rendered frame size is out of bounds");
  }
  return l;
}

template <typename T>
void Widen(const void* data, size_t offset, size_t count, std::vector<float>& out) {
  const T* p = static_cast<const T*>(data) + offset;
  out.assign(p, p + count);
}

// The values DCMTK holds after the modality transform, before any VOI.
absl::StatusOr<DecodedImage> ModalityValues(const DicomImage& mono, const PixelGeometry& geometry, DecodedImage out,
                                            const DecodeOptions& options) {
  const DiPixel* inter = mono.getInterData();
  if (inter == nullptr || inter->getData() == nullptr) {
    return absl::InvalidArgumentError("no modality values could be computed");
  }
  ASSIGN_OR_RETURN(const FrameLayout layout, LayoutOf(mono, geometry, options));
  const uint64_t pixels = layout.pixels;
  if (inter->getPlanes() != 1 || inter->getCount() < pixels * layout.frames) {
    return absl::InvalidArgumentError("modality values do not cover every frame");
  }
  out.frames.reserve(layout.frames);
  for (unsigned long f = 0; f < layout.frames; ++f) {
    DecodedFrame frame;
    frame.rows = layout.rows;
    frame.columns = layout.columns;
    const size_t offset = static_cast<size_t>(f * pixels);
    switch (inter->getRepresentation()) {
      case EPR_Uint8: Widen<Uint8>(inter->getData(), offset, pixels, frame.values); break;
      case EPR_Sint8: Widen<Sint8>(inter->getData(), offset, pixels, frame.values); break;
      case EPR_Uint16: Widen<Uint16>(inter->getData(), offset, pixels, frame.values); break;
      case EPR_Sint16: Widen<Sint16>(inter->getData(), offset, pixels, frame.values); break;
      case EPR_Uint32: Widen<Uint32>(inter->getData(), offset, pixels, frame.values); break;
      case EPR_Sint32: Widen<Sint32>(inter->getData(), offset, pixels, frame.values); break;
    }
    if (frame.values.size() != pixels) return absl::InvalidArgumentError("unknown modality value representation");
    out.frames.push_back(std::move(frame));
  }
  return out;
}

absl::StatusOr<DecodedImage> DecodeUnguarded(const std::string& path, const DecodeOptions& options) {
  RegisterDecoders();
  auto file = std::make_unique<DcmFileFormat>();
  OFCondition cond = file->loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_fileOnly);
  if (cond.bad()) return absl::InvalidArgumentError(std::string("not a readable DICOM file: ") + cond.text());
  DcmDataset* ds = file->getDataset();

  DecodedImage out;
  out.source_photometric = Str(ds, DCM_PhotometricInterpretation);
  out.modality = Str(ds, DCM_Modality);
  out.body_part = Str(ds, DCM_BodyPartExamined);
  out.view_position = Str(ds, DCM_ViewPosition);
  out.sop_class_uid = Str(ds, DCM_SOPClassUID);
  if (!ReadSpacing(ds, DCM_PixelSpacing, &out.row_spacing_mm, &out.column_spacing_mm) &&
      !ReadFunctionalGroupSpacing(ds, &out.row_spacing_mm, &out.column_spacing_mm) &&
      !ReadSpacing(ds, DCM_ImagerPixelSpacing, &out.row_spacing_mm, &out.column_spacing_mm)) {
    out.row_spacing_mm = out.column_spacing_mm = 0;
  }

  if (FindPixelData(ds) == nullptr && !ds->tagExists(DCM_FloatPixelData) &&
      !ds->tagExists(DCM_DoubleFloatPixelData)) {
    return absl::InvalidArgumentError("the object has no Pixel Data");
  }
  ASSIGN_OR_RETURN(PixelGeometry geometry, ReadGeometry(ds, options));
  RETURN_IF_ERROR(CheckStoredPixelData(ds, geometry));

  const E_TransferSyntax original = ds->getOriginalXfer();
  const DcmXfer original_xfer(original);
  const std::string ts_uid = original_xfer.getXferID();
  if (IsJpeg2000(ts_uid)) {
    RETURN_IF_ERROR(DecodeJpeg2000Into(path, ds, geometry));
  } else if (original_xfer.isEncapsulated()) {
    if (!DcmCodecList::canChangeCoding(original, EXS_LittleEndianExplicit)) {
      return absl::UnimplementedError("no decoder for transfer syntax " + ts_uid);
    }
    cond = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
    if (cond.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit)) {
      return absl::InvalidArgumentError(std::string("compressed pixel data did not decode: ") + cond.text());
    }
    DcmPixelData* px = FindPixelData(ds);
    if (px == nullptr) return absl::InvalidArgumentError("the object has no Pixel Data");
    RETURN_IF_ERROR(CheckNativeLength(geometry, px->getLength(EXS_LittleEndianExplicit)));
  }

  // The pixel data is native now, so DicomImage never runs a codec itself.
  const E_TransferSyntax native = original_xfer.isEncapsulated() ? EXS_LittleEndianExplicit : original;
  DicomImage image(ds, native, 0UL, 0UL, static_cast<unsigned long>(geometry.frames));
  if (image.getStatus() != EIS_Normal) {
    return absl::InvalidArgumentError(std::string("pixel data not renderable: ") +
                                      DicomImage::getString(image.getStatus()));
  }
  DicomImage* mono = &image;
  std::unique_ptr<DicomImage> luminance;
  if (!image.isMonochrome()) {
    // Colour sources (RGB, YBR, palette) become a luminance image (ITU-R
    // BT.601 weights) rather than being refused: models read grey levels, and
    // colour-encoded radiographs and captures still deserve a second read.
    luminance.reset(image.createMonochromeImage());
    if (!luminance || luminance->getStatus() != EIS_Normal) {
      return absl::InvalidArgumentError("colour image could not be converted to monochrome");
    }
    mono = luminance.get();
  }

  if (options.modality_values) return ModalityValues(*mono, geometry, std::move(out), options);

  if (options.apply_voi) {
    // The object's own VOI first, as a viewer would show it; a min-max window
    // over the modality values when it has none.
    bool set = false;
    if (mono->getVoiLutCount() > 0) set = mono->setVoiLut(0) != 0;
    if (!set && mono->getWindowCount() > 0) set = mono->setWindow(0) != 0;
    if (!set) mono->setMinMaxWindow(0);
  } else {
    // Without a VOI, DicomImage maps the whole range the modality transform
    // can produce (from Bits Stored and the rescale/LUT), not the range found
    // in this image, so the same stored value always gives the same output.
    mono->setNoVoiTransformation();
  }

  ASSIGN_OR_RETURN(const FrameLayout layout, LayoutOf(*mono, geometry, options));
  const uint64_t pixels = layout.pixels;
  out.frames.reserve(layout.frames);
  for (unsigned long f = 0; f < layout.frames; ++f) {
    DecodedFrame frame;
    frame.rows = layout.rows;
    frame.columns = layout.columns;
    frame.pixels.resize(pixels);
    // DiMono1Image renders MONOCHROME1 inverted, so every output is MONOCHROME2
    // (asserted by the decoder tests).
    if (!mono->getOutputData(frame.pixels.data(), pixels * sizeof(uint16_t), 16, f, 0)) {
      return absl::InvalidArgumentError("frame " + std::to_string(f + 1) + " could not be rendered");
    }
    out.frames.push_back(std::move(frame));
  }
  return out;
}

}  // namespace

void RegisterDecoders() {
  std::call_once(g_register_once, [] {
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
    // GDCM reports every oddity of a sender's file on stderr; our callers get
    // a Status instead.
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetError(false);
    gdcm::Trace::SetDebug(false);
  });
}

absl::StatusOr<DecodedImage> DecodeImageFile(const std::string& path, const DecodeOptions& options) {
  try {
    return DecodeUnguarded(path, options);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while decoding pixel data");
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("pixel decoder failed: ") + e.what());
  } catch (...) {
    return absl::InternalError("pixel decoder failed with an unknown exception");
  }
}

}  // namespace secondread::scp
