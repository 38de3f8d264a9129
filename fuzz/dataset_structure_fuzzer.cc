// The structural scan every received dataset meets first
// (scp/receive/dataset_limits.h), over each transfer syntax the receiver accepts.
#include <cstdlib>

#include "fuzz/part10_input.h"
#include "scp/receive/dataset_limits.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& input = secondread::fuzz::Part10Input::Instance();
  if (!input.Set(data, size)) return 0;
  secondread::scp::DatasetLimits limits;
  // The node bounds inflation by the instance size limit; a small bound keeps
  // each run short and still reaches the refusal.
  limits.max_inflated_bytes = 1 << 20;
  auto report = secondread::scp::CheckDatasetStructure(input.fd(), input.transfer_syntax(), limits);
  // The file is in memory: an I/O error here is a bug of the scan.
  if (!report.ok()) std::abort();
  // What the scan promises the parser behind it.
  if (report->ok() && (report->depth > limits.max_depth || report->elements > limits.max_elements)) std::abort();
  if (!report->ok() && report->detail.empty()) std::abort();
  return 0;
}
