#pragma once

#include "cmd/secondread/options.h"

namespace secondread {

// Runs the node until SIGTERM or SIGINT.
absl::Status Serve(const NodeOptions& options);

}  // namespace secondread
