#include "scp/pixels/pixel_decoder.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <functional>
#include <string>
#include <vector>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"

namespace secondread::scp {
namespace {

namespace fs = std::filesystem;

class PixelDecoderTest : public ::testing::Test {
 public:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "sr-pixels-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  std::string dir_;
};

struct Mono16 {
  uint16_t rows = 64;
  uint16_t columns = 64;
  uint16_t bits_stored = 12;
  int frames = 0;  // 0: no Number of Frames attribute
  std::string photometric = "MONOCHROME2";
  std::vector<uint16_t> pixels;  // rows * columns * max(frames, 1)
  std::function<void(DcmDataset*)> extra;
};

void AddIdentity(DcmDataset* ds, const char* sop_class) {
  char uid[100];
  ds->putAndInsertString(DCM_SOPClassUID, sop_class);
  ds->putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  ds->putAndInsertString(DCM_StudyInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_STUDY_UID_ROOT));
  ds->putAndInsertString(DCM_SeriesInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_SERIES_UID_ROOT));
  ds->putAndInsertString(DCM_PatientName, "Test^Pixels");
  ds->putAndInsertString(DCM_PatientID, "PX1");
  ds->putAndInsertString(DCM_Modality, "CT");
}

void WriteMono16(const std::string& path, const Mono16& spec) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  AddIdentity(ds, UID_CTImageStorage);
  ds->putAndInsertUint16(DCM_Rows, spec.rows);
  ds->putAndInsertUint16(DCM_Columns, spec.columns);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, spec.bits_stored);
  ds->putAndInsertUint16(DCM_HighBit, spec.bits_stored - 1);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, spec.photometric.c_str());
  if (spec.frames > 0) ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(spec.frames).c_str());
  ds->putAndInsertUint16Array(DCM_PixelData, spec.pixels.data(), spec.pixels.size());
  if (spec.extra) spec.extra(ds);
  ASSERT_TRUE(ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
}

// A 12-bit ramp with some texture, so the compressors have real work to do.
std::vector<uint16_t> Ramp(uint16_t rows, uint16_t columns, int frames = 1) {
  std::vector<uint16_t> p;
  for (int f = 0; f < frames; ++f)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < columns; ++c) p.push_back(static_cast<uint16_t>((r * 64 + c * 3 + f * 500 + (r * c) % 7) % 4096));
  return p;
}

void CtWindow(DcmDataset* ds) {
  ds->putAndInsertString(DCM_RescaleIntercept, "-1024");
  ds->putAndInsertString(DCM_RescaleSlope, "1");
  ds->putAndInsertString(DCM_WindowCenter, "40");
  ds->putAndInsertString(DCM_WindowWidth, "400");
  ds->putAndInsertString(DCM_PixelSpacing, "0.5\\0.7");
}

// PS3.3 C.11.2.1.2.1, the linear VOI function, onto 0..65535.
double LinearWindow(double x, double c, double w) {
  if (x <= c - 0.5 - (w - 1) / 2) return 0;
  if (x > c - 0.5 + (w - 1) / 2) return 65535;
  return ((x - (c - 0.5)) / (w - 1) + 0.5) * 65535;
}

std::string TransferSyntaxOf(const std::string& path) {
  DcmFileFormat ff;
  if (ff.loadFile(path.c_str()).bad()) return {};
  return DcmXfer(ff.getDataset()->getOriginalXfer()).getXferID();
}

int RunQuiet(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

TEST_F(PixelDecoderTest, RescaleAndWindowFollowTheStandard) {
  Mono16 spec;
  spec.pixels = Ramp(spec.rows, spec.columns);
  spec.extra = CtWindow;
  WriteMono16(Path("ct.dcm"), spec);

  auto image = DecodeImageFile(Path("ct.dcm"), {});
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->frames.size(), 1u);
  const DecodedFrame& f = image->frames[0];
  EXPECT_EQ(f.rows, 64u);
  EXPECT_EQ(f.columns, 64u);
  ASSERT_EQ(f.pixels.size(), 64u * 64u);
  for (size_t i = 0; i < f.pixels.size(); ++i) {
    const double hu = spec.pixels[i] - 1024.0;
    ASSERT_NEAR(f.pixels[i], LinearWindow(hu, 40, 400), 2.0) << "pixel " << i << " HU " << hu;
  }
  EXPECT_DOUBLE_EQ(image->row_spacing_mm, 0.5);
  EXPECT_DOUBLE_EQ(image->column_spacing_mm, 0.7);
  EXPECT_EQ(image->modality, "CT");
  EXPECT_EQ(image->sop_class_uid, UID_CTImageStorage);
  EXPECT_EQ(image->source_photometric, "MONOCHROME2");
}

