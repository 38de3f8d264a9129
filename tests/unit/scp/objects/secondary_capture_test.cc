#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "scp/pixels/pixel_decoder.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp {
namespace {

namespace fs = std::filesystem;

constexpr char kStudyUid[] = "1.2.826.0.1.3680043.8.498.1";
constexpr char kSourceUid[] = "1.2.826.0.1.3680043.8.498.2";

class SecondaryCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "sr-sc-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    algorithm_.model_name = "synthetic-nodule-demo";
    algorithm_.model_version = "1.2";
    algorithm_.software_version = "0.1.0";
    identity_.sop_instance_uid = "2.25.1234567890123456789";
    identity_.series_instance_uid = "2.25.9876543210987654321";
    identity_.series_number = 9001;
    when_ = {"20240131", "101500"};
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  static const char* SopClass(int frames) {
    return frames > 0 ? UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage : UID_CTImageStorage;
  }

  // A CT-like source: 12-bit ramp with rescale and a window, `frames` frames.
  SourceImage WriteSource(const std::string& name, uint16_t rows, uint16_t columns, int frames = 0) {
    DcmFileFormat ff;
    DcmDataset* ds = ff.getDataset();
    ds->putAndInsertString(DCM_SOPClassUID, SopClass(frames));
    ds->putAndInsertString(DCM_SOPInstanceUID, kSourceUid);
    ds->putAndInsertString(DCM_StudyInstanceUID, kStudyUid);
    ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.826.0.1.3680043.8.498.3");
    ds->putAndInsertString(DCM_PatientName, "Doe^Jane");
    ds->putAndInsertString(DCM_PatientID, "SC-TEST-1");
    ds->putAndInsertString(DCM_PatientBirthDate, "19700101");
    ds->putAndInsertString(DCM_PatientSex, "F");
    ds->putAndInsertString(DCM_StudyDate, "20240130");
    ds->putAndInsertString(DCM_StudyTime, "090000");
    ds->putAndInsertString(DCM_AccessionNumber, "ACC1");
    ds->putAndInsertString(DCM_StudyID, "1");
    ds->putAndInsertString(DCM_ReferringPhysicianName, "");
    ds->putAndInsertString(DCM_Modality, "CT");
    ds->putAndInsertUint16(DCM_Rows, rows);
    ds->putAndInsertUint16(DCM_Columns, columns);
    ds->putAndInsertUint16(DCM_BitsAllocated, 16);
    ds->putAndInsertUint16(DCM_BitsStored, 12);
    ds->putAndInsertUint16(DCM_HighBit, 11);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
    ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    ds->putAndInsertString(DCM_RescaleIntercept, "-1024");
    ds->putAndInsertString(DCM_RescaleSlope, "1");
    ds->putAndInsertString(DCM_WindowCenter, "40");
    ds->putAndInsertString(DCM_WindowWidth, "400");
    if (frames > 0) ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(frames).c_str());
    std::vector<uint16_t> pixels;
    for (int f = 0; f < std::max(frames, 1); ++f)
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < columns; ++c) pixels.push_back(static_cast<uint16_t>(800 + (r + c + 60 * f) % 500));
    ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), pixels.size());
    const std::string path = Path(name);
    EXPECT_TRUE(ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
    SourceImage source;
    source.path = path;
    source.sop_class_uid = SopClass(frames);
    source.sop_instance_uid = kSourceUid;
    source.series_instance_uid = "1.2.826.0.1.3680043.8.498.3";
    source.rows = rows;
    source.columns = columns;
    return source;
  }

  std::string Save(const BuiltObject& object, const std::string& name) {
    const std::string path = Path(name);
    std::ofstream(path, std::ios::binary) << object.part10;
    return path;
  }

  std::string dir_;
  AlgorithmInfo algorithm_;
  ResultIdentity identity_;
  ContentTime when_;
};

