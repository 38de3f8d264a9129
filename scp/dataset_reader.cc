#include "scp/dataset_reader.h"

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcxfer.h"

namespace secondread::scp {
namespace {

// Keeps valid UTF-8 sequences and replaces every other byte with U+FFFD, so a
// dataset with a wrong or missing Specific Character Set still registers.
std::string ValidUtf8(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= in.size() && c != 0;
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(in[i + k]) >> 6) == 0x2;
    if (ok && len == 2 && c < 0xC2) ok = false;
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

}  // namespace

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
  return r;
}

}  // namespace secondread::scp
