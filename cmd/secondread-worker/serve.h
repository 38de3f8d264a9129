#pragma once

#include "cmd/secondread-worker/options.h"

namespace secondread {

// Loads the model repository and serves gRPC until SIGTERM or SIGINT.
absl::Status ServeWorker(const WorkerOptions& options);

}  // namespace secondread
