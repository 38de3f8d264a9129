// Deterministic UIDs for the objects the node creates. The same inputs always
// give the same UID, so re-sending a result replaces the earlier object in
// the PACS instead of duplicating it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace secondread::scp {

// "2.25." followed by the decimal value of the first 128 bits of SHA-256 over
// the length-prefixed parts (PS3.5 B.2: a UUID-derived UID; at most 44
// characters). Parts are e.g. {study UID, model, version, "sr"}.
std::string DerivedUid(const std::vector<std::string_view>& parts);

}  // namespace secondread::scp