TEST_F(PixelDecoderTest, WithoutVoiTheModalityRangeMapsLinearly) {
  Mono16 spec;
  spec.pixels = Ramp(spec.rows, spec.columns);
  spec.extra = CtWindow;
  WriteMono16(Path("ct.dcm"), spec);
  DecodeOptions options;
  options.apply_voi = false;
  auto image = DecodeImageFile(Path("ct.dcm"), options);
  ASSERT_TRUE(image.ok()) << image.status();
  const DecodedFrame& f = image->frames[0];
  // Bits Stored 12 with intercept -1024: -1024..3071 spans the output range,
  // linearly to within one input step (DCMTK scales by 65536/4096).
  for (size_t i = 0; i < f.pixels.size(); ++i) {
    ASSERT_NEAR(f.pixels[i], spec.pixels[i] * 65535.0 / 4095.0, 17.0) << "pixel " << i;
  }
  EXPECT_EQ(*std::min_element(f.pixels.begin(), f.pixels.end()), 0);
}

TEST_F(PixelDecoderTest, ModalityValuesAreHounsfieldUnitsForEveryFrame) {
  Mono16 spec;
  spec.frames = 2;
  spec.pixels = Ramp(spec.rows, spec.columns, 2);
  spec.extra = CtWindow;  // intercept -1024: HU = stored - 1024, whatever the window says
  WriteMono16(Path("ct.dcm"), spec);
  DecodeOptions options;
  options.modality_values = true;
  auto image = DecodeImageFile(Path("ct.dcm"), options);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->frames.size(), 2u);
  for (int f = 0; f < 2; ++f) {
    const DecodedFrame& frame = image->frames[f];
    EXPECT_TRUE(frame.pixels.empty());
    ASSERT_EQ(frame.values.size(), 64u * 64u);
    for (size_t i = 0; i < frame.values.size(); ++i) {
      ASSERT_EQ(frame.values[i], spec.pixels[f * 64 * 64 + i] - 1024.0f) << "frame " << f << " pixel " << i;
    }
  }
}

TEST_F(PixelDecoderTest, ModalityValuesFollowSlopeAndStaySignedAndUninverted) {
  Mono16 spec;
  spec.photometric = "MONOCHROME1";
  spec.pixels = Ramp(spec.rows, spec.columns);
  spec.extra = [](DcmDataset* ds) {
    ds->putAndInsertString(DCM_RescaleIntercept, "-2000");
    ds->putAndInsertString(DCM_RescaleSlope, "2");
  };
  WriteMono16(Path("m1.dcm"), spec);
  DecodeOptions options;
  options.modality_values = true;
  auto image = DecodeImageFile(Path("m1.dcm"), options);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->source_photometric, "MONOCHROME1");
  const DecodedFrame& frame = image->frames[0];
  ASSERT_EQ(frame.values.size(), spec.pixels.size());
  for (size_t i = 0; i < frame.values.size(); ++i) {
    ASSERT_EQ(frame.values[i], spec.pixels[i] * 2.0f - 2000.0f) << "pixel " << i;
  }
  EXPECT_LT(*std::min_element(frame.values.begin(), frame.values.end()), 0.0f);
}

TEST_F(PixelDecoderTest, MinMaxWindowWhenTheObjectHasNone) {
  Mono16 spec;
  spec.pixels.assign(64 * 64, 1000);
  spec.pixels[0] = 500;
  spec.pixels[1] = 1500;
  WriteMono16(Path("plain.dcm"), spec);
  auto image = DecodeImageFile(Path("plain.dcm"), {});
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->frames[0].pixels[0], 0);
  EXPECT_EQ(image->frames[0].pixels[1], 65535);
  EXPECT_NEAR(image->frames[0].pixels[2], 32768, 100);
  EXPECT_EQ(image->row_spacing_mm, 0);
}

