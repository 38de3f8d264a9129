// secondread-validate-model --volume scores label maps as
// tools/models/evaluate3d.py does: Dice of all lesion voxels, a lesion
// detected by overlap or by the centroid (rounded half up) of a 26-connected
// predicted component, and the components that do neither as false
// positives. volume_model_validation_test compares the two on real volumes;
// these cases pin each rule on its own.
#include <gtest/gtest.h>

#include "tools/validate/volume_validation.h"

namespace secondread::validate {
namespace {

constexpr uint32_t kD = 8, kH = 8, kW = 8;

struct Grid {
  std::vector<uint8_t> v = std::vector<uint8_t>(size_t{kD} * kH * kW, 0);
  uint8_t& at(uint32_t z, uint32_t y, uint32_t x) { return v[(size_t{z} * kH + y) * kW + x]; }
};

// The surface of the cube [lo, lo + n) on each axis, hollow inside.
void Shell(Grid& g, uint32_t lo, uint32_t n) {
  for (uint32_t z = lo; z < lo + n; ++z)
    for (uint32_t y = lo; y < lo + n; ++y)
      for (uint32_t x = lo; x < lo + n; ++x)
        if (z == lo || y == lo || x == lo || z == lo + n - 1 || y == lo + n - 1 || x == lo + n - 1) g.at(z, y, x) = 1;
}

TEST(VolumeScoring, PerfectPrediction) {
  Grid truth, pred;
  truth.at(1, 1, 1) = 1;
  truth.at(1, 1, 2) = 1;
  truth.at(6, 6, 6) = 2;
  pred = truth;
  const auto s = ScoreVolume(pred.v, truth.v, kD, kH, kW);
  ASSERT_TRUE(s.dice.has_value());
  EXPECT_DOUBLE_EQ(*s.dice, 1.0);
  EXPECT_EQ(s.lesions, 2);
  EXPECT_EQ(s.detected, 2);
  EXPECT_EQ(s.false_positives, 0);
  EXPECT_EQ(s.predicted_voxels, 3);
  EXPECT_EQ(s.truth_voxels, 3);
}

TEST(VolumeScoring, DiceOfAllLesionVoxels) {
  Grid truth, pred;
  truth.at(2, 2, 2) = 1;
  truth.at(2, 2, 3) = 1;
  pred.at(2, 2, 3) = 1;
  pred.at(2, 2, 4) = 1;
  pred.at(2, 2, 5) = 1;
  const auto s = ScoreVolume(pred.v, truth.v, kD, kH, kW);
  EXPECT_DOUBLE_EQ(*s.dice, 2.0 * 1 / (3 + 2));
  EXPECT_EQ(s.detected, 1);
  EXPECT_EQ(s.false_positives, 0);
}

TEST(VolumeScoring, ComponentsAre26Connected) {
  Grid mask;
  mask.at(0, 0, 0) = 1;
  mask.at(1, 1, 1) = 1;  // touches the first at a corner only
  mask.at(3, 0, 0) = 1;  // apart
  uint32_t count = 0;
  const auto ids = ConnectedComponents(mask.v, kD, kH, kW, &count);
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(ids[0], 1u);
  EXPECT_EQ(ids[(size_t{1} * kH + 1) * kW + 1], 1u);
  EXPECT_EQ(ids[size_t{3} * kH * kW], 2u);
}

TEST(VolumeScoring, CentroidInsideALesionDetectsIt) {
  // A hollow predicted shell around a one-voxel lesion: no overlap, but the
  // shell's centroid (2.5 on each axis, rounded half up to 3) is the lesion.
  Grid truth, pred;
  Shell(pred, 1, 4);
  truth.at(3, 3, 3) = 1;
  const auto s = ScoreVolume(pred.v, truth.v, kD, kH, kW);
  EXPECT_EQ(s.detected, 1);
  EXPECT_EQ(s.false_positives, 0);
  EXPECT_DOUBLE_EQ(*s.dice, 0.0);
}

TEST(VolumeScoring, CentroidRoundsHalfUp) {
  // The same shell with the lesion at (2, 2, 2): rounding half down would
  // find it; evaluate3d.py's floor(c + 0.5) does not.
  Grid truth, pred;
  Shell(pred, 1, 4);
  truth.at(2, 2, 2) = 1;
  const auto s = ScoreVolume(pred.v, truth.v, kD, kH, kW);
  EXPECT_EQ(s.detected, 0);
  EXPECT_EQ(s.false_positives, 1);
}

TEST(VolumeScoring, VolumeWithoutLesions) {
  Grid truth, pred;
  pred.at(0, 0, 0) = 1;
  pred.at(7, 7, 7) = 1;
  const auto s = ScoreVolume(pred.v, truth.v, kD, kH, kW);
  EXPECT_FALSE(s.dice.has_value());
  EXPECT_EQ(s.lesions, 0);
  EXPECT_EQ(s.false_positives, 2);
}

TEST(VolumeScoring, MissedLesionAndFalsePositive) {
  Grid truth, pred;
  truth.at(1, 1, 1) = 1;
  truth.at(6, 1, 1) = 2;
  pred.at(1, 1, 1) = 1;
  pred.at(1, 6, 6) = 1;
  const auto s = ScoreVolume(pred.v, truth.v, kD, kH, kW);
  EXPECT_EQ(s.lesions, 2);
  EXPECT_EQ(s.detected, 1);
  EXPECT_EQ(s.false_positives, 1);
  EXPECT_DOUBLE_EQ(*s.dice, 2.0 * 1 / (2 + 2));
}

}  // namespace
}  // namespace secondread::validate
