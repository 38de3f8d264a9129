#include "scp/pixels/series_reader.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace secondread::scp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kPydicomFiles = SECONDREAD_PYDICOM_TEST_FILES;

class SeriesReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "sr-volume-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    options_.scratch_dir = dir_ + "/scratch";
    fs::create_directories(options_.scratch_dir);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs tools/gen_series.py into a directory of its own; the manifest.
  json Generate(const std::string& name, const std::string& args) {
    const std::string out = dir_ + "/" + name;
    const std::string cmd =
        "/usr/bin/python3 " SECONDREAD_SOURCE_DIR "/tools/gen_series.py " + out + " " + args + " --seed 5";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream in(out + "/manifest.json");
    json m = json::parse(in);
    paths_.clear();
    for (const auto& f : m["files"]) paths_.push_back(out + "/" + f.get<std::string>());
    return m;
  }

  absl::StatusOr<std::vector<Volume>> Read() { return ReadSeriesVolumes(paths_, options_); }

  std::string dir_;
  std::vector<std::string> paths_;
  VolumeOptions options_;
};

// The value gen_series.py wrote at slice offset z (mm), slice index k along
// the normal, row j, column i of stack `stack`.
double Expected(const json& m, double z, int k, int j, int i, int stack) {
  const std::string modality = m["modality"];
  if (modality == "CT") return -500 + 4 * z + 3 * j - 2 * i + 100 * stack;
  if (modality == "MR") return 100 + 4 * z + j + i + 100 * stack;
  return (1000 + 10 * j + 7 * i + 100 * stack) * (0.5 + 0.25 * k) * m["suv_scale"].get<double>();
}

// Geometry, sources and every voxel against the manifest.
void CheckVolume(const Volume& v, const json& m, int stack) {
  const json& truth = m["volumes"][stack];
  ASSERT_EQ(v.depth, truth["sources"].size());
  ASSERT_EQ(v.rows, m["rows"].get<uint32_t>());
  ASSERT_EQ(v.columns, m["columns"].get<uint32_t>());
  ASSERT_EQ(v.voxels.size(), size_t{v.depth} * v.rows * v.columns);
  for (int a = 0; a < 3; ++a) {
    EXPECT_NEAR(v.origin[a], m["origin"][a].get<double>(), 1e-6);
    EXPECT_NEAR(v.row_direction[a], m["row"][a].get<double>(), 1e-9);
    EXPECT_NEAR(v.column_direction[a], m["column"][a].get<double>(), 1e-9);
    EXPECT_NEAR(v.normal[a], m["normal"][a].get<double>(), 1e-9);
    EXPECT_NEAR(v.spacing_mm[a], m["spacing"][a].get<double>(), 1e-6);
  }
  ASSERT_EQ(v.sources.size(), v.depth);
  for (uint32_t k = 0; k < v.depth; ++k) {
    const json& src = truth["sources"][k];
    EXPECT_EQ(v.sources[k].sop_instance_uid, src["sop_instance_uid"].get<std::string>()) << k;
    EXPECT_EQ(v.sources[k].frame_number, src["frame_number"].get<uint32_t>()) << k;
    EXPECT_FALSE(v.sources[k].interpolated);
  }
  size_t wrong = 0;
  for (uint32_t k = 0; k < v.depth; ++k) {
    const double z = truth["sources"][k]["offset_mm"];
    const int source_k = truth["sources"][k]["k"];
    for (uint32_t j = 0; j < v.rows; ++j) {
      for (uint32_t i = 0; i < v.columns; ++i) {
        const double want = Expected(m, z, source_k, static_cast<int>(j), static_cast<int>(i), stack);
        const float got = v.voxels[(size_t{k} * v.rows + j) * v.columns + i];
        if (std::abs(got - want) > 1e-4 * std::max(1.0, std::abs(want)) && wrong++ < 5) {
          ADD_FAILURE() << "voxel (" << k << ", " << j << ", " << i << "): " << got << " != " << want;
        }
      }
    }
  }
  EXPECT_EQ(wrong, 0u);
}

