#include "worklist/db/registry.h"

#include <pqxx/pqxx>

#include "common/log.h"

namespace secondread::worklist {
namespace {

// One round trip per instance: the whole patient/study/series/instance chain
// is upserted by a single statement, always locking rows in the same order.
// last_received_at only moves forward: now() is each transaction's start, and
// two associations storing into one study can commit in the other order.
constexpr char kUpsertInstance[] = R"SQL(
WITH a AS (
  INSERT INTO associations (association_uid, calling_ae, called_ae, peer_host, instances_stored, holder)
  VALUES ($1, $2, $3, $4, 1, NULLIF($42, ''))
  ON CONFLICT ON CONSTRAINT associations_uid_key
    DO UPDATE SET instances_stored = associations.instances_stored + 1
  RETURNING id),
p AS (
  INSERT INTO patients (patient_id, issuer_of_patient_id, patient_name, birth_date, sex)
  VALUES ($5, $6, $7, $8, $9)
  ON CONFLICT ON CONSTRAINT patients_identity_key
    DO UPDATE SET patient_name = EXCLUDED.patient_name, birth_date = EXCLUDED.birth_date,
                  sex = EXCLUDED.sex, updated_at = now()
  RETURNING id),
st AS (
  INSERT INTO studies (study_instance_uid, patient_ref, study_date, study_time, study_id, accession_number,
                       study_description, referring_physician_name, expected_instances)
  SELECT $10, p.id, $11, $12, $13, $14, $15, $16, NULLIF($17::integer, -1) FROM p
  ON CONFLICT ON CONSTRAINT studies_uid_key
    DO UPDATE SET last_received_at = GREATEST(studies.last_received_at, now()), patient_ref = EXCLUDED.patient_ref,
                  accession_number = EXCLUDED.accession_number, study_description = EXCLUDED.study_description,
                  expected_instances = COALESCE(EXCLUDED.expected_instances, studies.expected_instances)
  RETURNING id),
se AS (
  INSERT INTO series (series_instance_uid, study_ref, modality, body_part_examined, series_description,
                      protocol_name, series_number)
  SELECT $18, st.id, $19, $20, $21, $22, NULLIF($23::integer, -1) FROM st
  ON CONFLICT ON CONSTRAINT series_uid_key
    DO UPDATE SET last_received_at = GREATEST(series.last_received_at, now()), study_ref = EXCLUDED.study_ref,
                  modality = EXCLUDED.modality,
                  body_part_examined = EXCLUDED.body_part_examined,
                  series_description = EXCLUDED.series_description
  RETURNING id)
INSERT INTO instances (sop_instance_uid, sop_class_uid, series_ref, association_ref, transfer_syntax_uid,
                       instance_number, image_type, photometric_interpretation, rows, columns, number_of_frames,
                       bits_allocated, bits_stored, samples_per_pixel, pixel_representation, spool_name, size_bytes,
                       burned_in_annotation, orientation, slice_thickness_mm, holder)
SELECT $24, $25, se.id, a.id, $26, NULLIF($27::integer, -1), $28, $29, NULLIF($30::integer, -1),
       NULLIF($31::integer, -1), NULLIF($32::integer, -1), NULLIF($33::integer, -1), NULLIF($34::integer, -1),
       NULLIF($35::integer, -1), NULLIF($36::integer, -1), $37, $38, NULLIF(left($39, 16), ''),
       NULLIF($40, ''), NULLIF($41::float8, -1), NULLIF($42, '')
FROM se, a
ON CONFLICT ON CONSTRAINT instances_uid_key
  DO UPDATE SET sop_class_uid = EXCLUDED.sop_class_uid, series_ref = EXCLUDED.series_ref,
                association_ref = EXCLUDED.association_ref, transfer_syntax_uid = EXCLUDED.transfer_syntax_uid,
                instance_number = EXCLUDED.instance_number, image_type = EXCLUDED.image_type,
                photometric_interpretation = EXCLUDED.photometric_interpretation, rows = EXCLUDED.rows,
                columns = EXCLUDED.columns, number_of_frames = EXCLUDED.number_of_frames,
                bits_allocated = EXCLUDED.bits_allocated, bits_stored = EXCLUDED.bits_stored,
                samples_per_pixel = EXCLUDED.samples_per_pixel,
                pixel_representation = EXCLUDED.pixel_representation, spool_name = EXCLUDED.spool_name,
                size_bytes = EXCLUDED.size_bytes, burned_in_annotation = EXCLUDED.burned_in_annotation,
                orientation = EXCLUDED.orientation, slice_thickness_mm = EXCLUDED.slice_thickness_mm,
                -- The replica that received it last holds the copy the row describes.
                holder = EXCLUDED.holder, received_at = now(),
                -- A re-sent instance whose file retention purged has its file again.
                purged_at = NULL,
                receive_count = instances.receive_count + 1
RETURNING id
)SQL";

constexpr char kAssociationEnded[] = R"SQL(
INSERT INTO associations (association_uid, calling_ae, called_ae, peer_host, ended_at, outcome,
                          instances_stored, instances_refused, bytes_received)
VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8)
ON CONFLICT ON CONSTRAINT associations_uid_key
  DO UPDATE SET ended_at = now(), outcome = EXCLUDED.outcome, instances_stored = EXCLUDED.instances_stored,
                instances_refused = EXCLUDED.instances_refused, bytes_received = EXCLUDED.bytes_received
)SQL";