// dciodvfy's report, one line per message.
std::string Dciodvfy(const std::string& path) {
  const std::string report = path + ".dciodvfy.txt";
  const int rc = std::system(("dciodvfy '" + path + "' >'" + report + "' 2>&1").c_str());
  (void)rc;  // dciodvfy's exit status does not reflect errors; the report does
  std::ifstream in(report);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int ErrorLines(const std::string& report) {
  int n = 0;
  std::istringstream in(report);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("Error", 0) == 0) ++n;
  return n;
}

struct Rgb8 {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;
  const uint8_t* At(int x, int y) const { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
};

Rgb8 PixelsOf(const std::string& path) {
  Rgb8 out;
  DcmFileFormat ff;
  EXPECT_TRUE(ff.loadFile(path.c_str()).good());
  Uint16 rows = 0, columns = 0;
  ff.getDataset()->findAndGetUint16(DCM_Rows, rows);
  ff.getDataset()->findAndGetUint16(DCM_Columns, columns);
  const Uint8* data = nullptr;
  unsigned long count = 0;
  EXPECT_TRUE(ff.getDataset()->findAndGetUint8Array(DCM_PixelData, data, &count).good());
  out.width = columns;
  out.height = rows;
  if (data && count >= size_t{rows} * columns * 3) out.rgb.assign(data, data + size_t{rows} * columns * 3);
  return out;
}

std::string Str(DcmItem* item, const DcmTagKey& tag) {
  OFString v;
  item->findAndGetOFStringArray(tag, v);
  return v.c_str();
}

// The grey level the SC shows for a decoded 16-bit value.
uint8_t Grey8(uint16_t v) { return static_cast<uint8_t>((v + 128u) / 257u); }

Finding MakeFinding(double score, bool peak) {
  Finding f;
  f.label = "nodule";
  f.code = {"SCT", "27925004", "Nodule"};
  f.score = score;
  f.threshold = 0.277;
  f.above_threshold = score >= 0.277;
  f.has_peak = peak;
  f.peak_column = 180.5;
  f.peak_row = 70.5;
  return f;
}

TEST_F(SecondaryCaptureTest, PassesDciodvfyAndCarriesTheRequiredAttributes) {
  const SourceImage source = WriteSource("ct.dcm", 256, 256);
  Heatmap heatmap;
  heatmap.rows = heatmap.columns = 16;
  heatmap.values.assign(256, 0.0f);
  heatmap.values[4 * 16 + 11] = 1.0f;  // near the peak
  auto sc = BuildSecondaryCapture(source, &heatmap, {MakeFinding(0.91, true)}, algorithm_, identity_, when_);
  ASSERT_TRUE(sc.ok()) << sc.status();
  EXPECT_EQ(sc->sop_class_uid, UID_SecondaryCaptureImageStorage);
  EXPECT_EQ(sc->sop_instance_uid, identity_.sop_instance_uid);
  EXPECT_EQ(sc->series_instance_uid, identity_.series_instance_uid);
  const std::string path = Save(*sc, "sc.dcm");

  const std::string report = Dciodvfy(path);
  EXPECT_EQ(ErrorLines(report), 0) << report;

  DcmFileFormat ff;
  ASSERT_TRUE(ff.loadFile(path.c_str()).good());
  DcmDataset* ds = ff.getDataset();
  EXPECT_EQ(Str(ds, DCM_SOPClassUID), UID_SecondaryCaptureImageStorage);
  EXPECT_EQ(Str(ds, DCM_ImageType), "DERIVED\\SECONDARY");
  EXPECT_EQ(Str(ds, DCM_Modality), "OT");
  EXPECT_EQ(Str(ds, DCM_ConversionType), "WSD");
  EXPECT_EQ(Str(ds, DCM_BurnedInAnnotation), "YES");
  EXPECT_EQ(Str(ds, DCM_PhotometricInterpretation), "RGB");
  EXPECT_EQ(Str(ds, DCM_SamplesPerPixel), "3");
  EXPECT_EQ(Str(ds, DCM_PlanarConfiguration), "0");
  EXPECT_EQ(Str(ds, DCM_BitsAllocated), "8");
  EXPECT_EQ(Str(ds, DCM_StudyInstanceUID), kStudyUid);
  EXPECT_EQ(Str(ds, DCM_PatientID), "SC-TEST-1");
  EXPECT_EQ(Str(ds, DCM_SeriesDescription), "AI RESULT (synthetic-nodule-demo) - FOR REVIEW, NOT A DIAGNOSIS");
  EXPECT_FALSE(Str(ds, DCM_DerivationDescription).empty());
  EXPECT_EQ(Str(ff.getMetaInfo(), DCM_TransferSyntaxUID), UID_LittleEndianExplicitTransferSyntax);

  DcmItem* ref = nullptr;
  ASSERT_TRUE(ds->findAndGetSequenceItem(DCM_SourceImageSequence, ref, 0).good());
  EXPECT_EQ(Str(ref, DCM_ReferencedSOPClassUID), UID_CTImageStorage);
  EXPECT_EQ(Str(ref, DCM_ReferencedSOPInstanceUID), kSourceUid);
  EXPECT_FALSE(ref->tagExists(DCM_ReferencedFrameNumber));
  DcmItem* purpose = nullptr;
  ASSERT_TRUE(ref->findAndGetSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0).good());
  EXPECT_EQ(Str(purpose, DCM_CodeValue), "121322");
  EXPECT_EQ(Str(purpose, DCM_CodingSchemeDesignator), "DCM");
}

