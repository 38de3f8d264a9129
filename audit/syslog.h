// RFC 5424 syslog messages carrying audit XML, and the RFC 5425
// octet-counted framing for TLS (RFC 5426 UDP sends the message alone).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace secondread::audit {

struct SyslogHeader {
  std::string hostname = "-";
  std::string app_name = "secondread";
  std::string proc_id = "-";
  // IHE ITI TF-2 3.20.7 (Record Audit Event) names this MSGID.
  std::string msg_id = "IHE+RFC-3881";
};

// "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM XML". Facility 10
// (security/authorization); severity 5 (notice) for a success, 4 (warning)
// otherwise. Header fields are reduced to PRINTUSASCII and cut to RFC 5424's
// lengths.
std::string SyslogMessage(const SyslogHeader& header, std::chrono::system_clock::time_point time, bool success,
                          std::string_view xml);

// "LEN SP MSG" (RFC 5425 section 4.3).
std::string OctetCounted(std::string_view message);

// Splits one octet-counted frame off the front of buf: the message, and buf
// keeps the rest; nullopt while the frame is incomplete. Used by tests and
// by nothing on the node's path.
std::optional<std::string> TakeFrame(std::string& buf);

}  // namespace secondread::audit
