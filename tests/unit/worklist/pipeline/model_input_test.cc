#include "worklist/pipeline/model_input.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace secondread::worklist {
namespace {

namespace pb = ::secondread::inference::v1;

scp::DecodedFrame DisplayFrame() {
  scp::DecodedFrame f;
  f.rows = 2;
  f.columns = 3;
  f.pixels = {0, 100, 200, 300, 400, 65535};
  return f;
}

scp::DecodedFrame HuFrame(float last = 3071) {
  scp::DecodedFrame f;
  f.rows = 2;
  f.columns = 3;
  f.values = {-1024, -500, 0, 40, 400, last};
  return f;
}

template <typename T>
std::vector<T> Data(const pb::Image& image) {
  std::vector<T> out(image.data().size() / sizeof(T));
  std::memcpy(out.data(), image.data().data(), out.size() * sizeof(T));
  return out;
}

TEST(ModelInputTest, DisplayIsTheDefaultAndGoesAsUint16) {
  pb::InputSpec spec;  // an older worker: no pixel_values, no dtypes
  auto options = DecodeOptionsFor(spec);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_FALSE(options->modality_values);
  EXPECT_TRUE(options->apply_voi);

  pb::Image image;
  ASSERT_TRUE(EncodePixels(spec, DisplayFrame(), "MONOCHROME1", &image).ok());
  EXPECT_EQ(image.dtype(), pb::DATA_TYPE_UINT16);
  EXPECT_EQ(image.photometric(), pb::PHOTOMETRIC_MONOCHROME2);  // the rendering is already inverted
  EXPECT_EQ(image.shape_size(), 2);
  EXPECT_EQ(image.shape(0), 2u);
  EXPECT_EQ(image.shape(1), 3u);
  EXPECT_EQ(Data<uint16_t>(image), DisplayFrame().pixels);
}

TEST(ModelInputTest, ModalityValuesGoAsFloat32WithTheSourcePhotometric) {
  pb::InputSpec spec;
  spec.set_scaling("window");
  spec.set_pixel_values("modality");
  auto options = DecodeOptionsFor(spec);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->modality_values);
  EXPECT_FALSE(options->apply_voi);

  pb::Image image;
  ASSERT_TRUE(EncodePixels(spec, HuFrame(), "MONOCHROME2", &image).ok());
  EXPECT_EQ(image.dtype(), pb::DATA_TYPE_FLOAT32);
  EXPECT_EQ(image.photometric(), pb::PHOTOMETRIC_MONOCHROME2);
  EXPECT_EQ(Data<float>(image), HuFrame().values);

  ASSERT_TRUE(EncodePixels(spec, HuFrame(), "MONOCHROME1", &image).ok());
  EXPECT_EQ(image.photometric(), pb::PHOTOMETRIC_MONOCHROME1);  // the worker inverts after its window
}

TEST(ModelInputTest, Int16WhenTheModelTakesNoFloatAndTheValuesFit) {
  pb::InputSpec spec;
  spec.set_pixel_values("modality");
  spec.add_accepted_dtypes(pb::DATA_TYPE_UINT16);
  spec.add_accepted_dtypes(pb::DATA_TYPE_INT16);
  ASSERT_TRUE(DecodeOptionsFor(spec).ok());
  pb::Image image;
  ASSERT_TRUE(EncodePixels(spec, HuFrame(), "MONOCHROME2", &image).ok());
  EXPECT_EQ(image.dtype(), pb::DATA_TYPE_INT16);
  EXPECT_EQ(Data<int16_t>(image), (std::vector<int16_t>{-1024, -500, 0, 40, 400, 3071}));

  // 40000 does not fit: refused, not wrapped round.
  auto st = EncodePixels(spec, HuFrame(40000), "MONOCHROME2", &image);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("int16"), std::string::npos) << st;
}

TEST(ModelInputTest, WhatCannotBeSentRightIsRefused) {
  pb::InputSpec unknown;
  unknown.set_pixel_values("suv");
  auto a = DecodeOptionsFor(unknown);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("suv"), std::string::npos);
  pb::Image image;
  EXPECT_EQ(EncodePixels(unknown, DisplayFrame(), "MONOCHROME2", &image).code(), absl::StatusCode::kInvalidArgument);

  pb::InputSpec uint8_only;
  uint8_only.set_pixel_values("modality");
  uint8_only.add_accepted_dtypes(pb::DATA_TYPE_UINT8);
  EXPECT_EQ(DecodeOptionsFor(uint8_only).status().code(), absl::StatusCode::kInvalidArgument);

  pb::InputSpec float_only;
  float_only.add_accepted_dtypes(pb::DATA_TYPE_FLOAT32);  // display needs uint16
  EXPECT_EQ(DecodeOptionsFor(float_only).status().code(), absl::StatusCode::kInvalidArgument);

  // A frame decoded the other way round is refused rather than sent empty.
  pb::InputSpec modality;
  modality.set_pixel_values("modality");
  EXPECT_FALSE(EncodePixels(modality, DisplayFrame(), "MONOCHROME2", &image).ok());
  EXPECT_FALSE(EncodePixels(pb::InputSpec(), HuFrame(), "MONOCHROME2", &image).ok());
}

}  // namespace
}  // namespace secondread::worklist
