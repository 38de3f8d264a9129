#include "audit/audit_message.h"

#include <gtest/gtest.h>

namespace secondread::audit {
namespace {

NodeIdentity Node() {
  NodeIdentity n;
  n.ae_title = "SECONDREAD";
  n.host = "node1";
  n.process_id = "42";
  n.source_id = "secondread@node1";
  n.enterprise_site = "Hospital";
  return n;
}

TEST(XmlEscapeTest, EscapesMarkupAndQuotes) {
  EXPECT_EQ(XmlEscape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
}

TEST(XmlEscapeTest, KeepsWhitespaceAsReferences) { EXPECT_EQ(XmlEscape("a\tb\nc\r"), "a&#9;b&#10;c&#13;"); }

TEST(XmlEscapeTest, ReplacesControlsAndBadUtf8) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(XmlEscape(std::string("a\x01" "b", 3)), "a" + fffd + "b");
  EXPECT_EQ(XmlEscape(std::string("\0", 1)), fffd);
  EXPECT_EQ(XmlEscape("\xC3\x28"), fffd + "(");        // truncated sequence
  EXPECT_EQ(XmlEscape("\xC0\xAF"), fffd + fffd);       // overlong '/'
  EXPECT_EQ(XmlEscape("\xED\xA0\x80"), fffd + fffd + fffd);  // surrogate
  EXPECT_EQ(XmlEscape("M\xC3\xBCller^J\xC3\xB6rg"), "M\xC3\xBCller^J\xC3\xB6rg");
  EXPECT_EQ(XmlEscape("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

TEST(Base64Test, Rfc4648Vectors) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64("foobar"), "Zm9vYmFy");
}

TEST(AuditMessageTest, ReceivedStudyNamesSourceDestinationStudyAndPatient) {
  StudyRef s;
  s.study_uid = "1.2.3";
  s.sop_classes = {{"1.2.840.10008.5.1.4.1.1.2", 3}};
  s.patient_id = "PID<1>";
  s.patient_name = "Doe^J\"ane";
  auto m = InstancesTransferred(Node(), Direction::kReceived, {"MODALITY", "10.0.0.5"}, s, Outcome::kSuccess);
  std::string xml = ToXml(m, Node());
  EXPECT_NE(xml.find("<EventIdentification EventActionCode=\"C\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("<EventID csd-code=\"110104\" codeSystemName=\"DCM\""), std::string::npos);
  EXPECT_NE(xml.find("EventOutcomeIndicator=\"0\""), std::string::npos);
  EXPECT_NE(xml.find("<ActiveParticipant UserID=\"MODALITY\" UserIsRequestor=\"true\" NetworkAccessPointID=\"10.0.0.5\" "
                     "NetworkAccessPointTypeCode=\"2\"><RoleIDCode csd-code=\"110153\""),
            std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<ActiveParticipant UserID=\"SECONDREAD\" AlternativeUserID=\"42\" UserIsRequestor=\"false\" "
                     "NetworkAccessPointID=\"node1\" NetworkAccessPointTypeCode=\"1\"><RoleIDCode csd-code=\"110152\""),
            std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<AuditSourceIdentification AuditEnterpriseSiteID=\"Hospital\" AuditSourceID=\"secondread@node1\">"),
            std::string::npos);
  EXPECT_NE(xml.find("ParticipantObjectID=\"1.2.3\" ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">"
                     "<ParticipantObjectIDTypeCode csd-code=\"110180\""),
            std::string::npos);
  EXPECT_NE(xml.find("<SOPClass UID=\"1.2.840.10008.5.1.4.1.1.2\" NumberOfInstances=\"3\"/>"), std::string::npos);
  EXPECT_NE(xml.find("ParticipantObjectID=\"PID&lt;1&gt;\" ParticipantObjectTypeCode=\"1\" "
                     "ParticipantObjectTypeCodeRole=\"1\"><ParticipantObjectIDTypeCode csd-code=\"2\" "
                     "codeSystemName=\"RFC-3881\""),
            std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<ParticipantObjectName>Doe^J&quot;ane</ParticipantObjectName>"), std::string::npos);
  EXPECT_EQ(xml.find("PID<1>"), std::string::npos);
}

TEST(AuditMessageTest, ExportMakesTheNodeTheRequestingSource) {
  StudyRef s;
  s.study_uid = "1.2.3";
  auto m = InstancesTransferred(Node(), Direction::kExported, {"PACS", "10.0.0.9"}, s, Outcome::kMinorFailure);
  std::string xml = ToXml(m, Node());
  EXPECT_NE(xml.find("EventActionCode=\"R\""), std::string::npos);
  EXPECT_NE(xml.find("EventOutcomeIndicator=\"4\""), std::string::npos);
  EXPECT_NE(xml.find("UserID=\"SECONDREAD\" AlternativeUserID=\"42\" UserIsRequestor=\"true\""), std::string::npos);
  EXPECT_NE(xml.find("UserID=\"PACS\" UserIsRequestor=\"false\""), std::string::npos);
  // No patient known: no patient object.
  EXPECT_EQ(xml.find("RFC-3881"), std::string::npos);
}

TEST(AuditMessageTest, QueryIsBase64AndNotEscapedText) {
  auto m = Query(Node(), {"reader", "127.0.0.1"}, kStudyRootFind, "status=new&modality=<CT>", Outcome::kSuccess);
  std::string xml = ToXml(m, Node());
  EXPECT_NE(xml.find("<ParticipantObjectQuery>" + Base64("status=new&modality=<CT>") + "</ParticipantObjectQuery>"),
            std::string::npos);
  EXPECT_NE(xml.find("csd-code=\"110181\""), std::string::npos);
  EXPECT_EQ(xml.find("ParticipantObjectName"), std::string::npos);
}

TEST(AuditMessageTest, EventCodes) {
  StudyRef s{"1.2.3", {}, "P1", "", ""};
  Party user{"reader", "127.0.0.1"};
  struct Case {
    AuditMessage m;
    std::string event, type, action;
  } cases[] = {
      {ApplicationActivity(Node(), true), "110100", "110120", "E"},
      {ApplicationActivity(Node(), false), "110100", "110121", "E"},
      {BeginTransferring(Node(), {"PACS", "h"}, s), "110102", "", "E"},
      {InstancesAccessed(Node(), user, s, Outcome::kSuccess), "110103", "", "R"},
      {PatientRecord(Node(), user, s, Outcome::kSuccess), "110110", "", "R"},
      {UserAuthentication(Node(), user, false, "unknown token"), "110114", "110122", "E"},
      {SecurityAlert(Node(), kNodeAuthentication, {"EVIL", "10.9.9.9"}, "calling_ae_not_allowed"), "110113", "110126",
       "E"},
      {StudyDeleted(Node(), {}, s, Outcome::kSuccess), "110105", "", "D"},
  };
  for (const auto& c : cases) {
    std::string xml = ToXml(c.m, Node());
    EXPECT_NE(xml.find("<EventID csd-code=\"" + c.event + "\""), std::string::npos) << xml;
    if (!c.type.empty()) {
      EXPECT_NE(xml.find("<EventTypeCode csd-code=\"" + c.type + "\""), std::string::npos) << xml;
    }
    EXPECT_NE(xml.find("EventActionCode=\"" + c.action + "\""), std::string::npos) << xml;
  }
}

TEST(AuditMessageTest, EventDateTimeIsUtcWithMilliseconds) {
  auto m = ApplicationActivity(Node(), true);
  m.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123LL));
  EXPECT_NE(ToXml(m, Node()).find("EventDateTime=\"2023-11-14T22:13:20.123Z\""), std::string::npos);
}

}  // namespace
}  // namespace secondread::audit
