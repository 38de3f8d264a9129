#include "audit/audit_message.h"

#include <ctime>

namespace secondread::audit {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  }
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
  // Overlong forms, surrogates and code points XML 1.0 excludes.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF) return 0;
  return n;
}

std::string Attr(const char* name, std::string_view value) {
  return std::string(" ") + name + "=\"" + XmlEscape(value) + "\"";
}

std::string CodeXml(const char* element, const Code& c) {
  return std::string("<") + element + Attr("csd-code", c.code) + Attr("codeSystemName", c.system) +
         Attr("displayName", c.meaning) + Attr("originalText", c.meaning) + "/>";
}

std::string DateTime(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

const Code kSource{"110153", "DCM", "Source Role ID"};
const Code kDestination{"110152", "DCM", "Destination Role ID"};
const Code kApplication{"110150", "DCM", "Application"};
const Code kApplicationLauncher{"110151", "DCM", "Application Launcher"};
const Code kStudyUidType{"110180", "DCM", "Study Instance UID"};
const Code kSopClassUidType{"110181", "DCM", "SOP Class UID"};
const Code kNodeIdType{"110182", "DCM", "Node ID"};
const Code kPatientNumber{"2", "RFC-3881", "Patient Number"};

ActiveParticipant Self(const NodeIdentity& node, bool requestor, std::vector<Code> roles) {
  ActiveParticipant p;
  p.user_id = node.ae_title;
  p.alternative_user_id = node.process_id;
  p.is_requestor = requestor;
  p.roles = std::move(roles);
  p.network_access_point = node.host;
  p.network_access_point_type = 1;
  return p;
}

ActiveParticipant Other(const Party& party, bool requestor, std::vector<Code> roles) {
  ActiveParticipant p;
  p.user_id = party.user_id.empty() ? "unknown" : party.user_id;
  p.is_requestor = requestor;
  p.roles = std::move(roles);
  p.network_access_point = party.host;
  p.network_access_point_type = 2;
  return p;
}

ParticipantObject StudyObject(const StudyRef& s) {
  ParticipantObject o;
  o.type_code = 2;
  o.role = 3;  // Report
  o.id_type = kStudyUidType;
  o.id = s.study_uid;
  // The published schema needs a name or a query; the UID names the study.
  o.name = s.study_uid;
  o.sop_classes = s.sop_classes;
  if (!s.accession.empty()) o.accessions.push_back(s.accession);
  return o;
}

ParticipantObject PatientObject(const StudyRef& s) {
  ParticipantObject o;
  o.type_code = 1;
  o.role = 1;  // Patient
  o.id_type = kPatientNumber;
  o.id = s.patient_id;
  o.name = s.patient_name.empty() ? s.patient_id : s.patient_name;
  return o;
}

void AddStudy(AuditMessage& m, const StudyRef& s) {
  m.objects.push_back(StudyObject(s));
  if (!s.patient_id.empty() || !s.patient_name.empty()) m.objects.push_back(PatientObject(s));
}

}  // namespace