TEST_F(PixelDecoderTest, MonochromeOneComesOutInverted) {
  Mono16 spec;
  spec.pixels = Ramp(spec.rows, spec.columns);
  spec.extra = CtWindow;
  WriteMono16(Path("m2.dcm"), spec);
  spec.photometric = "MONOCHROME1";
  WriteMono16(Path("m1.dcm"), spec);

  for (bool voi : {true, false}) {
    DecodeOptions options;
    options.apply_voi = voi;
    auto m2 = DecodeImageFile(Path("m2.dcm"), options);
    auto m1 = DecodeImageFile(Path("m1.dcm"), options);
    ASSERT_TRUE(m2.ok()) << m2.status();
    ASSERT_TRUE(m1.ok()) << m1.status();
    EXPECT_EQ(m1->source_photometric, "MONOCHROME1");
    const auto& a = m2->frames[0].pixels;
    const auto& b = m1->frames[0].pixels;
    bool varied = false;
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_NEAR(a[i] + b[i], 65535, 1) << "pixel " << i << " voi " << voi;
      varied |= a[i] != a[0];
    }
    EXPECT_TRUE(varied);
  }
}

TEST_F(PixelDecoderTest, ImagerPixelSpacingIsTheFallback) {
  Mono16 spec;
  spec.pixels = Ramp(spec.rows, spec.columns);
  spec.extra = [](DcmDataset* ds) {
    ds->putAndInsertString(DCM_ImagerPixelSpacing, "0.143\\0.15");
    ds->putAndInsertString(DCM_BodyPartExamined, "CHEST");
    ds->putAndInsertString(DCM_ViewPosition, "PA");
  };
  WriteMono16(Path("cr.dcm"), spec);
  auto image = DecodeImageFile(Path("cr.dcm"), {});
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_DOUBLE_EQ(image->row_spacing_mm, 0.143);
  EXPECT_DOUBLE_EQ(image->column_spacing_mm, 0.15);
  EXPECT_EQ(image->body_part, "CHEST");
  EXPECT_EQ(image->view_position, "PA");
}

TEST_F(PixelDecoderTest, DecodesEveryFrame) {
  Mono16 spec;
  spec.frames = 3;
  for (uint16_t v : {1000, 1064, 1128}) spec.pixels.insert(spec.pixels.end(), 64 * 64, v);
  spec.extra = CtWindow;  // HU -24, 40, 104 in a 40/400 window
  WriteMono16(Path("mf.dcm"), spec);
  auto image = DecodeImageFile(Path("mf.dcm"), {});
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->frames.size(), 3u);
  const double hu[] = {-24, 40, 104};
  for (int f = 0; f < 3; ++f) {
    EXPECT_NEAR(image->frames[f].pixels[100], LinearWindow(hu[f], 40, 400), 2.0) << "frame " << f;
  }

  DecodeOptions tight;
  tight.max_frames = 2;
  auto refused = DecodeImageFile(Path("mf.dcm"), tight);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
}

struct Codec {
  const char* name;
  const char* command;  // %in %out
  const char* transfer_syntax;
};

TEST_F(PixelDecoderTest, CompressedSyntaxesDecodeLosslesslyAndIdentically) {
  Mono16 spec;
  spec.frames = 2;
  spec.pixels = Ramp(spec.rows, spec.columns, 2);
  spec.extra = CtWindow;
  WriteMono16(Path("native.dcm"), spec);
  auto reference = DecodeImageFile(Path("native.dcm"), {});
  ASSERT_TRUE(reference.ok()) << reference.status();
  DecodeOptions raw;
  raw.apply_voi = false;
  auto reference_raw = DecodeImageFile(Path("native.dcm"), raw);
  ASSERT_TRUE(reference_raw.ok()) << reference_raw.status();

  const Codec codecs[] = {
      {"jpeg", "dcmcjpeg", "1.2.840.10008.1.2.4.70"},
      {"jpegls", "dcmcjpls", "1.2.840.10008.1.2.4.80"},
      {"rle", "dcmcrle", "1.2.840.10008.1.2.5"},
      {"j2k", "gdcmconv --j2k", "1.2.840.10008.1.2.4.90"},
  };
  for (const Codec& codec : codecs) {
    SCOPED_TRACE(codec.name);
    const std::string out = Path(std::string(codec.name) + ".dcm");
    ASSERT_EQ(RunQuiet(std::string(codec.command) + " " + Path("native.dcm") + " " + out), 0);
    ASSERT_EQ(TransferSyntaxOf(out), codec.transfer_syntax);
    auto image = DecodeImageFile(out, {});
    ASSERT_TRUE(image.ok()) << image.status();
    ASSERT_EQ(image->frames.size(), 2u);
    for (int f = 0; f < 2; ++f) EXPECT_EQ(image->frames[f].pixels, reference->frames[f].pixels) << "frame " << f;
    auto image_raw = DecodeImageFile(out, raw);
    ASSERT_TRUE(image_raw.ok()) << image_raw.status();
    for (int f = 0; f < 2; ++f) EXPECT_EQ(image_raw->frames[f].pixels, reference_raw->frames[f].pixels);
  }
}

