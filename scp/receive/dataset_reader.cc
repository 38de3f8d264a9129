#include "scp/receive/dataset_reader.h"

#include <charconv>
#include <cmath>
#include <vector>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcxfer.h"

namespace secondread::scp {
namespace {

// Keeps valid UTF-8 sequences and replaces every other byte with U+FFFD, so a
// dataset with a wrong or missing Specific Character Set still registers.
// Valid as RFC 3629 and PostgreSQL have it: no overlong forms, no encoded
// surrogates, nothing past U+10FFFF. PostgreSQL refuses a row holding any of
// them, and that would refuse the instance.
std::string ValidUtf8(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    // The lead byte's length, and the range its first continuation byte must
    // fall in (RFC 3629, section 4).
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0x01 && c < 0x80) {
      len = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong below U+0800
      if (c == 0xED) hi = 0x9F;  // surrogates U+D800..U+DFFF
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong below U+10000
      if (c == 0xF4) hi = 0x8F;  // beyond U+10FFFF
    }
    bool ok = len > 0 && i + len <= in.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(in[i + k]);
      ok = k == 1 ? cc >= lo && cc <= hi : (cc >> 6) == 0x2;
    }
    if (ok) {
      out.append(in, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string Str(DcmItem* item, const DcmTagKey& tag) {
  OFString v;
  if (item->findAndGetOFStringArray(tag, v).good()) return ValidUtf8(std::string(v.c_str(), v.length()));
  return {};
}

int64_t Int(DcmItem* item, const DcmTagKey& tag) {
  OFString v;
  if (item->findAndGetOFString(tag, v).bad() || v.empty()) return -1;
  try {
    size_t used = 0;
    long long n = std::stoll(std::string(v.c_str()), &used);
    return n;
  } catch (...) {
    return -1;
  }
}

int64_t UShort(DcmItem* item, const DcmTagKey& tag) {
  Uint16 v = 0;
  if (item->findAndGetUint16(tag, v).good()) return v;
  return -1;
}

// Decimal strings (DS) as received: backslash-separated, space-padded, an
// optional leading '+'. Anything else in a value makes the whole list unknown.
bool ParseDecimals(const std::string& text, std::vector<double>& out) {
  out.clear();
  size_t start = 0;
  while (true) {
    const size_t end = std::min(text.find('\\', start), text.size());
    size_t b = start, e = end;
    while (b < e && (text[b] == ' ' || text[b] == '\0')) ++b;
    while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\0')) --e;
    if (b < e && text[b] == '+') ++b;
    double v = 0;
    auto [ptr, ec] = std::from_chars(text.data() + b, text.data() + e, v);
    if (b == e || ec != std::errc() || ptr != text.data() + e || !std::isfinite(v)) return false;
    out.push_back(v);
    if (end == text.size()) return true;
    start = end + 1;
  }
}

// Values of an enhanced object's functional groups: the shared group's item,
// else the per-frame groups' when every frame holds the same text.
std::string FunctionalGroupValue(DcmItem* ds, const DcmTagKey& macro, const DcmTagKey& tag) {
  DcmItem* shared = nullptr;
  DcmItem* item = nullptr;
  if (ds->findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0).good() && shared &&
      shared->findAndGetSequenceItem(macro, item, 0).good() && item) {
    OFString v;
    if (item->findAndGetOFStringArray(tag, v).good()) return std::string(v.c_str(), v.length());
  }
  DcmSequenceOfItems* frames = nullptr;
  if (ds->findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, frames).bad() || !frames || frames->card() == 0) {
    return {};
  }
  std::string common;
  for (unsigned long k = 0; k < frames->card(); ++k) {
    DcmItem* frame = frames->getItem(k);
    OFString v;
    if (!frame || frame->findAndGetSequenceItem(macro, item, 0).bad() || !item ||
        item->findAndGetOFStringArray(tag, v).bad()) {
      return {};
    }
    std::string value(v.c_str(), v.length());
    if (k == 0) {
      common = value;
    } else if (value != common) {
      return {};
    }
  }
  return common;
}

std::string OwnOrFunctionalGroup(DcmItem* ds, const DcmTagKey& macro, const DcmTagKey& tag) {
  OFString v;
  if (ds->findAndGetOFStringArray(tag, v).good() && !v.empty()) return std::string(v.c_str(), v.length());
  return FunctionalGroupValue(ds, macro, tag);
}

}  // namespace

