#include "scp/pixels/pixel_decoder.h"

#include <fcntl.h>
#include <unistd.h>

#include <ext/stdio_filebuf.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <istream>
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
#include "dcmtk/dcmdata/dcstack.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmimage/diregist.h"  // links in colour image support for DicomImage
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmimgle/dipixel.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "gdcmImageReader.h"
#include "gdcmTrace.h"
#include "scp/pixels/internals/decoder_sandbox.h"

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

// Debian's GDCM is built with assertions, and it asserts that an attribute
// it reads has the VR its dictionary gives (gdcm::Attribute): Samples per
// Pixel sent as AS aborts the whole process from inside ImageReader::Read.
// So GDCM only sees objects whose every explicit VR is the dictionary's
// (JPEG 2000 is always Explicit VR); ambiguous, private and unknown tags
// are left alone, as GDCM does not read them.
absl::Status CheckVrsForGdcm(DcmDataset* ds) {
  DcmStack stack;
  while (ds->nextObject(stack, OFTrue).good()) {
    DcmObject* obj = stack.top();
    const DcmTag& tag = obj->getTag();
    if (tag.getGroup() == 0xFFFE || tag.isPrivate()) continue;  // items, delimiters
    const DcmEVR expected = DcmTag(tag.getXTag()).getEVR();
    switch (expected) {
      case EVR_UNKNOWN: case EVR_UNKNOWN2B: case EVR_xs: case EVR_ox: case EVR_lt: case EVR_px: case EVR_up:
      case EVR_na: case EVR_pixelSQ: case EVR_pixelItem: case EVR_item: case EVR_metainfo: case EVR_dataset:
      case EVR_fileFormat: case EVR_dicomDir: case EVR_dirRecord:
        continue;
      default:
        break;
    }
    if (obj->getVR() != expected) {
      return absl::InvalidArgumentError("attribute " + std::string(tag.toString().c_str()) + " has VR " +
                                        DcmVR(obj->getVR()).getVRName() + " instead of " +
                                        DcmVR(expected).getVRName());
    }
  }
  return absl::OkStatus();
}

// The most bytes a codec may hand back for `g`: every sample stored in full
// (a YBR_FULL_422 JPEG decodes to RGB), at up to twice Bits Allocated, plus a
// pad byte. More than that is a lie of the codec, not a picture.
uint64_t MaxDecodedBytes(const PixelGeometry& g) {
  const uint64_t bytes_per_sample = std::max<uint64_t>(1, (g.bits_allocated + 7) / 8);
  return uint64_t{g.rows} * g.columns * g.samples_per_pixel * g.frames * bytes_per_sample * 2 + 2;
}

internals::PixelAttributes AttributesOf(DcmDataset* ds) {
  internals::PixelAttributes a;
  Uint16 v = 0;
  if (ds->findAndGetUint16(DCM_BitsAllocated, v).good()) a.bits_allocated = v;
  if (ds->findAndGetUint16(DCM_BitsStored, v).good()) a.bits_stored = v;
  if (ds->findAndGetUint16(DCM_HighBit, v).good()) a.high_bit = v;
  if (ds->findAndGetUint16(DCM_PixelRepresentation, v).good()) a.pixel_representation = v;
  a.samples_per_pixel = ds->findAndGetUint16(DCM_SamplesPerPixel, v).good() ? v : 1;
  if (ds->findAndGetUint16(DCM_PlanarConfiguration, v).good()) a.planar_configuration = v;
  a.photometric = Str(ds, DCM_PhotometricInterpretation);
  return a;
}