TEST_F(PixelDecoderTest, ColourBecomesLuminance) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  AddIdentity(ds, UID_SecondaryCaptureImageStorage);
  ds->putAndInsertUint16(DCM_Rows, 2);
  ds->putAndInsertUint16(DCM_Columns, 2);
  ds->putAndInsertUint16(DCM_BitsAllocated, 8);
  ds->putAndInsertUint16(DCM_BitsStored, 8);
  ds->putAndInsertUint16(DCM_HighBit, 7);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 3);
  ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "RGB");
  const Uint8 rgb[] = {0, 0, 0, 255, 0, 0, 0, 255, 0, 255, 255, 255};  // black, red, green, white
  ds->putAndInsertUint8Array(DCM_PixelData, rgb, sizeof(rgb));
  ASSERT_TRUE(ff.saveFile(Path("rgb.dcm").c_str(), EXS_LittleEndianExplicit).good());

  auto image = DecodeImageFile(Path("rgb.dcm"), {});
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->source_photometric, "RGB");
  const auto& p = image->frames[0].pixels;
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0], 0);
  EXPECT_EQ(p[3], 65535);
  EXPECT_LT(p[1], p[2]);  // green is brighter than red
  EXPECT_GT(p[1], 0);
}

TEST_F(PixelDecoderTest, ColourJpeg2000MatchesTheUncompressedOriginal) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  AddIdentity(ds, UID_SecondaryCaptureImageStorage);
  ds->putAndInsertUint16(DCM_Rows, 48);
  ds->putAndInsertUint16(DCM_Columns, 40);
  ds->putAndInsertUint16(DCM_BitsAllocated, 8);
  ds->putAndInsertUint16(DCM_BitsStored, 8);
  ds->putAndInsertUint16(DCM_HighBit, 7);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 3);
  ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "RGB");
  std::vector<Uint8> rgb;
  for (int r = 0; r < 48; ++r)
    for (int c = 0; c < 40; ++c) {
      rgb.push_back(static_cast<Uint8>(r * 5));
      rgb.push_back(static_cast<Uint8>(c * 6));
      rgb.push_back(static_cast<Uint8>((r * c) % 256));
    }
  ds->putAndInsertUint8Array(DCM_PixelData, rgb.data(), rgb.size());
  ASSERT_TRUE(ff.saveFile(Path("rgb.dcm").c_str(), EXS_LittleEndianExplicit).good());
  ASSERT_EQ(RunQuiet("gdcmconv --j2k " + Path("rgb.dcm") + " " + Path("rgb-j2k.dcm")), 0);
  ASSERT_EQ(TransferSyntaxOf(Path("rgb-j2k.dcm")), "1.2.840.10008.1.2.4.90");
  auto reference = DecodeImageFile(Path("rgb.dcm"), {});
  auto image = DecodeImageFile(Path("rgb-j2k.dcm"), {});
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->frames[0].pixels, reference->frames[0].pixels);
}

