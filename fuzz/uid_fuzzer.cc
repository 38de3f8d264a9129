// The UID check (scp/receive/uid.h) on Affected SOP UIDs from the C-STORE request and
// the UIDs read from the dataset.
#include <cstdlib>
#include <string_view>

#include "scp/receive/uid.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace secondread::scp;
  const std::string_view uid(reinterpret_cast<const char*>(data), size);
  const UidCheck check = CheckUid(uid);
  const bool valid = IsValidUid(uid);
  if (valid && check.verdict != UidVerdict::kValid) std::abort();
  if (check.verdict == UidVerdict::kRefused) {
    if (!check.value.empty() || !check.quirk.empty()) std::abort();
    return 0;
  }
  // What the node stores and compares: 1..64 characters, digits and dots,
  // never dots alone.
  if (check.value.empty() || check.value.size() > 64) std::abort();
  bool digit = false;
  for (char c : check.value) {
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c != '.') {
      std::abort();
    }
  }
  if (!digit) std::abort();
  if ((check.verdict == UidVerdict::kLegacy) == check.quirk.empty()) std::abort();
  if (check.verdict == UidVerdict::kValid && !IsValidUid(check.value)) std::abort();
  // The check is idempotent on what it keeps.
  if (CheckUid(check.value).value != check.value) std::abort();
  return 0;
}