// Laterality (Type 2C) follows the source: its value, else its Image
// Laterality, else empty for a paired or unknown body part and absent for an
// unpaired one.
TEST_F(SecondaryCaptureTest, LateralityFollowsTheSourceAndTheBodyPart) {
  struct Case {
    const char* body_part;
    const char* laterality;        // nullptr: absent in the source
    const char* image_laterality;  // nullptr: absent in the source
    bool want_present;
    const char* want;
    const char* want_body_part;  // nullptr: absent in the result
  };
  const Case cases[] = {
      {"CHEST", nullptr, nullptr, false, "", "CHEST"},  // unpaired: absent, no dciodvfy warning
      {nullptr, nullptr, nullptr, true, "", nullptr},  // body part unknown: may be paired
      {"BREAST", nullptr, nullptr, true, "", "BREAST"},  // paired, unknown: present and empty
      {" knee ", nullptr, nullptr, true, "", "KNEE"},
      {"BREAST", nullptr, "R", true, "R", "BREAST"},
      {"HAND", "L", nullptr, true, "L", "HAND"},
      {"CHEST", "", nullptr, false, "", "CHEST"},  // empty is not allowed for an unpaired part
      {"chest", nullptr, nullptr, false, "", "CHEST"},
      {"KNEE(LEFT)", nullptr, nullptr, true, "", nullptr},  // not a CS value: left out, so unknown
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string("body part ") + (c.body_part ? c.body_part : "(none)"));
    SourceImage source = WriteSource("lat" + std::to_string(n) + ".dcm", 64, 64);
    {
      DcmFileFormat ff;
      ASSERT_TRUE(ff.loadFile(source.path.c_str()).good());
      ASSERT_TRUE(ff.loadAllDataIntoMemory().good());  // saved over the file it was read from
      DcmDataset* ds = ff.getDataset();
      if (c.body_part) ds->putAndInsertString(DCM_BodyPartExamined, c.body_part);
      if (c.laterality) ds->putAndInsertString(DCM_Laterality, c.laterality);
      if (c.image_laterality) ds->putAndInsertString(DCM_ImageLaterality, c.image_laterality);
      ASSERT_TRUE(ff.saveFile(source.path.c_str(), EXS_LittleEndianExplicit).good());
    }
    auto sc = BuildSecondaryCapture(source, nullptr, {MakeFinding(0.2, false)}, algorithm_, identity_, when_);
    ASSERT_TRUE(sc.ok()) << sc.status();
    const std::string path = Save(*sc, "lat-sc" + std::to_string(n++) + ".dcm");
    DcmFileFormat ff;
    ASSERT_TRUE(ff.loadFile(path.c_str()).good());
    EXPECT_EQ(ff.getDataset()->tagExists(DCM_Laterality), c.want_present);
    EXPECT_EQ(Str(ff.getDataset(), DCM_Laterality), c.want);
    EXPECT_EQ(ff.getDataset()->tagExists(DCM_BodyPartExamined), c.want_body_part != nullptr);
    if (c.want_body_part) {
      EXPECT_EQ(Str(ff.getDataset(), DCM_BodyPartExamined), c.want_body_part);
    }
    const std::string report = Dciodvfy(path);
    EXPECT_EQ(ErrorLines(report), 0) << report;
    if (!c.want_present) {
      EXPECT_EQ(report.find("<Laterality>"), std::string::npos) << report;
    }
  }
}