TEST_F(PixelDecoderTest, LyingAttributesAreRefused) {
  struct Lie {
    const char* name;
    std::function<void(DcmDataset*)> edit;
  };
  const Lie lies[] = {
      {"rows", [](DcmDataset* ds) { ds->putAndInsertUint16(DCM_Rows, 4000); }},
      {"columns", [](DcmDataset* ds) { ds->putAndInsertUint16(DCM_Columns, 65535); }},
      {"frames-absurd", [](DcmDataset* ds) { ds->putAndInsertString(DCM_NumberOfFrames, "2000000000"); }},
      {"frames-within-limit", [](DcmDataset* ds) { ds->putAndInsertString(DCM_NumberOfFrames, "200"); }},
      {"frames-negative", [](DcmDataset* ds) { ds->putAndInsertString(DCM_NumberOfFrames, "-3"); }},
      {"bits-stored", [](DcmDataset* ds) { ds->putAndInsertUint16(DCM_BitsStored, 17); }},
      {"bits-allocated", [](DcmDataset* ds) { ds->putAndInsertUint16(DCM_BitsAllocated, 12); }},
      {"samples", [](DcmDataset* ds) { ds->putAndInsertUint16(DCM_SamplesPerPixel, 4); }},
      {"no-rows", [](DcmDataset* ds) { delete ds->remove(DCM_Rows); }},
      {"no-pixels", [](DcmDataset* ds) { delete ds->remove(DCM_PixelData); }},
  };
  for (const Lie& lie : lies) {
    SCOPED_TRACE(lie.name);
    Mono16 spec;
    spec.pixels = Ramp(spec.rows, spec.columns);
    spec.extra = lie.edit;
    const std::string path = Path(std::string(lie.name) + ".dcm");
    WriteMono16(path, spec);
    auto image = DecodeImageFile(path, {});
    EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument) << image.status();
  }
}

TEST_F(PixelDecoderTest, CompressedFrameCountBeyondTheFragmentsIsRefused) {
  Mono16 spec;
  spec.pixels = Ramp(spec.rows, spec.columns);
  WriteMono16(Path("native.dcm"), spec);
  ASSERT_EQ(RunQuiet("dcmcjpeg " + Path("native.dcm") + " " + Path("jpeg.dcm")), 0);
  DcmFileFormat ff;
  ASSERT_TRUE(ff.loadFile(Path("jpeg.dcm").c_str()).good());
  ff.getDataset()->putAndInsertString(DCM_NumberOfFrames, "200");
  ASSERT_TRUE(ff.saveFile(Path("lying.dcm").c_str(), EXS_JPEGProcess14SV1).good());
  ASSERT_EQ(TransferSyntaxOf(Path("lying.dcm")), "1.2.840.10008.1.2.4.70");
  auto image = DecodeImageFile(Path("lying.dcm"), {});
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument) << image.status();
}

TEST_F(PixelDecoderTest, NonDicomIsRefused) {
  {
    std::ofstream f(Path("notes.txt"));
    f << "this is not a DICOM file, just some text that goes on for a while\n";
  }
  auto image = DecodeImageFile(Path("notes.txt"), {});
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument) << image.status();
  {
    std::ofstream f(Path("fake.dcm"), std::ios::binary);
    f << std::string(128, '\0') << "DICM" << std::string(300, '\xff');
  }
  image = DecodeImageFile(Path("fake.dcm"), {});
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument) << image.status();
  image = DecodeImageFile(Path("missing.dcm"), {});
  EXPECT_FALSE(image.ok());
}

// A fuzzer input from fuzz/regressions/, spooled as the receiver does:
// DCMTK's meta header for the transfer syntax its first byte names (here
// always JPEG 2000 Lossless Only), then the data set.
std::string SpoolFuzzInput(const std::string& name, const std::string& path) {
  std::ifstream in(std::string(SECONDREAD_SOURCE_DIR) + "/fuzz/regressions/" + name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  const std::string input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(input.at(0), 11);  // fuzz/part10_input.cc: JPEG 2000 Lossless Only
  DcmFileFormat ff;
  ff.getDataset()->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
  ff.getDataset()->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4");
  EXPECT_TRUE(ff.validateMetaInfo(EXS_JPEG2000LosslessOnly).good());
  char buf[4096];
  DcmOutputBufferStream meta_out(buf, sizeof buf);
  ff.getMetaInfo()->transferInit();
  EXPECT_TRUE(ff.getMetaInfo()->write(meta_out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr).good());
  ff.getMetaInfo()->transferEnd();
  void* meta = nullptr;
  offile_off_t meta_length = 0;
  meta_out.flushBuffer(meta, meta_length);
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(meta), meta_length);
  f.write(input.data() + 1, static_cast<std::streamsize>(input.size() - 1));
  return path;
}

