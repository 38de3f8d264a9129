#include "scp/pixels/suv.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "scp/pixels/volume.h"

namespace secondread::scp {
namespace {

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\0')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\0')) --e;
  return s.substr(b, e - b);
}

bool ParseNumber(const std::string& text, double* out) {
  const std::string t = Trim(text);
  if (t.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

bool Digits(const std::string& s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool ParseDate(const std::string& text, int64_t* days) {
  std::string t = Trim(text);
  t.erase(std::remove(t.begin(), t.end(), '.'), t.end());  // ACR-NEMA "YYYY.MM.DD"
  int y = 0, m = 0, d = 0;
  if (t.size() != 8 || !Digits(t, 0, 4, &y) || !Digits(t, 4, 2, &m) || !Digits(t, 6, 2, &d)) return false;
  if (m < 1 || m > 12 || d < 1 || d > 31) return false;
  *days = DaysFromCivil(y, static_cast<unsigned>(m), static_cast<unsigned>(d));
  return true;
}

// HH[MM[SS[.F{1,6}]]], also the ACR-NEMA "HH:MM:SS".
bool ParseTime(const std::string& text, double* seconds) {
  std::string t = Trim(text);
  t.erase(std::remove(t.begin(), t.end(), ':'), t.end());
  if (t.empty()) return false;
  const size_t dot = t.find('.');
  const std::string whole = t.substr(0, dot);
  int h = 0, m = 0, s = 0;
  if (whole.size() < 2 || whole.size() > 6 || whole.size() % 2 != 0) return false;
  if (!Digits(whole, 0, 2, &h)) return false;
  if (whole.size() >= 4 && !Digits(whole, 2, 2, &m)) return false;
  if (whole.size() == 6 && !Digits(whole, 4, 2, &s)) return false;
  if (h > 23 || m > 59 || s > 60) return false;
  double frac = 0;
  if (dot != std::string::npos) {
    const std::string f = t.substr(dot + 1);
    if (whole.size() != 6 || f.empty() || f.size() > 6) return false;
    for (char c : f) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    }
    frac = std::atof(("0." + f).c_str());
  }
  *seconds = h * 3600.0 + m * 60.0 + s + frac;
  return true;
}

// "+HHMM" / "-HHMM" to seconds east of UTC.
bool ParseOffset(const std::string& text, double* seconds) {
  const std::string t = Trim(text);
  int h = 0, m = 0;
  if (t.size() != 5 || (t[0] != '+' && t[0] != '-') || !Digits(t, 1, 2, &h) || !Digits(t, 3, 2, &m)) return false;
  *seconds = (t[0] == '-' ? -1 : 1) * (h * 3600.0 + m * 60.0);
  return true;
}

bool DefaultOffset(const std::string& default_offset, double* seconds) {
  *seconds = 0;
  return Trim(default_offset).empty() || ParseOffset(default_offset, seconds);
}

std::string Upper(const std::string& s) {
  std::string out = Trim(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool HasValue(const std::string& multi, const std::string& value) {
  size_t start = 0;
  const std::string s = Upper(multi);
  while (start <= s.size()) {
    size_t end = s.find('\\', start);
    if (end == std::string::npos) end = s.size();
    if (Trim(s.substr(start, end - start)) == value) return true;
    start = end + 1;
  }
  return false;
}

absl::Status Refuse(const std::string& code, const std::string& sentence) {
  return VolumeRefusal(code, "SUV cannot be computed: " + sentence);
}

}  // namespace

bool ParseDicomDateTime(const std::string& datetime, const std::string& default_offset, double* seconds) {
  std::string t = Trim(datetime);
  double offset = 0;
  const size_t sign = t.find_first_of("+-");
  if (sign != std::string::npos) {
    if (!ParseOffset(t.substr(sign), &offset)) return false;
    t = t.substr(0, sign);
  } else if (!DefaultOffset(default_offset, &offset)) {
    return false;
  }
  if (t.size() < 8) return false;  // a date alone is no time of day
  int64_t days = 0;
  double tod = 0;
  if (!ParseDate(t.substr(0, 8), &days)) return false;
  if (t.size() > 8 && !ParseTime(t.substr(8), &tod)) return false;
  *seconds = static_cast<double>(days) * 86400.0 + tod - offset;
  return true;
}

bool ParseDicomDateAndTime(const std::string& date, const std::string& time, const std::string& default_offset,
                           double* seconds) {
  int64_t days = 0;
  double tod = 0, offset = 0;
  if (!ParseDate(date, &days) || !ParseTime(time, &tod) || !DefaultOffset(default_offset, &offset)) return false;
  *seconds = static_cast<double>(days) * 86400.0 + tod - offset;
  return true;
}

absl::StatusOr<std::vector<double>> SuvScaleFactors(const std::vector<PetAttributes>& images) {
  if (images.empty()) return std::vector<double>{};
  const PetAttributes& first = images[0];
  // Attributes of the patient, the injection and the series are one value
  // for the whole series; differing values mean the series cannot be trusted.
  for (const PetAttributes& a : images) {
    if (Upper(a.units) != Upper(first.units) || Upper(a.decay_correction) != Upper(first.decay_correction) ||
        Trim(a.patient_weight_kg) != Trim(first.patient_weight_kg) ||
        Trim(a.total_dose_bq) != Trim(first.total_dose_bq) || Trim(a.half_life_s) != Trim(first.half_life_s) ||
        Trim(a.injection_datetime) != Trim(first.injection_datetime) ||
        Trim(a.injection_time) != Trim(first.injection_time) || Trim(a.series_date) != Trim(first.series_date) ||
        Trim(a.series_time) != Trim(first.series_time)) {
      return Refuse("suv_inconsistent",
                    "the images of the series disagree on the units, the decay correction, the patient's weight, "
                    "the injected dose or the injection or series time");
    }
  }
  const std::string units = Upper(first.units);
  std::vector<double> factors(images.size(), 1.0);
  if (units == "GML") return factors;
  if (units == "CNTS") {
    for (size_t i = 0; i < images.size(); ++i) {
      double f = 0;
      if (!ParseNumber(images[i].philips_suv_factor, &f) || !(f > 0)) {
        return Refuse("suv_units", "the PET values are in counts (CNTS) and image " + std::to_string(i + 1) +
                                       " has no Philips SUV Scale Factor (7053,1000) to convert them");
      }
      factors[i] = f;
    }
    return factors;
  }
  if (units != "BQML") {
    return Refuse("suv_units", "the PET values are in units '" + Trim(first.units) +
                                   "'; SUVbw is computed from BQML, CNTS (Philips) or GML only");
  }
  for (const PetAttributes& a : images) {
    if (!HasValue(a.corrected_image, "ATTN") || !HasValue(a.corrected_image, "DECY")) {
      return Refuse("suv_not_corrected",
                    "the images are not marked attenuation and decay corrected (Corrected Image lacks ATTN or DECY)");
    }
  }
  double weight = 0, dose = 0, half_life = 0;
  if (!ParseNumber(first.patient_weight_kg, &weight) || !(weight > 0)) {
    return Refuse("suv_no_weight", "the patient's weight is missing or zero");
  }
  if (weight > 500) return Refuse("suv_no_weight", "the patient's weight is implausible (over 500 kg)");
  if (!ParseNumber(first.total_dose_bq, &dose) || !(dose > 0)) {
    return Refuse("suv_no_dose", "the injected dose (Radionuclide Total Dose) is missing or zero");
  }
  const std::string decay = Upper(first.decay_correction);
  if (decay == "ADMIN") {
    const double f = weight * 1000.0 / dose;
    std::fill(factors.begin(), factors.end(), f);
    return factors;
  }
  if (decay != "START") {
    return Refuse("suv_decay_correction", "the images are decay corrected to '" + Trim(first.decay_correction) +
                                              "'; SUVbw is computed for START or ADMIN only");
  }
  if (!ParseNumber(first.half_life_s, &half_life) || !(half_life > 0)) {
    return Refuse("suv_no_half_life", "the radionuclide half-life is missing or zero");
  }
  const std::string& tz = first.timezone_offset;
  double series = 0;
  if (!ParseDicomDateAndTime(first.series_date, first.series_time, tz, &series)) {
    return Refuse("suv_no_scan_time", "the series date and time are missing or invalid");
  }
  double injection = 0;
  if (!Trim(first.injection_datetime).empty()) {
    if (!ParseDicomDateTime(first.injection_datetime, tz, &injection)) {
      return Refuse("suv_no_injection_time", "the injection date and time are invalid");
    }
  } else if (!ParseDicomDateAndTime(first.series_date, first.injection_time, tz, &injection)) {
    return Refuse("suv_no_injection_time", "the injection time is missing or invalid");
  }
  // QIBA: the series time, unless post-processing rewrote it to after the
  // earliest acquisition.
  double earliest = std::numeric_limits<double>::infinity();
  for (const PetAttributes& a : images) {
    double t = 0;
    if ((!Trim(a.acquisition_datetime).empty() && ParseDicomDateTime(a.acquisition_datetime, tz, &t)) ||
        ParseDicomDateAndTime(a.acquisition_date.empty() ? first.series_date : a.acquisition_date, a.acquisition_time,
                              tz, &t)) {
      earliest = std::min(earliest, t);
    }
  }
  const double scan = series > earliest ? earliest : series;
  const double uptake = scan - injection;
  if (uptake < 0) {
    return Refuse("suv_start_after_scan", "the injection time is after the start of the scan");
  }
  const double decayed_dose = dose * std::exp2(-uptake / half_life);
  const double f = weight * 1000.0 / decayed_dose;
  if (!std::isfinite(f) || !(f > 0)) return Refuse("suv_no_dose", "the decayed dose is zero");
  std::fill(factors.begin(), factors.end(), f);
  return factors;
}

}  // namespace secondread::scp
