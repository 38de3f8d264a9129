#include "scp/pixels/volume.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace secondread::scp {
namespace {

constexpr double kPi = 3.14159265358979323846;

// A stack of `n` slices with the given directions, first pixel of slice k at
// origin + offsets[k] * normal, Acquisition Number 1.
struct Stack {
  Vec3 row{1, 0, 0};
  Vec3 column{0, 1, 0};
  Vec3 origin{-10, 20, 30};
  double row_spacing = 0.8;
  double column_spacing = 0.6;
  uint32_t rows = 10;
  uint32_t columns = 14;
};

Vec3 CrossOf(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

std::vector<SliceGeometry> Make(const Stack& st, const std::vector<double>& offsets) {
  const Vec3 n = CrossOf(st.row, st.column);
  std::vector<SliceGeometry> out;
  for (size_t k = 0; k < offsets.size(); ++k) {
    SliceGeometry g;
    g.sop_instance_uid = "1.2.3." + std::to_string(k + 1);
    g.has_position = g.has_orientation = true;
    for (int a = 0; a < 3; ++a) g.position[a] = st.origin[a] + offsets[k] * n[a];
    g.row_direction = st.row;
    g.column_direction = st.column;
    g.row_spacing_mm = st.row_spacing;
    g.column_spacing_mm = st.column_spacing;
    g.rows = st.rows;
    g.columns = st.columns;
    g.frame_of_reference_uid = "1.2.3.99";
    g.stack_key[kAcquisitionNumber] = "1";
    out.push_back(g);
  }
  return out;
}

std::vector<double> Uniform(size_t n, double spacing, double first = 0) {
  std::vector<double> v;
  for (size_t k = 0; k < n; ++k) v.push_back(first + spacing * static_cast<double>(k));
  return v;
}

absl::Status Plan(const std::vector<SliceGeometry>& s, VolumeOptions options = {}) {
  return PlanVolumes(s, options).status();
}

TEST(VolumeRefusalTest, CarriesItsCodeAndSentence) {
  const absl::Status s = VolumeRefusal("gantry_tilt", "the slices are sheared");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RefusalCode(s), "gantry_tilt");
  EXPECT_EQ(s.message(), "the slices are sheared");
  EXPECT_EQ(RefusalCode(absl::FailedPreconditionError("x")), "");
  EXPECT_EQ(RefusalCode(absl::OkStatus()), "");
}

TEST(PlanVolumesTest, SortsShuffledSlicesAlongTheNormal) {
  std::vector<SliceGeometry> slices = Make(Stack{}, Uniform(20, 2.5));
  std::mt19937 rng(7);
  std::shuffle(slices.begin(), slices.end(), rng);
  auto plans = PlanVolumes(slices, {});
  ASSERT_TRUE(plans.ok()) << plans.status();
  ASSERT_EQ(plans->size(), 1u);
  const StackPlan& p = (*plans)[0];
  ASSERT_EQ(p.order.size(), 20u);
  for (size_t k = 0; k < 20; ++k) {
    EXPECT_EQ(slices[p.order[k]].sop_instance_uid, "1.2.3." + std::to_string(k + 1)) << k;
    EXPECT_NEAR(p.offsets_mm[k], 2.5 * static_cast<double>(k), 1e-9);
  }
  EXPECT_DOUBLE_EQ(p.origin[0], -10);
  EXPECT_DOUBLE_EQ(p.origin[1], 20);
  EXPECT_DOUBLE_EQ(p.origin[2], 30);
  EXPECT_NEAR(p.spacing_mm[0], 2.5, 1e-12);
  EXPECT_EQ(p.depth, 20u);
  EXPECT_FALSE(p.resample);
}

TEST(PlanVolumesTest, SortsAgainstTheNormalWhenPositionsDescend) {
  // Feet-first: positions along +z while the normal of this orientation
  // (row (1,0,0), column (0,-1,0)) is (0,0,-1).
  Stack st;
  st.column = {0, -1, 0};
  std::vector<SliceGeometry> slices = Make(st, Uniform(5, -2.0));
  auto plans = PlanVolumes(slices, {});
  ASSERT_TRUE(plans.ok()) << plans.status();
  const StackPlan& p = (*plans)[0];
  EXPECT_EQ(p.normal, (Vec3{0, 0, -1}));
  // Slice 0 of the volume is the one furthest along -z... the highest offset
  // along the normal comes last, so the first is the last generated one.
  EXPECT_EQ(slices[p.order[0]].sop_instance_uid, "1.2.3.5");
  EXPECT_NEAR(p.origin[2], 30 + 8.0, 1e-9);
  EXPECT_NEAR(p.spacing_mm[0], 2.0, 1e-12);
}

TEST(PlanVolumesTest, SpacingComesFromEveryGapNotTheFirstTwo) {
  // Gaps 2.51, 2.49, 2.5, 2.5, 2.5, 2.5: the first two slices alone would say
  // 2.51 mm and misplace the last slice by 0.06 mm; every gap says
  // (15.0 - 0) / 6 = 2.5 mm.
  auto plans = PlanVolumes(Make(Stack{}, {0, 2.51, 5.0, 7.5, 10.0, 12.5, 15.0}), {});
  ASSERT_TRUE(plans.ok()) << plans.status();
  EXPECT_NEAR((*plans)[0].spacing_mm[0], 2.5, 1e-12);
}

TEST(PlanVolumesTest, ObliqueNonSquareGeometryMatchesHandComputedNumbers) {
  // row (0.6, 0.8, 0) x column (-0.48, 0.36, -0.8):
  //   normal = (0.8*-0.8 - 0*0.36, 0*-0.48 - 0.6*-0.8, 0.6*0.36 - 0.8*-0.48)
  //          = (-0.64, 0.48, 0.6).
  // Slice k's first pixel: (-100.5, 20.25, 30) + 2.5 k (-0.64, 0.48, 0.6),
  // e.g. k = 3: (-105.3, 23.85, 34.5).
  Stack st;
  st.row = {0.6, 0.8, 0};
  st.column = {-0.48, 0.36, -0.8};
  st.origin = {-100.5, 20.25, 30};
  std::vector<SliceGeometry> slices = Make(st, Uniform(6, 2.5));
  EXPECT_NEAR(slices[3].position[0], -105.3, 1e-9);
  EXPECT_NEAR(slices[3].position[1], 23.85, 1e-9);
  EXPECT_NEAR(slices[3].position[2], 34.5, 1e-9);
  std::reverse(slices.begin(), slices.end());
  auto plans = PlanVolumes(slices, {});
  ASSERT_TRUE(plans.ok()) << plans.status();
  const StackPlan& p = (*plans)[0];
  const Vec3 expected_normal{-0.64, 0.48, 0.6};
  for (int a = 0; a < 3; ++a) {
    EXPECT_NEAR(p.normal[a], expected_normal[a], 1e-12);
    EXPECT_NEAR(p.row_direction[a], st.row[a], 1e-12);
    EXPECT_NEAR(p.column_direction[a], st.column[a], 1e-12);
    EXPECT_NEAR(p.origin[a], st.origin[a], 1e-12);
  }
  // z, y (between rows: Pixel Spacing value 1), x (between columns: value 2).
  EXPECT_NEAR(p.spacing_mm[0], 2.5, 1e-12);
  EXPECT_DOUBLE_EQ(p.spacing_mm[1], 0.8);
  EXPECT_DOUBLE_EQ(p.spacing_mm[2], 0.6);
  EXPECT_EQ(p.rows, 10u);
  EXPECT_EQ(p.columns, 14u);
  // Voxel (k=3, j=2, i=5): origin + 5*0.6*row + 2*0.8*column + 3*2.5*normal
  //   = (-100.5 + 1.8 - 0.768 - 4.8, 20.25 + 2.4 + 0.576 + 3.6, 30 + 0 - 1.28 + 4.5)
  //   = (-104.268, 26.826, 33.22); it must be where the source slice k = 3
  //   puts its pixel (row 2, column 5).
  Vec3 voxel;
  for (int a = 0; a < 3; ++a) {
    voxel[a] = p.origin[a] + 5 * p.spacing_mm[2] * p.row_direction[a] + 2 * p.spacing_mm[1] * p.column_direction[a] +
               3 * p.spacing_mm[0] * p.normal[a];
  }
  EXPECT_NEAR(voxel[0], -104.268, 1e-9);
  EXPECT_NEAR(voxel[1], 26.826, 1e-9);
  EXPECT_NEAR(voxel[2], 33.22, 1e-9);
  const SliceGeometry& src = slices[p.order[3]];
  for (int a = 0; a < 3; ++a) {
    EXPECT_NEAR(voxel[a], src.position[a] + 5 * 0.6 * st.row[a] + 2 * 0.8 * st.column[a], 1e-9);
  }
}

TEST(PlanVolumesTest, RefusesGantryTiltWithItsAngle) {
  // Each slice shifted along the column direction by tan(15°) x its offset.
  std::vector<SliceGeometry> slices = Make(Stack{}, Uniform(12, 2.5));
  for (size_t k = 0; k < slices.size(); ++k)
    slices[k].position[1] += 2.5 * static_cast<double>(k) * std::tan(15 * kPi / 180);
  const absl::Status s = Plan(slices);
  EXPECT_EQ(RefusalCode(s), "gantry_tilt") << s;
  EXPECT_NE(s.message().find("15.0°"), std::string::npos) << s;
  EXPECT_NE(s.message().find("slice 12 of 12"), std::string::npos) << s;
  VolumeOptions resample;
  resample.allow_resample = true;
  EXPECT_EQ(RefusalCode(Plan(slices, resample)), "gantry_tilt");
}

TEST(PlanVolumesTest, ToleratesInPlaneJitterBelowHalfAPixel) {
  std::vector<SliceGeometry> slices = Make(Stack{}, Uniform(8, 2.5));
  slices[4].position[0] += 0.25;  // half of the smaller pixel spacing is 0.3 mm
  EXPECT_TRUE(Plan(slices).ok());
  slices[4].position[0] += 0.1;
  EXPECT_EQ(RefusalCode(Plan(slices)), "inconsistent_positions");
}

TEST(PlanVolumesTest, RefusesMissingSlicesNamingThem) {
  std::vector<double> offsets = Uniform(12, 2.5);
  offsets.erase(offsets.begin() + 5);  // the sixth slice of 12
  absl::Status s = Plan(Make(Stack{}, offsets));
  EXPECT_EQ(RefusalCode(s), "missing_slices");
  EXPECT_EQ(s.message(), "slice 6 of 12 is missing: a gap of 5.0 mm where 2.5 mm is expected");

  offsets.erase(offsets.begin() + 5, offsets.begin() + 7);  // three gone in a row now
  s = Plan(Make(Stack{}, offsets));
  EXPECT_EQ(s.message(), "slices 6 to 8 of 12 are missing: a gap of 10.0 mm where 2.5 mm is expected");
  VolumeOptions resample;
  resample.allow_resample = true;
  EXPECT_EQ(RefusalCode(Plan(Make(Stack{}, offsets), resample)), "missing_slices");
}

TEST(PlanVolumesTest, AbsurdGapIsNotCountedAsMissingSlices) {
  std::vector<double> offsets = Uniform(6, 2.5);
  offsets.push_back(1e30);
  EXPECT_EQ(RefusalCode(Plan(Make(Stack{}, offsets))), "non_uniform_spacing");
  VolumeOptions resample;
  resample.allow_resample = true;
  EXPECT_EQ(RefusalCode(Plan(Make(Stack{}, offsets), resample)), "too_large");
}

TEST(PlanVolumesTest, RefusesDuplicatePositions) {
  std::vector<double> offsets = Uniform(10, 2.5);
  offsets.insert(offsets.begin() + 4, offsets[4] + 0.01);
  const absl::Status s = Plan(Make(Stack{}, offsets));
  EXPECT_EQ(RefusalCode(s), "duplicate_positions");
  EXPECT_EQ(s.message(), "slices 5 and 6 of 11 are at the same position (0.01 mm apart)");
}

TEST(PlanVolumesTest, RefusesMixedOrientation) {
  std::vector<SliceGeometry> slices = Make(Stack{}, Uniform(10, 2.5));
  // 5°: the far edge of this small image moves by 0.73 mm, more than half a
  // pixel (0.3 mm).
  const double a = 5 * kPi / 180;
  slices[7].row_direction = {std::cos(a), std::sin(a), 0};
  slices[7].column_direction = {-std::sin(a), std::cos(a), 0};
  const absl::Status s = Plan(slices);
  EXPECT_EQ(RefusalCode(s), "mixed_orientation");
  EXPECT_NE(s.message().find("5.0°"), std::string::npos) << s;
  VolumeOptions resample;
  resample.allow_resample = true;
  EXPECT_EQ(RefusalCode(Plan(slices, resample)), "mixed_orientation");
}

TEST(PlanVolumesTest, AcceptsCosinesRoundedToSixDecimals) {
  std::vector<SliceGeometry> slices = Make(Stack{}, Uniform(10, 2.5));
  slices[3].row_direction = {0.999999, 0.001, 0};  // 0.06° apart: 0.01 mm at the image's edge
  EXPECT_TRUE(Plan(slices).ok());
}

TEST(PlanVolumesTest, RefusesNonUniformSpacingUnlessResamplingIsAllowed) {
  // Gaps 2.5, 2.5, 3.0, 3.0: median 2.75 mm.
  const std::vector<double> offsets{0, 2.5, 5.0, 8.0, 11.0};
  const absl::Status s = Plan(Make(Stack{}, offsets));
  EXPECT_EQ(RefusalCode(s), "non_uniform_spacing");
  EXPECT_EQ(s.message(),
            "the slice spacing is not uniform: 2.5 mm between slices 1 and 2 of 5 where 2.75 mm is expected");
  VolumeOptions resample;
  resample.allow_resample = true;
  auto plans = PlanVolumes(Make(Stack{}, offsets), resample);
  ASSERT_TRUE(plans.ok()) << plans.status();
  // 11 mm at the median 2.75 mm: 4 steps, 5 slices, spacing 11 / 4 = 2.75 mm.
  EXPECT_TRUE((*plans)[0].resample);
  EXPECT_EQ((*plans)[0].depth, 5u);
  EXPECT_DOUBLE_EQ((*plans)[0].spacing_mm[0], 2.75);
}

TEST(PlanVolumesTest, RefusesSlowDriftFromTheGrid) {
  // Each gap 2.5 + 0.04 mm for the first half: every gap is within the 0.05 mm
  // tolerance of the median, but slice 6 ends up 0.12 mm off the grid.
  const std::vector<double> offsets{0, 2.54, 5.08, 7.62, 10.12, 12.62, 15.12, 17.62, 20.12};
  EXPECT_EQ(RefusalCode(Plan(Make(Stack{}, offsets))), "non_uniform_spacing");
}

TEST(PlanVolumesTest, RefusesTooFewSlices) {
  const absl::Status s = Plan(Make(Stack{}, Uniform(2, 2.5)));
  EXPECT_EQ(RefusalCode(s), "too_few_slices");
  EXPECT_EQ(s.message(), "there are 2 slices; a volume needs at least 3");
  EXPECT_EQ(RefusalCode(Plan({})), "too_few_slices");
  VolumeOptions one;
  one.min_slices = 1;
  EXPECT_EQ(Plan(Make(Stack{}, Uniform(1, 2.5)), one).message(), "there is 1 slice; a volume needs at least 2");
  EXPECT_TRUE(Plan(Make(Stack{}, Uniform(2, 2.5)), one).ok());
}

TEST(PlanVolumesTest, RefusesMixedFrameOfReferenceSizeAndPixelSpacing) {
  std::vector<SliceGeometry> slices = Make(Stack{}, Uniform(6, 2.5));
  slices[2].frame_of_reference_uid = "1.2.3.100";
  EXPECT_EQ(RefusalCode(Plan(slices)), "multiple_frames_of_reference");
  slices = Make(Stack{}, Uniform(6, 2.5));
  slices[2].columns = 16;
  EXPECT_EQ(RefusalCode(Plan(slices)), "mixed_size");
  slices = Make(Stack{}, Uniform(6, 2.5));
  slices[2].row_spacing_mm = 0.85;
  EXPECT_EQ(RefusalCode(Plan(slices)), "mixed_pixel_spacing");
}

TEST(PlanVolumesTest, RefusesMissingGeometry) {
  std::vector<SliceGeometry> slices = Make(Stack{}, Uniform(6, 2.5));
  slices[1].has_position = false;
  EXPECT_EQ(RefusalCode(Plan(slices)), "missing_geometry");
  slices = Make(Stack{}, Uniform(6, 2.5));
  slices[1].column_direction = {1, 0, 0};  // not perpendicular to the row
  EXPECT_EQ(RefusalCode(Plan(slices)), "missing_geometry");
  slices = Make(Stack{}, Uniform(6, 2.5));
  slices[1].row_spacing_mm = 0;
  EXPECT_EQ(RefusalCode(Plan(slices)), "missing_geometry");
}

TEST(PlanVolumesTest, SplitsTwoAcquisitionsAtTheSamePositions) {
  std::vector<SliceGeometry> first = Make(Stack{}, Uniform(8, 2.5));
  std::vector<SliceGeometry> second = Make(Stack{}, Uniform(8, 2.5));
  for (SliceGeometry& g : second) {
    g.stack_key[kAcquisitionNumber] = "2";
    g.sop_instance_uid += ".2";
  }
  std::vector<SliceGeometry> all;
  for (size_t k = 0; k < 8; ++k) {  // interleaved, as they may arrive
    all.push_back(second[k]);
    all.push_back(first[k]);
  }
  auto plans = PlanVolumes(all, {});
  ASSERT_TRUE(plans.ok()) << plans.status();
  ASSERT_EQ(plans->size(), 2u);
  EXPECT_EQ((*plans)[0].label, "acquisition 2");
  EXPECT_EQ((*plans)[1].label, "acquisition 1");
  for (const StackPlan& p : *plans) {
    EXPECT_EQ(p.order.size(), 8u);
    for (size_t i : p.order) EXPECT_EQ(all[i].stack_key[kAcquisitionNumber], p.label.substr(12));
  }
}

TEST(PlanVolumesTest, SplitVolumesShareTheVoxelBound) {
  std::vector<SliceGeometry> all = Make(Stack{}, Uniform(8, 2.5));
  for (SliceGeometry g : Make(Stack{}, Uniform(8, 2.5))) {
    g.stack_key[kAcquisitionNumber] = "2";
    all.push_back(g);
  }
  VolumeOptions options;
  options.max_voxels = 2 * 8 * 10 * 14;
  EXPECT_TRUE(PlanVolumes(all, options).ok());
  options.max_voxels -= 1;  // each volume still fits, both together do not
  const absl::Status s = Plan(all, options);
  EXPECT_EQ(RefusalCode(s), "too_large") << s;
}

TEST(PlanVolumesTest, NeverSplitsAConsistentSeries) {
  // Some scanners number every slice as its own acquisition.
  std::vector<SliceGeometry> slices = Make(Stack{}, Uniform(8, 2.5));
  for (size_t k = 0; k < slices.size(); ++k) slices[k].stack_key[kAcquisitionNumber] = std::to_string(k + 1);
  auto plans = PlanVolumes(slices, {});
  ASSERT_TRUE(plans.ok()) << plans.status();
  ASSERT_EQ(plans->size(), 1u);
  EXPECT_EQ((*plans)[0].label, "");
}

TEST(PlanVolumesTest, RefusesOverlappingAcquisitionsThatAreNotEachAVolume) {
  std::vector<SliceGeometry> all = Make(Stack{}, Uniform(8, 2.5));
  std::vector<double> offsets = Uniform(8, 2.5);
  offsets.erase(offsets.begin() + 3);
  for (SliceGeometry g : Make(Stack{}, offsets)) {
    g.stack_key[kTemporalPosition] = "2";
    all.push_back(g);
  }
  const absl::Status s = Plan(all);
  EXPECT_EQ(RefusalCode(s), "multiple_acquisitions") << s;
  EXPECT_NE(s.message().find("temporal position 2: slice 4 of 8 is missing"), std::string::npos) << s;
}

TEST(PlanVolumesTest, BoundsTheVolume) {
  VolumeOptions small;
  small.max_voxels = 10 * 14 * 5;
  EXPECT_TRUE(PlanVolumes(Make(Stack{}, Uniform(5, 2.5)), small).ok());
  EXPECT_EQ(RefusalCode(Plan(Make(Stack{}, Uniform(6, 2.5)), small)), "too_large");
  small.max_slices = 4;
  EXPECT_EQ(RefusalCode(Plan(Make(Stack{}, Uniform(5, 2.5)), small)), "too_large");
}

TEST(ResampleAlongZTest, InterpolatesLinearlyBetweenTheNeighbouringSlices) {
  // Slices at 0, 2.5, 5.0, 8.0, 11.0 mm holding 0, 10, 20, 32, 44 (and twice
  // that in the second pixel). Onto 2.75 mm:
  //   z = 0     -> 0
  //   z = 2.75  -> between 2.5 and 5.0, w = 0.25/2.5 = 0.1:  10 + 0.1*10 = 11
  //   z = 5.5   -> between 5.0 and 8.0, w = 0.5/3 = 1/6:     20 + 12/6  = 22
  //   z = 8.25  -> between 8.0 and 11.0, w = 0.25/3:         32 + 1     = 33
  //   z = 11.0  -> 44
  const std::vector<double> offsets{0, 2.5, 5.0, 8.0, 11.0};
  const std::vector<float> source{0, 0, 10, 20, 20, 40, 32, 64, 44, 88};
  const std::vector<float> out = ResampleAlongZ(source, offsets, 2, 5, 2.75);
  const std::vector<float> expected{0, 0, 11, 22, 22, 44, 33, 66, 44, 88};
  ASSERT_EQ(out.size(), expected.size());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-4) << i;
}