std::string OrientationLabel(const std::string& text) {
  std::vector<double> v;
  if (!ParseDecimals(text, v) || v.size() != 6) return "";
  const double row[3] = {v[0], v[1], v[2]}, col[3] = {v[3], v[4], v[5]};
  auto norm = [](const double* a) { return std::sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]); };
  const double dot = row[0] * col[0] + row[1] * col[1] + row[2] * col[2];
  if (std::fabs(norm(row) - 1) > 0.05 || std::fabs(norm(col) - 1) > 0.05 || std::fabs(dot) > 0.05) return "";
  double n[3] = {row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2],
                 row[0] * col[1] - row[1] * col[0]};
  const double len = norm(n);
  if (len < 0.5) return "";
  // Patient axes: x right-left (sagittal plane's normal), y anterior-posterior
  // (coronal), z foot-head (axial).
  static const char* const kPlanes[] = {"sagittal", "coronal", "axial"};
  int axis = 0;
  for (int i = 1; i < 3; ++i) {
    if (std::fabs(n[i]) > std::fabs(n[axis])) axis = i;
  }
  const double kCos20 = 0.9396926207859084;
  return std::fabs(n[axis]) / len >= kCos20 ? kPlanes[axis] : "oblique";
}

double SliceThicknessMm(const std::string& text) {
  std::vector<double> v;
  if (!ParseDecimals(text, v) || v.size() != 1 || v[0] <= 0 || v[0] > 1000) return -1;
  return v[0];
}

absl::StatusOr<InstanceRecord> ReadInstanceRecord(const std::string& path) {
  DcmFileFormat ff;
  OFCondition cond =
      ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_fileOnly);
  if (cond.bad()) return absl::InvalidArgumentError(std::string("unparsable dataset: ") + cond.text());
  DcmDataset* ds = ff.getDataset();
  DcmMetaInfo* meta = ff.getMetaInfo();
  // The registry stores text as UTF-8 whatever character set the sender used.
  // Only the in-memory copy is converted; the spool file stays as received.
  (void)ds->convertToUTF8();
  InstanceRecord r;
  r.transfer_syntax_uid = Str(meta, DCM_TransferSyntaxUID);
  r.sop_class_uid = Str(ds, DCM_SOPClassUID);
  r.sop_instance_uid = Str(ds, DCM_SOPInstanceUID);
  r.study_instance_uid = Str(ds, DCM_StudyInstanceUID);
  r.series_instance_uid = Str(ds, DCM_SeriesInstanceUID);
  r.specific_character_set = Str(ds, DCM_SpecificCharacterSet);
  r.patient_id = Str(ds, DCM_PatientID);
  r.issuer_of_patient_id = Str(ds, DCM_IssuerOfPatientID);
  r.patient_name = Str(ds, DCM_PatientName);
  r.patient_birth_date = Str(ds, DCM_PatientBirthDate);
  r.patient_sex = Str(ds, DCM_PatientSex);
  r.study_date = Str(ds, DCM_StudyDate);
  r.study_time = Str(ds, DCM_StudyTime);
  r.study_id = Str(ds, DCM_StudyID);
  r.accession_number = Str(ds, DCM_AccessionNumber);
  r.study_description = Str(ds, DCM_StudyDescription);
  r.referring_physician_name = Str(ds, DCM_ReferringPhysicianName);
  r.number_of_study_related_instances = Int(ds, DCM_NumberOfStudyRelatedInstances);
  r.modality = Str(ds, DCM_Modality);
  r.body_part_examined = Str(ds, DCM_BodyPartExamined);
  r.series_description = Str(ds, DCM_SeriesDescription);
  r.protocol_name = Str(ds, DCM_ProtocolName);
  r.series_number = Int(ds, DCM_SeriesNumber);
  r.instance_number = Int(ds, DCM_InstanceNumber);
  r.image_type = Str(ds, DCM_ImageType);
  r.photometric_interpretation = Str(ds, DCM_PhotometricInterpretation);
  r.rows = UShort(ds, DCM_Rows);
  r.columns = UShort(ds, DCM_Columns);
  r.number_of_frames = Int(ds, DCM_NumberOfFrames);
  r.bits_allocated = UShort(ds, DCM_BitsAllocated);
  r.bits_stored = UShort(ds, DCM_BitsStored);
  r.samples_per_pixel = UShort(ds, DCM_SamplesPerPixel);
  r.pixel_representation = UShort(ds, DCM_PixelRepresentation);
  r.burned_in_annotation = Str(ds, DCM_BurnedInAnnotation);
  // Classic objects carry the plane in the data set; enhanced ones in the
  // Plane Orientation and Pixel Measures functional groups.
  r.orientation =
      OrientationLabel(OwnOrFunctionalGroup(ds, DCM_PlaneOrientationSequence, DCM_ImageOrientationPatient));
  r.slice_thickness_mm = SliceThicknessMm(OwnOrFunctionalGroup(ds, DCM_PixelMeasuresSequence, DCM_SliceThickness));
  return r;
}

}  // namespace secondread::scp
