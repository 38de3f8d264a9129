// DICOM audit messages (PS3.15 A.5): the generic message, its XML form, and
// the events the node reports. The builders take what the call site knows
// and the node's own identity; nothing here does I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace secondread::audit {

struct Code {
  std::string code;
  std::string system = "DCM";  // codeSystemName
  std::string meaning;         // originalText (and displayName)
};

// EventOutcomeIndicator (PS3.15 A.5.1).
enum class Outcome { kSuccess = 0, kMinorFailure = 4, kSeriousFailure = 8, kMajorFailure = 12 };

struct ActiveParticipant {
  std::string user_id;
  std::string alternative_user_id;
  std::string user_name;
  bool is_requestor = false;
  std::vector<Code> roles;
  std::string network_access_point;  // empty: none
  int network_access_point_type = 2;  // 1 machine name, 2 IP address
};

struct ParticipantObject {
  int type_code = 2;  // 1 person, 2 system object
  int role = 0;       // ParticipantObjectTypeCodeRole; 0: omitted
  Code id_type;
  std::string id;
  // Exactly one of name and query is written, as the schema requires.
  std::string name;
  std::optional<std::string> query;  // raw bytes, written base64
  std::vector<std::pair<std::string, std::string>> details;  // type, raw value (written base64)
  std::map<std::string, int64_t> sop_classes;  // SOP Class UID -> number of instances
  std::vector<std::string> accessions;
};

struct AuditMessage {
  Code event_id;
  std::vector<Code> event_types;
  char action = 'E';  // C R U D E
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
  Outcome outcome = Outcome::kSuccess;
  std::string outcome_description;
  std::vector<ActiveParticipant> participants;
  std::vector<ParticipantObject> objects;
  // Our short name for metrics and spool bookkeeping ("instances_transferred").
  std::string kind;
};

// Who the node is in its own messages.
struct NodeIdentity {
  std::string ae_title = "SECONDREAD";
  std::string host;          // network access point (host name or address)
  std::string process_id;    // AlternativeUserID: the process id
  std::string source_id;     // AuditSourceID
  std::string enterprise_site;  // AuditEnterpriseSiteID; empty: omitted
};

// Another party: a DICOM peer (AE title and address) or a worklist user (the
// token's name and the client address).
struct Party {
  std::string user_id;
  std::string host;
};

// A study as the audit trail names it. The patient's identifiers are the
// point of an audit record; they go to the repository only, never to logs.
struct StudyRef {
  std::string study_uid;
  std::map<std::string, int64_t> sop_classes;
  std::string patient_id;
  std::string patient_name;
  std::string accession;
};

// XML escaping for text and attribute values; characters XML 1.0 cannot
// carry at all (controls other than tab, CR, LF, and invalid UTF-8) become
// U+FFFD so a hostile DICOM string cannot break the document.
std::string XmlEscape(std::string_view text);
std::string Base64(std::string_view bytes);

// The message as one line of XML, without the XML declaration's newline.
std::string ToXml(const AuditMessage& message, const NodeIdentity& node);

// ---- the events ----

// 110100 Application Activity; 110120 start / 110121 stop.
AuditMessage ApplicationActivity(const NodeIdentity& node, bool start, Outcome outcome = Outcome::kSuccess);

// 110104 DICOM Instances Transferred. Received: the peer is the source and
// requestor, the node the destination (action C). Exported: the node is the
// source and requestor, the peer the destination (action R).
enum class Direction { kReceived, kExported };
AuditMessage InstancesTransferred(const NodeIdentity& node, Direction direction, const Party& peer,
                                  const StudyRef& study, Outcome outcome);

// 110102 Begin Transferring DICOM Instances (export start).
AuditMessage BeginTransferring(const NodeIdentity& node, const Party& destination, const StudyRef& study);

// 110112 Query. The query text is written base64; sop_class names the
// information model searched.
AuditMessage Query(const NodeIdentity& node, const Party& user, const std::string& sop_class,
                   const std::string& query, Outcome outcome);

// 110103 DICOM Instances Accessed (action R) by a user.
AuditMessage InstancesAccessed(const NodeIdentity& node, const Party& user, const StudyRef& study, Outcome outcome);

// 110110 Patient Record (action R) by a user.
AuditMessage PatientRecord(const NodeIdentity& node, const Party& user, const StudyRef& study, Outcome outcome);

// 110114 User Authentication, 110122 Login; failure is outcome 4.
AuditMessage UserAuthentication(const NodeIdentity& node, const Party& user, bool success,
                                const std::string& description);

// 110113 Security Alert. type: 110126 Node Authentication, 110132 Use of
// Restricted Function. The peer is the alert's subject.
inline const Code kNodeAuthentication{"110126", "DCM", "Node Authentication"};
inline const Code kUseOfRestrictedFunction{"110132", "DCM", "Use of Restricted Function"};
AuditMessage SecurityAlert(const NodeIdentity& node, const Code& type, const Party& peer,
                           const std::string& description);

// 110105 DICOM Study Deleted (action D), for retention.
AuditMessage StudyDeleted(const NodeIdentity& node, const Party& user, const StudyRef& study, Outcome outcome);

// The information model a worklist search is audited as.
inline constexpr char kStudyRootFind[] = "1.2.840.10008.5.1.4.1.2.2.1";

}  // namespace secondread::audit