// A resampled volume as the reader leaves it: `depth` uniform slices
// `spacing` apart over source slices at `offsets` mm along the normal, source
// slice s holding 100 + s in every voxel.
Volume Resampled(const std::vector<double>& offsets, uint32_t depth, double spacing) {
  Volume v;
  v.depth = depth;
  v.rows = 2;
  v.columns = 3;
  v.spacing_mm = {spacing, 0.8, 0.6};
  v.origin = {-10, 20, 30};
  v.row_direction = {0.6, 0.8, 0};
  v.column_direction = {-0.48, 0.36, -0.8};
  v.normal = CrossOf(v.row_direction, v.column_direction);
  v.modality = "CT";
  v.units = "HU";
  v.resampled = true;
  v.voxels.assign(size_t{depth} * 6, 0.0f);
  for (uint32_t k = 0; k < depth; ++k) v.sources.push_back({"grid", 0, true});
  for (size_t s = 0; s < offsets.size(); ++s) {
    v.source_stack.slices.push_back({"1.2.3." + std::to_string(s + 1), 0, false});
    v.source_stack.offsets_mm.push_back(offsets[s]);
    for (int p = 0; p < 6; ++p) v.source_stack.voxels.push_back(100.0f + static_cast<float>(s));
  }
  return v;
}

