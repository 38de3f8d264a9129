// The registry attributes read from a received instance (scp/receive/dataset_reader.h)
// after the structural scan accepted it, in the receiver's order: DCMTK's
// parser recurses per nested sequence and only sees what the scan let through.
#include <cstdlib>
#include <string>

#include "fuzz/part10_input.h"
#include "scp/receive/dataset_reader.h"
#include "scp/receive/uid.h"

namespace {

// RFC 3629, which is what PostgreSQL accepts in a UTF-8 database: no
// overlong forms, no surrogates, nothing past U+10FFFF, and no NUL.
bool StrictUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += len;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace secondread::scp;
  auto& input = secondread::fuzz::Part10Input::Instance();
  if (!input.SetAccepted(data, size)) return 0;
  auto record = ReadInstanceRecord(input.path());
  if (!record.ok()) return 0;
  // Every text attribute goes into a PostgreSQL text column.
  for (const std::string* text :
       {&record->transfer_syntax_uid, &record->sop_class_uid, &record->sop_instance_uid, &record->study_instance_uid,
        &record->series_instance_uid, &record->specific_character_set, &record->patient_id,
        &record->issuer_of_patient_id, &record->patient_name, &record->patient_birth_date, &record->patient_sex,
        &record->study_date, &record->study_time, &record->study_id, &record->accession_number,
        &record->study_description, &record->referring_physician_name, &record->modality,
        &record->body_part_examined, &record->series_description, &record->protocol_name, &record->image_type,
        &record->photometric_interpretation, &record->burned_in_annotation}) {
    if (!StrictUtf8(*text)) std::abort();
  }
  // The receiver's next steps with the UIDs read.
  (void)CheckUid(record->sop_class_uid);
  (void)CheckUid(record->sop_instance_uid);
  (void)CheckUid(record->study_instance_uid);
  (void)CheckUid(record->series_instance_uid);
  return 0;
}