TEST_F(SeriesReaderTest, CtSingleFrameObliqueNonSquareShuffled) {
  const json m = Generate("ct", "--modality CT --layout single --orientation oblique --shuffle");
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  ASSERT_EQ(volumes->size(), 1u);
  const Volume& v = (*volumes)[0];
  CheckVolume(v, m, 0);
  EXPECT_EQ(v.modality, "CT");
  EXPECT_EQ(v.units, "HU");
  // By hand: normal = (0.6,0.8,0) x (-0.48,0.36,-0.8) = (-0.64, 0.48, 0.6);
  // HU at (k=3, j=2, i=5) = -500 + 4 * 7.5 + 3 * 2 - 2 * 5 = -474.
  EXPECT_NEAR(v.normal[0], -0.64, 1e-9);
  EXPECT_NEAR(v.normal[1], 0.48, 1e-9);
  EXPECT_NEAR(v.normal[2], 0.6, 1e-9);
  EXPECT_DOUBLE_EQ(v.spacing_mm[1], 0.8);
  EXPECT_DOUBLE_EQ(v.spacing_mm[2], 0.6);
  EXPECT_FLOAT_EQ(v.voxels[(3 * 10 + 2) * 14 + 5], -474.0f);
}

// The decoding time the volume dispatcher reports as its decode stage: some
// of the read, never more than all of it, and reset by each call.
TEST_F(SeriesReaderTest, DecodingTimeIsReportedAsPartOfTheRead) {
  Generate("ct", "--modality CT --layout single --slices 6");
  SeriesReadStats stats;
  stats.decode_ms = 1e9;
  const auto t0 = std::chrono::steady_clock::now();
  auto volumes = ReadSeriesVolumes(paths_, options_, &stats);
  const double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  EXPECT_GT(stats.decode_ms, 0);
  EXPECT_LE(stats.decode_ms, total_ms);
}

// A NIfTI-1 file as dcm2niix writes it: the sform (RAS) and the voxels with
// scl_slope/scl_inter applied.
struct Nifti {
  int dim[3] = {0, 0, 0};
  double srow[3][4] = {};
  std::vector<double> values;
};

bool ReadNifti(const std::string& path, Nifti* out) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 352) return false;
  auto at = [&](size_t off, auto* v) { std::memcpy(v, bytes.data() + off, sizeof *v); };
  int16_t dims[8], datatype = 0;
  float vox_offset = 0, slope = 0, inter = 0, srow[12];
  at(40, &dims);
  at(70, &datatype);
  at(108, &vox_offset);
  at(112, &slope);
  at(116, &inter);
  at(280, &srow);
  if (slope == 0) slope = 1;
  for (int a = 0; a < 3; ++a) out->dim[a] = dims[a + 1];
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) out->srow[r][c] = srow[r * 4 + c];
  }
  const size_t n = size_t(out->dim[0]) * out->dim[1] * out->dim[2];
  const char* data = bytes.data() + static_cast<size_t>(vox_offset);
  const size_t width = datatype == 16 ? 4 : 2;
  if (static_cast<size_t>(vox_offset) + n * width > bytes.size()) return false;
  for (size_t v = 0; v < n; ++v) {
    double raw = 0;
    if (datatype == 4) {
      int16_t x;
      std::memcpy(&x, data + 2 * v, 2);
      raw = x;
    } else if (datatype == 512) {
      uint16_t x;
      std::memcpy(&x, data + 2 * v, 2);
      raw = x;
    } else if (datatype == 16) {
      float x;
      std::memcpy(&x, data + 4 * v, 4);
      raw = x;
    } else {
      return false;
    }
    out->values.push_back(raw * slope + inter);
  }
  return true;
}

