#include "scp/receive/dataset_reader.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcuid.h"

namespace secondread::scp {
namespace {

class DatasetReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/datasetreadertestXXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A Part 10 file as the receiver spools it: the meta header DCMTK writes
  // for the request, then the data set bytes exactly as received.
  std::string Spool(const char* transfer_syntax, const std::string& dataset) {
    DcmFileFormat ff;
    ff.getDataset()->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
    ff.getDataset()->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4");
    EXPECT_TRUE(ff.validateMetaInfo(DcmXfer(transfer_syntax).getXfer()).good());
    char buf[4096];
    DcmOutputBufferStream out(buf, sizeof buf);
    DcmMetaInfo* meta = ff.getMetaInfo();
    meta->transferInit();
    EXPECT_TRUE(meta->write(out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr).good());
    meta->transferEnd();
    void* written = nullptr;
    offile_off_t length = 0;
    out.flushBuffer(written, length);
    const std::string path = dir_ + "/instance.dcm";
    std::ofstream f(path, std::ios::binary);
    f.write(static_cast<const char*>(written), length);
    f.write(dataset.data(), static_cast<std::streamsize>(dataset.size()));
    return path;
  }

  std::string dir_;
};

// RFC 3629, which a PostgreSQL UTF-8 database holds to.
bool StrictUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == 0) return false;
      ++i;
      continue;
    }
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 2) return false;
      cp = cp << 6 | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += len;
  }
  return true;
}

// Found by fuzz/dataset_reader_fuzzer: an Explicit VR Big Endian data set
// whose Specific Character Set holds an encoded UTF-16 surrogate
// (ED A0 AF). DCMTK cannot convert from that character set, so the bytes
// reach the registry as they are, and PostgreSQL refuses the row (SQLSTATE
// 22021): the sender is answered with a processing failure and the study is
// never read.
TEST_F(DatasetReaderTest, FuzzedSurrogateInCharacterSetBecomesReplacementCharacters) {
  const std::string dataset(
      "\x00\x08\x00\x05\x43\x53\x00\x28\x00\xff\xed\xa0\xaf\x52\x20\x31\x30\x30\x00\x08\x00\x08\x43\x53\x00\x16\x4f"
      "\x52\x49\x47\x49\x4e\x41\x4c\x5c\x50\x52\x49\x4d\x41\x52\x59\x1c\x01\x08\x00\x05\x41",
      48);
  auto record = ReadInstanceRecord(Spool(UID_BigEndianExplicitTransferSyntax, dataset));
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_TRUE(StrictUtf8(record->specific_character_set));
  EXPECT_NE(record->specific_character_set.find("\xEF\xBF\xBD"), std::string::npos);
}

