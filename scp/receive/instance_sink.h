// The seam between the DICOM edge and the registry. The SCP hands every
// durably spooled instance to an InstanceSink; the PostgreSQL registry in
// worklist/ implements it, and unit tests use a fake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace secondread::scp {

// The attributes the registry and the later pipeline need, read once from the
// received dataset. These hold PHI: never log them above debug level.
struct InstanceRecord {
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string transfer_syntax_uid;
  std::string specific_character_set;

  std::string patient_id;
  std::string issuer_of_patient_id;
  std::string patient_name;
  std::string patient_birth_date;
  std::string patient_sex;

  std::string study_date;
  std::string study_time;
  std::string study_id;
  std::string accession_number;
  std::string study_description;
  std::string referring_physician_name;
  int64_t number_of_study_related_instances = -1;  // -1: not supplied

  std::string modality;
  std::string body_part_examined;
  std::string series_description;
  std::string protocol_name;
  int64_t series_number = -1;

  int64_t instance_number = -1;
  std::string image_type;
  std::string photometric_interpretation;
  int64_t rows = -1;
  int64_t columns = -1;
  int64_t number_of_frames = -1;
  int64_t bits_allocated = -1;
  int64_t bits_stored = -1;
  int64_t samples_per_pixel = -1;
  int64_t pixel_representation = -1;
  // Burned In Annotation (0028,0301) as received; empty when absent. Decides
  // whether the image may go to the inference tier.
  std::string burned_in_annotation;
  // For routing volume reads: the plane from Image Orientation (Patient)
  // ("axial", "coronal", "sagittal", "oblique"; "" unknown) and Slice
  // Thickness in mm (-1 unknown), from the data set or, for enhanced
  // objects, its functional groups.
  std::string orientation;
  double slice_thickness_mm = -1;
};

// Identifiers of the association that delivered an instance. The id is ours
// (random); AE titles have passed the allow-list.
struct AssociationInfo {
  std::string id;
  std::string calling_ae;
  std::string called_ae;
  std::string peer_host;
};

struct ReceivedInstance {
  InstanceRecord record;
  AssociationInfo association;
  std::string spool_name;  // derived from a hash, never from a received string
  uint64_t size_bytes = 0;  // size of the spool file
};

struct AssociationSummary {
  AssociationInfo association;
  uint64_t instances_stored = 0;
  uint64_t instances_refused = 0;
  uint64_t bytes_received = 0;
  std::string outcome;  // released | aborted | timeout | error
};

// An Accept error whose registration may nevertheless have been committed
// (the database connection broke while it ran) carries this payload: a row
// may point to the file, so the file must stay.
inline constexpr char kRegistrationInDoubtPayload[] = "secondread/outcome-unknown";
inline bool RegistrationInDoubt(const absl::Status& status) {
  return status.GetPayload(kRegistrationInDoubtPayload).has_value();
}

class InstanceSink {
 public:
  virtual ~InstanceSink() = default;
  // Registers an instance whose file is already durable in the spool. Must
  // be idempotent per SOP Instance UID; the latest call wins.
  virtual absl::Status Accept(const ReceivedInstance& instance) = 0;
  // Best effort bookkeeping when an association ends.
  virtual void AssociationEnded(const AssociationSummary& summary) = 0;
  // Of the given spool names, those with no registered instance. Used by the
  // start-up recovery that makes the spool file the journal of record.
  virtual absl::StatusOr<std::vector<std::string>> Unregistered(const std::vector<std::string>& spool_names) = 0;
};

}  // namespace secondread::scp