// GDCM decodes the JPEG 2000 codestream; only its pixels are used. GDCM's
// writer would "correct" attributes on the way (SOP Class, Bits Stored,
// rescale moved into functional groups), and the LUT/VOI path must see the
// object exactly as every other syntax does. The codec undoes the
// reversible/irreversible colour transform and returns interleaved RGB.
absl::Status DecodeJpeg2000(std::istream& in, DcmDataset* ds, const PixelGeometry& geometry,
                            std::vector<char>& buffer, internals::ChildOutput& out) {
  gdcm::ImageReader reader;
  reader.SetStream(in);
  if (!reader.Read()) return absl::InvalidArgumentError("GDCM could not read the JPEG 2000 object");
  const gdcm::Image& image = reader.GetImage();
  const uint64_t expected = ExpectedNativeBytes(geometry);
  if (image.GetBufferLength() != expected) {
    return absl::InvalidArgumentError("JPEG 2000 pixel data does not decode to the " + std::to_string(expected) +
                                      " bytes the attributes describe");
  }
  buffer.resize(expected);
  if (!image.GetBuffer(buffer.data())) return absl::InvalidArgumentError("GDCM could not decode the JPEG 2000 pixel data");
  out.data = buffer.data();
  out.length = buffer.size();
  out.attributes = AttributesOf(ds);
  if (geometry.samples_per_pixel == 3) {
    if (geometry.photometric == "YBR_RCT" || geometry.photometric == "YBR_ICT") out.attributes.photometric = "RGB";
    out.attributes.planar_configuration = 0;
  }
  return absl::OkStatus();
}

// DCMTK's codec decodes the dataset in place; its native pixels and the
// attributes it changed are handed back.
absl::Status DecodeWithDcmtk(DcmDataset* ds, internals::ChildOutput& out) {
  OFCondition cond = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
  if (cond == EC_MemoryExhausted) return absl::ResourceExhaustedError("out of memory while decoding pixel data");
  if (cond.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit)) {
    return absl::InvalidArgumentError(std::string("compressed pixel data did not decode: ") + cond.text());
  }
  DcmPixelData* px = FindPixelData(ds);
  if (px == nullptr) return absl::InvalidArgumentError("the object has no Pixel Data");
  out.attributes = AttributesOf(ds);
  out.length = px->getLength(EXS_LittleEndianExplicit);
  if (out.attributes.bits_allocated <= 8) {
    Uint8* bytes = nullptr;
    if (px->getUint8Array(bytes).bad()) return absl::InvalidArgumentError("decoded pixel data is unreadable");
    out.data = bytes;
  } else {
    Uint16* words = nullptr;
    if (px->getUint16Array(words).bad()) return absl::InvalidArgumentError("decoded pixel data is unreadable");
    out.data = words;
  }
  if (out.data == nullptr && out.length > 0) return absl::InvalidArgumentError("decoded pixel data is empty");
  return absl::OkStatus();
}

bool PlausiblePhotometric(const std::string& text) {
  if (text.empty() || text.size() > 16) return false;
  return std::all_of(text.begin(), text.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; });
}

// The decoded pixels replace the encapsulated Pixel Data, with the attributes
// the codec changed, and everything is checked again as for a native object.
absl::Status InsertDecoded(DcmDataset* ds, const internals::IsolatedPixels& decoded, PixelGeometry* geometry,
                           const DecodeOptions& options) {
  const internals::PixelAttributes& a = decoded.attributes;
  if (!PlausiblePhotometric(a.photometric)) return absl::InvalidArgumentError("the decoder reported no usable Photometric Interpretation");
  if (a.planar_configuration > 1) return absl::InvalidArgumentError("the decoder reported an invalid Planar Configuration");
  delete ds->remove(DCM_PixelData);
  ds->putAndInsertUint16(DCM_BitsAllocated, a.bits_allocated);
  ds->putAndInsertUint16(DCM_BitsStored, a.bits_stored);
  ds->putAndInsertUint16(DCM_HighBit, a.high_bit);
  ds->putAndInsertUint16(DCM_PixelRepresentation, a.pixel_representation);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, a.samples_per_pixel);
  ds->putAndInsertString(DCM_PhotometricInterpretation, a.photometric.c_str());
  if (a.planar_configuration >= 0) ds->putAndInsertUint16(DCM_PlanarConfiguration, static_cast<Uint16>(a.planar_configuration));
  ASSIGN_OR_RETURN(PixelGeometry native, ReadGeometry(ds, options));
  if (native.rows != geometry->rows || native.columns != geometry->columns || native.frames != geometry->frames) {
    return absl::InvalidArgumentError("the decoder changed the image size");
  }
  const uint64_t length = decoded.bytes.size();
  OFCondition cond;
  if (native.bits_allocated <= 8) {
    cond = ds->putAndInsertUint8Array(DCM_PixelData, reinterpret_cast<const Uint8*>(decoded.bytes.data()), length);
  } else {
    // Host byte order, as DCMTK holds OW in memory.
    cond = ds->putAndInsertUint16Array(DCM_PixelData, reinterpret_cast<const Uint16*>(decoded.bytes.data()), length / 2);
  }
  if (cond.bad()) return absl::InternalError(std::string("storing decoded pixels: ") + cond.text());
  RETURN_IF_ERROR(CheckNativeLength(native, length));
  *geometry = native;
  return absl::OkStatus();
}