// Every byte sequence RFC 3629 rules out, in a text attribute of a data set
// that declares UTF-8: each bad byte becomes U+FFFD and the text around it
// stays.
TEST_F(DatasetReaderTest, TextIsStrictUtf8WhateverTheSenderWrote) {
  struct Case {
    const char* name;
    std::string bytes;
  };
  const Case cases[] = {
      {"surrogate", "\xED\xA0\x80"},
      {"overlong_three_bytes", "\xE0\x80\xAF"},
      {"overlong_four_bytes", "\xF0\x80\x80\xAF"},
      {"beyond_u10ffff", "\xF4\x90\x80\x80"},
      {"lead_f5", "\xF5\x80\x80\x80"},
      {"lead_f8", "\xF8\x88\x80\x80\x80"},
      {"truncated", "\xE2\x82"},
  };
  for (const Case& c : cases) {
    DcmFileFormat ff;
    DcmDataset* ds = ff.getDataset();
    ds->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
    ds->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
    ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4");
    const std::string name = "A" + c.bytes + "\xC3\xBC" + "B";  // U+00FC stays
    ds->putAndInsertString(DCM_PatientName, name.c_str());
    const std::string path = dir_ + "/" + c.name + ".dcm";
    ASSERT_TRUE(ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
    auto record = ReadInstanceRecord(path);
    ASSERT_TRUE(record.ok()) << c.name << ": " << record.status();
    EXPECT_TRUE(StrictUtf8(record->patient_name)) << c.name;
    EXPECT_EQ(record->patient_name.front(), 'A') << c.name;
    EXPECT_NE(record->patient_name.find("\xEF\xBF\xBD"), std::string::npos) << c.name;
    EXPECT_NE(record->patient_name.find("\xC3\xBC" "B"), std::string::npos) << c.name;
  }
  // Valid four-byte and three-byte characters are kept as they are.
  DcmFileFormat ff;
  ff.getDataset()->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
  ff.getDataset()->putAndInsertString(DCM_PatientName, "\xF0\x9F\x98\x80^\xE2\x82\xAC^\xF4\x8F\xBF\xBF");
  const std::string path = dir_ + "/valid.dcm";
  ASSERT_TRUE(ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
  auto record = ReadInstanceRecord(path);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->patient_name, "\xF0\x9F\x98\x80^\xE2\x82\xAC^\xF4\x8F\xBF\xBF");
}

TEST(OrientationLabelTest, NormalClosestAxisWithinTwentyDegrees) {
  EXPECT_EQ(OrientationLabel("1\\0\\0\\0\\1\\0"), "axial");
  EXPECT_EQ(OrientationLabel("1\\0\\0\\0\\0\\-1"), "coronal");
  EXPECT_EQ(OrientationLabel("0\\1\\0\\0\\0\\-1"), "sagittal");
  // Padding, a leading '+', exponents and rounding to six places are accepted.
  EXPECT_EQ(OrientationLabel(" +1.000000\\0e0\\0 \\0\\0.999999\\-0.000001 "), "axial");
  // A head CT with its gantry tilted 19 degrees stays axial; at 21 degrees
  // it is oblique. Column (0, cos t, sin t): the normal is 90-t from y.
  auto tilted = [](double degrees) {
    const double t = degrees * M_PI / 180;
    return "1\\0\\0\\0\\" + std::to_string(std::cos(t)) + "\\" + std::to_string(std::sin(t));
  };
  EXPECT_EQ(OrientationLabel(tilted(19)), "axial");
  EXPECT_EQ(OrientationLabel(tilted(21)), "oblique");
  EXPECT_EQ(OrientationLabel(tilted(90 - 19)), "coronal");
  EXPECT_EQ(OrientationLabel(tilted(45)), "oblique");
  // The oblique plane tools/gen_series.py writes.
  EXPECT_EQ(OrientationLabel("0.6\\0.8\\0\\-0.48\\0.36\\-0.8"), "oblique");
}

TEST(OrientationLabelTest, MalformedIsUnknown) {
  for (const char* bad : {"", "1\\0\\0\\0\\1", "1\\0\\0\\0\\1\\0\\0", "1\\0\\0\\0\\x\\0", "1\\0\\0\\0\\1\\",
                          "nan\\0\\0\\0\\1\\0", "inf\\0\\0\\0\\1\\0", "1e999\\0\\0\\0\\1\\0", "2\\0\\0\\0\\1\\0",
                          "1\\0\\0\\1\\0\\0", "0\\0\\0\\0\\0\\0", "1 0\\0\\0\\0\\1\\0", "0x1\\0\\0\\0\\1\\0"}) {
    EXPECT_EQ(OrientationLabel(bad), "") << bad;
  }
  EXPECT_EQ(SliceThicknessMm("1.25 "), 1.25);
  EXPECT_EQ(SliceThicknessMm("1000"), 1000);
  for (const char* bad : {"", "0", "-1", "1001", "1\\2", "abc", "nan", "1,5"}) {
    EXPECT_EQ(SliceThicknessMm(bad), -1) << bad;
  }
}

// Classic objects carry Image Orientation (Patient) and Slice Thickness
// themselves; enhanced ones in the shared functional groups, or in every
// frame's when they agree. A malformed orientation is stored as unknown and
// the instance is still read.
TEST_F(DatasetReaderTest, OrientationAndThicknessFromDataSetOrFunctionalGroups) {
  auto save = [&](DcmFileFormat& ff, const std::string& name) {
    ff.getDataset()->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    ff.getDataset()->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4");
    const std::string path = dir_ + "/" + name + ".dcm";
    EXPECT_TRUE(ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
    return path;
  };
  {
    DcmFileFormat ff;
    ff.getDataset()->putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\0\\-1");
    ff.getDataset()->putAndInsertString(DCM_SliceThickness, "2.5");
    auto r = ReadInstanceRecord(save(ff, "classic"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->orientation, "coronal");
    EXPECT_EQ(r->slice_thickness_mm, 2.5);
  }
  {
    DcmFileFormat ff;
    ff.getDataset()->putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1");
    ff.getDataset()->putAndInsertString(DCM_SliceThickness, "thick");
    auto r = ReadInstanceRecord(save(ff, "malformed"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->orientation, "");
    EXPECT_EQ(r->slice_thickness_mm, -1);
  }
  {
    DcmFileFormat ff;
    DcmItem* shared = nullptr;
    DcmItem* item = nullptr;
    ASSERT_TRUE(ff.getDataset()->findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0).good());
    ASSERT_TRUE(shared->findOrCreateSequenceItem(DCM_PlaneOrientationSequence, item, 0).good());
    item->putAndInsertString(DCM_ImageOrientationPatient, "0\\1\\0\\0\\0\\-1");
    ASSERT_TRUE(shared->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, item, 0).good());
    item->putAndInsertString(DCM_SliceThickness, "0.625");
    item->putAndInsertString(DCM_PixelSpacing, "0.5\\0.5");
    ff.getDataset()->putAndInsertString(DCM_NumberOfFrames, "3");
    auto r = ReadInstanceRecord(save(ff, "shared"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->orientation, "sagittal");
    EXPECT_EQ(r->slice_thickness_mm, 0.625);
    EXPECT_EQ(r->number_of_frames, 3);
  }
  for (bool agree : {true, false}) {
    DcmFileFormat ff;
    for (int k = 0; k < 3; ++k) {
      DcmItem* frame = nullptr;
      DcmItem* item = nullptr;
      ASSERT_TRUE(ff.getDataset()->findOrCreateSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, k).good());
      ASSERT_TRUE(frame->findOrCreateSequenceItem(DCM_PlaneOrientationSequence, item, 0).good());
      item->putAndInsertString(DCM_ImageOrientationPatient,
                               agree || k < 2 ? "1\\0\\0\\0\\1\\0" : "0\\1\\0\\0\\0\\-1");
      ASSERT_TRUE(frame->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, item, 0).good());
      item->putAndInsertString(DCM_SliceThickness, agree || k < 2 ? "1" : "3");
    }
    auto r = ReadInstanceRecord(save(ff, agree ? "per-frame" : "per-frame-mixed"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->orientation, agree ? "axial" : "") << agree;
    EXPECT_EQ(r->slice_thickness_mm, agree ? 1.0 : -1.0) << agree;
  }
}

}  // namespace
}  // namespace secondread::scp