// An independent reading: dcm2niix converts the same files; every one of its
// voxels, placed in the world by its sform, must land on a voxel of ours
// (index within 0.01 of an integer) holding the same value. The enhanced
// series is MR: dcm2niix applies one rescale to a whole multi-frame object,
// so it reads the per-frame overrides of the enhanced CT 24 HU off.
TEST_F(SeriesReaderTest, AgreesWithDcm2niixVoxelByVoxel) {
  for (const std::string layout : {"single", "enhanced"}) {
    const std::string modality = layout == "single" ? "CT" : "MR";
    Generate("d2n-" + layout, "--orientation oblique --shuffle --layout " + layout + " --modality " + modality);
    auto volumes = Read();
    ASSERT_TRUE(volumes.ok()) << volumes.status();
    const Volume& v = (*volumes)[0];
    const std::string nii_dir = dir_ + "/nii-" + layout;
    fs::create_directories(nii_dir);
    const std::string cmd =
        "dcm2niix -z n -b n -o " + nii_dir + " -f vol " + dir_ + "/d2n-" + layout + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "dcm2niix (Debian package dcm2niix) is needed: " << cmd;
    Nifti nii;
    ASSERT_TRUE(ReadNifti(nii_dir + "/vol.nii", &nii));
    ASSERT_EQ(size_t(nii.dim[0]) * nii.dim[1] * nii.dim[2], v.voxels.size());
    size_t wrong = 0;
    for (int z = 0; z < nii.dim[2]; ++z) {
      for (int y = 0; y < nii.dim[1]; ++y) {
        for (int x = 0; x < nii.dim[0]; ++x) {
          double ras[3];
          for (int r = 0; r < 3; ++r)
            ras[r] = nii.srow[r][0] * x + nii.srow[r][1] * y + nii.srow[r][2] * z + nii.srow[r][3];
          const double d[3] = {-ras[0] - v.origin[0], -ras[1] - v.origin[1], ras[2] - v.origin[2]};
          const double fi =
              (d[0] * v.row_direction[0] + d[1] * v.row_direction[1] + d[2] * v.row_direction[2]) / v.spacing_mm[2];
          const double fj =
              (d[0] * v.column_direction[0] + d[1] * v.column_direction[1] + d[2] * v.column_direction[2]) /
              v.spacing_mm[1];
          const double fk = (d[0] * v.normal[0] + d[1] * v.normal[1] + d[2] * v.normal[2]) / v.spacing_mm[0];
          const long i = std::lround(fi), j = std::lround(fj), k = std::lround(fk);
          const double nii_value = nii.values[(size_t(z) * nii.dim[1] + y) * nii.dim[0] + x];
          bool ok = std::abs(fi - i) < 0.01 && std::abs(fj - j) < 0.01 && std::abs(fk - k) < 0.01 && i >= 0 && j >= 0 &&
                    k >= 0 && i < long(v.columns) && j < long(v.rows) && k < long(v.depth);
          if (ok) ok = v.voxels[(size_t(k) * v.rows + size_t(j)) * v.columns + size_t(i)] == nii_value;
          if (!ok && wrong++ < 5) {
            ADD_FAILURE() << layout << ": dcm2niix voxel (" << x << ", " << y << ", " << z << ") = " << nii_value
                          << " lands on (" << fi << ", " << fj << ", " << fk << ")";
          }
        }
      }
    }
    EXPECT_EQ(wrong, 0u) << layout;
  }
}

TEST_F(SeriesReaderTest, EnhancedCtPerFrameRescaleOverridesTheShared) {
  // Every other frame carries its own Pixel Value Transformation (intercept
  // -1000, stored values 24 lower); reading only the shared one would put
  // those frames 24 HU off.
  const json m = Generate("ect", "--modality CT --layout enhanced --shuffle");
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  ASSERT_EQ(volumes->size(), 1u);
  CheckVolume((*volumes)[0], m, 0);
  for (const SliceSource& s : (*volumes)[0].sources) EXPECT_GT(s.frame_number, 0u);
}

TEST_F(SeriesReaderTest, LegacyConvertedEnhancedCtAndEnhancedMr) {
  json m = Generate("lct", "--modality CT --layout legacy --shuffle");
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  CheckVolume((*volumes)[0], m, 0);
  m = Generate("emr", "--modality MR --layout enhanced --orientation axial --pixel-spacing 0.5,0.7 --shuffle");
  volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  CheckVolume((*volumes)[0], m, 0);
  EXPECT_EQ((*volumes)[0].units, "");
  m = Generate("mr", "--modality MR --layout single --shuffle");
  volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  CheckVolume((*volumes)[0], m, 0);
}

