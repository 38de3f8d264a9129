// Structural limits checked on every received dataset before any recursive
// parser sees it. DCMTK's parser recurses once per nested sequence and
// allocates an object per element, so a dataset nested thousands of levels
// deep exhausts the stack (CVE-2026-44031, unfixed in DCMTK 3.6.7), and one
// with millions of elements, lengths that point past the data, or a deflated
// stream that inflates without bound exhausts memory. This scanner walks the
// encoded bytes once, iteratively, with an explicit stack and constant memory,
// and says which limit a dataset breaks.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace secondread::scp {

struct DatasetLimits {
  // Sequences nested inside each other; upstream DCMTK chose 64 when it fixed
  // the recursion.
  int max_depth = 64;
  // Elements and items together. A large enhanced multi-frame object has a
  // few hundred thousand; each costs DCMTK an allocation when parsed.
  int64_t max_elements = 500000;
  // For a deflated dataset, the most its inflated stream may hold; 0 means no
  // bound. The node sets it to the instance size limit.
  uint64_t max_inflated_bytes = 0;
};

enum class StructureProblem {
  kNone,
  kTooDeep,           // sequences nested beyond max_depth
  kTooManyElements,   // more elements and items than max_elements
  kLengthBeyondData,  // a value or item length larger than the data received
  kInflatesTooLarge,  // a deflated dataset inflating beyond max_inflated_bytes
  kMalformed,         // an encoding no parser should be given
};

// A short name for logs and metric labels.
const char* StructureProblemName(StructureProblem problem);

struct StructureReport {
  StructureProblem problem = StructureProblem::kNone;
  std::string detail;  // where and what, without any value from the dataset
  int depth = 0;       // deepest nesting seen (before stopping)
  int64_t elements = 0;
  bool ok() const { return problem == StructureProblem::kNone; }
};

// Scans the Part 10 file open at fd (preamble, "DICM", the group 0002 meta
// header, then the dataset in transfer_syntax_uid). Reads with pread, so the
// descriptor's offset is left alone. An error status only for I/O failures; a
// dataset that breaks a limit is an OK status with the problem in the report.
absl::StatusOr<StructureReport> CheckDatasetStructure(int fd, const std::string& transfer_syntax_uid,
                                                      const DatasetLimits& limits);

}  // namespace secondread::scp
