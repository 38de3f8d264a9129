// The Segmentation writer against series written by tools/gen_series.py and
// read by the series reader: every frame's position is compared with the
// source instance (or frame) it references, read here straight from the
// source file, and every segment pixel with the label map.
#include "scp/objects/segmentation.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "nlohmann/json.hpp"
#include "scp/pixels/series_reader.h"
#include "tests/unit/support/dicom_checks.h"

namespace secondread::scp {
namespace {

using secondread::test_support::DciodvfyErrors;
using secondread::test_support::Get;

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<double> GetDoubles(DcmItem& item, const DcmTagKey& tag) {
  std::vector<double> out;
  Float64 v = 0;
  for (unsigned long i = 0; item.findAndGetFloat64(tag, v, i).good(); ++i) out.push_back(v);
  return out;
}

DcmItem* Child(DcmItem& item, const DcmTagKey& sequence, unsigned long index = 0) {
  DcmItem* child = nullptr;
  if (item.findAndGetSequenceItem(sequence, child, static_cast<signed long>(index)).bad()) return nullptr;
  return child;
}

// The Image Position (Patient) of a source frame, read from its file without
// the series reader: the top-level attribute of a single-frame image, the
// per-frame (else shared) Plane Position of a multi-frame one.
std::vector<double> SourcePosition(const std::string& path, uint32_t frame) {
  DcmFileFormat file;
  EXPECT_TRUE(file.loadFile(path.c_str()).good()) << path;
  DcmDataset& ds = *file.getDataset();
  if (frame == 0) return GetDoubles(ds, DCM_ImagePositionPatient);
  DcmItem* per_frame = Child(ds, DCM_PerFrameFunctionalGroupsSequence, frame - 1);
  if (per_frame != nullptr) {
    if (DcmItem* plane = Child(*per_frame, DCM_PlanePositionSequence))
      return GetDoubles(*plane, DCM_ImagePositionPatient);
  }
  DcmItem* shared = Child(ds, DCM_SharedFunctionalGroupsSequence);
  if (shared != nullptr) {
    if (DcmItem* plane = Child(*shared, DCM_PlanePositionSequence)) return GetDoubles(*plane, DCM_ImagePositionPatient);
  }
  return {};
}

// One frame of a written SEG as read back.
struct SegFrame {
  std::vector<double> position;
  std::string source_class;
  std::string source_uid;
  uint32_t source_frame = 0;
  uint16_t segment = 0;
  std::vector<uint8_t> pixels;
};

struct ParsedSeg {
  DcmFileFormat file;
  std::vector<SegFrame> frames;
  uint32_t rows = 0, columns = 0;
};

::testing::AssertionResult Parse(const std::string& part10, ParsedSeg& out) {
  DcmInputBufferStream stream;
  stream.setBuffer(part10.data(), static_cast<offile_off_t>(part10.size()));
  stream.setEos();
  out.file.transferInit();
  if (out.file.read(stream).bad()) return ::testing::AssertionFailure() << "unreadable Part 10";
  out.file.transferEnd();
  DcmDataset& ds = *out.file.getDataset();
  Uint16 rows = 0, columns = 0, bits = 0;
  ds.findAndGetUint16(DCM_Rows, rows);
  ds.findAndGetUint16(DCM_Columns, columns);
  ds.findAndGetUint16(DCM_BitsAllocated, bits);
  out.rows = rows;
  out.columns = columns;
  const long frames = std::atol(Get(ds, DCM_NumberOfFrames).c_str());
  const Uint8* data = nullptr;
  unsigned long length = 0;
  if (ds.findAndGetUint8Array(DCM_PixelData, data, &length).bad()) {
    return ::testing::AssertionFailure() << "no Pixel Data";
  }
  const size_t pixels = size_t{rows} * columns;
  const size_t needed = bits == 1 ? (pixels * frames + 7) / 8 : pixels * frames;
  if (length < needed || length > needed + 1) {
    return ::testing::AssertionFailure() << "Pixel Data has " << length << " bytes for " << needed;
  }
  for (long f = 0; f < frames; ++f) {
    DcmItem* item = Child(ds, DCM_PerFrameFunctionalGroupsSequence, static_cast<unsigned long>(f));
    if (item == nullptr) return ::testing::AssertionFailure() << "frame " << f << " has no functional groups";
    SegFrame frame;
    if (DcmItem* plane = Child(*item, DCM_PlanePositionSequence))
      frame.position = GetDoubles(*plane, DCM_ImagePositionPatient);
    DcmItem* derivation = Child(*item, DCM_DerivationImageSequence);
    DcmItem* source = derivation == nullptr ? nullptr : Child(*derivation, DCM_SourceImageSequence);
    if (source == nullptr) return ::testing::AssertionFailure() << "frame " << f << " has no source image";
    DcmItem* derivation_code = Child(*derivation, DCM_DerivationCodeSequence);
    DcmItem* purpose = Child(*source, DCM_PurposeOfReferenceCodeSequence);
    if (derivation_code == nullptr || purpose == nullptr || Get(*derivation_code, DCM_CodeValue) != "113076" ||
        Get(*derivation_code, DCM_CodingSchemeDesignator) != "DCM" ||
        Get(*derivation_code, DCM_CodeMeaning) != "Segmentation" || Get(*purpose, DCM_CodeValue) != "121322" ||
        Get(*purpose, DCM_CodingSchemeDesignator) != "DCM" ||
        Get(*purpose, DCM_CodeMeaning) != "Source image for image processing operation") {
      return ::testing::AssertionFailure() << "frame " << f << " has wrong derivation or purpose codes";
    }
    frame.source_class = Get(*source, DCM_ReferencedSOPClassUID);
    frame.source_uid = Get(*source, DCM_ReferencedSOPInstanceUID);
    frame.source_frame = static_cast<uint32_t>(std::atol(Get(*source, DCM_ReferencedFrameNumber).c_str()));
    DcmItem* segment = Child(*item, DCM_SegmentIdentificationSequence);
    Uint16 number = 0;
    if (segment != nullptr) segment->findAndGetUint16(DCM_ReferencedSegmentNumber, number);
    frame.segment = number;
    // Unpacked here, not by DCMTK: BINARY frames follow one another bit by
    // bit (PS3.5 8.1.1), with no padding at frame ends.
    frame.pixels.resize(pixels);
    for (size_t p = 0; p < pixels; ++p) {
      if (bits == 1) {
        const size_t bit = static_cast<size_t>(f) * pixels + p;
        frame.pixels[p] = (data[bit / 8] >> (bit % 8)) & 1;
      } else {
        frame.pixels[p] = data[static_cast<size_t>(f) * pixels + p];
      }
    }
    out.frames.push_back(std::move(frame));
  }
  return ::testing::AssertionSuccess();
}

class SegmentationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "seg-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    options_.scratch_dir = dir_ + "/scratch";
    fs::create_directories(options_.scratch_dir);
    algorithm_.model_name = "synthetic-lesion-3d";
    algorithm_.model_version = "2";
    algorithm_.software_version = "0.1.0";
    read_ = {"", "ct-volume", "synthetic-lesion-3d", "2", ""};
    when_ = {"20240131", "101500"};
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Generates a series, reads its one volume and lists its images.
  Volume Generate(const std::string& name, const std::string& args) {
    const std::string out = dir_ + "/" + name;
    const std::string cmd =
        "/usr/bin/python3 " SECONDREAD_SOURCE_DIR "/tools/gen_series.py " + out + " " + args + " --seed 7";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream in(out + "/manifest.json");
    const json m = json::parse(in);
    std::vector<std::string> paths;
    series_.clear();
    by_uid_.clear();
    for (const auto& f : m["files"]) {
      const std::string path = out + "/" + f.get<std::string>();
      paths.push_back(path);
      DcmFileFormat file;
      EXPECT_TRUE(file.loadFile(path.c_str()).good());
      DcmDataset& ds = *file.getDataset();
      SourceImage image;
      image.path = path;
      image.sop_class_uid = Get(ds, DCM_SOPClassUID);
      image.sop_instance_uid = Get(ds, DCM_SOPInstanceUID);
      image.series_instance_uid = Get(ds, DCM_SeriesInstanceUID);
      series_.push_back(image);
      study_uid_ = Get(ds, DCM_StudyInstanceUID);
      frame_of_reference_ = Get(ds, DCM_FrameOfReferenceUID);
    }
    for (const SourceImage& image : series_) by_uid_[image.sop_instance_uid] = image;
    auto volumes = ReadSeriesVolumes(paths, options_);
    EXPECT_TRUE(volumes.ok()) << volumes.status();
    if (!volumes.ok() || volumes->empty()) return Volume{};
    read_.study_uid = study_uid_;
    return (*volumes)[0];
  }