TEST_F(SeriesReaderTest, PetSlopeDiffersPerSliceAndBecomesSuv) {
  const json m = Generate("pt", "--modality PT --layout single --shuffle");
  // 370 MBq F-18 60 min before the series, 70 kg: 2.7633668e-4 g/Bq
  // (suv_test.cc works it out).
  EXPECT_NEAR(m["suv_scale"].get<double>(), 2.7633668171764e-4, 1e-12);
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  const Volume& v = (*volumes)[0];
  CheckVolume(v, m, 0);
  EXPECT_EQ(v.units, "SUVbw");
  // (k=2, j=1, i=1): stored 1017, slope 0.5 + 0.25 * 2 = 1.0: 1017 Bq/ml,
  // SUVbw = 1017 x 2.7633668e-4 = 0.28103441.
  EXPECT_NEAR(v.voxels[(2 * 10 + 1) * 14 + 1], 0.28103441, 1e-6);
  // Nothing is left in the scratch directory.
  EXPECT_TRUE(fs::is_empty(options_.scratch_dir));
}

TEST_F(SeriesReaderTest, LegacyConvertedPetPerFrameSlopeAndPhilipsCounts) {
  json m = Generate("lpt", "--modality PT --layout legacy --shuffle");
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  CheckVolume((*volumes)[0], m, 0);
  m = Generate("cnts", "--modality PT --layout single --pet-units CNTS");
  EXPECT_DOUBLE_EQ(m["suv_scale"].get<double>(), 0.000321);
  volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  CheckVolume((*volumes)[0], m, 0);
  // Philips often sends Implicit VR, where the private factor has no VR.
  for (std::string& p : paths_) {
    const std::string implicit = p + ".implicit";
    ASSERT_EQ(std::system(("dcmconv +ti " + p + " " + implicit).c_str()), 0);
    p = implicit;
  }
  volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  CheckVolume((*volumes)[0], m, 0);
}

TEST_F(SeriesReaderTest, CompressedObjectsReadAsTheUncompressed) {
  // The de-rescaled copies keep the object's transfer syntax: JPEG-LS for a
  // PET series (per-slice slopes), RLE for an enhanced CT (per-frame
  // intercepts), both lossless.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--modality PT --layout single --shuffle", "dcmcjpls"},
      {"--modality CT --layout enhanced --shuffle", "dcmcrle"},
  };
  for (const auto& [args, compressor] : cases) {
    const json m = Generate(compressor, args);
    std::vector<std::string> compressed;
    for (const std::string& p : paths_) {
      compressed.push_back(p + "." + compressor);
      const std::string cmd = compressor + " " + p + " " + compressed.back();
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    paths_ = compressed;
    auto volumes = Read();
    ASSERT_TRUE(volumes.ok()) << compressor << ": " << volumes.status();
    CheckVolume((*volumes)[0], m, 0);
  }
}

TEST_F(SeriesReaderTest, PetWithoutWeightOrDecayCorrectionIsRefused) {
  Generate("noweight", "--modality PT --no-weight");
  EXPECT_EQ(RefusalCode(Read().status()), "suv_no_weight");
  Generate("nodecay", "--modality PT --decay NONE");
  EXPECT_EQ(RefusalCode(Read().status()), "suv_decay_correction");
  const json m = Generate("admin", "--modality PT --decay ADMIN");
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  CheckVolume((*volumes)[0], m, 0);
}

// Each defect gen_series.py can write, and the code it must be refused with.
class SeriesDefectTest : public SeriesReaderTest {
 protected:
  void ExpectEachDefectRefused(const std::string& layout) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"tilt", "gantry_tilt"},
        {"gap", "missing_slices"},
        {"duplicate", "duplicate_positions"},
        {"mixed-orientation", "mixed_orientation"},
        {"nonuniform", "non_uniform_spacing"},
    };
    for (const auto& [defect, code] : cases) {
      Generate(layout + "-" + defect, "--modality CT --shuffle --layout " + layout + " --defect " + defect);
      const absl::Status s = Read().status();
      EXPECT_EQ(RefusalCode(s), code) << layout << " " << defect << ": " << s;
    }
  }
};