// Every codec runs in a child process (scp/pixels/internals/decoder_sandbox.h): a
// crash, hang, runaway allocation or forbidden system call there fails this
// one image with its reason, never the node. DCMTK's codecs decode the
// dataset the child inherits, read whole into memory first so that the child
// opens no file; GDCM reads the file through a descriptor opened before the
// filter. Found by fuzz/pixel_decoder_fuzzer: Debian 12's GDCM reads out of
// bounds on some broken JPEG 2000 codestreams, and DCMTK 3.6.7's RLE and
// JPEG Huffman decoders have open advisories of the same kind.
absl::Status DecodeIsolated(const std::string& path, DcmDataset* ds, PixelGeometry* geometry, bool jpeg2000,
                            const DecodeOptions& options) {
  if (!jpeg2000) {
    OFCondition cond = ds->loadAllDataIntoMemory();
    if (cond.bad()) return absl::InvalidArgumentError(std::string("pixel data unreadable: ") + cond.text());
  }
  int input = -1;
  auto prepare = [&]() -> std::vector<int> {
    if (!jpeg2000) return {};
    input = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (input >= 0 && input <= 2) {  // 0-2 become /dev/null in the child
      const int above = ::fcntl(input, F_DUPFD_CLOEXEC, 3);
      ::close(input);
      input = above;
    }
    return {input};
  };
  std::vector<char> buffer;
  auto decode = [&](internals::ChildOutput& out) -> absl::Status {
    if (!jpeg2000) return DecodeWithDcmtk(ds, out);
    if (input < 0) return absl::InvalidArgumentError("the object could not be opened");
    __gnu_cxx::stdio_filebuf<char> file(input, std::ios::in | std::ios::binary);
    std::istream in(&file);
    return DecodeJpeg2000(in, ds, *geometry, buffer, out);
  };
  ASSIGN_OR_RETURN(internals::IsolatedPixels decoded,
                   internals::RunIsolated(options.decoder, MaxDecodedBytes(*geometry), options.fault_for_test, prepare,
                                          decode));
  return InsertDecoded(ds, decoded, geometry, options);
}

// Benchmarks and fuzzing only (DecoderLimits::isolate off): the same codecs
// in the calling process.
absl::Status DecodeInProcess(const std::string& path, DcmDataset* ds, PixelGeometry* geometry, bool jpeg2000,
                             const DecodeOptions& options) {
  if (jpeg2000) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::InvalidArgumentError("the object could not be opened");
    std::vector<char> buffer;
    internals::ChildOutput out;
    RETURN_IF_ERROR(DecodeJpeg2000(in, ds, *geometry, buffer, out));
    internals::IsolatedPixels decoded{std::move(buffer), out.attributes};
    return InsertDecoded(ds, decoded, geometry, options);
  }
  OFCondition cond = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
  if (cond.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit)) {
    return absl::InvalidArgumentError(std::string("compressed pixel data did not decode: ") + cond.text());
  }
  DcmPixelData* px = FindPixelData(ds);
  if (px == nullptr) return absl::InvalidArgumentError("the object has no Pixel Data");
  return CheckNativeLength(*geometry, px->getLength(EXS_LittleEndianExplicit));
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
  if (original_xfer.isEncapsulated()) {
    const bool jpeg2000 = IsJpeg2000(ts_uid);
    if (!jpeg2000 && !DcmCodecList::canChangeCoding(original, EXS_LittleEndianExplicit)) {
      return absl::UnimplementedError("no decoder for transfer syntax " + ts_uid);
    }
    if (jpeg2000) RETURN_IF_ERROR(CheckVrsForGdcm(ds));
    if (options.decoder.isolate) {
      RETURN_IF_ERROR(DecodeIsolated(path, ds, &geometry, jpeg2000, options));
    } else {
      RETURN_IF_ERROR(DecodeInProcess(path, ds, &geometry, jpeg2000, options));
    }
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
