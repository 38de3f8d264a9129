#include "scp/objects/derived_uid.h"

#include <algorithm>
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

std::string ReadSrUid(const ReadIdentity& read, const std::vector<ImageKey>& images) {
  std::vector<std::string> names;
  names.reserve(images.size());
  for (const ImageKey& image : images) names.push_back(image.sop_instance_uid + "/" + std::to_string(image.frame));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::vector<std::string_view> parts = {"read-sr", read.study_uid, read.rule, read.model, read.version,
                                         read.instance_uid};
  for (const std::string& name : names) parts.push_back(name);
  return DerivedUid(parts);
}

std::string ReadScUid(const ReadIdentity& read, const ImageKey& source) {
  const std::string frame = std::to_string(source.frame);
  return DerivedUid({"read-sc", read.study_uid, read.rule, read.model, read.version, read.instance_uid,
                     source.sop_instance_uid, frame});
}

std::string ReadSeriesUid(const ReadIdentity& read, std::string_view kind) {
  return DerivedUid({"read-series", read.study_uid, read.rule, read.model, read.version, kind});
}

}  // namespace secondread::scp
