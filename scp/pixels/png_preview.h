// PNG previews of images the node holds, rendered by DCMTK (its PNG plugin),
// for the worklist page.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace secondread::scp {

// The first frame, with its VOI (or min-max) window, scaled down so its long
// side is at most max_side pixels. Colour images stay in colour.
absl::StatusOr<std::string> RenderPng(const std::string& path, uint32_t max_side);

}  // namespace secondread::scp