TEST_F(SeriesDefectTest, SingleFrameSeries) {
  ExpectEachDefectRefused("single");
  Generate("gap-message", "--modality CT --defect gap --slices 12");
  EXPECT_EQ(Read().status().message(), "slice 7 of 12 is missing: a gap of 5.0 mm where 2.5 mm is expected");
}

TEST_F(SeriesDefectTest, EnhancedObject) { ExpectEachDefectRefused("enhanced"); }

TEST_F(SeriesReaderTest, NonUniformSpacingResampledWhenAllowed) {
  // Gaps 2.5 mm six times then 3.0 mm five times: 30 mm; the median gap is
  // 2.5 mm, so 12 steps of 2.5 mm, 13 slices; from 15 mm on, grid slices fall
  // between sources. Values are linear in z, so linear interpolation must
  // reproduce -500 + 4 z + 3 j - 2 i exactly.
  const json m = Generate("resample", "--modality CT --defect nonuniform --shuffle");
  options_.allow_resample = true;
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  const Volume& v = (*volumes)[0];
  EXPECT_TRUE(v.resampled);
  ASSERT_EQ(v.depth, 13u);
  EXPECT_NEAR(v.spacing_mm[0], 2.5, 1e-6);
  size_t interpolated = 0;
  for (uint32_t k = 0; k < v.depth; ++k) {
    interpolated += v.sources[k].interpolated;
    for (uint32_t j = 0; j < v.rows; ++j) {
      for (uint32_t i = 0; i < v.columns; ++i) {
        const double want = Expected(m, k * v.spacing_mm[0], 0, static_cast<int>(j), static_cast<int>(i), 0);
        ASSERT_NEAR(v.voxels[(size_t{k} * v.rows + j) * v.columns + i], want, 1e-3) << k << " " << j << " " << i;
      }
    }
  }
  EXPECT_GT(interpolated, 0u);
  EXPECT_EQ(v.sources[0].sop_instance_uid, m["volumes"][0]["sources"][0]["sop_instance_uid"].get<std::string>());

  // The source slices stay beside the grid, in order along the normal, at
  // their own offsets and with their own values, for the SEG.
  const json& truth = m["volumes"][0]["sources"];
  const SourceStack& stack = v.source_stack;
  ASSERT_EQ(stack.slices.size(), truth.size());
  ASSERT_EQ(stack.offsets_mm.size(), truth.size());
  ASSERT_EQ(stack.voxels.size(), truth.size() * v.rows * v.columns);
  for (size_t s = 0; s < truth.size(); ++s) {
    EXPECT_EQ(stack.slices[s].sop_instance_uid, truth[s]["sop_instance_uid"].get<std::string>()) << s;
    EXPECT_FALSE(stack.slices[s].interpolated);
    const double z = truth[s]["offset_mm"];
    EXPECT_NEAR(stack.offsets_mm[s], z, 1e-6) << s;
    EXPECT_NEAR(stack.voxels[(s * v.rows + 2) * v.columns + 3], Expected(m, z, 0, 2, 3, 0), 1e-3) << s;
  }
  // Each grid slice names the source slice nearest to it.
  for (uint32_t k = 0; k < v.depth; ++k) {
    size_t nearest = 0;
    for (size_t s = 1; s < truth.size(); ++s) {
      if (std::abs(truth[s]["offset_mm"].get<double>() - k * 2.5) <
          std::abs(truth[nearest]["offset_mm"].get<double>() - k * 2.5)) {
        nearest = s;
      }
    }
    EXPECT_EQ(v.sources[k].sop_instance_uid, truth[nearest]["sop_instance_uid"].get<std::string>()) << k;
  }
}

// Resampling evens out spacing, never fills a gap: a missing slice is still
// refused with its reason when resampling is allowed.
TEST_F(SeriesReaderTest, MissingSliceIsRefusedEvenWhenResamplingIsAllowed) {
  Generate("gap", "--modality CT --defect gap --slices 12");
  options_.allow_resample = true;
  auto volumes = Read();
  ASSERT_FALSE(volumes.ok());
  EXPECT_EQ(RefusalCode(volumes.status()), "missing_slices") << volumes.status();
}

