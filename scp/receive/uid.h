// What the receiver accepts as a UID. PS3.5 9.1 defines the syntax: at most
// 64 characters, dot-separated numeric components, no empty component, no
// leading zero in a multi-digit component. Archives hold decades of objects
// that break the syntax in harmless ways (a leading zero from a 1990s
// modality, a space pad, an empty component), and refusing them means those
// studies are never read. Spool names never derive from UIDs and every query
// binds them as parameters, so only what could hurt is refused: an empty UID,
// one over 64 characters, or one holding anything but digits and dots (which
// keeps "/", "\", quotes and control bytes out) once its padding is trimmed.
// A UID of dots alone has no value at all and counts as empty.
#pragma once

#include <string>
#include <string_view>

namespace secondread::scp {

enum class UidVerdict {
  kValid,    // PS3.5 9.1 as written
  kLegacy,   // breaks the syntax harmlessly; accepted, logged and counted
  kRefused,  // empty, too long, or holds characters other than digits and dots
};

struct UidCheck {
  UidVerdict verdict = UidVerdict::kRefused;
  // The UID with trailing NUL/space and leading space padding removed; what
  // the node stores and compares. Leading zeros and empty components are kept:
  // the PACS knows the object by exactly this value.
  std::string value;
  // For kLegacy, which rule it breaks: leading_zero, empty_component or
  // space_padding (the first found, in that order of checking).
  std::string quirk;
};

UidCheck CheckUid(std::string_view uid);

// Strict PS3.5 9.1 syntax, for the UIDs the node creates itself.
bool IsValidUid(std::string_view uid);

}  // namespace secondread::scp