// Found by fuzz/pixel_decoder_fuzzer (the input is
// fuzz/regressions/pixel_decoder_jpeg2000_samples_as_AS): a JPEG 2000 object
// whose Samples per Pixel is encoded with VR AS instead of US. Debian's GDCM
// asserts on such an attribute and the assertion aborted the node.
TEST_F(PixelDecoderTest, Jpeg2000WithAWrongVrIsRefusedNotAborted) {
  auto image = DecodeImageFile(SpoolFuzzInput("pixel_decoder_jpeg2000_samples_as_AS", Path("fuzzed.dcm")), {});
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument) << image.status();
}

// Found by fuzz/pixel_decoder_fuzzer: a broken codestream on which GDCM's
// JPEG2000Codec::GetHeaderInfo reads out of bounds (ASan stops there; a
// normal build reads garbage or dies). GDCM runs in a child process, so the
// read fails with a reason and the caller (the node, this test) lives on.
TEST_F(PixelDecoderTest, Jpeg2000CodecOutOfBoundsFailsTheDecodeNotTheProcess) {
  const std::string path = SpoolFuzzInput("pixel_decoder_jpeg2000_gdcm_header_segv", Path("segv.dcm"));
  auto image = DecodeImageFile(path, {});
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument) << image.status();
}

// Found by fuzz/pixel_decoder_fuzzer in a longer run: broken codestreams on
// which GDCM's JPEG2000Codec::DecodeByStreamsCommon frees a pointer it did
// not allocate (through opj_destroy_codec) or writes past a heap buffer, and
// one it decodes for longer than the fuzzer's 10 s. In the node each would
// corrupt or end the process; in the decoder process each fails its image
// with a reason (which one depends on what the corrupted heap does next).
TEST_F(PixelDecoderTest, Jpeg2000MemoryCorruptionInGdcmFailsOnlyTheDecode) {
  DecodeOptions options;
  options.decoder.cpu_seconds = 3;
  options.decoder.wall_seconds = 6;
  for (const char* name : {"pixel_decoder_jpeg2000_gdcm_bad_free", "pixel_decoder_jpeg2000_gdcm_heap_write",
                           "pixel_decoder_jpeg2000_gdcm_slow"}) {
    auto image = DecodeImageFile(SpoolFuzzInput(name, Path(std::string(name) + ".dcm")), options);
    ASSERT_FALSE(image.ok()) << name;
    const std::string reason = DecodeFailureReason(image.status());
    std::cout << name << ": " << reason << "\n";
    EXPECT_TRUE(reason == kDecoderCrashed || reason == kDecoderTimeout || reason == "undecodable")
        << name << ": " << image.status();
  }
}

// One small CT object in each compressed transfer syntax, for the decoder
// process tests.
std::vector<std::pair<std::string, std::string>> EveryCodec(PixelDecoderTest& t, const std::string& native) {
  const std::pair<const char*, const char*> codecs[] = {
      {"jpeg", "dcmcjpeg"}, {"jpegls", "dcmcjpls"}, {"rle", "dcmcrle"}, {"j2k", "gdcmconv --j2k"}};
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, command] : codecs) {
    const std::string path = t.Path(std::string(name) + ".dcm");
    EXPECT_EQ(RunQuiet(std::string(command) + " " + native + " " + path), 0) << name;
    out.emplace_back(name, path);
  }
  return out;
}

std::string NativeCt(PixelDecoderTest& t, uint16_t rows = 64, uint16_t columns = 64) {
  Mono16 spec;
  spec.rows = rows;
  spec.columns = columns;
  spec.pixels = Ramp(rows, columns);
  spec.extra = CtWindow;
  WriteMono16(t.Path("ct.dcm"), spec);
  return t.Path("ct.dcm");
}

// A codec that dies (here made to abort deliberately) fails that one decode
// with its reason, in every codec family; the process that asked goes on
// decoding, and the same object decodes when the codec does not die (with
// the seccomp filter in place).
TEST_F(PixelDecoderTest, EveryCodecCrashFailsTheDecodeNotTheProcess) {
  for (const auto& [name, path] : EveryCodec(*this, NativeCt(*this))) {
    SCOPED_TRACE(name);
    DecodeOptions crash;
    crash.fault_for_test = DecoderFaultForTest::kCrash;
    auto image = DecodeImageFile(path, crash);
    ASSERT_FALSE(image.ok());
    EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument) << image.status();
    EXPECT_EQ(DecodeFailureReason(image.status()), kDecoderCrashed) << image.status();
    EXPECT_NE(std::string(image.status().message()).find("crashed"), std::string::npos) << image.status();
    auto again = DecodeImageFile(path, {});
    ASSERT_TRUE(again.ok()) << again.status();
    ASSERT_EQ(again->frames.size(), 1u);
  }
}