TEST_F(SecondaryCaptureTest, ImageBelowTheBannerIsThePlainRenderExceptWhereAnnotated) {
  const SourceImage source = WriteSource("ct.dcm", 256, 256);
  auto plain = DecodeImageFile(source.path, {});
  ASSERT_TRUE(plain.ok()) << plain.status();
  const auto& grey = plain->frames[0].pixels;

  Heatmap heatmap;
  heatmap.rows = heatmap.columns = 8;
  heatmap.values.assign(64, 0.0f);
  heatmap.values[7 * 8 + 0] = 1.0f;  // bottom-left cell
  const Finding finding = MakeFinding(0.91, true);
  auto sc = BuildSecondaryCapture(source, &heatmap, {finding}, algorithm_, identity_, when_);
  ASSERT_TRUE(sc.ok()) << sc.status();
  const Rgb8 img = PixelsOf(Save(*sc, "sc.dcm"));
  ASSERT_EQ(img.width, 256);
  ASSERT_GT(img.height, 256);
  const int banner = img.height - 256;

  // The banner holds the warning line in its colour and the rest of the text.
  int warning = 0, white = 0, background = 0;
  for (int y = 0; y < banner; ++y)
    for (int x = 0; x < img.width; ++x) {
      const uint8_t* p = img.At(x, y);
      warning += p[0] == 255 && p[1] == 220 && p[2] == 0;
      white += p[0] == 255 && p[1] == 255 && p[2] == 255;
      background += p[0] == 24 && p[1] == 24 && p[2] == 24;
    }
  EXPECT_GT(warning, 200);
  EXPECT_GT(white, 200);
  EXPECT_GT(background, warning + white);

  // Far from the marker and the heatmap, the image is the source's VOI render.
  int unchanged = 0, compared = 0;
  for (int y = 0; y < 128; ++y)
    for (int x = 0; x < 128; ++x) {
      const uint8_t* p = img.At(x, banner + y);
      const uint8_t g = Grey8(grey[static_cast<size_t>(y) * 256 + x]);
      ++compared;
      unchanged += p[0] == g && p[1] == g && p[2] == g;
    }
  EXPECT_EQ(unchanged, compared);

  // The heatmap's hot corner is tinted towards red.
  const uint8_t* hot = img.At(8, banner + 250);
  EXPECT_GT(hot[0], hot[1] + 40);
  EXPECT_GT(hot[0], hot[2] + 40);
}

