// Lesion measurements, the volumetric SR and the key-slice Secondary Capture
// against series with a sphere of known centre, radius and contrast written
// by tools/gen_series.py --lesion. Expected values come from the generator's
// value formula and geometry (its manifest), not from the series reader.
#include "scp/objects/volumetric_results.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "nlohmann/json.hpp"
#include "scp/objects/derived_uid.h"
#include "scp/objects/segmentation.h"
#include "scp/pixels/series_reader.h"
#include "tests/unit/support/dicom_checks.h"

namespace secondread::scp {
namespace {

using secondread::test_support::DciodvfyErrors;
using secondread::test_support::Get;

namespace fs = std::filesystem;
using nlohmann::json;

DcmItem* Child(DcmItem& item, const DcmTagKey& sequence, unsigned long index = 0) {
  DcmItem* child = nullptr;
  if (item.findAndGetSequenceItem(sequence, child, static_cast<signed long>(index)).bad()) return nullptr;
  return child;
}

bool ParsePart10(const std::string& part10, DcmFileFormat& file) {
  DcmInputBufferStream stream;
  stream.setBuffer(part10.data(), static_cast<offile_off_t>(part10.size()));
  stream.setEos();
  file.transferInit();
  const bool ok = file.read(stream).good();
  file.transferEnd();
  return ok;
}

std::string Meaning(DcmItem& item) {
  DcmItem* name = Child(item, DCM_ConceptNameCodeSequence);
  return name == nullptr ? "" : Get(*name, DCM_CodeMeaning);
}

// Content items in document order, depth first.
void Walk(DcmItem& item, std::vector<DcmItem*>& out) {
  for (unsigned long i = 0; DcmItem* child = Child(item, DCM_ContentSequence, i); ++i) {
    out.push_back(child);
    Walk(*child, out);
  }
}

// What a measurement group of the SR says, read back from the dataset.
struct Group {
  std::string tracking_uid;
  std::string seg_class, seg_instance;
  std::vector<int> segment_numbers;
  std::string source_series;
  std::string finding;
  std::map<std::string, std::pair<double, std::string>> nums;  // "Volume", "Mean", "Maximum", "Probability"
  std::vector<double> point;
  std::string point_frame_of_reference;
};

std::vector<Group> Groups(DcmDataset& ds) {
  std::vector<Group> groups;
  std::vector<DcmItem*> all;
  Walk(ds, all);
  for (DcmItem* item : all) {
    if (Meaning(*item) != "Measurement Group") continue;
    Group g;
    std::vector<DcmItem*> inside;
    Walk(*item, inside);
    for (DcmItem* c : inside) {
      const std::string m = Meaning(*c), type = Get(*c, DCM_ValueType);
      if (m == "Tracking Unique Identifier") g.tracking_uid = Get(*c, DCM_UID);
      if (m == "Referenced Segment") {
        DcmItem* ref = Child(*c, DCM_ReferencedSOPSequence);
        if (ref == nullptr) continue;
        g.seg_class = Get(*ref, DCM_ReferencedSOPClassUID);
        g.seg_instance = Get(*ref, DCM_ReferencedSOPInstanceUID);
        Uint16 n = 0;
        for (unsigned long i = 0; ref->findAndGetUint16(DCM_ReferencedSegmentNumber, n, i).good(); ++i)
          g.segment_numbers.push_back(n);
      }
      if (m == "Source series for segmentation") g.source_series = Get(*c, DCM_UID);
      if (m == "Finding") {
        if (DcmItem* code = Child(*c, DCM_ConceptCodeSequence)) g.finding = Get(*code, DCM_CodeValue);
      }
      if (type == "NUM") {
        DcmItem* mv = Child(*c, DCM_MeasuredValueSequence);
        if (mv == nullptr) continue;
        DcmItem* units = Child(*mv, DCM_MeasurementUnitsCodeSequence);
        std::string key = m;
        // A Mean or Maximum is named by its Derivation modifier.
        for (unsigned long i = 0; DcmItem* mod = Child(*c, DCM_ContentSequence, i); ++i) {
          if (Meaning(*mod) == "Derivation") {
            if (DcmItem* code = Child(*mod, DCM_ConceptCodeSequence)) key = Get(*code, DCM_CodeMeaning);
          }
        }
        g.nums[key] = {std::atof(Get(*mv, DCM_NumericValue).c_str()), units ? Get(*units, DCM_CodeValue) : ""};
      }
      if (type == "SCOORD3D") {
        EXPECT_EQ(Get(*c, DCM_GraphicType), "POINT");
        Float32 v = 0;
        for (unsigned long i = 0; c->findAndGetFloat32(DCM_GraphicData, v, i).good(); ++i) g.point.push_back(v);
        g.point_frame_of_reference = Get(*c, DCM_ReferencedFrameOfReferenceUID);
      }
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

double Dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

Vec3 ToVec(const json& j) { return {j[0].get<double>(), j[1].get<double>(), j[2].get<double>()}; }

// The generator's geometry (manifest), independent of the reader.
struct Geometry {
  Vec3 origin, row, column, normal;
  double sz = 0, sy = 0, sx = 0;
  uint32_t depth = 0, rows = 0, columns = 0;
  Vec3 At(double i, double j, double k) const {
    Vec3 p;
    for (int a = 0; a < 3; ++a) p[a] = origin[a] + i * sx * row[a] + j * sy * column[a] + k * sz * normal[a];
    return p;
  }
};

constexpr double kPi = 3.14159265358979323846;

class VolumetricResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "vsr-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    options_.scratch_dir = dir_ + "/scratch";
    fs::create_directories(options_.scratch_dir);
    algorithm_.model_name = "synthetic-lesion-3d";
    algorithm_.model_version = "2";
    algorithm_.parameters = "threshold 0.5";
    algorithm_.software_version = "0.1.0";
    read_ = {"", "ct-volume", "synthetic-lesion-3d", "2", ""};
    when_ = {"20240131", "101500"};
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Generates a series with one sphere at the continuous voxel index
  // (ci, cj, ck) of the generator's grid, and reads its volume.
  Volume Generate(const std::string& name, const std::string& args, const Vec3& index, double radius, double add) {
    const std::string out = dir_ + "/" + name;
    // Geometry first (no lesion), to place the sphere in LPS mm.
    std::string cmd = "/usr/bin/python3 " SECONDREAD_SOURCE_DIR "/tools/gen_series.py " + out + "-geometry " + args;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    geometry_ = ReadGeometry(out + "-geometry");
    centre_ = geometry_.At(index[0], index[1], index[2]);
    radius_ = radius;
    char lesion[160];
    std::snprintf(lesion, sizeof lesion, " --lesion=%.9f,%.9f,%.9f,%.9f,%.0f", centre_[0], centre_[1], centre_[2],
                  radius, add);
    cmd = "/usr/bin/python3 " SECONDREAD_SOURCE_DIR "/tools/gen_series.py " + out + " " + args + lesion;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream in(out + "/manifest.json");
    manifest_ = json::parse(in);
    std::vector<std::string> paths;
    series_.clear();
    for (const auto& f : manifest_["files"]) {
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
      read_.study_uid = Get(ds, DCM_StudyInstanceUID);
      frame_of_reference_ = Get(ds, DCM_FrameOfReferenceUID);
    }
    auto volumes = ReadSeriesVolumes(paths, options_);
    EXPECT_TRUE(volumes.ok()) << volumes.status();
    if (!volumes.ok() || volumes->empty()) return Volume{};
    return (*volumes)[0];
  }

  static Geometry ReadGeometry(const std::string& dir) {
    std::ifstream in(dir + "/manifest.json");
    const json m = json::parse(in);
    Geometry g;
    g.origin = ToVec(m["origin"]);
    g.row = ToVec(m["row"]);
    g.column = ToVec(m["column"]);
    g.normal = ToVec(m["normal"]);
    g.sz = m["spacing"][0];
    g.sy = m["spacing"][1];
    g.sx = m["spacing"][2];
    g.depth = m["depth"];
    g.rows = m["rows"];
    g.columns = m["columns"];
    return g;
  }

  bool InSphere(uint32_t i, uint32_t j, uint32_t k) const {
    const Vec3 p = geometry_.At(i, j, k);
    double d2 = 0;
    for (int a = 0; a < 3; ++a) d2 += (p[a] - centre_[a]) * (p[a] - centre_[a]);
    return d2 <= radius_ * radius_;
  }

  // The label map of the known sphere, on the generator's grid.
  std::vector<uint8_t> SphereLabels() const {
    std::vector<uint8_t> labels(size_t{geometry_.depth} * geometry_.rows * geometry_.columns, 0);
    for (uint32_t k = 0; k < geometry_.depth; ++k)
      for (uint32_t j = 0; j < geometry_.rows; ++j)
        for (uint32_t i = 0; i < geometry_.columns; ++i)
          if (InSphere(i, j, k)) labels[(size_t{k} * geometry_.rows + j) * geometry_.columns + i] = 1;
    return labels;
  }

  std::string Write(const BuiltObject& object, const std::string& name) {
    const std::string path = dir_ + "/" + name + ".dcm";
    std::ofstream out(path, std::ios::binary);
    out.write(object.part10.data(), static_cast<std::streamsize>(object.part10.size()));
    return path;
  }

  void ExpectValid(const BuiltObject& object, const std::string& name) {
    std::string report;
    const auto errors = DciodvfyErrors(Write(object, name), &report);
    EXPECT_TRUE(errors.empty()) << name << ":\n" << report;
  }

  std::vector<ImageKey> Images(const Volume& v) const {
    std::vector<ImageKey> keys;
    for (const SliceSource& s : v.sources) keys.push_back({s.sop_instance_uid, s.frame_number});
    return keys;
  }

  // The whole chain: SEG, measurements, SR and key-slice SC, each checked
  // against the sphere. `value(i, j, k, inside)` is the generator's formula.
  template <typename Value>
  void RunSphere(const Volume& v, const std::string& units_ucum, Value value) {
    ASSERT_EQ(v.depth, geometry_.depth);
    ASSERT_EQ(v.rows, geometry_.rows);
    ASSERT_EQ(v.columns, geometry_.columns);
    SegmentationResult result;
    result.segments = {AbnormalStructureSegment("Nodule", segmentation_codes::kNodule)};
    result.label_map = SphereLabels();

    ResultIdentity seg_identity;
    seg_identity.sop_instance_uid = ReadSegUid(read_, v);
    seg_identity.series_instance_uid = ReadSeriesUid(read_, "seg");
    seg_identity.series_number = kSegmentationSeriesNumber;
    auto seg = BuildSegmentation(v, series_, result, algorithm_, seg_identity, when_);
    ASSERT_TRUE(seg.ok()) << seg.status();
    // The segment numbers the SEG wrote, read back from it.
    DcmFileFormat seg_file;
    ASSERT_TRUE(ParsePart10(seg->part10, seg_file));
    std::map<std::string, int> seg_numbers;
    for (unsigned long i = 0; DcmItem* s = Child(*seg_file.getDataset(), DCM_SegmentSequence, i); ++i) {
      Uint16 n = 0;
      s->findAndGetUint16(DCM_SegmentNumber, n);
      seg_numbers[Get(*s, DCM_SegmentLabel)] = n;
    }
    ASSERT_EQ(seg_numbers.count("Nodule"), 1u);

    LesionOptions options;
    options.segment_probabilities = {0.875};
    auto lesions = MeasureLesions(v, result, options);
    ASSERT_TRUE(lesions.ok()) << lesions.status();
    ASSERT_EQ(lesions->size(), 1u);
    const LesionMeasurement& lesion = (*lesions)[0];

    // Expectations from the generator's grid and formula.
    uint64_t count = 0;
    double sum = 0, maximum = -INFINITY;
    std::vector<uint64_t> area(v.depth, 0);
    for (uint32_t k = 0; k < v.depth; ++k)
      for (uint32_t j = 0; j < v.rows; ++j)
        for (uint32_t i = 0; i < v.columns; ++i)
          if (InSphere(i, j, k)) {
            ++count;
            ++area[k];
            const double x = value(i, j, k, true);
            sum += x;
            maximum = std::max(maximum, x);
          }
    const double voxel_mm3 = geometry_.sz * geometry_.sy * geometry_.sx;
    EXPECT_EQ(lesion.voxel_count, count);
    EXPECT_NEAR(lesion.volume_mm3, count * voxel_mm3, 1e-6 * count * voxel_mm3);
    const double sphere = 4.0 / 3.0 * kPi * radius_ * radius_ * radius_;
    EXPECT_NEAR(lesion.volume_mm3, sphere, 0.06 * sphere) << "sphere of radius " << radius_;
    const bool has_values = !units_ucum.empty();
    ASSERT_EQ(lesion.has_values, has_values);
    if (has_values) {
      EXPECT_NEAR(lesion.mean, sum / count, 1e-4 * std::abs(sum / count) + 1e-3);
      EXPECT_NEAR(lesion.maximum, maximum, 1e-4 * std::abs(maximum) + 1e-3);
    }
    EXPECT_TRUE(lesion.has_probability);
    EXPECT_DOUBLE_EQ(lesion.probability, 0.875);
    uint32_t key = 0;
    for (uint32_t k = 0; k < v.depth; ++k)
      if (area[k] > area[key]) key = k;
    EXPECT_EQ(lesion.key_slice, key);
    EXPECT_EQ(lesion.key_slice_voxels, area[key]);
    // The key slice's source, read from its file: the largest section of a
    // sphere is the slice nearest the centre.
    EXPECT_EQ(lesion.key_source.sop_instance_uid, v.sources[key].sop_instance_uid);
    const SourceImage* key_image = nullptr;
    for (const SourceImage& image : series_)
      if (image.sop_instance_uid == lesion.key_source.sop_instance_uid) key_image = &image;
    ASSERT_NE(key_image, nullptr);
    if (lesion.key_source.frame_number == 0) {
      DcmFileFormat file;
      ASSERT_TRUE(file.loadFile(key_image->path.c_str()).good());
      Vec3 position;
      for (int a = 0; a < 3; ++a) {
        Float64 p = 0;
        ASSERT_TRUE(file.getDataset()->findAndGetFloat64(DCM_ImagePositionPatient, p, a).good());
        position[a] = p;
      }
      Vec3 d;
      for (int a = 0; a < 3; ++a) d[a] = position[a] - centre_[a];
      EXPECT_LE(std::abs(Dot(d, geometry_.normal)), geometry_.sz / 2 + 1e-6);
    }

    // The SR.
    ResultIdentity identity;
    identity.sop_instance_uid = ReadSrUid(read_, Images(v));
    identity.series_instance_uid = ReadSeriesUid(read_, "sr");
    identity.series_number = 9901;
    SegmentationReference reference{seg->sop_class_uid, seg->sop_instance_uid, seg->series_instance_uid,
                                    result.segments};
    auto sr = BuildVolumetricReport(v, series_, *lesions, reference, algorithm_, identity, when_);
    ASSERT_TRUE(sr.ok()) << sr.status();
    ExpectValid(*sr, "sr");
    auto again = BuildVolumetricReport(v, series_, *lesions, reference, algorithm_, identity, when_);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->part10, sr->part10) << "the SR is not deterministic";
    EXPECT_EQ(sr->sop_instance_uid, ReadSrUid(read_, Images(v)));

    DcmFileFormat sr_file;
    ASSERT_TRUE(ParsePart10(sr->part10, sr_file));
    DcmDataset& ds = *sr_file.getDataset();
    EXPECT_EQ(Get(ds, DCM_SOPClassUID), UID_Comprehensive3DSRStorage);
    EXPECT_EQ(Get(ds, DCM_VerificationFlag), "UNVERIFIED");
    EXPECT_EQ(Get(ds, DCM_StudyInstanceUID), read_.study_uid);
    // The SEG is evidence the report rests on.
    DcmItem* other = Child(ds, DCM_PertinentOtherEvidenceSequence);
    ASSERT_NE(other, nullptr);
    DcmItem* other_series = Child(*other, DCM_ReferencedSeriesSequence);
    ASSERT_NE(other_series, nullptr);
    EXPECT_EQ(Get(*other_series, DCM_SeriesInstanceUID), seg->series_instance_uid);
    DcmItem* other_instance = Child(*other_series, DCM_ReferencedSOPSequence);
    ASSERT_NE(other_instance, nullptr);
    EXPECT_EQ(Get(*other_instance, DCM_ReferencedSOPInstanceUID), seg->sop_instance_uid);
    const std::vector<Group> groups = Groups(ds);
    ASSERT_EQ(groups.size(), 1u);
    const Group& g = groups[0];
    EXPECT_FALSE(g.tracking_uid.empty());
    EXPECT_EQ(g.seg_class, UID_SegmentationStorage);
    EXPECT_EQ(g.seg_instance, seg->sop_instance_uid);
    EXPECT_EQ(g.segment_numbers, std::vector<int>{seg_numbers["Nodule"]});
    EXPECT_EQ(g.source_series, series_[0].series_instance_uid);
    EXPECT_EQ(g.finding, segmentation_codes::kNodule.value);
    ASSERT_EQ(g.nums.count("Volume"), 1u);
    EXPECT_NEAR(g.nums.at("Volume").first, count * voxel_mm3, 1e-4 * count * voxel_mm3);
    EXPECT_EQ(g.nums.at("Volume").second, "mm3");
    ASSERT_EQ(g.nums.count("Probability"), 1u);
    EXPECT_DOUBLE_EQ(g.nums.at("Probability").first, 0.875);
    if (has_values) {
      ASSERT_EQ(g.nums.count("Mean"), 1u);
      ASSERT_EQ(g.nums.count("Maximum"), 1u);
      EXPECT_NEAR(g.nums.at("Mean").first, sum / count, 1e-4 * std::abs(sum / count) + 1e-3);
      EXPECT_NEAR(g.nums.at("Maximum").first, maximum, 1e-4 * std::abs(maximum) + 1e-3);
      EXPECT_EQ(g.nums.at("Mean").second, units_ucum);
      EXPECT_EQ(g.nums.at("Maximum").second, units_ucum);
    } else {
      EXPECT_EQ(g.nums.count("Mean"), 0u);
    }
    // The centroid: in the source Frame of Reference, within a voxel of the
    // sphere's centre along each axis of the grid, and inside the lesion.
    EXPECT_EQ(g.point_frame_of_reference, frame_of_reference_);
    ASSERT_EQ(g.point.size(), 3u);
    Vec3 d;
    for (int a = 0; a < 3; ++a) d[a] = g.point[a] - geometry_.origin[a];
    const double pi = Dot(d, geometry_.row) / geometry_.sx, pj = Dot(d, geometry_.column) / geometry_.sy,
                 pk = Dot(d, geometry_.normal) / geometry_.sz;
    for (int a = 0; a < 3; ++a) d[a] = centre_[a] - geometry_.origin[a];
    EXPECT_NEAR(pi, Dot(d, geometry_.row) / geometry_.sx, 1.0);
    EXPECT_NEAR(pj, Dot(d, geometry_.column) / geometry_.sy, 1.0);
    EXPECT_NEAR(pk, Dot(d, geometry_.normal) / geometry_.sz, 1.0);
    const auto ri = std::lround(pi), rj = std::lround(pj), rk = std::lround(pk);
    ASSERT_TRUE(ri >= 0 && rj >= 0 && rk >= 0 && ri < v.columns && rj < v.rows && rk < v.depth);
    EXPECT_EQ(result.label_map[(size_t(rk) * v.rows + rj) * v.columns + ri], 1) << "centroid outside the lesion";

    // The key-slice Secondary Capture.
    ResultIdentity sc_identity;
    sc_identity.sop_instance_uid = ReadScUid(read_, {lesion.key_source.sop_instance_uid, lesion.key_source.frame_number});
    sc_identity.series_instance_uid = ReadSeriesUid(read_, "sc");
    sc_identity.series_number = 9902;
    auto sc = BuildKeySliceCapture(v, series_, result, *lesions, lesion.key_slice, algorithm_, sc_identity, when_);
    ASSERT_TRUE(sc.ok()) << sc.status();
    ExpectValid(*sc, "sc");
    auto sc_again = BuildKeySliceCapture(v, series_, result, *lesions, lesion.key_slice, algorithm_, sc_identity, when_);
    ASSERT_TRUE(sc_again.ok());
    EXPECT_EQ(sc_again->part10, sc->part10) << "the key-slice Secondary Capture is not deterministic";
    DcmFileFormat sc_file;
    ASSERT_TRUE(ParsePart10(sc->part10, sc_file));
    DcmDataset& sds = *sc_file.getDataset();
    EXPECT_EQ(Get(sds, DCM_BurnedInAnnotation), "YES");
    DcmItem* source = Child(sds, DCM_SourceImageSequence);
    ASSERT_NE(source, nullptr);
    EXPECT_EQ(Get(*source, DCM_ReferencedSOPInstanceUID), lesion.key_source.sop_instance_uid);
    // The outline colour of segment 1 appears in the image, and the banner's
    // warning colour above it.
    const Uint8* pixels = nullptr;
    unsigned long length = 0;
    ASSERT_TRUE(sds.findAndGetUint8Array(DCM_PixelData, pixels, &length).good());
    Uint16 rows = 0, columns = 0;
    sds.findAndGetUint16(DCM_Rows, rows);
    sds.findAndGetUint16(DCM_Columns, columns);
    ASSERT_EQ(length, size_t{rows} * columns * 3);
    size_t outline = 0, warning = 0;
    for (size_t p = 0; p < length; p += 3) {
      if (pixels[p] == 255 && pixels[p + 1] == 40 && pixels[p + 2] == 40) ++outline;
      if (pixels[p] == 255 && pixels[p + 1] == 220 && pixels[p + 2] == 0) ++warning;
    }
    EXPECT_GT(outline, 20u);
    EXPECT_GT(warning, 20u);

    // The outline sits where the sphere cuts the key slice: the image lies
    // below the banner (whose background fills the first column), at a
    // uniform scale, voxel i covering [i, i + 1) x spacing; the centre of the
    // outline's bounding box is within a voxel of the section's centre.
    auto px = [&](size_t x, size_t y) { return pixels + (y * columns + x) * 3; };
    size_t banner = 0;
    while (banner < rows && px(0, banner)[0] == 24 && px(0, banner)[1] == 24 && px(0, banner)[2] == 24) ++banner;
    ASSERT_GT(banner, 0u);
    ASSERT_LT(banner, rows);
    const double pixel_mm = v.rows * geometry_.sy / (rows - banner);
    size_t x0 = columns, x1 = 0, y0 = rows, y1 = 0;
    for (size_t y = banner; y < rows; ++y)
      for (size_t x = 0; x < columns; ++x) {
        const Uint8* p = px(x, y);
        if (p[0] == 255 && p[1] == 40 && p[2] == 40) {
          x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
        }
      }
    ASSERT_LE(x0, x1);
    Vec3 c;
    for (int a = 0; a < 3; ++a) c[a] = centre_[a] - geometry_.origin[a];
    const double centre_x_mm = (Dot(c, geometry_.row) / geometry_.sx + 0.5) * geometry_.sx;
    const double centre_y_mm = (Dot(c, geometry_.column) / geometry_.sy + 0.5) * geometry_.sy;
    EXPECT_NEAR((x0 + x1 + 1) / 2.0 * pixel_mm, centre_x_mm, geometry_.sx);
    EXPECT_NEAR((y0 - banner + y1 - banner + 1) / 2.0 * pixel_mm, centre_y_mm, geometry_.sy);
  }

  std::string dir_;
  VolumeOptions options_;
  AlgorithmInfo algorithm_;
  ReadIdentity read_;
  ContentTime when_;
  std::vector<SourceImage> series_;
  std::string frame_of_reference_;
  json manifest_;
  Geometry geometry_;
  Vec3 centre_{};
  double radius_ = 0;
};

constexpr const char* kGrid = "--rows 28 --columns 36 --slices 18 --pixel-spacing 0.8,0.6 --spacing 1.0 --seed 7";

// CT, oblique, files shuffled: HU = -500 + 4 z + 3 j - 2 i (+ 300 inside).
TEST_F(VolumetricResultsTest, ObliqueCtSphere) {
  const Volume v = Generate("ct", std::string("--modality CT --layout single --orientation oblique --shuffle ") + kGrid,
                            {11.3, 9.6, 8.4}, 6.0, 300);
  ASSERT_EQ(v.units, "HU");
  RunSphere(v, "[hnsf'U]", [&](uint32_t i, uint32_t j, uint32_t k, bool inside) {
    return -500.0 + 4 * (k * geometry_.sz) + 3.0 * j - 2.0 * i + (inside ? 300 : 0);
  });
}

// PET, axial: SUVbw = (1000 + 10 j + 7 i (+ 400 inside)) (0.5 + 0.25 k) suv_scale.
TEST_F(VolumetricResultsTest, AxialPetSphereInSuvbw) {
  const Volume v = Generate("pt", std::string("--modality PT --layout single --orientation axial ") + kGrid,
                            {22.0, 17.2, 8.7}, 5.5, 400);
  ASSERT_EQ(v.units, "SUVbw");
  const double scale = manifest_["suv_scale"];
  RunSphere(v, "{SUVbw}g/ml", [&](uint32_t i, uint32_t j, uint32_t k, bool inside) {
    return (1000.0 + 10.0 * j + 7.0 * i + (inside ? 400 : 0)) * (0.5 + 0.25 * k) * scale;
  });
}

// Enhanced MR (frames of one object): no unit, so volume, centroid and
// probability only; the key slice names its frame.
TEST_F(VolumetricResultsTest, EnhancedMrSphereHasNoValues) {
  const Volume v = Generate("mr", std::string("--modality MR --layout enhanced --orientation oblique ") + kGrid,
                            {12.5, 16.5, 9.1}, 5.0, 200);
  ASSERT_GT(v.sources[0].frame_number, 0u);
  RunSphere(v, "", [](uint32_t, uint32_t, uint32_t, bool) { return 0.0; });
}

// An unevenly spaced CT (2.5 mm gaps, then 3 mm from 15 mm on) with a sphere
// centred at 20 mm along the normal, where the gaps are 3 mm. The model's
// grid is uniform (2.5 mm) and the lesion is measured there; the key slice
// moves to the nearest source slice, and the SR and the capture are written
// on the source slices and say that the series was resampled.
TEST_F(VolumetricResultsTest, ResampledCtMeasuredOnTheGridReportedOnTheSourceSlices) {
  options_.allow_resample = true;
  Volume grid = Generate("uneven",
                         "--modality CT --layout single --orientation axial --defect nonuniform --rows 28 "
                         "--columns 36 --slices 12 --pixel-spacing 0.8,0.6 --spacing 2.5 --seed 7",
                         {14.5, 12.5, 8.0}, 6.0, 1500);
  ASSERT_TRUE(grid.resampled);
  ASSERT_EQ(grid.depth, 13u);
  // What a thresholding model answers on the grid: every voxel above 500 HU.
  SegmentationResult result;
  result.segments = {AbnormalStructureSegment("Nodule", segmentation_codes::kNodule)};
  result.label_map.resize(grid.voxels.size());
  for (size_t p = 0; p < grid.voxels.size(); ++p) result.label_map[p] = grid.voxels[p] > 500 ? 1 : 0;
  LesionOptions options;
  options.segment_probabilities = {0.875};
  auto lesions = MeasureLesions(grid, result, options);
  ASSERT_TRUE(lesions.ok()) << lesions.status();
  ASSERT_EQ(lesions->size(), 1u);
  const double sphere = 4.0 / 3.0 * kPi * radius_ * radius_ * radius_;
  EXPECT_NEAR((*lesions)[0].volume_mm3, sphere, 0.15 * sphere);
  Vec3 d;
  for (int a = 0; a < 3; ++a) d[a] = (*lesions)[0].centroid_mm[a] - centre_[a];
  EXPECT_LE(std::sqrt(Dot(d, d)), 0.5) << "the centroid is off the sphere's centre";
  const uint32_t grid_key = (*lesions)[0].key_slice;
  EXPECT_EQ(grid_key, 8u);  // 20 mm

  ASSERT_TRUE(KeySlicesOnSourceSlices(grid, *lesions).ok());
  const LesionMeasurement& lesion = (*lesions)[0];
  // Grid slice 8 (20 mm) lies between sources at 18 and 21 mm: 21 mm is source 8.
  EXPECT_EQ(lesion.key_slice, 8u);
  EXPECT_EQ(lesion.key_source.sop_instance_uid, grid.source_stack.slices[8].sop_instance_uid);
  EXPECT_FALSE(lesion.key_source.interpolated);

  auto labels = LabelMapOnSourceSlices(grid, result.label_map);
  ASSERT_TRUE(labels.ok());
  auto taken = TakeSourceSlices(grid);
  ASSERT_TRUE(taken.ok());
  const Volume& v = *taken;
  result.label_map = *labels;
  EXPECT_EQ(MeasureLesions(v, result, options).status().code(), absl::StatusCode::kInvalidArgument)
      << "measured on unevenly spaced slices";

  ResultIdentity seg_identity;
  seg_identity.sop_instance_uid = ReadSegUid(read_, v);
  seg_identity.series_instance_uid = ReadSeriesUid(read_, "seg");
  seg_identity.series_number = kSegmentationSeriesNumber;
  auto seg = BuildSegmentation(v, series_, result, algorithm_, seg_identity, when_);
  ASSERT_TRUE(seg.ok()) << seg.status();
  ExpectValid(*seg, "seg");
  ResultIdentity identity;
  identity.sop_instance_uid = ReadSrUid(read_, Images(v));
  identity.series_instance_uid = ReadSeriesUid(read_, "sr");
  identity.series_number = 9901;
  SegmentationReference reference{seg->sop_class_uid, seg->sop_instance_uid, seg->series_instance_uid,
                                  result.segments};
  auto sr = BuildVolumetricReport(v, series_, *lesions, reference, algorithm_, identity, when_);
  ASSERT_TRUE(sr.ok()) << sr.status();
  ExpectValid(*sr, "sr");
  DcmFileFormat sr_file;
  ASSERT_TRUE(ParsePart10(sr->part10, sr_file));
  std::vector<DcmItem*> items;
  Walk(*sr_file.getDataset(), items);
  std::string evaluation;
  size_t images = 0;
  for (DcmItem* item : items) {
    if (Meaning(*item) == "Qualitative Evaluations") evaluation = Get(*item, DCM_TextValue);
    if (Get(*item, DCM_ValueType) == "IMAGE" && Meaning(*item) != "Referenced Segment") ++images;
  }
  EXPECT_EQ(evaluation,
            "Key slice 9 of 12; the series' slices are unevenly spaced: the model read it, and these measurements "
            "were made, resampled to uniform 2.5 mm slices; unverified algorithm output, not a diagnosis");
  EXPECT_EQ(images, 12u) << "the image library lists the source slices";

  ResultIdentity sc_identity;
  sc_identity.sop_instance_uid = ReadScUid(read_, {lesion.key_source.sop_instance_uid, 0});
  sc_identity.series_instance_uid = ReadSeriesUid(read_, "sc");
  sc_identity.series_number = 9902;
  auto sc = BuildKeySliceCapture(v, series_, result, *lesions, lesion.key_slice, algorithm_, sc_identity, when_);
  ASSERT_TRUE(sc.ok()) << sc.status();
  ExpectValid(*sc, "sc");
  DcmFileFormat sc_file;
  ASSERT_TRUE(ParsePart10(sc->part10, sc_file));
  DcmItem* source = Child(*sc_file.getDataset(), DCM_SourceImageSequence);
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(Get(*source, DCM_ReferencedSOPInstanceUID), lesion.key_source.sop_instance_uid);
  // The banner has a line more than it would for evenly spaced slices: the
  // note that the series was resampled.
  Volume unnoted = v;
  unnoted.resampled_spacing_mm = 0;
  auto plain = BuildKeySliceCapture(unnoted, series_, result, *lesions, lesion.key_slice, algorithm_, sc_identity,
                                    when_);
  ASSERT_TRUE(plain.ok());
  DcmFileFormat plain_file;
  ASSERT_TRUE(ParsePart10(plain->part10, plain_file));
  EXPECT_GT(std::atoi(Get(*sc_file.getDataset(), DCM_Rows).c_str()),
            std::atoi(Get(*plain_file.getDataset(), DCM_Rows).c_str()));
}

// Many lesions on one key slice: the banner lists eight and says how many
// more there are, rather than growing over every lesion.
TEST_F(VolumetricResultsTest, KeySliceBannerListsAtMostEightLesions) {
  const Volume v = Generate("many", std::string("--modality CT --layout single --orientation axial ") + kGrid,
                            {5, 5, 5}, 1.0, 0);
  ASSERT_EQ(v.depth, geometry_.depth);
  SegmentationResult result;
  result.segments = {AbnormalStructureSegment("Lesion", segmentation_codes::kLesion)};
  ResultIdentity identity;
  identity.sop_instance_uid = ReadScUid(read_, {v.sources[4].sop_instance_uid, 0});
  identity.series_instance_uid = ReadSeriesUid(read_, "sc");
  identity.series_number = 9902;
  auto rows_with = [&](int count) -> int {
    // Single voxels two apart on slice 4: separate lesions, all keyed there.
    result.label_map.assign(v.voxels.size(), 0);
    for (int n = 0; n < count; ++n) result.label_map[(size_t{4} * v.rows + 2) * v.columns + 2 * n] = 1;
    auto lesions = MeasureLesions(v, result);
    EXPECT_TRUE(lesions.ok()) << lesions.status();
    if (!lesions.ok()) return -1;
    EXPECT_EQ(lesions->size(), static_cast<size_t>(count));
    auto sc = BuildKeySliceCapture(v, series_, result, *lesions, 4, algorithm_, identity, when_);
    EXPECT_TRUE(sc.ok()) << sc.status();
    if (!sc.ok()) return -1;
    DcmFileFormat file;
    EXPECT_TRUE(ParsePart10(sc->part10, file));
    Uint16 rows = 0;
    file.getDataset()->findAndGetUint16(DCM_Rows, rows);
    return rows;
  };
  const int eight = rows_with(8), nine = rows_with(9), twelve = rows_with(12);
  EXPECT_GT(nine, eight);     // eight lesion lines, then the "more" line
  EXPECT_EQ(twelve, nine);    // and no further growth
}

// A synthetic volume for the connectivity rules, no DICOM needed.
Volume Blank(uint32_t d, uint32_t h, uint32_t w) {
  Volume v;
  v.depth = d, v.rows = h, v.columns = w;
  v.voxels.assign(size_t{d} * h * w, 0.0f);
  v.spacing_mm = {2.0, 0.5, 0.5};
  v.row_direction = {1, 0, 0};
  v.column_direction = {0, 1, 0};
  v.normal = {0, 0, 1};
  v.units = "HU";
  for (uint32_t k = 0; k < d; ++k) v.sources.push_back({"1.2.3." + std::to_string(k), 0, false});
  return v;
}

// Two separate blobs of one segment are two lesions; voxels touching only at
// a corner across slices are one.
TEST(LesionMeasurementTest, ComponentsAre26Connected) {
  Volume v = Blank(4, 8, 8);
  SegmentationResult r;
  r.segments = {AbnormalStructureSegment("Lesion", segmentation_codes::kLesion)};
  r.label_map.assign(v.voxels.size(), 0);
  auto at = [&](uint32_t k, uint32_t j, uint32_t i) -> size_t { return (size_t{k} * 8 + j) * 8 + i; };
  // Lesion A: (0,0,0) and its corner neighbour (1,1,1).
  r.label_map[at(0, 0, 0)] = 1;
  r.label_map[at(1, 1, 1)] = 1;
  v.voxels[at(0, 0, 0)] = 10;
  v.voxels[at(1, 1, 1)] = 30;
  // Lesion B: a 2x2 block on slice 3, far from A.
  for (uint32_t j = 5; j < 7; ++j)
    for (uint32_t i = 5; i < 7; ++i) {
      r.label_map[at(3, j, i)] = 1;
      v.voxels[at(3, j, i)] = 100;
    }
  auto lesions = MeasureLesions(v, r);
  ASSERT_TRUE(lesions.ok()) << lesions.status();
  ASSERT_EQ(lesions->size(), 2u);
  EXPECT_EQ((*lesions)[0].voxel_count, 2u);
  EXPECT_EQ((*lesions)[0].lesion_number, 1u);
  EXPECT_DOUBLE_EQ((*lesions)[0].mean, 20.0);
  EXPECT_DOUBLE_EQ((*lesions)[0].maximum, 30.0);
  EXPECT_DOUBLE_EQ((*lesions)[0].volume_mm3, 2 * 0.5);
  EXPECT_EQ((*lesions)[1].voxel_count, 4u);
  EXPECT_EQ((*lesions)[1].lesion_number, 2u);
  EXPECT_EQ((*lesions)[1].key_slice, 3u);
  EXPECT_EQ((*lesions)[1].key_source.sop_instance_uid, "1.2.3.3");
  EXPECT_DOUBLE_EQ((*lesions)[1].centroid_mm[0], 5.5 * 0.5);
  EXPECT_DOUBLE_EQ((*lesions)[1].centroid_mm[2], 3 * 2.0);
  EXPECT_FALSE((*lesions)[1].has_probability);
}

// Probability maps: a voxel belongs at or above the threshold, and the
// lesion's probability is the map's mean over it.
TEST(LesionMeasurementTest, ProbabilityMapsThresholdAndMean) {
  Volume v = Blank(3, 4, 4);
  v.units.clear();  // MR
  SegmentationResult r;
  r.segments = {AbnormalStructureSegment("Lesion", segmentation_codes::kLesion)};
  r.probabilities.assign(1, std::vector<float>(v.voxels.size(), 0.1f));
  r.probabilities[0][5] = 0.5f;
  r.probabilities[0][6] = 0.9f;
  r.probabilities[0][7] = 0.49f;
  auto lesions = MeasureLesions(v, r);
  ASSERT_TRUE(lesions.ok()) << lesions.status();
  ASSERT_EQ(lesions->size(), 1u);
  EXPECT_EQ((*lesions)[0].voxel_count, 2u);
  EXPECT_FALSE((*lesions)[0].has_values);
  EXPECT_TRUE((*lesions)[0].has_probability);
  EXPECT_NEAR((*lesions)[0].probability, 0.7, 1e-6);
}

TEST(LesionMeasurementTest, RefusesMapsThatDoNotFit) {
  Volume v = Blank(2, 2, 2);
  SegmentationResult r;
  r.segments = {AbnormalStructureSegment("Lesion", segmentation_codes::kLesion)};
  r.label_map.assign(7, 0);
  EXPECT_EQ(MeasureLesions(v, r).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace secondread::scp
