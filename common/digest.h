#pragma once

#include <string>
#include <string_view>

namespace secondread {

// Lower-case hex SHA-256 of the input. Used to derive spool names from
// received identifiers so that no received byte reaches a path.
std::string Sha256Hex(std::string_view data);

}  // namespace secondread
