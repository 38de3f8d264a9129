#include "scp/pixels/suv.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "scp/pixels/volume.h"

namespace secondread::scp {
namespace {

// F-18, 370 MBq injected at 09:30, series at 10:30 (60 min uptake), 70 kg.
PetAttributes Fdg() {
  PetAttributes a;
  a.units = "BQML";
  a.decay_correction = "START";
  a.corrected_image = "DECY\\ATTN\\SCAT";
  a.patient_weight_kg = "70";
  a.total_dose_bq = "370000000";
  a.half_life_s = "6586.2";
  a.injection_datetime = "20260105093000";
  a.injection_time = "093000";
  a.series_date = "20260105";
  a.series_time = "103000";
  a.acquisition_date = "20260105";
  a.acquisition_time = "103000";
  return a;
}

absl::StatusOr<double> Factor(const PetAttributes& a) {
  auto f = SuvScaleFactors({a});
  if (!f.ok()) return f.status();
  return (*f)[0];
}

// Worked QIBA case:
//   decay factor = 2^(-3600 / 6586.2) = exp(-0.693147 x 0.546597) = 0.6846329
//   decayed dose = 370 MBq x 0.6846329 = 253.31418 MBq
//   factor       = 70 000 g / 253 314 180 Bq = 2.7633668e-4 g/Bq
//   a voxel of 10 000 Bq/ml: SUVbw = 10 000 x 2.7633668e-4 = 2.7633668
constexpr double kFdgFactor = 2.7633668171764e-4;

TEST(SuvTest, WorkedQibaCaseWithDecayCorrectionStart) {
  auto f = Factor(Fdg());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(*f, kFdgFactor, 1e-12);
  EXPECT_NEAR(10000 * *f, 2.7633668, 1e-6);
}

TEST(SuvTest, NinetyMinutesOfUptake) {
  // 2^(-5400 / 6586.2) = 0.5664827; 70 000 / (370e6 x 0.5664827) = 3.3397169e-4
  PetAttributes a = Fdg();
  a.series_time = "110000";
  a.acquisition_time = "110000";
  auto f = Factor(a);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(*f, 3.3397168625e-4, 1e-12);
}

TEST(SuvTest, ScanTimeIsTheEarliestAcquisitionWhenTheSeriesTimeIsLater) {
  // Post-processing moved the series time to 11:00; the acquisitions began
  // at 10:30, which gives the 60 min case.
  std::vector<PetAttributes> images(3, Fdg());
  for (PetAttributes& a : images) a.series_time = "110000";
  images[0].acquisition_time = "103500";
  images[1].acquisition_time = "103000";
  images[2].acquisition_time = "104000";
  auto f = SuvScaleFactors(images);
  ASSERT_TRUE(f.ok()) << f.status();
  for (double v : *f) EXPECT_NEAR(v, kFdgFactor, 1e-12);
}

TEST(SuvTest, ScanTimeIsTheSeriesTimeWhenAcquisitionsFollowIt) {
  PetAttributes a = Fdg();
  a.acquisition_time = "104500";  // later bed positions do not count
  auto f = Factor(a);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(*f, kFdgFactor, 1e-12);
}

TEST(SuvTest, InjectionDateTimeAcrossMidnight) {
  PetAttributes a = Fdg();
  a.injection_datetime = "20260104233000";
  a.series_date = a.acquisition_date = "20260105";
  a.series_time = a.acquisition_time = "003000";
  auto f = Factor(a);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(*f, kFdgFactor, 1e-12);
}

TEST(SuvTest, StartTimeWithTheSeriesDateWhenThereIsNoDateTime) {
  PetAttributes a = Fdg();
  a.injection_datetime.clear();
  auto f = Factor(a);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(*f, kFdgFactor, 1e-12);
}

TEST(SuvTest, TimezoneOffsetsAreHonoured) {
  // 10:30+01:00 is 09:30 UTC; the series time is in the object's UTC offset.
  PetAttributes a = Fdg();
  a.injection_datetime = "20260105103000+0100";
  a.timezone_offset = "+0000";
  auto f = Factor(a);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(*f, kFdgFactor, 1e-12);
}

TEST(SuvTest, DecayCorrectionAdminUsesTheInjectedDose) {
  // 70 000 / 370e6 = 1.8918919e-4
  PetAttributes a = Fdg();
  a.decay_correction = "ADMIN";
  auto f = Factor(a);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_NEAR(*f, 1.891891891892e-4, 1e-14);
}

TEST(SuvTest, PhilipsCountsUseThePrivateScaleFactorPerImage) {
  std::vector<PetAttributes> images(2, Fdg());
  for (PetAttributes& a : images) a.units = "CNTS";
  images[0].philips_suv_factor = "0.000321";
  images[1].philips_suv_factor = "0.000322";
  auto f = SuvScaleFactors(images);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_DOUBLE_EQ((*f)[0], 0.000321);
  EXPECT_DOUBLE_EQ((*f)[1], 0.000322);
  images[1].philips_suv_factor.clear();
  EXPECT_EQ(RefusalCode(SuvScaleFactors(images).status()), "suv_units");
}

TEST(SuvTest, GmlIsSuvAlready) {
  PetAttributes a = Fdg();
  a.units = "GML";
  auto f = Factor(a);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, 1.0);
}

TEST(SuvTest, RefusesWithAReasonAndWithoutThePatientsNumbers) {
  struct Case {
    std::string name;
    void (*edit)(PetAttributes&);
    std::string code;
  };
  const std::vector<Case> cases = {
      {"no weight", [](PetAttributes& a) { a.patient_weight_kg.clear(); }, "suv_no_weight"},
      {"weight 0", [](PetAttributes& a) { a.patient_weight_kg = "0"; }, "suv_no_weight"},
      {"weight in grams", [](PetAttributes& a) { a.patient_weight_kg = "70000"; }, "suv_no_weight"},
      {"dose 0", [](PetAttributes& a) { a.total_dose_bq = "0"; }, "suv_no_dose"},
      {"no half-life", [](PetAttributes& a) { a.half_life_s.clear(); }, "suv_no_half_life"},
      {"injection after scan", [](PetAttributes& a) { a.injection_datetime = "20260105110000"; },
       "suv_start_after_scan"},
      {"no injection time",
       [](PetAttributes& a) {
         a.injection_datetime.clear();
         a.injection_time.clear();
       },
       "suv_no_injection_time"},
      {"no series time", [](PetAttributes& a) { a.series_time.clear(); }, "suv_no_scan_time"},
      {"unknown units", [](PetAttributes& a) { a.units = "PROPCNTS"; }, "suv_units"},
      {"no decay correction", [](PetAttributes& a) { a.decay_correction = "NONE"; }, "suv_decay_correction"},
      {"not attenuation corrected", [](PetAttributes& a) { a.corrected_image = "DECY"; }, "suv_not_corrected"},
  };
  for (const Case& c : cases) {
    PetAttributes a = Fdg();
    c.edit(a);
    const absl::Status s = Factor(a).status();
    EXPECT_EQ(RefusalCode(s), c.code) << c.name << ": " << s;
    const std::string m(s.message());
    EXPECT_EQ(m.find("70"), std::string::npos) << m;
    EXPECT_EQ(m.find("0930"), std::string::npos) << m;
    EXPECT_EQ(m.find("2026"), std::string::npos) << m;
  }
}

TEST(SuvTest, RefusesImagesThatDisagreeOnTheDose) {
  std::vector<PetAttributes> images(2, Fdg());
  images[1].total_dose_bq = "380000000";
  EXPECT_EQ(RefusalCode(SuvScaleFactors(images).status()), "suv_inconsistent");
}

TEST(DicomDateTimeTest, ParsesDatesTimesAndOffsets) {
  double a = 0, b = 0;
  ASSERT_TRUE(ParseDicomDateTime("19700101000001.5", "", &a));
  EXPECT_DOUBLE_EQ(a, 1.5);
  ASSERT_TRUE(ParseDicomDateAndTime("19700102", "0100", "", &b));
  EXPECT_DOUBLE_EQ(b, 86400 + 3600);
  ASSERT_TRUE(ParseDicomDateTime("19700101010000+0100", "", &a));
  EXPECT_DOUBLE_EQ(a, 0);
  ASSERT_TRUE(ParseDicomDateAndTime("20000301", "00:00:00", "-0500", &b));
  EXPECT_DOUBLE_EQ(b, 951868800 + 5 * 3600);
  EXPECT_FALSE(ParseDicomDateTime("2026010", "", &a));
  EXPECT_FALSE(ParseDicomDateAndTime("20261305", "1200", "", &a));
  EXPECT_FALSE(ParseDicomDateAndTime("20260105", "2500", "", &a));
  EXPECT_FALSE(ParseDicomDateAndTime("20260105", "12a0", "", &a));
}

}  // namespace
}  // namespace secondread::scp