  ResultIdentity Identity(const Volume& volume) {
    ResultIdentity identity;
    identity.sop_instance_uid = ReadSegUid(read_, volume);
    identity.series_instance_uid = ReadSeriesUid(read_, "seg");
    identity.series_number = kSegmentationSeriesNumber;
    return identity;
  }

  absl::StatusOr<BuiltObject> Build(const Volume& volume, const SegmentationResult& result) {
    return BuildSegmentation(volume, series_, result, algorithm_, Identity(volume), when_);
  }

  std::string Write(const BuiltObject& object, const std::string& name) {
    const std::string path = dir_ + "/" + name + ".dcm";
    std::ofstream out(path, std::ios::binary);
    out.write(object.part10.data(), static_cast<std::streamsize>(object.part10.size()));
    return path;
  }

  // The checks every SEG must pass: dciodvfy, the study, the Frame of
  // Reference, and per frame the position of the exact source frame it
  // references and the pixels of `expected(segment, k, p)`.
  template <typename Expected>
  void Verify(const BuiltObject& object, const Volume& volume, const std::string& name, Expected expected,
              size_t expected_frames) {
    const std::string path = Write(object, name);
    std::string report;
    const auto errors = DciodvfyErrors(path, &report);
    EXPECT_TRUE(errors.empty()) << report;

    ParsedSeg seg;
    ASSERT_TRUE(Parse(object.part10, seg));
    DcmDataset& ds = *seg.file.getDataset();
    EXPECT_EQ(Get(ds, DCM_SOPClassUID), UID_SegmentationStorage);
    EXPECT_EQ(Get(ds, DCM_Modality), "SEG");
    EXPECT_EQ(Get(ds, DCM_StudyInstanceUID), study_uid_);
    EXPECT_EQ(Get(ds, DCM_FrameOfReferenceUID), frame_of_reference_);
    EXPECT_EQ(Get(ds, DCM_SOPInstanceUID), object.sop_instance_uid);
    EXPECT_EQ(seg.rows, volume.rows);
    EXPECT_EQ(seg.columns, volume.columns);
    ASSERT_EQ(seg.frames.size(), expected_frames);

    // Shared orientation and spacing equal the source's.
    DcmItem* shared = Child(ds, DCM_SharedFunctionalGroupsSequence);
    ASSERT_NE(shared, nullptr);
    DcmItem* orientation = Child(*shared, DCM_PlaneOrientationSequence);
    DcmItem* measures = Child(*shared, DCM_PixelMeasuresSequence);
    ASSERT_NE(orientation, nullptr);
    ASSERT_NE(measures, nullptr);
    const std::vector<double> iop = GetDoubles(*orientation, DCM_ImageOrientationPatient);
    ASSERT_EQ(iop.size(), 6u);
    for (int a = 0; a < 3; ++a) {
      EXPECT_NEAR(iop[a], volume.row_direction[a], 1e-9);
      EXPECT_NEAR(iop[3 + a], volume.column_direction[a], 1e-9);
    }
    const std::vector<double> spacing = GetDoubles(*measures, DCM_PixelSpacing);
    ASSERT_EQ(spacing.size(), 2u);
    EXPECT_DOUBLE_EQ(spacing[0], volume.spacing_mm[1]);
    EXPECT_DOUBLE_EQ(spacing[1], volume.spacing_mm[2]);

    // Every source instance a frame derives from is listed in the Referenced
    // Series Sequence.
    std::set<std::string> listed;
    DcmItem* referenced_series = Child(ds, DCM_ReferencedSeriesSequence);
    ASSERT_NE(referenced_series, nullptr);
    EXPECT_EQ(Get(*referenced_series, DCM_SeriesInstanceUID), series_[0].series_instance_uid);
    for (unsigned long i = 0; DcmItem* item = Child(*referenced_series, DCM_ReferencedInstanceSequence, i); ++i) {
      listed.insert(Get(*item, DCM_ReferencedSOPInstanceUID));
    }

    // Index of each (instance, frame) in the volume.
    std::map<std::pair<std::string, uint32_t>, uint32_t> z_of;
    for (uint32_t k = 0; k < volume.depth; ++k) {
      z_of[{volume.sources[k].sop_instance_uid, volume.sources[k].frame_number}] = k;
    }
    size_t wrong_pixels = 0;
    for (size_t f = 0; f < seg.frames.size(); ++f) {
      const SegFrame& frame = seg.frames[f];
      auto source = by_uid_.find(frame.source_uid);
      ASSERT_NE(source, by_uid_.end()) << "frame " << f << " references an instance not in the series";
      EXPECT_EQ(frame.source_class, source->second.sop_class_uid);
      EXPECT_TRUE(listed.count(frame.source_uid)) << f;
      const std::vector<double> want = SourcePosition(source->second.path, frame.source_frame);
      ASSERT_EQ(want.size(), 3u);
      ASSERT_EQ(frame.position.size(), 3u);
      for (int a = 0; a < 3; ++a) EXPECT_EQ(frame.position[a], want[a]) << "frame " << f << " axis " << a;
      auto z = z_of.find({frame.source_uid, frame.source_frame});
      ASSERT_NE(z, z_of.end()) << "frame " << f << " references a frame the volume did not read";
      for (size_t p = 0; p < frame.pixels.size(); ++p) {
        const int want_pixel = expected(frame.segment, z->second, p);
        if (frame.pixels[p] != want_pixel && wrong_pixels++ < 5) {
          ADD_FAILURE() << "frame " << f << " (segment " << frame.segment << ", z " << z->second << ") pixel " << p
                        << ": " << int(frame.pixels[p]) << " != " << want_pixel;
        }
      }
    }
    EXPECT_EQ(wrong_pixels, 0u);
  }