// A file whose row is a tombstone (retention marked it purged, and a crash
// came before the unlink, or a re-sent copy whose registration did not
// commit) counts as unregistered: the rescan registers it again, which
// revives the row, rather than keep a file the registry says is gone or
// remove one a sender may have been told is stored. A revived study is
// purged again once it is eligible.
constexpr char kUnregistered[] = R"SQL(
SELECT n FROM unnest($1::text[]) AS n
WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.spool_name = n AND i.purged_at IS NULL)
)SQL";

// Clamps values that the DICOM dataset may hold out of integer range.
int64_t I32(int64_t v) { return (v < -1 || v > 2147483647) ? -1 : v; }

}  // namespace

PgRegistry::PgRegistry(const DatabaseOptions& options, std::string holder)
    : holder_(std::move(holder)),
      pool_(options, [](pqxx::connection_base& c) {
        c.prepare("upsert_instance", kUpsertInstance);
        c.prepare("association_ended", kAssociationEnded);
        c.prepare("unregistered", kUnregistered);
      }) {}

absl::Status PgRegistry::Accept(const scp::ReceivedInstance& in) {
  const auto& r = in.record;
  const auto& a = in.association;
  return pool_.Run([&](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    tx.exec_prepared("upsert_instance", a.id, a.calling_ae, a.called_ae, a.peer_host, r.patient_id,
                     r.issuer_of_patient_id, r.patient_name, r.patient_birth_date, r.patient_sex,
                     r.study_instance_uid, r.study_date, r.study_time, r.study_id, r.accession_number,
                     r.study_description, r.referring_physician_name, I32(r.number_of_study_related_instances),
                     r.series_instance_uid, r.modality, r.body_part_examined, r.series_description, r.protocol_name,
                     I32(r.series_number), r.sop_instance_uid, r.sop_class_uid, r.transfer_syntax_uid,
                     I32(r.instance_number), r.image_type, r.photometric_interpretation, I32(r.rows), I32(r.columns),
                     I32(r.number_of_frames), I32(r.bits_allocated), I32(r.bits_stored), I32(r.samples_per_pixel),
                     I32(r.pixel_representation), in.spool_name, static_cast<int64_t>(in.size_bytes),
                     r.burned_in_annotation, r.orientation, r.slice_thickness_mm, holder_);
  });
}

void PgRegistry::AssociationEnded(const scp::AssociationSummary& s) {
  absl::Status st = pool_.Run([&](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    tx.exec_prepared("association_ended", s.association.id, s.association.calling_ae, s.association.called_ae,
                     s.association.peer_host, s.outcome, static_cast<int64_t>(s.instances_stored),
                     static_cast<int64_t>(s.instances_refused), static_cast<int64_t>(s.bytes_received));
  });
  if (!st.ok()) log::Warn("association_record_failed", {{"association", s.association.id}, {"error", st.ToString()}});
}

absl::StatusOr<std::vector<std::string>> PgRegistry::Unregistered(const std::vector<std::string>& names) {
  std::vector<std::string> missing;
  constexpr size_t kChunk = 20000;
  for (size_t off = 0; off < names.size(); off += kChunk) {
    // Spool names are 64 lower-case hex digits, so the array literal needs no quoting.
    std::string literal = "{";
    for (size_t i = off; i < std::min(names.size(), off + kChunk); ++i) {
      if (i > off) literal += ',';
      literal += names[i];
    }
    literal += "}";
    RETURN_IF_ERROR(pool_.Run([&](pqxx::connection_base& c) {
      pqxx::nontransaction tx(c);
      pqxx::result res = tx.exec_prepared("unregistered", literal);
      for (const auto& row : res) missing.push_back(row[0].c_str());
    }));
  }
  return missing;
}

absl::Status PgRegistry::Ping() {
  return pool_.Run([](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    tx.exec("SELECT 1");
  });
}

}  // namespace secondread::worklist
