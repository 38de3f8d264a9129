#pragma once

#include <string>

#include "common/status.h"
#include "scp/instance_sink.h"

namespace secondread::scp {

// Reads the registry attributes of a Part 10 file. The whole element
// structure is parsed (so truncated or corrupt data is caught), but values
// over 4 KiB, pixel data among them, are skipped rather than loaded.
// INVALID_ARGUMENT when the file is not a parsable DICOM object.
absl::StatusOr<InstanceRecord> ReadInstanceRecord(const std::string& path);

}  // namespace secondread::scp
