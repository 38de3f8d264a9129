#include "audit/syslog.h"

#include <gtest/gtest.h>

namespace secondread::audit {
namespace {

TEST(SyslogTest, Rfc5424HeaderWithIheMsgIdAndBom) {
  SyslogHeader h;
  h.hostname = "node1";
  h.proc_id = "77";
  auto t = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456LL));
  EXPECT_EQ(SyslogMessage(h, t, true, "<AuditMessage/>"),
            "<85>1 2023-11-14T22:13:20.123456Z node1 secondread 77 IHE+RFC-3881 - \xEF\xBB\xBF<AuditMessage/>");
  EXPECT_EQ(SyslogMessage(h, t, false, "x").substr(0, 4), "<84>");
}

TEST(SyslogTest, HeaderFieldsArePrintableAndBounded) {
  SyslogHeader h;
  h.hostname = "bad host\n";
  h.app_name = std::string(60, 'a');
  std::string m = SyslogMessage(h, std::chrono::system_clock::now(), true, "");
  EXPECT_NE(m.find(" badhost " + std::string(48, 'a') + " - IHE+RFC-3881 "), std::string::npos) << m;
}

TEST(SyslogTest, OctetCountingRoundTrips) {
  std::string msg = "<85>1 - - - - - - \xEF\xBB\xBFhello world";
  std::string framed = OctetCounted(msg);
  EXPECT_EQ(framed, std::to_string(msg.size()) + " " + msg);
  std::string stream = framed + OctetCounted("second") + "12 partial";
  EXPECT_EQ(TakeFrame(stream), msg);
  EXPECT_EQ(TakeFrame(stream), "second");
  EXPECT_EQ(TakeFrame(stream), std::nullopt);
  EXPECT_EQ(stream, "12 partial");
}

TEST(SyslogTest, LengthCountsBytesNotCharacters) {
  std::string msg = "M\xC3\xBCller";  // 6 characters, 7 bytes
  EXPECT_EQ(OctetCounted(msg), "7 " + msg);
}

}  // namespace
}  // namespace secondread::audit