std::string XmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '&': out += "&amp;"; ++i; continue;
      case '<': out += "&lt;"; ++i; continue;
      case '>': out += "&gt;"; ++i; continue;
      case '"': out += "&quot;"; ++i; continue;
      case '\'': out += "&apos;"; ++i; continue;
      // Attribute values normalise literal whitespace; references keep it.
      case '\t': out += "&#9;"; ++i; continue;
      case '\n': out += "&#10;"; ++i; continue;
      case '\r': out += "&#13;"; ++i; continue;
      default: break;
    }
    if (c < 0x20 || c == 0x7F) {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t n = Utf8Length(s, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

std::string Base64(std::string_view in) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string ToXml(const AuditMessage& m, const NodeIdentity& node) {
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage>";
  x += "<EventIdentification";
  x += Attr("EventActionCode", std::string(1, m.action));
  x += Attr("EventDateTime", DateTime(m.time));
  x += Attr("EventOutcomeIndicator", std::to_string(static_cast<int>(m.outcome)));
  x += ">";
  x += CodeXml("EventID", m.event_id);
  for (const auto& t : m.event_types) x += CodeXml("EventTypeCode", t);
  if (!m.outcome_description.empty()) {
    x += "<EventOutcomeDescription>" + XmlEscape(m.outcome_description) + "</EventOutcomeDescription>";
  }
  x += "</EventIdentification>";
  for (const auto& p : m.participants) {
    x += "<ActiveParticipant";
    x += Attr("UserID", p.user_id);
    if (!p.alternative_user_id.empty()) x += Attr("AlternativeUserID", p.alternative_user_id);
    if (!p.user_name.empty()) x += Attr("UserName", p.user_name);
    x += Attr("UserIsRequestor", p.is_requestor ? "true" : "false");
    if (!p.network_access_point.empty()) {
      x += Attr("NetworkAccessPointID", p.network_access_point);
      x += Attr("NetworkAccessPointTypeCode", std::to_string(p.network_access_point_type));
    }
    x += ">";
    for (const auto& r : p.roles) x += CodeXml("RoleIDCode", r);
    x += "</ActiveParticipant>";
  }
  x += "<AuditSourceIdentification";
  if (!node.enterprise_site.empty()) x += Attr("AuditEnterpriseSiteID", node.enterprise_site);
  x += Attr("AuditSourceID", node.source_id);
  x += "><AuditSourceTypeCode csd-code=\"4\"/></AuditSourceIdentification>";
  for (const auto& o : m.objects) {
    x += "<ParticipantObjectIdentification";
    x += Attr("ParticipantObjectID", o.id);
    x += Attr("ParticipantObjectTypeCode", std::to_string(o.type_code));
    if (o.role != 0) x += Attr("ParticipantObjectTypeCodeRole", std::to_string(o.role));
    x += ">";
    x += CodeXml("ParticipantObjectIDTypeCode", o.id_type);
    if (o.query) {
      x += "<ParticipantObjectQuery>" + Base64(*o.query) + "</ParticipantObjectQuery>";
    } else {
      x += "<ParticipantObjectName>" + XmlEscape(o.name) + "</ParticipantObjectName>";
    }
    for (const auto& [type, value] : o.details) {
      x += "<ParticipantObjectDetail" + Attr("type", type) + Attr("value", Base64(value)) + "/>";
    }
    if (!o.sop_classes.empty() || !o.accessions.empty()) {
      x += "<ParticipantObjectDescription>";
      for (const auto& a : o.accessions) x += "<Accession" + Attr("Number", a) + "/>";
      for (const auto& [uid, n] : o.sop_classes) {
        x += "<SOPClass" + Attr("UID", uid) + Attr("NumberOfInstances", std::to_string(n)) + "/>";
      }
      x += "</ParticipantObjectDescription>";
    }
    x += "</ParticipantObjectIdentification>";
  }
  x += "</AuditMessage>";
  return x;
}

AuditMessage ApplicationActivity(const NodeIdentity& node, bool start, Outcome outcome) {
  AuditMessage m;
  m.kind = "application_activity";
  m.event_id = {"110100", "DCM", "Application Activity"};
  m.event_types.push_back(start ? Code{"110120", "DCM", "Application Start"} : Code{"110121", "DCM", "Application Stop"});
  m.action = 'E';
  m.outcome = outcome;
  m.participants.push_back(Self(node, false, {kApplication}));
  // The service manager that started or stopped us is not known by name.
  ActiveParticipant launcher;
  launcher.user_id = "system";
  launcher.is_requestor = true;
  launcher.roles = {kApplicationLauncher};
  m.participants.push_back(launcher);
  return m;
}

AuditMessage InstancesTransferred(const NodeIdentity& node, Direction direction, const Party& peer,
                                  const StudyRef& study, Outcome outcome) {
  AuditMessage m;
  m.kind = "instances_transferred";
  m.event_id = {"110104", "DCM", "DICOM Instances Transferred"};
  m.outcome = outcome;
  if (direction == Direction::kReceived) {
    m.action = 'C';
    m.participants.push_back(Other(peer, true, {kSource}));
    m.participants.push_back(Self(node, false, {kDestination}));
  } else {
    m.action = 'R';
    m.participants.push_back(Self(node, true, {kSource}));
    m.participants.push_back(Other(peer, false, {kDestination}));
  }
  AddStudy(m, study);
  return m;
}

AuditMessage BeginTransferring(const NodeIdentity& node, const Party& destination, const StudyRef& study) {
  AuditMessage m;
  m.kind = "begin_transferring";
  m.event_id = {"110102", "DCM", "Begin Transferring DICOM Instances"};
  m.action = 'E';
  m.participants.push_back(Self(node, true, {kSource}));
  m.participants.push_back(Other(destination, false, {kDestination}));
  AddStudy(m, study);
  return m;
}

AuditMessage Query(const NodeIdentity& node, const Party& user, const std::string& sop_class,
                   const std::string& query, Outcome outcome) {
  AuditMessage m;
  m.kind = "query";
  m.event_id = {"110112", "DCM", "Query"};
  m.action = 'E';
  m.outcome = outcome;
  m.participants.push_back(Other(user, true, {kSource}));
  m.participants.push_back(Self(node, false, {kDestination}));
  ParticipantObject q;
  q.type_code = 2;
  q.role = 3;
  q.id_type = kSopClassUidType;
  q.id = sop_class;
  q.query = query;
  m.objects.push_back(std::move(q));
  return m;
}

AuditMessage InstancesAccessed(const NodeIdentity& node, const Party& user, const StudyRef& study, Outcome outcome) {
  AuditMessage m;
  m.kind = "instances_accessed";
  m.event_id = {"110103", "DCM", "DICOM Instances Accessed"};
  m.action = 'R';
  m.outcome = outcome;
  m.participants.push_back(Other(user, true, {}));
  AddStudy(m, study);
  return m;
}

AuditMessage PatientRecord(const NodeIdentity& node, const Party& user, const StudyRef& study, Outcome outcome) {
  AuditMessage m;
  m.kind = "patient_record";
  m.event_id = {"110110", "DCM", "Patient Record"};
  m.action = 'R';
  m.outcome = outcome;
  m.participants.push_back(Other(user, true, {}));
  m.objects.push_back(PatientObject(study));
  (void)node;
  return m;
}

AuditMessage UserAuthentication(const NodeIdentity& node, const Party& user, bool success,
                                const std::string& description) {
  AuditMessage m;
  m.kind = "user_authentication";
  m.event_id = {"110114", "DCM", "User Authentication"};
  m.event_types.push_back({"110122", "DCM", "Login"});
  m.action = 'E';
  m.outcome = success ? Outcome::kSuccess : Outcome::kMinorFailure;
  m.outcome_description = description;
  m.participants.push_back(Other(user, true, {}));
  // The node authenticated the user: the authenticating system.
  m.participants.push_back(Self(node, false, {}));
  return m;
}

AuditMessage SecurityAlert(const NodeIdentity& node, const Code& type, const Party& peer,
                           const std::string& description) {
  AuditMessage m;
  m.kind = "security_alert";
  m.event_id = {"110113", "DCM", "Security Alert"};
  m.event_types.push_back(type);
  m.action = 'E';
  m.outcome = Outcome::kMinorFailure;
  m.outcome_description = description;
  // The reporting node detected it; the peer performed what it reports.
  m.participants.push_back(Self(node, false, {}));
  m.participants.push_back(Other(peer, true, {}));
  ParticipantObject subject;
  subject.type_code = 2;
  subject.role = 13;  // Security Resource
  subject.id_type = kNodeIdType;
  subject.id = peer.host.empty() ? "unknown" : peer.host;
  subject.name = peer.user_id.empty() ? subject.id : peer.user_id;
  if (!description.empty()) subject.details.push_back({"Alert Description", description});
  m.objects.push_back(std::move(subject));
  return m;
}

AuditMessage StudyDeleted(const NodeIdentity& node, const Party& user, const StudyRef& study, Outcome outcome) {
  AuditMessage m;
  m.kind = "study_deleted";
  m.event_id = {"110105", "DCM", "DICOM Study Deleted"};
  m.action = 'D';
  m.outcome = outcome;
  m.participants.push_back(user.user_id.empty() ? Self(node, true, {}) : Other(user, true, {}));
  AddStudy(m, study);
  return m;
}

}  // namespace secondread::audit
