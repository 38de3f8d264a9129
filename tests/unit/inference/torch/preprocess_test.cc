#include "inference/torch/preprocess.h"

#include <gtest/gtest.h>

#include <cstring>

namespace secondread::inference::torch_backend {
namespace {

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

ImageView View(const std::string& bytes, std::vector<int64_t> shape, DType dtype,
               PhotometricKind p = PhotometricKind::kMonochrome2) {
  ImageView v;
  v.shape = std::move(shape);
  v.dtype = dtype;
  v.data = bytes;
  v.photometric = p;
  return v;
}

InputConfig Input(int h, int w, int channels = 1) {
  InputConfig in;
  in.height = h;
  in.width = w;
  in.channels = channels;
  in.mean = {0.5};
  in.std = {0.25};
  return in;
}

std::vector<float> Values(const at::Tensor& t) {
  at::Tensor c = t.contiguous().to(at::kFloat);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << "at " << i;
}

TEST(PreprocessTest, MinMaxThenNormalise) {
  std::string b = Bytes<uint8_t>({0, 100, 200, 50});
  ImageView v = View(b, {2, 2}, DType::kUint8);
  at::Tensor x = Preprocess({&v}, Input(2, 2), at::kCPU, false);
  EXPECT_EQ(x.sizes(), (at::IntArrayRef{1, 1, 2, 2}));
  ExpectNear(Values(x), {-2.0f, 0.0f, 2.0f, -1.0f});
}

TEST(PreprocessTest, Uint16UsesTheFullUnsignedRange) {
  std::string b = Bytes<uint16_t>({0, 65535, 32768, 16384});
  ImageView v = View(b, {2, 2}, DType::kUint16);
  InputConfig in = Input(2, 2);
  in.mean = {0};
  in.std = {1};
  ExpectNear(Values(Preprocess({&v}, in, at::kCPU, false)), {0.0f, 1.0f, 32768.0f / 65535, 16384.0f / 65535});
}

TEST(PreprocessTest, Monochrome1IsInverted) {
  std::string b = Bytes<int16_t>({-100, 100, 0, 100});
  ImageView v1 = View(b, {2, 2}, DType::kInt16, PhotometricKind::kMonochrome1);
  ImageView v2 = View(b, {2, 2}, DType::kInt16, PhotometricKind::kMonochrome2);
  InputConfig in = Input(2, 2);
  in.mean = {0};
  in.std = {1};
  at::Tensor x = Preprocess({&v1, &v2}, in, at::kCPU, false);
  ExpectNear(Values(x), {1.0f, 0.0f, 0.5f, 0.0f, 0.0f, 1.0f, 0.5f, 1.0f});
}

TEST(PreprocessTest, ShrinkingAveragesAreasAndEnlargingInterpolates) {
  std::vector<float> px = {0, 0, 4, 4,  //
                           0, 0, 4, 4,  //
                           8, 8, 12, 12, //
                           8, 8, 12, 12};
  std::string b = Bytes(px);
  ImageView v = View(b, {4, 4}, DType::kFloat32);
  InputConfig in = Input(2, 2);
  in.scaling = Scaling::kRange;
  in.range_low = 0;
  in.range_high = 12;
  in.mean = {0};
  in.std = {1};
  ExpectNear(Values(Preprocess({&v}, in, at::kCPU, false)), {0.0f, 1.0f / 3, 2.0f / 3, 1.0f});

  std::string small = Bytes<float>({0, 12});
  ImageView s = View(small, {1, 2}, DType::kFloat32);
  InputConfig up = in;
  up.height = 1;
  up.width = 4;
  // align_corners=False: samples at -0.25, 0.25, 0.75, 1.25 of the source grid, clamped.
  ExpectNear(Values(Preprocess({&s}, up, at::kCPU, false)), {0.0f, 0.25f, 0.75f, 1.0f});
}

TEST(PreprocessTest, WindowFollowsTheDicomLinearFunction) {
  std::string b = Bytes<float>({-1000, 0, 40, 2000});
  ImageView v = View(b, {2, 2}, DType::kFloat32);
  InputConfig in = Input(2, 2);
  in.scaling = Scaling::kWindow;
  in.window_center = 40;
  in.window_width = 401;
  in.mean = {0};
  in.std = {1};
  auto got = Values(Preprocess({&v}, in, at::kCPU, false));
  EXPECT_NEAR(got[0], 0.0f, 1e-6);
  EXPECT_NEAR(got[1], (0 - 39.5) / 400 + 0.5, 1e-5);
  EXPECT_NEAR(got[2], (40 - 39.5) / 400 + 0.5, 1e-5);
  EXPECT_NEAR(got[3], 1.0f, 1e-6);
}

TEST(PreprocessTest, ChannelsAreReplicatedOrAveragedAndFlatImagesAreZero) {
  std::string flat = Bytes<uint8_t>({7, 7, 7, 7});
  ImageView gray = View(flat, {2, 2}, DType::kUint8);
  at::Tensor x = Preprocess({&gray}, Input(2, 2, 3), at::kCPU, false);
  EXPECT_EQ(x.sizes(), (at::IntArrayRef{1, 3, 2, 2}));
  for (float f : Values(x)) EXPECT_FLOAT_EQ(f, -2.0f);  // (0 - 0.5) / 0.25

  std::string rgb = Bytes<uint8_t>({0, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255});
  ImageView color = View(rgb, {3, 2, 2}, DType::kUint8, PhotometricKind::kRgb);
  InputConfig in = Input(2, 2, 1);
  in.mean = {0};
  in.std = {1};
  ExpectNear(Values(Preprocess({&color}, in, at::kCPU, false)), {1.0f / 3, 1.0f / 3, 1.0f / 3, 2.0f / 3});
}

TEST(PreprocessTest, MixedShapesAndDtypesInOneBatch) {
  std::string a = Bytes<uint8_t>({0, 255, 0, 255});
  std::string b = Bytes<uint16_t>(std::vector<uint16_t>(16, 9));
  ImageView va = View(a, {2, 2}, DType::kUint8);
  ImageView vb = View(b, {4, 4}, DType::kUint16);
  at::Tensor x = Preprocess({&va, &vb}, Input(2, 2), at::kCPU, false);
  EXPECT_EQ(x.sizes(), (at::IntArrayRef{2, 1, 2, 2}));
  ExpectNear(Values(x), {-2, 2, -2, 2, -2, -2, -2, -2});
}

}  // namespace
}  // namespace secondread::inference::torch_backend