TEST_F(SecondaryCaptureTest, BannerTextIsBurnedInAndFollowsTheResult) {
  const SourceImage source = WriteSource("ct.dcm", 256, 256);
  auto low = BuildSecondaryCapture(source, nullptr, {MakeFinding(0.12, false)}, algorithm_, identity_, when_);
  auto high = BuildSecondaryCapture(source, nullptr, {MakeFinding(0.91, false)}, algorithm_, identity_, when_);
  ASSERT_TRUE(low.ok()) << low.status();
  ASSERT_TRUE(high.ok()) << high.status();
  const Rgb8 a = PixelsOf(Save(*low, "low.dcm"));
  const Rgb8 b = PixelsOf(Save(*high, "high.dcm"));
  ASSERT_EQ(a.width, b.width);
  ASSERT_EQ(a.height, b.height);
  const int banner = a.height - 256;
  int banner_diff = 0, image_diff = 0;
  for (int y = 0; y < a.height; ++y)
    for (int x = 0; x < a.width; ++x)
      if (std::memcmp(a.At(x, y), b.At(x, y), 3) != 0) (y < banner ? banner_diff : image_diff)++;
  EXPECT_GT(banner_diff, 10);  // "0.12 ... NOT FLAGGED" against "0.91 ... FLAGGED"
  EXPECT_EQ(image_diff, 0);
}

TEST_F(SecondaryCaptureTest, PeakMarkerSurroundsThePeak) {
  const SourceImage source = WriteSource("ct.dcm", 256, 256);
  auto without = BuildSecondaryCapture(source, nullptr, {MakeFinding(0.91, false)}, algorithm_, identity_, when_);
  auto with = BuildSecondaryCapture(source, nullptr, {MakeFinding(0.91, true)}, algorithm_, identity_, when_);
  ASSERT_TRUE(without.ok()) << without.status();
  ASSERT_TRUE(with.ok()) << with.status();
  const Rgb8 a = PixelsOf(Save(*without, "without.dcm"));
  const Rgb8 b = PixelsOf(Save(*with, "with.dcm"));
  ASSERT_EQ(a.height, b.height);
  const int banner = a.height - 256;
  const int px = 180, py = banner + 70;
  int near = 0, far = 0, cyan = 0;
  for (int y = banner; y < b.height; ++y)
    for (int x = 0; x < b.width; ++x) {
      if (std::memcmp(a.At(x, y), b.At(x, y), 3) == 0) continue;
      const int d2 = (x - px) * (x - px) + (y - py) * (y - py);
      (d2 <= 20 * 20 ? near : far)++;
      const uint8_t* p = b.At(x, y);
      cyan += p[0] == 0 && p[1] == 255 && p[2] == 255;
    }
  EXPECT_GT(near, 30);
  EXPECT_EQ(far, 0);
  EXPECT_GT(cyan, 20);
  // The marked structure itself is left visible.
  EXPECT_EQ(std::memcmp(a.At(px, py), b.At(px, py), 3), 0);
}