TEST_F(SeriesReaderTest, TwoAcquisitionsBecomeTwoVolumes) {
  json m = Generate("acq", "--modality CT --defect two-acquisitions --shuffle");
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  ASSERT_EQ(volumes->size(), 2u);
  for (const Volume& v : *volumes) {
    const int stack = v.stack_label == "acquisition 1" ? 0 : v.stack_label == "acquisition 2" ? 1 : -1;
    ASSERT_GE(stack, 0) << "[" << v.stack_label << "]";
    CheckVolume(v, m, stack);
  }
  m = Generate("temporal", "--modality MR --layout enhanced --defect two-acquisitions --shuffle");
  volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  ASSERT_EQ(volumes->size(), 2u);
  for (const Volume& v : *volumes) {
    const int stack = v.stack_label == "temporal position 1" ? 0 : v.stack_label == "temporal position 2" ? 1 : -1;
    ASSERT_GE(stack, 0) << "[" << v.stack_label << "]";
    CheckVolume(v, m, stack);
  }
}

TEST_F(SeriesReaderTest, EchoesAndPetTimeFramesBecomeVolumes) {
  json m = Generate("echo", "--modality MR --layout enhanced --defect two-acquisitions --stack-by echo --shuffle");
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  ASSERT_EQ(volumes->size(), 2u);
  for (const Volume& v : *volumes) {
    const int stack = v.stack_label == "echo 10" ? 0 : v.stack_label == "echo 20" ? 1 : -1;
    ASSERT_GE(stack, 0) << "[" << v.stack_label << "]";
    CheckVolume(v, m, stack);
  }
  m = Generate("dynamic", "--modality PT --defect two-acquisitions --stack-by time --shuffle");
  volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  ASSERT_EQ(volumes->size(), 2u);
  for (const Volume& v : *volumes) {
    const int stack = v.stack_label == "temporal position 0" ? 0 : v.stack_label == "temporal position 1000" ? 1 : -1;
    ASSERT_GE(stack, 0) << "[" << v.stack_label << "]";
    CheckVolume(v, m, stack);
  }
}

TEST_F(SeriesReaderTest, DebianPydicomCtSeries) {
  ASSERT_FALSE(kPydicomFiles.empty()) << "python3-pydicom's test files are needed";
  const std::string ct5n = kPydicomFiles + "/dicomdirtests/98892001/CT5N/";
  // Five 16 x 16 slices at z 8.7625 down to -1.2375, Instance Numbers 6..10
  // descending in z, Acquisition Numbers 1, 1, 1, 2, 2.
  paths_ = {ct5n + "2062", ct5n + "2392", ct5n + "2693", ct5n + "3023", ct5n + "3353"};
  auto volumes = Read();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  ASSERT_EQ(volumes->size(), 1u);
  const Volume& v = (*volumes)[0];
  EXPECT_EQ(v.depth, 5u);
  EXPECT_NEAR(v.spacing_mm[0], 2.5, 1e-4);
  EXPECT_NEAR(v.spacing_mm[1], 0.488281, 1e-6);
  EXPECT_NEAR(v.origin[0], -72.199997, 1e-5);
  EXPECT_NEAR(v.origin[1], -143.0, 1e-5);
  EXPECT_NEAR(v.origin[2], -1.2375, 1e-5);
  // Voxels against pydicom's own reading, sorted by z.
  const std::string raw = dir_ + "/ct5n.f32";
  const std::string cmd =
      "/usr/bin/python3 -c \"import glob, numpy, pydicom; "
      "d = sorted((pydicom.dcmread(f) for f in glob.glob('" +
      ct5n +
      "*')), "
      "key=lambda x: float(x.ImagePositionPatient[2])); "
      "numpy.stack([x.pixel_array * float(x.RescaleSlope) + float(x.RescaleIntercept) "
      "for x in d]).astype('float32').tofile('" +
      raw + "')\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(raw, std::ios::binary);
  std::vector<float> expected(v.voxels.size());
  in.read(reinterpret_cast<char*>(expected.data()), static_cast<std::streamsize>(expected.size() * sizeof(float)));
  ASSERT_EQ(static_cast<size_t>(in.gcount()), expected.size() * sizeof(float));
  EXPECT_EQ(v.voxels, expected);

  // CT2 has a slice 202.5 mm below three at 1.25 mm spacing.
  const std::string ct2 = kPydicomFiles + "/dicomdirtests/77654033/CT2/";
  paths_ = {ct2 + "17106", ct2 + "17136", ct2 + "17166", ct2 + "17196"};
  const absl::Status gap = Read().status();
  EXPECT_EQ(RefusalCode(gap), "missing_slices") << gap;
  EXPECT_EQ(gap.message(), "slices 2 to 162 of 165 are missing: a gap of 202.5 mm where 1.25 mm is expected");

  // MR700: seven radial slices, each in its own orientation.
  const std::string mr = kPydicomFiles + "/dicomdirtests/98892003/MR700/";
  paths_.clear();
  for (const char* f : {"4467", "4528", "4558", "4588", "4618", "4648", "4678"}) paths_.push_back(mr + f);
  EXPECT_EQ(RefusalCode(Read().status()), "mixed_orientation");

  paths_ = {ct5n + "2062", ct5n + "2392", ct2 + "17136"};
  EXPECT_EQ(RefusalCode(Read().status()), "mixed_series");
  paths_ = {kPydicomFiles + "/rtdose.dcm"};
  EXPECT_EQ(RefusalCode(Read().status()), "unsupported_object");
}