// Isolated and in-process decodes of the same objects give the same pixels,
// the colour JPEG whose codec turns YBR_FULL_422 into RGB among them.
TEST_F(PixelDecoderTest, IsolatedAndInProcessDecodesAgree) {
  auto objects = EveryCodec(*this, NativeCt(*this));
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  AddIdentity(ds, UID_SecondaryCaptureImageStorage);
  ds->putAndInsertUint16(DCM_Rows, 32);
  ds->putAndInsertUint16(DCM_Columns, 48);
  ds->putAndInsertUint16(DCM_BitsAllocated, 8);
  ds->putAndInsertUint16(DCM_BitsStored, 8);
  ds->putAndInsertUint16(DCM_HighBit, 7);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 3);
  ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "RGB");
  std::vector<Uint8> rgb;
  for (int r = 0; r < 32; ++r)
    for (int c = 0; c < 48; ++c) {
      rgb.push_back(static_cast<Uint8>(r * 7));
      rgb.push_back(static_cast<Uint8>(c * 5));
      rgb.push_back(static_cast<Uint8>((r * c) % 256));
    }
  ds->putAndInsertUint8Array(DCM_PixelData, rgb.data(), rgb.size());
  ASSERT_TRUE(ff.saveFile(Path("rgb.dcm").c_str(), EXS_LittleEndianExplicit).good());
  ASSERT_EQ(RunQuiet("dcmcjpeg --encode-baseline " + Path("rgb.dcm") + " " + Path("rgb-jpeg.dcm")), 0);
  ASSERT_EQ(RunQuiet("dcmcrle " + Path("rgb.dcm") + " " + Path("rgb-rle.dcm")), 0);
  objects.emplace_back("rgb-jpeg", Path("rgb-jpeg.dcm"));
  objects.emplace_back("rgb-rle", Path("rgb-rle.dcm"));
  for (const auto& [name, path] : objects) {
    SCOPED_TRACE(name);
    DecodeOptions in_process;
    in_process.decoder.isolate = false;
    auto reference = DecodeImageFile(path, in_process);
    ASSERT_TRUE(reference.ok()) << reference.status();
    auto image = DecodeImageFile(path, {});
    ASSERT_TRUE(image.ok()) << image.status();
    ASSERT_EQ(image->frames.size(), reference->frames.size());
    EXPECT_EQ(image->frames[0].pixels, reference->frames[0].pixels);
    EXPECT_EQ(image->source_photometric, reference->source_photometric);
    DecodeOptions values = in_process;
    values.modality_values = true;
    auto reference_values = DecodeImageFile(path, values);
    values.decoder.isolate = true;
    auto image_values = DecodeImageFile(path, values);
    ASSERT_TRUE(reference_values.ok()) << reference_values.status();
    ASSERT_TRUE(image_values.ok()) << image_values.status();
    EXPECT_EQ(image_values->frames[0].values, reference_values->frames[0].values);
  }
}

// A decoder that allocates without bound stops at its memory limit, and so
// does a real codec asked for more than the limit allows; the caller's own
// memory is not touched.
TEST_F(PixelDecoderTest, RunawayAllocationHitsTheMemoryLimit) {
  const std::string native = NativeCt(*this);
  ASSERT_EQ(RunQuiet("dcmcjpls " + native + " " + Path("ct-jls.dcm")), 0);
  DecodeOptions runaway;
  runaway.decoder.memory_bytes = 64ull << 20;
  runaway.fault_for_test = DecoderFaultForTest::kAllocate;
  const auto start = std::chrono::steady_clock::now();
  auto image = DecodeImageFile(Path("ct-jls.dcm"), runaway);
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kResourceExhausted) << image.status();
  EXPECT_EQ(DecodeFailureReason(image.status()), kDecoderOutOfMemory) << image.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));

  // 4096 x 4096 16-bit pixels are 32 MiB decoded, which glibc always maps
  // afresh (the largest mmap threshold), so free memory the child inherited
  // from this process cannot hold them; 8 MiB is not enough.
  const std::string large = NativeCt(*this, 4096, 4096);
  ASSERT_EQ(RunQuiet("dcmcjpls " + large + " " + Path("large-jls.dcm")), 0);
  DecodeOptions small;
  small.decoder.memory_bytes = 8ull << 20;
  auto refused = DecodeImageFile(Path("large-jls.dcm"), small);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(DecodeFailureReason(refused.status()), kDecoderOutOfMemory) << refused.status();
  auto decoded = DecodeImageFile(Path("large-jls.dcm"), {});
  ASSERT_TRUE(decoded.ok()) << decoded.status();
}

