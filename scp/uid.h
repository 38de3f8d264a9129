#pragma once

#include <string_view>

namespace secondread::scp {

// A DICOM UID (PS3.5 9.1): at most 64 characters, dot-separated numeric
// components, no empty component, no leading zero in a multi-digit component.
// Anything else, "..", "/" or a trailing pad included, is refused.
bool IsValidUid(std::string_view uid);

}  // namespace secondread::scp