TEST_F(SeriesReaderTest, GeometryOfEveryFrameWithoutReadingPixels) {
  // Two temporal positions of an enhanced MR: 24 frames in file order, each
  // with its own position from the per-frame groups, the shared orientation
  // and pixel spacing, and the stack attributes of its Frame Content.
  const json m = Generate("geom", "--modality MR --layout enhanced --defect two-acquisitions --slices 12");
  auto slices = ReadSeriesGeometry(paths_);
  ASSERT_TRUE(slices.ok()) << slices.status();
  ASSERT_EQ(slices->size(), 24u);
  for (size_t f = 0; f < slices->size(); ++f) {
    const SliceGeometry& g = (*slices)[f];
    EXPECT_EQ(g.frame_number, f + 1);
    EXPECT_TRUE(g.has_position && g.has_orientation);
    EXPECT_DOUBLE_EQ(g.row_spacing_mm, 0.8);
    EXPECT_DOUBLE_EQ(g.column_spacing_mm, 0.6);
    EXPECT_EQ(g.stack_key[kTemporalPosition], f < 12 ? "1" : "2");
    EXPECT_EQ(g.stack_key[kStackId], "1");
    // Unshuffled, frame f is slice f % 12 along the normal: 2.5 mm apart.
    const double offset = 2.5 * static_cast<double>(f % 12);
    for (int a = 0; a < 3; ++a) {
      EXPECT_NEAR(g.position[a], m["origin"][a].get<double>() + offset * m["normal"][a].get<double>(), 1e-6);
    }
  }
}

TEST_F(SeriesReaderTest, ObjectsTheVolumeCannotUseAreRefused) {
  Generate("lut", "--modality CT --quirk modality-lut");
  EXPECT_EQ(RefusalCode(Read().status()), "modality_lut");
  Generate("rgb", "--modality CT --quirk rgb");
  EXPECT_EQ(RefusalCode(Read().status()), "not_greyscale");
  Generate("short", "--modality CT --quirk short-pixel-data");
  const absl::Status s = Read().status();
  EXPECT_EQ(RefusalCode(s), "undecodable") << s;
  EXPECT_NE(s.message().find("could not be decoded: Pixel Data holds"), std::string::npos) << s;
}

TEST_F(SeriesReaderTest, UnreadableObjectIsRefused) {
  Generate("ct", "--modality CT --slices 4");
  std::ofstream(paths_[2]) << "not DICOM";
  const absl::Status s = Read().status();
  EXPECT_EQ(RefusalCode(s), "unreadable_object") << s;
  EXPECT_EQ(s.message(), "object 3 of 4 cannot be read as an image: not a readable DICOM file");
}

}  // namespace
}  // namespace secondread::scp