// Under the seccomp filter a codec cannot reach the network or start a
// process: the attempt ends the child, and the decode fails with its reason.
TEST_F(PixelDecoderTest, NetworkAndNewProcessesAreForbiddenToTheDecoder) {
  const std::string native = NativeCt(*this);
  ASSERT_EQ(RunQuiet("dcmcrle " + native + " " + Path("ct-rle.dcm")), 0);
  for (auto fault : {DecoderFaultForTest::kSocket, DecoderFaultForTest::kFork}) {
    DecodeOptions options;
    options.fault_for_test = fault;
    auto image = DecodeImageFile(Path("ct-rle.dcm"), options);
    ASSERT_FALSE(image.ok());
    EXPECT_EQ(DecodeFailureReason(image.status()), kDecoderForbiddenSyscall) << image.status();
    EXPECT_NE(std::string(image.status().message()).find("forbidden system call"), std::string::npos);
  }
}

// The child holds none of the caller's descriptors (in the node: database
// connections, associations, the workers' channels): what it writes to any
// descriptor number reaches none of them.
TEST_F(PixelDecoderTest, DecoderReachesNoDescriptorOfTheCaller) {
  const std::string native = NativeCt(*this);
  ASSERT_EQ(RunQuiet("dcmcjpls " + native + " " + Path("ct-jls.dcm")), 0);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC), 0);
  DecodeOptions options;
  options.fault_for_test = DecoderFaultForTest::kWriteInherited;
  auto image = DecodeImageFile(Path("ct-jls.dcm"), options);
  EXPECT_FALSE(image.ok());
  char buf[16];
  EXPECT_EQ(::read(pipe_fds[0], buf, sizeof buf), -1);
  EXPECT_EQ(errno, EAGAIN);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

// A decoder that never ends is stopped by the wall clock, and one that
// burns CPU by its CPU-time limit.
TEST_F(PixelDecoderTest, HungDecoderIsStoppedByItsClocks) {
  const std::string native = NativeCt(*this);
  ASSERT_EQ(RunQuiet("dcmcjpeg " + native + " " + Path("ct-jpeg.dcm")), 0);
  DecodeOptions wall;
  wall.fault_for_test = DecoderFaultForTest::kSpin;
  wall.decoder.wall_seconds = 1;
  const auto start = std::chrono::steady_clock::now();
  auto image = DecodeImageFile(Path("ct-jpeg.dcm"), wall);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(DecodeFailureReason(image.status()), kDecoderTimeout) << image.status();
  EXPECT_NE(std::string(image.status().message()).find("ran past its 1 s"), std::string::npos) << image.status();
  EXPECT_GE(took, std::chrono::milliseconds(900));
  EXPECT_LT(took, std::chrono::seconds(15));

  DecodeOptions cpu;
  cpu.fault_for_test = DecoderFaultForTest::kSpin;
  cpu.decoder.cpu_seconds = 1;
  cpu.decoder.wall_seconds = 60;
  image = DecodeImageFile(Path("ct-jpeg.dcm"), cpu);
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(DecodeFailureReason(image.status()), kDecoderTimeout) << image.status();
  EXPECT_NE(std::string(image.status().message()).find("CPU time"), std::string::npos) << image.status();
}

// Attribute and codec failures that are the object's own carry no decoder
// reason of their own.
TEST_F(PixelDecoderTest, ObjectFailuresAreUndecodable) {
  auto image = DecodeImageFile(Path("missing.dcm"), {});
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(DecodeFailureReason(image.status()), kUndecodable);
}

}  // namespace
}  // namespace secondread::scp
