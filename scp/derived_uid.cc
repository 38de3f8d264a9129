#include "scp/derived_uid.h"

#include <string>

#include "common/digest.h"

namespace secondread::scp {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 0;
}

std::string Decimal(unsigned __int128 value) {
  if (value == 0) return "0";
  std::string digits;
  while (value != 0) {
    digits.push_back(static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  }
  return std::string(digits.rbegin(), digits.rend());
}

}  // namespace

std::string DerivedUid(const std::vector<std::string_view>& parts) {
  // The length prefix keeps {"ab","c"} and {"a","bc"} apart.
  std::string message;
  for (std::string_view part : parts) {
    message += std::to_string(part.size());
    message += ':';
    message.append(part.data(), part.size());
  }
  const std::string hex = Sha256Hex(message);
  unsigned __int128 value = 0;
  for (size_t i = 0; i < 32 && i < hex.size(); ++i) value = (value << 4) | static_cast<unsigned>(HexValue(hex[i]));
  return "2.25." + Decimal(value);
}

}  // namespace secondread::scp
