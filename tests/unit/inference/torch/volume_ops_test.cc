#include "inference/torch/volume_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <string>

namespace secondread::inference::torch_backend {
namespace {

using at::indexing::Slice;

// The numbers volume_reference.py computed with numpy.
const std::map<std::string, at::Tensor>& Reference() {
  static const auto* records = [] {
    auto* out = new std::map<std::string, at::Tensor>;
    std::ifstream in(SECONDREAD_VOLUME_REFERENCE);
    EXPECT_TRUE(in.good()) << SECONDREAD_VOLUME_REFERENCE;
    std::string name;
    while (in >> name) {
      int ndim = 0;
      in >> ndim;
      std::vector<int64_t> dims(static_cast<size_t>(ndim));
      int64_t count = 1;
      for (auto& d : dims) {
        in >> d;
        count *= d;
      }
      std::vector<double> values(static_cast<size_t>(count));
      for (auto& v : values) in >> v;
      (*out)[name] = at::tensor(values, at::kDouble).reshape(dims).to(at::kFloat);
    }
    return out;
  }();
  return *records;
}

at::Tensor Ref(const std::string& name) {
  auto it = Reference().find(name);
  EXPECT_NE(it, Reference().end()) << name;
  return it == Reference().end() ? at::Tensor() : it->second;
}

// The same formula as test_volume() in the reference script.
at::Tensor TestVolume(int64_t d, int64_t h, int64_t w) {
  at::Tensor z = at::arange(d, at::kDouble).view({d, 1, 1});
  at::Tensor y = at::arange(h, at::kDouble).view({1, h, 1});
  at::Tensor x = at::arange(w, at::kDouble).view({1, 1, w});
  return (at::sin(0.7 * z + 0.3 * y * y) + 0.05 * x * (x - 1.5) + 0.1 * z * y).to(at::kFloat);
}

// The fixed 3x3x3 convolution of the reference script, as the "model".
Predictor ConvModel() {
  at::Tensor w = at::zeros({2, 1, 3, 3, 3});
  auto acc = w.accessor<float, 5>();
  for (int k = 0; k < 2; ++k)
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        for (int c = 0; c < 3; ++c) acc[k][0][a][b][c] = static_cast<float>((((k + 1) * (a * 9 + b * 3 + c)) % 7) - 3) / 10.0f;
  at::Tensor bias = at::tensor({0.0f, 0.1f});
  return [w, bias](const at::Tensor& x) { return at::conv3d(x, w, bias, {1, 1, 1}, {1, 1, 1}); };
}

void ExpectClose(const at::Tensor& got, const at::Tensor& want, double tol = 1e-5) {
  ASSERT_EQ(got.sizes(), want.sizes());
  const double diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LT(diff, tol);
}

TEST(VolumeOpsTest, TheTestVolumeMatchesTheReferenceInput) {
  ExpectClose(TestVolume(3, 4, 5), Ref("resample_input"));
  ExpectClose(TestVolume(6, 7, 9), Ref("window_input"));
}

TEST(VolumeOpsTest, TrilinearAndNearestResamplingMatchTheReference) {
  at::Tensor v = TestVolume(3, 4, 5).view({1, 1, 3, 4, 5});
  ExpectClose(Resample(v, {5, 3, 8}, Interpolation::kLinear).squeeze(0).squeeze(0), Ref("trilinear_5_3_8"));
  ExpectClose(Resample(v, {5, 3, 8}, Interpolation::kNearest).squeeze(0).squeeze(0), Ref("nearest_5_3_8"));
  // The same size is a no-op, not a resampling that could shift anything.
  EXPECT_TRUE(Resample(v, {3, 4, 5}, Interpolation::kLinear).equal(v));
}

TEST(VolumeOpsTest, LabelResamplingIsNearestResamplingInBytes) {
  // Labels 0..4 in a pattern with no symmetry, on grids that shrink, grow by
  // whole and by fractional factors, and keep an axis.
  const at::Tensor labels = at::arange(7 * 11 * 13, at::kLong).remainder(5).view({1, 1, 7, 11, 13}).to(at::kByte);
  for (const Size3& size : {Size3{7, 11, 13}, Size3{3, 5, 6}, Size3{14, 22, 26}, Size3{10, 17, 29}, Size3{7, 4, 40},
                            Size3{1, 1, 1}, Size3{300, 31, 9}}) {
    const at::Tensor got = ResampleLabels(labels, size);
    const at::Tensor want = Resample(labels.to(at::kFloat), size, Interpolation::kNearest).to(at::kByte);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(got.equal(want)) << size[0] << "x" << size[1] << "x" << size[2];
    EXPECT_EQ(got.scalar_type(), at::kByte);
  }
}

TEST(VolumeOpsTest, ResampledSizeKeepsTheExtent) {
  EXPECT_EQ(ResampledSize({40, 100, 100}, {2.5, 0.8, 0.8}, {1.5, 1.0, 1.0}), (Size3{67, 80, 80}));
  EXPECT_EQ(ResampledSize({40, 100, 100}, {2.5, 0.8, 0.8}, {0, 0, 0}), (Size3{40, 100, 100}));
  EXPECT_EQ(ResampledSize({1, 2, 2}, {1, 1, 1}, {50, 50, 50}), (Size3{1, 1, 1}));
}

TEST(VolumeOpsTest, GaussianImportanceMapMatchesTheReference) {
  ExpectClose(ImportanceMap({4, 5, 6}, Blending::kGaussian, 0.125, at::TensorOptions()), Ref("importance_4_5_6"), 1e-6);
  at::Tensor constant = ImportanceMap({2, 3, 4}, Blending::kConstant, 0.125, at::TensorOptions());
  EXPECT_TRUE(constant.equal(at::ones({2, 3, 4})));
  // Symmetric, largest in the middle.
  at::Tensor g = ImportanceMap({5, 5, 5}, Blending::kGaussian, 0.25, at::TensorOptions());
  EXPECT_FLOAT_EQ(g[2][2][2].item<float>(), 1.0f);
  EXPECT_TRUE(g.equal(g.flip({0, 1, 2})));
}

TEST(VolumeOpsTest, WindowStartsFollowMonai) {
  auto s = WindowStarts({10, 4, 7}, {4, 4, 4}, 0.5);
  EXPECT_EQ(s[0], (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(s[1], (std::vector<int64_t>{0}));      // the axis equals the ROI
  EXPECT_EQ(s[2], (std::vector<int64_t>{0, 2, 3}));  // the last one pulled back to the edge
  s = WindowStarts({9, 9, 9}, {4, 4, 4}, 0.0);
  EXPECT_EQ(s[0], (std::vector<int64_t>{0, 4, 5}));
  s = WindowStarts({5, 5, 5}, {4, 4, 4}, 0.9);  // a step below one voxel becomes one
  EXPECT_EQ(s[0], (std::vector<int64_t>{0, 1}));
}

TEST(VolumeOpsTest, SmallInputsArePaddedSymmetricallyUpToTheRoi) {
  auto pad = PaddingFor({3, 5, 2}, {4, 4, 4});
  EXPECT_EQ(pad[0], (std::pair<int64_t, int64_t>{0, 1}));
  EXPECT_EQ(pad[1], (std::pair<int64_t, int64_t>{0, 0}));
  EXPECT_EQ(pad[2], (std::pair<int64_t, int64_t>{1, 1}));
  // The model sees ROI-sized windows; the result comes back on the input grid.
  std::vector<std::vector<int64_t>> seen;
  at::Tensor out = SlidingWindow(TestVolume(3, 5, 2).view({1, 1, 3, 5, 2}), {{4, 4, 4}, 0.25, Blending::kGaussian, 0.25, 1},
                                 [&](const at::Tensor& x) {
                                   seen.push_back(x.sizes().vec());
                                   return ConvModel()(x);
                                 });
  ASSERT_FALSE(seen.empty());
  for (const auto& s : seen) EXPECT_EQ(s, (std::vector<int64_t>{1, 1, 4, 4, 4}));
  ExpectClose(out.squeeze(0), Ref("window_padded_4_4_4"));
}

TEST(VolumeOpsTest, SlidingWindowBlendMatchesTheReference) {
  at::Tensor v = TestVolume(6, 7, 9).view({1, 1, 6, 7, 9});
  // The whole-volume convolution is a different answer from the blended
  // windows (the windows see zeros at their edges), so the blend is tested.
  ExpectClose(ConvModel()(v).squeeze(0), Ref("conv_whole"));
  ASSERT_GT((Ref("conv_whole") - Ref("window_gaussian_4_4_4_o05")).abs().max().item<float>(), 0.01f);

  for (int batch : {1, 3, 64}) {
    at::Tensor g = SlidingWindow(v, {{4, 4, 4}, 0.5, Blending::kGaussian, 0.125, batch}, ConvModel());
    ExpectClose(g.squeeze(0), Ref("window_gaussian_4_4_4_o05"));
  }
  at::Tensor c = SlidingWindow(v, {{5, 3, 4}, 0.25, Blending::kConstant, 0.125, 2}, ConvModel());
  ExpectClose(c.squeeze(0), Ref("window_constant_5_3_4_o025"));
}

TEST(VolumeOpsTest, BlendingWeightsSumToOneForAPointwiseModel) {
  // A pointwise model gives the same answer in every window, so any correct
  // weighting must return it unchanged.
  at::Tensor v = TestVolume(7, 6, 5).view({1, 1, 7, 6, 5});
  for (Blending b : {Blending::kGaussian, Blending::kConstant}) {
    at::Tensor out = SlidingWindow(v, {{4, 3, 4}, 0.5, b, 0.125, 2}, [](const at::Tensor& x) { return x * 2 + 1; });
    ExpectClose(out, v * 2 + 1);
  }
}

std::array<double, 9> Direction(std::array<double, 3> row, std::array<double, 3> col, std::array<double, 3> normal) {
  return {row[0], row[1], row[2], col[0], col[1], col[2], normal[0], normal[1], normal[2]};
}

TEST(VolumeOpsTest, AxialLpsNeedsNothingForAnLpsModelAndFlipsXYForRas) {
  // An axial CT stacked feet to head: rows run to the patient's left,
  // columns to posterior, slices to superior.
  const auto axial = Direction({1, 0, 0}, {0, 1, 0}, {0, 0, 1});
  auto lps = PlanReorientation(axial, Orientation::kLps);
  ASSERT_TRUE(lps.ok()) << lps.status();
  EXPECT_EQ(lps->perm, (std::array<int, 3>{0, 1, 2}));
  EXPECT_EQ(lps->flip, (std::array<bool, 3>{false, false, false}));
  auto ras = PlanReorientation(axial, Orientation::kRas);
  ASSERT_TRUE(ras.ok());
  EXPECT_EQ(ras->perm, (std::array<int, 3>{0, 1, 2}));
  EXPECT_EQ(ras->flip, (std::array<bool, 3>{false, true, true}));  // z kept; y and x reversed

  at::Tensor v = TestVolume(2, 3, 4).view({1, 1, 2, 3, 4});
  at::Tensor r = Reorient(v, *ras);
  // Voxel (z, y, x) of the source lands at (z, H-1-y, W-1-x).
  EXPECT_FLOAT_EQ(r[0][0][1][0][0].item<float>(), v[0][0][1][2][3].item<float>());
}

TEST(VolumeOpsTest, SagittalAndHeadFirstStacksArePermutedAndFlipped) {
  // Sagittal: rows run posterior, columns inferior, slices to the left.
  const auto sagittal = Direction({0, 1, 0}, {0, 0, -1}, {1, 0, 0});
  auto p = PlanReorientation(sagittal, Orientation::kLps);
  ASSERT_TRUE(p.ok()) << p.status();
  // Canonical z comes from H (reversed, as H runs inferior), y from W, x from D.
  EXPECT_EQ(p->perm, (std::array<int, 3>{1, 2, 0}));
  EXPECT_EQ(p->flip, (std::array<bool, 3>{true, false, false}));
  EXPECT_EQ(ReorientSpacing({3.0, 0.5, 0.7}, *p), (Spacing3{0.5, 0.7, 3.0}));
  EXPECT_EQ(ReorientSize({10, 20, 30}, *p), (Size3{20, 30, 10}));
  at::Tensor v = TestVolume(2, 3, 4).view({1, 1, 2, 3, 4});
  EXPECT_EQ(Reorient(v, *p).sizes(), (std::vector<int64_t>{1, 1, 3, 4, 2}));

  // Slightly oblique cosines still pick the nearest axis.
  const auto oblique = Direction({0.995, 0.0998, 0}, {-0.0998, 0.995, 0}, {0, 0, -1});
  auto o = PlanReorientation(oblique, Orientation::kRas);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->perm, (std::array<int, 3>{0, 1, 2}));
  EXPECT_EQ(o->flip, (std::array<bool, 3>{true, true, true}));
}

TEST(VolumeOpsTest, ReorientationRoundTripsForEveryConvention) {
  const std::vector<std::array<double, 9>> directions = {
      Direction({1, 0, 0}, {0, 1, 0}, {0, 0, 1}),  Direction({-1, 0, 0}, {0, 1, 0}, {0, 0, -1}),
      Direction({0, 1, 0}, {0, 0, -1}, {1, 0, 0}), Direction({1, 0, 0}, {0, 0, -1}, {0, -1, 0}),
  };
  at::Tensor v = TestVolume(2, 3, 4).view({1, 1, 2, 3, 4});
  for (const auto& d : directions) {
    for (Orientation o : {Orientation::kLps, Orientation::kRas}) {
      auto p = PlanReorientation(d, o);
      ASSERT_TRUE(p.ok()) << p.status();
      EXPECT_TRUE(UndoReorient(Reorient(v, *p), *p).equal(v));
    }
  }
}

TEST(VolumeOpsTest, DegenerateDirectionsAreRefused) {
  EXPECT_FALSE(PlanReorientation(Direction({1, 0, 0}, {1, 0, 0}, {0, 0, 1}), Orientation::kLps).ok());
  EXPECT_FALSE(PlanReorientation(Direction({0, 0, 0}, {0, 1, 0}, {0, 0, 1}), Orientation::kLps).ok());
  EXPECT_FALSE(PlanReorientation(Direction({NAN, 0, 0}, {0, 1, 0}, {0, 0, 1}), Orientation::kLps).ok());
}

TEST(VolumeOpsTest, IntensityTransforms) {
  at::Tensor v = at::tensor({-1000.0f, 0.0f, 40.0f, 240.0f, 1000.0f}).view({1, 1, 1, 1, 5});
  VolumeConfig c;
  c.intensity = Intensity::kWindow;
  c.window_center = 40;
  c.window_width = 400;
  ExpectClose(ApplyIntensity(v, c).flatten(), at::tensor({0.0f, 0.4f, 0.5f, 1.0f, 1.0f}));
  c.intensity = Intensity::kRange;
  c.low = 0;
  c.high = 500;
  c.clip = false;
  ExpectClose(ApplyIntensity(v, c).flatten(), at::tensor({-2.0f, 0.0f, 0.08f, 0.48f, 2.0f}));
  c.clip = true;
  ExpectClose(ApplyIntensity(v, c).flatten(), at::tensor({0.0f, 0.0f, 0.08f, 0.48f, 1.0f}));
  c.intensity = Intensity::kZScore;
  at::Tensor z = ApplyIntensity(v, c);
  EXPECT_NEAR(z.mean().item<double>(), 0, 1e-5);
  EXPECT_NEAR(z.std(/*unbiased=*/false).item<double>(), 1, 1e-5);
  c.zscore_nonzero = true;
  z = ApplyIntensity(v, c).flatten();
  EXPECT_FLOAT_EQ(z[1].item<float>(), 0.0f);  // background stays background
  at::Tensor nz = at::cat({z.slice(0, 0, 1), z.slice(0, 2)});
  EXPECT_NEAR(nz.mean().item<double>(), 0, 1e-5);
  EXPECT_NEAR(nz.std(/*unbiased=*/false).item<double>(), 1, 1e-5);
  // A flat volume is left centred, not divided by zero.
  c.zscore_nonzero = false;
  EXPECT_TRUE(ApplyIntensity(at::full({1, 1, 2, 2, 2}, 7.0f), c).equal(at::zeros({1, 1, 2, 2, 2})));
}

}  // namespace
}  // namespace secondread::inference::torch_backend