TEST_F(SecondaryCaptureTest, ReferencesTheFrameOfAMultiFrameSource) {
  SourceImage source = WriteSource("mf.dcm", 128, 128, 3);
  source.frame = 2;
  auto sc = BuildSecondaryCapture(source, nullptr, {}, algorithm_, identity_, when_);
  ASSERT_TRUE(sc.ok()) << sc.status();
  const std::string path = Save(*sc, "sc.dcm");
  const std::string report = Dciodvfy(path);
  EXPECT_EQ(ErrorLines(report), 0) << report;
  DcmFileFormat ff;
  ASSERT_TRUE(ff.loadFile(path.c_str()).good());
  DcmItem* ref = nullptr;
  ASSERT_TRUE(ff.getDataset()->findAndGetSequenceItem(DCM_SourceImageSequence, ref, 0).good());
  EXPECT_EQ(Str(ref, DCM_ReferencedFrameNumber), "2");

  auto plain = DecodeImageFile(source.path, {});
  ASSERT_TRUE(plain.ok());
  const Rgb8 img = PixelsOf(path);
  ASSERT_EQ(img.width, 256);  // narrow sources are padded for the banner
  const int banner = img.height - 128;
  EXPECT_EQ(img.At(5, banner + 5)[0], Grey8(plain->frames[1].pixels[5 * 128 + 5]));
  EXPECT_NE(plain->frames[1].pixels[5 * 128 + 5], plain->frames[0].pixels[5 * 128 + 5]);

  SourceImage single = WriteSource("ct.dcm", 128, 128);
  single.frame = 1;
  auto single_sc = BuildSecondaryCapture(single, nullptr, {}, algorithm_, identity_, when_);
  ASSERT_TRUE(single_sc.ok()) << single_sc.status();
  const std::string single_path = Save(*single_sc, "single.dcm");
  const std::string single_report = Dciodvfy(single_path);
  EXPECT_EQ(ErrorLines(single_report), 0) << single_report;
  DcmFileFormat single_ff;
  ASSERT_TRUE(single_ff.loadFile(single_path.c_str()).good());
  ASSERT_TRUE(single_ff.getDataset()->findAndGetSequenceItem(DCM_SourceImageSequence, ref, 0).good());
  EXPECT_FALSE(ref->tagExists(DCM_ReferencedFrameNumber));

  source.frame = 4;
  EXPECT_EQ(BuildSecondaryCapture(source, nullptr, {}, algorithm_, identity_, when_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SecondaryCaptureTest, LargeSourcesAreDownscaled) {
  const SourceImage source = WriteSource("wide.dcm", 300, 2600);
  auto sc = BuildSecondaryCapture(source, nullptr, {MakeFinding(0.5, true)}, algorithm_, identity_, when_);
  ASSERT_TRUE(sc.ok()) << sc.status();
  const std::string path = Save(*sc, "sc.dcm");
  const std::string report = Dciodvfy(path);
  EXPECT_EQ(ErrorLines(report), 0) << report;
  const Rgb8 img = PixelsOf(path);
  EXPECT_EQ(img.width, 2048);
  int banner = 0;
  while (banner < img.height && img.At(0, banner)[0] == 24 && img.At(0, banner)[2] == 24) ++banner;
  EXPECT_EQ(img.height - banner, 236);  // 300 * 2048 / 2600, rounded
}

TEST_F(SecondaryCaptureTest, LongModelNamesKeepTheDisclaimer) {
  const SourceImage source = WriteSource("ct.dcm", 256, 256);
  algorithm_.model_name = "a-very-long-model-name-that-goes-on-and-on-and-on";
  auto sc = BuildSecondaryCapture(source, nullptr, {}, algorithm_, identity_, when_);
  ASSERT_TRUE(sc.ok()) << sc.status();
  DcmFileFormat ff;
  ASSERT_TRUE(ff.loadFile(Save(*sc, "sc.dcm").c_str()).good());
  const std::string description = Str(ff.getDataset(), DCM_SeriesDescription);
  EXPECT_LE(description.size(), 64u);
  EXPECT_EQ(description.rfind("AI RESULT (a-very-long", 0), 0u) << description;
  EXPECT_NE(description.find(") - FOR REVIEW, NOT A DIAGNOSIS"), std::string::npos) << description;
}

TEST_F(SecondaryCaptureTest, BadInputsAreRefused) {
  const SourceImage source = WriteSource("ct.dcm", 256, 256);
  Heatmap heatmap;
  heatmap.rows = 4;
  heatmap.columns = 4;
  heatmap.values.assign(15, 0.5f);
  EXPECT_EQ(BuildSecondaryCapture(source, &heatmap, {}, algorithm_, identity_, when_).status().code(),
            absl::StatusCode::kInvalidArgument);
  SourceImage missing = source;
  missing.path = Path("missing.dcm");
  EXPECT_FALSE(BuildSecondaryCapture(missing, nullptr, {}, algorithm_, identity_, when_).ok());
}

}  // namespace
}  // namespace secondread::scp
