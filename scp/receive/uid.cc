#include "scp/receive/uid.h"

namespace secondread::scp {

bool IsValidUid(std::string_view uid) {
  if (uid.empty() || uid.size() > 64) return false;
  size_t start = 0;
  while (start <= uid.size()) {
    size_t end = uid.find('.', start);
    if (end == std::string_view::npos) end = uid.size();
    std::string_view part = uid.substr(start, end - start);
    if (part.empty()) return false;
    if (part.size() > 1 && part[0] == '0') return false;
    for (char c : part) {
      if (c < '0' || c > '9') return false;
    }
    start = end + 1;
  }
  return true;
}

UidCheck CheckUid(std::string_view uid) {
  UidCheck out;
  // NUL is the UI pad byte (PS3.5 6.2); spaces are a common legacy pad.
  bool space_pad = false;
  while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' ')) {
    space_pad = space_pad || uid.back() == ' ';
    uid.remove_suffix(1);
  }
  while (!uid.empty() && uid.front() == ' ') {
    space_pad = true;
    uid.remove_prefix(1);
  }
  bool digit = false;
  for (char c : uid) {
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c != '.') {
      return out;  // refused: a character no UID holds
    }
  }
  if (!digit || uid.size() > 64) return out;
  out.value = std::string(uid);
  if (IsValidUid(uid)) {
    out.verdict = space_pad ? UidVerdict::kLegacy : UidVerdict::kValid;
    if (space_pad) out.quirk = "space_padding";
    return out;
  }
  out.verdict = UidVerdict::kLegacy;
  bool leading_zero = false;
  bool empty_component = false;
  size_t start = 0;
  while (start <= uid.size()) {
    size_t end = uid.find('.', start);
    if (end == std::string_view::npos) end = uid.size();
    std::string_view part = uid.substr(start, end - start);
    if (part.empty()) empty_component = true;
    if (part.size() > 1 && part[0] == '0') leading_zero = true;
    start = end + 1;
  }
  out.quirk = leading_zero ? "leading_zero" : empty_component ? "empty_component" : "space_padding";
  return out;
}

}  // namespace secondread::scp