  std::string dir_;
  VolumeOptions options_;
  AlgorithmInfo algorithm_;
  ReadIdentity read_;
  ContentTime when_;
  std::vector<SourceImage> series_;
  std::map<std::string, SourceImage> by_uid_;
  std::string study_uid_;
  std::string frame_of_reference_;
};

// An asymmetric label map: segment 1 a diagonal band on the middle slices,
// segment 2 one corner voxel of the last slice, so a flip, transpose or slice
// shift moves pixels.
std::vector<uint8_t> LabelMap(const Volume& v) {
  std::vector<uint8_t> labels(size_t{v.depth} * v.rows * v.columns, 0);
  for (uint32_t k = 1; k + 1 < v.depth; ++k) {
    for (uint32_t j = 0; j < v.rows; ++j) {
      for (uint32_t i = 0; i < v.columns; ++i) {
        if ((i + 2 * j + 3 * k) % 7 == 0 && i < v.columns - 2) labels[(size_t{k} * v.rows + j) * v.columns + i] = 1;
      }
    }
  }
  labels[(size_t{v.depth - 1} * v.rows + 0) * v.columns + (v.columns - 1)] = 2;
  return labels;
}

SegmentationResult TwoSegments() {
  SegmentationResult r;
  r.segments = {AbnormalStructureSegment("Lesion", segmentation_codes::kLesion),
                AbnormalStructureSegment("Hemorrhage", segmentation_codes::kHemorrhage)};
  return r;
}

// Frames the label map needs: a frame per segment and slice with a pixel.
size_t NonEmptyFrames(const Volume& v, const std::vector<uint8_t>& labels, int segments) {
  const size_t slice = size_t{v.rows} * v.columns;
  size_t n = 0;
  for (int s = 1; s <= segments; ++s) {
    bool any_in_segment = false;
    for (uint32_t k = 0; k < v.depth; ++k) {
      bool any = false;
      for (size_t p = 0; p < slice; ++p) any = any || labels[k * slice + p] == s;
      n += any ? 1 : 0;
      any_in_segment = any_in_segment || any;
    }
    if (!any_in_segment) ++n;  // the kept empty frame
  }
  return n;
}

TEST_F(SegmentationTest, AxialBinaryOnSourcePositions) {
  const Volume v = Generate("axial", "--modality CT --layout single --orientation axial");
  ASSERT_GT(v.depth, 2u);
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  auto seg = Build(v, r);
  ASSERT_TRUE(seg.ok()) << seg.status();
  const size_t slice = size_t{v.rows} * v.columns;
  Verify(
      *seg, v, "axial", [&](uint16_t s, uint32_t k, size_t p) { return r.label_map[k * slice + p] == s ? 1 : 0; },
      NonEmptyFrames(v, r.label_map, 2));
}

TEST_F(SegmentationTest, ObliqueNonSquarePixelsShuffledBinary) {
  const Volume v =
      Generate("oblique",
               "--modality CT --layout single --orientation oblique --pixel-spacing 0.8,0.6 --spacing 1.2345678901 "
               "--shuffle");
  ASSERT_GT(v.depth, 2u);
  ASSERT_NE(v.spacing_mm[1], v.spacing_mm[2]);
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  auto seg = Build(v, r);
  ASSERT_TRUE(seg.ok()) << seg.status();
  const size_t slice = size_t{v.rows} * v.columns;
  Verify(
      *seg, v, "oblique", [&](uint16_t s, uint32_t k, size_t p) { return r.label_map[k * slice + p] == s ? 1 : 0; },
      NonEmptyFrames(v, r.label_map, 2));
}

// An Enhanced MR source: each frame references the one object and its own
// frame number, and takes that frame's position.
TEST_F(SegmentationTest, EnhancedMultiFrameSourceReferencesFrames) {
  const Volume v = Generate("enhanced", "--modality MR --layout enhanced --orientation oblique --shuffle");
  ASSERT_GT(v.depth, 2u);
  ASSERT_GT(v.sources[0].frame_number, 0u);
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  auto seg = Build(v, r);
  ASSERT_TRUE(seg.ok()) << seg.status();
  const size_t slice = size_t{v.rows} * v.columns;
  Verify(
      *seg, v, "enhanced", [&](uint16_t s, uint32_t k, size_t p) { return r.label_map[k * slice + p] == s ? 1 : 0; },
      NonEmptyFrames(v, r.label_map, 2));

  // pydicom, independently of DCMTK on both sides: every frame's position
  // equals that of the source frame it references, read from the source.
  const std::string script = dir_ + "/positions.py";
  {
    std::ofstream py(script);
    py << "import sys, glob, pydicom\n"
          "seg = pydicom.dcmread(sys.argv[1])\n"
          "sources = {}\n"
          "for path in glob.glob(sys.argv[2] + '/*.dcm'):\n"
          "    ds = pydicom.dcmread(path)\n"
          "    sources[ds.SOPInstanceUID] = ds\n"
          "bad = 0\n"
          "for i, f in enumerate(seg.PerFrameFunctionalGroupsSequence):\n"
          "    ref = f.DerivationImageSequence[0].SourceImageSequence[0]\n"
          "    src = sources[ref.ReferencedSOPInstanceUID]\n"
          "    n = int(ref.ReferencedFrameNumber)\n"
          "    want = src.PerFrameFunctionalGroupsSequence[n - 1].PlanePositionSequence[0].ImagePositionPatient\n"
          "    got = f.PlanePositionSequence[0].ImagePositionPatient\n"
          "    if [float(x) for x in got] != [float(x) for x in want]:\n"
          "        bad += 1\n"
          "        print('frame', i, got, want)\n"
          "print('frames', len(seg.PerFrameFunctionalGroupsSequence), 'bad', bad)\n";
  }
  const std::string command = "/usr/bin/python3 " + script + " " + dir_ + "/enhanced.dcm " + dir_ + "/enhanced 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  ASSERT_EQ(pclose(pipe), 0) << output;
  ParsedSeg parsed;
  ASSERT_TRUE(Parse(seg->part10, parsed));
  EXPECT_EQ(output, "frames " + std::to_string(parsed.frames.size()) + " bad 0\n");
  std::set<uint32_t> frames;
  for (const SegFrame& f : parsed.frames) frames.insert(f.source_frame);
  EXPECT_GT(frames.size(), 1u);
  EXPECT_EQ(frames.count(0), 0u);
}

// 13 x 11 = 143 pixels a frame: every frame after the first starts inside a
// byte. pydicom unpacks the same Pixel Data independently.
TEST_F(SegmentationTest, OddSizeBinaryFramesPackedAcrossFrameBoundaries) {
  const Volume v = Generate("odd", "--modality CT --layout single --rows 13 --columns 11 --slices 6");
  ASSERT_EQ(v.rows, 13u);
  ASSERT_EQ(v.columns, 11u);
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  auto seg = Build(v, r);
  ASSERT_TRUE(seg.ok()) << seg.status();
  const size_t slice = size_t{v.rows} * v.columns;
  const size_t frames = NonEmptyFrames(v, r.label_map, 2);
  ASSERT_GT(frames, 2u);
  Verify(
      *seg, v, "odd", [&](uint16_t s, uint32_t k, size_t p) { return r.label_map[k * slice + p] == s ? 1 : 0; },
      frames);

  // pydicom: the frames, each as 143 characters of 0/1, one line a frame.
  const std::string path = dir_ + "/odd.dcm";
  const std::string script = dir_ + "/unpack.py";
  {
    std::ofstream py(script);
    py << "import sys, pydicom\n"
          "ds = pydicom.dcmread(sys.argv[1])\n"
          "a = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows * ds.Columns)\n"
          "for f in range(a.shape[0]):\n"
          "    print(''.join(str(int(x)) for x in a[f]))\n";
  }
  FILE* pipe = popen(("/usr/bin/python3 " + script + " " + path + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  ASSERT_EQ(pclose(pipe), 0) << output;
  ParsedSeg parsed;
  ASSERT_TRUE(Parse(seg->part10, parsed));
  std::istringstream lines(output);
  std::string line;
  size_t f = 0;
  std::map<std::pair<std::string, uint32_t>, uint32_t> z_of;
  for (uint32_t k = 0; k < v.depth; ++k) z_of[{v.sources[k].sop_instance_uid, v.sources[k].frame_number}] = k;
  while (std::getline(lines, line)) {
    ASSERT_LT(f, parsed.frames.size()) << output;
    ASSERT_EQ(line.size(), slice) << line;
    const uint32_t k = z_of.at({parsed.frames[f].source_uid, parsed.frames[f].source_frame});
    for (size_t p = 0; p < slice; ++p) {
      const char want = r.label_map[k * slice + p] == parsed.frames[f].segment ? '1' : '0';
      ASSERT_EQ(line[p], want) << "pydicom: frame " << f << " pixel " << p;
    }
    ++f;
  }
  EXPECT_EQ(f, parsed.frames.size());
}

TEST_F(SegmentationTest, FractionalProbabilities) {
  const Volume v = Generate("fractional", "--modality CT --layout single --orientation oblique --shuffle");
  SegmentationResult r;
  r.segments = {AbnormalStructureSegment("Mass", segmentation_codes::kMass)};
  const size_t slice = size_t{v.rows} * v.columns;
  std::vector<float> p(v.depth * slice, 0.0f);
  // Probabilities rising along columns and rows on all but the first slice.
  for (uint32_t k = 1; k < v.depth; ++k) {
    for (uint32_t j = 0; j < v.rows; ++j) {
      for (uint32_t i = 0; i < v.columns; ++i) {
        p[(k * v.rows + j) * v.columns + i] = static_cast<float>((i + 3 * j + k) % 11) / 10.0f;
      }
    }
  }
  r.probabilities = {p};
  auto seg = Build(v, r);
  ASSERT_TRUE(seg.ok()) << seg.status();
  Verify(
      *seg, v, "fractional",
      [&](uint16_t s, uint32_t k, size_t q) {
        return s == 1 ? static_cast<int>(std::lround(p[k * slice + q] * 255)) : -1;
      },
      v.depth - 1);
  ParsedSeg parsed;
  ASSERT_TRUE(Parse(seg->part10, parsed));
  DcmDataset& ds = *parsed.file.getDataset();
  EXPECT_EQ(Get(ds, DCM_SegmentationType), "FRACTIONAL");
  EXPECT_EQ(Get(ds, DCM_SegmentationFractionalType), "PROBABILITY");
  EXPECT_EQ(Get(ds, DCM_MaximumFractionalValue), "255");
  EXPECT_EQ(Get(ds, DCM_BitsAllocated), "8");

  r.probabilities[0][5] = 1.5f;
  EXPECT_EQ(Build(v, r).status().code(), absl::StatusCode::kInvalidArgument);
}

// Frames without a pixel of their segment are left out; a segment with no
// pixel keeps one empty frame on the first slice.
TEST_F(SegmentationTest, EmptyFramesOmittedEmptySegmentKeepsOneFrame) {
  const Volume v = Generate("empty", "--modality CT --layout single --slices 6");
  SegmentationResult r = TwoSegments();
  const size_t slice = size_t{v.rows} * v.columns;
  r.label_map.assign(v.depth * slice, 0);
  r.label_map[2 * slice + 7] = 1;
  r.label_map[4 * slice + 8] = 1;
  auto seg = Build(v, r);
  ASSERT_TRUE(seg.ok()) << seg.status();
  Verify(
      *seg, v, "empty", [&](uint16_t s, uint32_t k, size_t p) { return r.label_map[k * slice + p] == s ? 1 : 0; }, 3);
  ParsedSeg parsed;
  ASSERT_TRUE(Parse(seg->part10, parsed));
  ASSERT_EQ(parsed.frames.size(), 3u);
  EXPECT_EQ(parsed.frames[0].segment, 1);
  EXPECT_EQ(parsed.frames[0].source_uid, v.sources[2].sop_instance_uid);
  EXPECT_EQ(parsed.frames[1].source_uid, v.sources[4].sop_instance_uid);
  EXPECT_EQ(parsed.frames[2].segment, 2);
  EXPECT_EQ(parsed.frames[2].source_uid, v.sources[0].sop_instance_uid);
  for (uint8_t px : parsed.frames[2].pixels) ASSERT_EQ(px, 0);
  DcmItem* second = Child(*parsed.file.getDataset(), DCM_SegmentSequence, 1);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(Get(*second, DCM_SegmentLabel), "Hemorrhage");
}

// Every UID in the object, in order of appearance.
void CollectUids(DcmItem& item, std::vector<std::string>& out) {
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* element = item.getElement(i);
    if (element->ident() == EVR_UI) {
      OFString value;
      element->getOFStringArray(value);
      out.push_back(value.c_str());
    } else if (element->ident() == EVR_SQ) {
      auto* sequence = static_cast<DcmSequenceOfItems*>(element);
      for (unsigned long k = 0; k < sequence->card(); ++k) CollectUids(*sequence->getItem(k), out);
    }
  }
}

TEST_F(SegmentationTest, DeterministicUids) {
  const Volume v = Generate("det", "--modality CT --layout single --slices 4");
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  auto first = Build(v, r);
  auto second = Build(v, r);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  ParsedSeg a, b;
  ASSERT_TRUE(Parse(first->part10, a));
  ASSERT_TRUE(Parse(second->part10, b));
  std::vector<std::string> uids_a, uids_b;
  CollectUids(*a.file.getDataset(), uids_a);
  CollectUids(*b.file.getDataset(), uids_b);
  EXPECT_EQ(uids_a, uids_b);
  EXPECT_EQ(first->part10, second->part10);
  EXPECT_EQ(Get(*a.file.getDataset(), DCM_SOPInstanceUID), ReadSegUid(read_, v));
  // Another model version is another object.
  ReadIdentity other = read_;
  other.version = "3";
  EXPECT_NE(ReadSegUid(other, v), ReadSegUid(read_, v));
  EXPECT_NE(ReadSegUid(read_, v), ReadSrUid(read_, {}));
}

TEST_F(SegmentationTest, RefusesResampledVolume) {
  options_.allow_resample = true;
  const Volume v = Generate("nonuniform", "--modality CT --layout single --defect nonuniform --slices 8");
  ASSERT_TRUE(v.resampled);
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  auto seg = Build(v, r);
  ASSERT_FALSE(seg.ok());
  EXPECT_EQ(seg.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RefusalCode(seg.status()), "resampled_volume");
  // A single interpolated slice is enough.
  options_.allow_resample = false;
  Volume uniform = Generate("uniform", "--modality CT --layout single --slices 4");
  uniform.sources[1].interpolated = true;
  r.label_map = LabelMap(uniform);
  EXPECT_EQ(RefusalCode(Build(uniform, r).status()), "resampled_volume");
}

// An unevenly spaced series read through a uniform grid: the label map goes
// back onto the source slices, and every frame lies exactly at its source
// instance's position, 2.5 mm apart in the first half and 3 mm in the second,
// holding the labels of the grid slice nearest to it (computed here from the
// source files' positions, not by the code under test).
TEST_F(SegmentationTest, UnevenlySpacedSourcesKeepTheirOwnPositions) {
  options_.allow_resample = true;
  Volume grid = Generate("uneven",
                         "--modality CT --layout single --orientation oblique --pixel-spacing 0.8,0.6 "
                         "--defect nonuniform --slices 12 --shuffle");
  ASSERT_TRUE(grid.resampled);
  ASSERT_EQ(grid.depth, 13u);
  ASSERT_NEAR(grid.spacing_mm[0], 2.5, 1e-9);
  const std::vector<uint8_t> grid_labels = LabelMap(grid);
  SegmentationResult r = TwoSegments();
  auto on_sources = LabelMapOnSourceSlices(grid, grid_labels);
  ASSERT_TRUE(on_sources.ok()) << on_sources.status();
  r.label_map = *on_sources;
  auto taken = TakeSourceSlices(grid);
  ASSERT_TRUE(taken.ok()) << taken.status();
  const Volume& v = *taken;
  ASSERT_EQ(v.depth, 12u);

  // The grid slice nearest each source slice, from the file's position.
  std::vector<uint32_t> nearest(v.depth);
  std::set<long> gaps;
  double previous = 0;
  for (uint32_t k = 0; k < v.depth; ++k) {
    const std::vector<double> at = SourcePosition(by_uid_[v.sources[k].sop_instance_uid].path, 0);
    ASSERT_EQ(at.size(), 3u);
    double along = 0;
    for (int a = 0; a < 3; ++a) along += (at[a] - v.origin[a]) * v.normal[a];
    nearest[k] = static_cast<uint32_t>(std::lround(along / 2.5));
    if (k > 0) gaps.insert(std::lround(10 * (along - previous)));
    previous = along;
  }
  EXPECT_EQ(gaps, (std::set<long>{25, 30})) << "the sources are not unevenly spaced";
  EXPECT_EQ(nearest[8], 8u);   // 21 mm
  EXPECT_EQ(nearest[9], 10u);  // 24 mm: grid slice 9 (22.5 mm) belongs to no source slice

  auto seg = Build(v, r);
  ASSERT_TRUE(seg.ok()) << seg.status();
  const size_t slice = size_t{v.rows} * v.columns;
  Verify(
      *seg, v, "uneven",
      [&](uint16_t s, uint32_t k, size_t p) { return grid_labels[nearest[k] * slice + p] == s ? 1 : 0; },
      NonEmptyFrames(v, r.label_map, 2));
  // No one spacing between slices is true of these.
  ParsedSeg parsed;
  ASSERT_TRUE(Parse(seg->part10, parsed));
  DcmItem* shared = Child(*parsed.file.getDataset(), DCM_SharedFunctionalGroupsSequence);
  ASSERT_NE(shared, nullptr);
  DcmItem* measures = Child(*shared, DCM_PixelMeasuresSequence);
  ASSERT_NE(measures, nullptr);
  EXPECT_FALSE(measures->tagExists(DCM_SpacingBetweenSlices));
  EXPECT_NEAR(std::atof(Get(*measures, DCM_SliceThickness).c_str()), 2.5, 1e-6);

  // Offsets that do not describe the sources are refused.
  Volume moved = v;
  moved.slice_offsets_mm[9] += 0.5;
  EXPECT_EQ(Build(moved, r).status().code(), absl::StatusCode::kInvalidArgument);
  moved.slice_offsets_mm.pop_back();
  EXPECT_EQ(Build(moved, r).status().code(), absl::StatusCode::kInvalidArgument);
}

// A volume whose geometry does not describe its sources is refused rather
// than written in the wrong place.
TEST_F(SegmentationTest, RefusesVolumeThatDisagreesWithSources) {
  Volume v = Generate("shifted", "--modality CT --layout single --slices 4");
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  Volume shifted = v;
  shifted.origin[0] += 1.0;
  EXPECT_EQ(Build(shifted, r).status().code(), absl::StatusCode::kInvalidArgument);
  Volume swapped = v;
  std::swap(swapped.sources[0], swapped.sources[1]);
  EXPECT_EQ(Build(swapped, r).status().code(), absl::StatusCode::kInvalidArgument);
  Volume foreign = v;
  foreign.sources[0].sop_instance_uid = "1.2.3.4";
  EXPECT_EQ(Build(foreign, r).status().code(), absl::StatusCode::kInvalidArgument);
  r.label_map[0] = 3;  // no segment 3
  EXPECT_EQ(Build(v, r).status().code(), absl::StatusCode::kInvalidArgument);
}

// Positions without a Frame of Reference place nothing: refused.
TEST_F(SegmentationTest, RefusesSeriesWithoutFrameOfReference) {
  const Volume v = Generate("nofor", "--modality CT --layout single --slices 4");
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  ASSERT_TRUE(Build(v, r).ok());
  for (const SourceImage& image : series_) {
    ASSERT_EQ(std::system(("dcmodify -nb -ea '(0020,0052)' '" + image.path + "' >/dev/null 2>&1").c_str()), 0);
  }
  auto seg = Build(v, r);
  EXPECT_EQ(seg.status().code(), absl::StatusCode::kInvalidArgument) << seg.status();
}

// The codes the writer offers and writes are PS3.16's: SNOMED CT values as
// CID 7150/7159 list them, DICOM codes as DCMTK's table has them.
TEST_F(SegmentationTest, CodedConcepts) {
  using namespace segmentation_codes;
  EXPECT_EQ(kMorphologicallyAbnormalStructure.value, "49755003");
  EXPECT_EQ(kLesion.value, "52988006");
  EXPECT_EQ(kMass.value, "4147007");
  EXPECT_EQ(kHemorrhage.value, "50960005");
  EXPECT_EQ(kNodule.value, "27925004");
  for (const CodedConcept* c : {&kMorphologicallyAbnormalStructure, &kLesion, &kMass, &kHemorrhage, &kNodule}) {
    EXPECT_EQ(c->scheme, "SCT");
  }
  const Volume v = Generate("codes", "--modality CT --layout single --slices 4");
  SegmentationResult r = TwoSegments();
  r.label_map = LabelMap(v);
  auto seg = Build(v, r);
  ASSERT_TRUE(seg.ok()) << seg.status();
  ParsedSeg parsed;
  ASSERT_TRUE(Parse(seg->part10, parsed));
  DcmDataset& ds = *parsed.file.getDataset();
  DcmItem* segment = Child(ds, DCM_SegmentSequence, 0);
  ASSERT_NE(segment, nullptr);
  EXPECT_EQ(Get(*segment, DCM_SegmentAlgorithmType), "AUTOMATIC");
  EXPECT_EQ(Get(*segment, DCM_SegmentAlgorithmName), "synthetic-lesion-3d");
  DcmItem* algorithm = Child(*segment, DCM_SegmentationAlgorithmIdentificationSequence);
  ASSERT_NE(algorithm, nullptr);
  EXPECT_EQ(Get(*algorithm, DCM_AlgorithmName), "synthetic-lesion-3d");
  EXPECT_EQ(Get(*algorithm, DCM_AlgorithmVersion), "2");
  DcmItem* family = Child(*algorithm, DCM_AlgorithmFamilyCodeSequence);
  ASSERT_NE(family, nullptr);
  const DSRBasicCodedEntry ai = CODE_DCM_ArtificialIntelligence;
  EXPECT_EQ(Get(*family, DCM_CodeValue), ai.CodeValue.c_str());
  EXPECT_EQ(Get(*family, DCM_CodeMeaning), ai.CodeMeaning.c_str());
  DcmItem* category = Child(*segment, DCM_SegmentedPropertyCategoryCodeSequence);
  DcmItem* type = Child(*segment, DCM_SegmentedPropertyTypeCodeSequence);
  ASSERT_NE(category, nullptr);
  ASSERT_NE(type, nullptr);
  EXPECT_EQ(Get(*category, DCM_CodeValue), "49755003");
  EXPECT_EQ(Get(*type, DCM_CodeValue), "52988006");
  EXPECT_EQ(Get(*type, DCM_CodeMeaning), "Lesion");
  DcmItem* equipment = Child(ds, DCM_ContributingEquipmentSequence);
  ASSERT_NE(equipment, nullptr);
  DcmItem* purpose = Child(*equipment, DCM_PurposeOfReferenceCodeSequence);
  ASSERT_NE(purpose, nullptr);
  const DSRBasicCodedEntry processing = CODE_DCM_ProcessingEquipment;
  EXPECT_EQ(Get(*purpose, DCM_CodeValue), processing.CodeValue.c_str());
  EXPECT_EQ(Get(*purpose, DCM_CodeMeaning), processing.CodeMeaning.c_str());
  EXPECT_NE(Get(ds, DCM_SeriesDescription).find("NOT A DIAGNOSIS"), std::string::npos);
  EXPECT_NE(Get(ds, DCM_ContentDescription).find("not a diagnosis"), std::string::npos);
  // Dimension Index: segment number, then Image Position (Patient).
  DcmItem* d0 = Child(ds, DCM_DimensionIndexSequence, 0);
  DcmItem* d1 = Child(ds, DCM_DimensionIndexSequence, 1);
  ASSERT_NE(d0, nullptr);
  ASSERT_NE(d1, nullptr);
  EXPECT_EQ(Get(*d0, DCM_DimensionIndexPointer), "(0062,000b)");
  EXPECT_EQ(Get(*d1, DCM_DimensionIndexPointer), "(0020,0032)");
}

}  // namespace
}  // namespace secondread::scp