// Gaps of 2.5 mm then 3.0 mm, as gen_series.py --defect nonuniform writes
// them: on the 2.5 mm grid, source 18 mm is nearest grid slice 7 (17.5 mm), 21
// mm slice 8 (20 mm), 24 mm slice 10 (25 mm): grid slice 9 (22.5 mm) lies on
// no source slice and no source slice takes it.
const std::vector<double> kUneven{0, 2.5, 5, 7.5, 10, 12.5, 15, 18, 21, 24, 27, 30};

TEST(SourceSlicesTest, EachSourceSliceTakesTheLabelsOfTheNearestGridSlice) {
  const Volume v = Resampled(kUneven, 13, 2.5);
  EXPECT_EQ(UniformSliceOfSources(v), (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12}));
  // 22.5 mm lies halfway between 21 and 24 mm: the lower one.
  EXPECT_EQ(SourceSliceOfUniform(v), (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 10, 11}));
  // Grid slice k holds k + 1 on its even pixels and 0 on its odd ones.
  std::vector<uint8_t> grid(size_t{v.depth} * 6, 0);
  for (uint32_t k = 0; k < v.depth; ++k)
    for (int p = 0; p < 6; p += 2) grid[k * 6 + p] = static_cast<uint8_t>(k + 1);
  auto labels = LabelMapOnSourceSlices(v, grid);
  ASSERT_TRUE(labels.ok()) << labels.status();
  ASSERT_EQ(labels->size(), kUneven.size() * 6);
  for (size_t s = 0; s < kUneven.size(); ++s) {
    const int nearest = static_cast<int>(std::lround(kUneven[s] / 2.5));  // no tie among these
    for (int p = 0; p < 6; ++p) EXPECT_EQ((*labels)[s * 6 + p], p % 2 == 0 ? nearest + 1 : 0) << s << " " << p;
  }
  // A source slice halfway between two grid slices takes the lower one.
  const Volume tie = Resampled({0, 3, 4}, 3, 2);
  EXPECT_EQ(UniformSliceOfSources(tie), (std::vector<uint32_t>{0, 1, 2}));
}

