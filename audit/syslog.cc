#include "audit/syslog.h"

#include <cstdio>
#include <ctime>

namespace secondread::audit {
namespace {

std::string HeaderField(std::string_view v, size_t max) {
  std::string out;
  for (char c : v) {
    if (out.size() == max) break;
    if (c >= 33 && c <= 126) out += c;
  }
  return out.empty() ? "-" : out;
}

}  // namespace

std::string SyslogMessage(const SyslogHeader& h, std::chrono::system_clock::time_point time, bool success,
                          std::string_view xml) {
  constexpr int kFacility = 10;
  const int pri = kFacility * 8 + (success ? 5 : 4);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(us % 1000000));
  std::string m = "<" + std::to_string(pri) + ">1 " + stamp + " " + HeaderField(h.hostname, 255) + " " +
                  HeaderField(h.app_name, 48) + " " + HeaderField(h.proc_id, 128) + " " + HeaderField(h.msg_id, 32) +
                  " - \xEF\xBB\xBF";
  m.append(xml);
  return m;
}

std::string OctetCounted(std::string_view message) {
  std::string f = std::to_string(message.size());
  f += ' ';
  f.append(message);
  return f;
}

std::optional<std::string> TakeFrame(std::string& buf) {
  size_t sp = buf.find(' ');
  if (sp == std::string::npos || sp == 0 || sp > 10) return std::nullopt;
  size_t len = 0;
  for (size_t i = 0; i < sp; ++i) {
    if (buf[i] < '0' || buf[i] > '9') return std::nullopt;
    len = len * 10 + static_cast<size_t>(buf[i] - '0');
  }
  if (buf.size() < sp + 1 + len) return std::nullopt;
  std::string msg = buf.substr(sp + 1, len);
  buf.erase(0, sp + 1 + len);
  return msg;
}

}  // namespace secondread::audit
