// PET standardized uptake value, body weight (SUVbw), computed on the node
// after the QIBA vendor-neutral rules. The inputs (weight, dose, dates and
// times) stay inside scp/pixels: only a factor per slice comes out, which
// turns a rescaled pixel value into SUVbw.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace secondread::scp {

// The attributes of one PET image that SUVbw needs, as text found in the
// object; an absent attribute is empty.
struct PetAttributes {
  std::string units;                 // Units (0054,1001)
  std::string decay_correction;      // Decay Correction (0054,1102)
  std::string corrected_image;       // Corrected Image (0028,0051), values joined by '\'
  std::string patient_weight_kg;     // Patient's Weight (0010,1030)
  std::string total_dose_bq;         // Radionuclide Total Dose (0018,1074)
  std::string half_life_s;           // Radionuclide Half Life (0018,1075)
  std::string injection_datetime;    // Radiopharmaceutical Start DateTime (0018,1078)
  std::string injection_time;        // Radiopharmaceutical Start Time (0018,1072)
  std::string series_date;           // (0008,0021)
  std::string series_time;           // (0008,0031)
  std::string acquisition_date;      // (0008,0022)
  std::string acquisition_time;      // (0008,0032)
  std::string acquisition_datetime;  // (0008,002A), or the frame's Frame Acquisition DateTime
  std::string timezone_offset;       // Timezone Offset From UTC (0008,0201)
  std::string philips_suv_factor;    // SUV Scale Factor (7053,1000) in Philips' private block
};

// One factor per image, in the order given: SUVbw = rescaled value x factor.
// A refusal (scp/pixels/volume.h VolumeRefusal, codes suv_*) when SUVbw
// cannot be computed: the sentence never carries the weight, dose, dates or
// times themselves.
//   BQML, Decay Correction START: weight[g] / (dose x 2^-(scan - injection) / half-life)
//   BQML, Decay Correction ADMIN: weight[g] / dose (the images are decay
//         corrected to the injection already)
//   BQML, NONE or another decay correction: refused (each frame would need its
//         own decay correction, which this does not do)
//   CNTS: Philips' SUV Scale Factor (7053,1000)
//   GML:  1 (the values are SUVbw already)
// The scan time is the Series Date/Time unless that is after the earliest
// Acquisition Date/Time of the series (the series time was then rewritten by
// post-processing), in which case it is that acquisition time.
absl::StatusOr<std::vector<double>> SuvScaleFactors(const std::vector<PetAttributes>& images);

// Seconds since 1970-01-01 of a DICOM DT, or of a DA with a TM, shifted to UTC
// by the value's own "&ZZXX" suffix, else by `default_offset` ("+HHMM", may be
// empty for none). False for text that is not a valid date and time.
bool ParseDicomDateTime(const std::string& datetime, const std::string& default_offset, double* seconds);
bool ParseDicomDateAndTime(const std::string& date, const std::string& time, const std::string& default_offset,
                           double* seconds);

}  // namespace secondread::scp