TEST(SourceSlicesTest, RefusesWhatIsNotAResampledVolumeOrAMapThatDoesNotFit) {
  Volume v = Resampled(kUneven, 13, 2.5);
  EXPECT_EQ(LabelMapOnSourceSlices(v, std::vector<uint8_t>(12 * 6)).status().code(),
            absl::StatusCode::kInvalidArgument);
  v.resampled = false;
  EXPECT_EQ(LabelMapOnSourceSlices(v, std::vector<uint8_t>(13 * 6)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TakeSourceSlices(v).status().code(), absl::StatusCode::kInvalidArgument);
  Volume short_voxels = Resampled(kUneven, 13, 2.5);
  short_voxels.source_stack.voxels.pop_back();
  EXPECT_EQ(TakeSourceSlices(short_voxels).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SourceSlicesTest, TheSourceSlicesBecomeAVolumeAtTheirTruePositions) {
  Volume grid = Resampled(kUneven, 13, 2.5);
  auto taken = TakeSourceSlices(grid);
  ASSERT_TRUE(taken.ok()) << taken.status();
  const Volume& v = *taken;
  EXPECT_FALSE(v.resampled);
  EXPECT_EQ(v.depth, kUneven.size());
  EXPECT_EQ(v.slice_offsets_mm, kUneven);
  EXPECT_DOUBLE_EQ(v.resampled_spacing_mm, 2.5);
  EXPECT_DOUBLE_EQ(v.spacing_mm[0], 2.5);
  ASSERT_EQ(v.sources.size(), kUneven.size());
  ASSERT_EQ(v.voxels.size(), kUneven.size() * 6);
  for (uint32_t s = 0; s < v.depth; ++s) {
    EXPECT_EQ(v.sources[s].sop_instance_uid, "1.2.3." + std::to_string(s + 1));
    EXPECT_FALSE(v.sources[s].interpolated);
    EXPECT_EQ(v.voxels[s * 6 + 5], 100.0f + static_cast<float>(s));
    EXPECT_DOUBLE_EQ(SliceOffset(v, s), kUneven[s]);
    const Vec3 at = SlicePosition(v, s);
    for (int a = 0; a < 3; ++a) EXPECT_NEAR(at[a], v.origin[a] + kUneven[s] * v.normal[a], 1e-12);
  }
  EXPECT_TRUE(grid.source_stack.voxels.empty()) << "the source voxels are moved, not copied";
  // A uniform volume's slices lie at k times the spacing.
  EXPECT_DOUBLE_EQ(SliceOffset(grid, 9), 22.5);
}

}  // namespace
}  // namespace secondread::scp
