// The child process every codec runs in (scp/pixels/pixel_decoder.cc): fork, limits
// on memory, CPU time and wall-clock time, every inherited descriptor closed,
// and a seccomp filter that kills the child on any network or process-creating
// system call. The decoded pixels and a few attributes come back through a
// memfd; nothing else crosses from the child to the caller.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "scp/pixels/pixel_decoder.h"

namespace secondread::scp::internals {

// The attributes a codec may change while decoding (DCMTK's JPEG decoder
// turns YBR_FULL_422 into RGB, RLE and JPEG-LS choose a Planar
// Configuration). The caller re-checks them against the pixels it gets.
struct PixelAttributes {
  uint16_t bits_allocated = 0;
  uint16_t bits_stored = 0;
  uint16_t high_bit = 0;
  uint16_t pixel_representation = 0;
  uint16_t samples_per_pixel = 0;
  int32_t planar_configuration = -1;  // -1: absent
  std::string photometric;
};

// What the decode in the child hands back: pixel bytes it keeps alive until
// the function returns, and the attributes that go with them.
struct ChildOutput {
  const void* data = nullptr;
  uint64_t length = 0;
  PixelAttributes attributes;
};

struct IsolatedPixels {
  std::vector<char> bytes;
  PixelAttributes attributes;
};

// Runs `decode` in a child process under `limits`. `prepare` runs in the
// child before the limits and the filter, and returns the descriptors it
// opened that `decode` needs, all above 2 (everything else is closed, and
// 0-2 point at /dev/null). The child may
// hand back at most `capacity` bytes. A failure of the child carries its
// reason (DecodeFailureReason); a Status returned by `decode` comes back as
// it was, message included.
absl::StatusOr<IsolatedPixels> RunIsolated(const DecoderLimits& limits, uint64_t capacity,
                                           DecoderFaultForTest fault,
                                           const std::function<std::vector<int>()>& prepare,
                                           const std::function<absl::Status(ChildOutput&)>& decode);

// Attaches a DecodeFailureReason to a status.
absl::Status WithReason(absl::Status status, const char* reason);

}  // namespace secondread::scp::internals
