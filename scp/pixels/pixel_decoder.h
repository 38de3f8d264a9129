// Decodes the pixels of a stored instance into display-ready grey levels for
// the inference tier and for the Secondary Capture. DCMTK decodes the
// uncompressed, JPEG, JPEG-LS and RLE transfer syntaxes; GDCM decodes JPEG
// 2000. Every codec runs in a child process with memory, CPU and wall-clock
// limits and a seccomp filter (DecoderLimits); only uncompressed pixel data,
// which no codec touches, is rendered without one. Nothing here knows about
// patients: the output is pixels and physical facts only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace secondread::scp {

// Where a codec runs and what it may use there. The codecs of Debian 12 have
// open advisories (out-of-bounds reads in DCMTK's RLE and JPEG Huffman
// decoders, GDCM's JPEG 2000 header parse), so each compressed decode runs in
// a child process: a crash, hang, runaway allocation or forbidden system call
// there fails that one image, never the caller.
struct DecoderLimits {
  // False only for benchmarks and the fuzz harnesses, which measure or
  // instrument the codecs themselves; the node always isolates.
  bool isolate = true;
  // Memory the child may add to the data memory it inherits from the caller
  // (RLIMIT_DATA, set to the inherited size plus this). Free heap memory the
  // caller had left comes on top.
  uint64_t memory_bytes = 2ull << 30;
  uint32_t cpu_seconds = 60;   // RLIMIT_CPU of the child
  uint32_t wall_seconds = 90;  // the caller kills the child after this
};

enum class DecoderFaultForTest {
  kNone,
  kCrash,     // abort()
  kAllocate,  // allocate without bound
  kSocket,    // open a network socket
  kFork,      // start a process
  kSpin,      // loop forever
  kWriteInherited,  // write to every descriptor number the caller may have open
};

struct DecodeOptions {
  // Apply the VOI LUT or the first Window Center/Width of the object (or a
  // min-max window when it has none). Off: Modality LUT/rescale only, linearly
  // mapped to the output range.
  bool apply_voi = true;
  // Instead of grey levels, the values after the Modality LUT or rescale (for
  // CT, Hounsfield units) in DecodedFrame::values; no VOI, no inversion of
  // MONOCHROME1, which only concerns display. DCMTK holds these values as
  // integers: a fractional rescale result is cut toward zero.
  bool modality_values = false;
  // Refuse objects beyond these bounds before allocating anything: a lying
  // Rows/Columns/Number of Frames must not exhaust memory.
  uint32_t max_frames = 256;
  uint64_t max_pixels_per_frame = 64ull << 20;  // 8192 x 8192
  // Bound on frames x rows x columns: the rendering keeps every frame's
  // intermediate values in memory at once.
  uint64_t max_total_pixels = 512ull << 20;
  DecoderLimits decoder;
  // Tests only: the decoding child misbehaves this way instead of decoding,
  // so a test can prove each failure ends that one decode with its reason
  // and not the caller. Nothing in the node sets it.
  DecoderFaultForTest fault_for_test = DecoderFaultForTest::kNone;
};

// One frame, MONOCHROME2 (MONOCHROME1 already inverted), after Modality LUT
// and VOI, as unsigned 16-bit grey levels over the full 0..65535 range; or,
// with DecodeOptions::modality_values, the modality values instead.
struct DecodedFrame {
  uint32_t rows = 0;
  uint32_t columns = 0;
  std::vector<uint16_t> pixels;  // row-major, rows * columns; empty for modality values
  std::vector<float> values;     // row-major, rows * columns; only for modality values
};

struct DecodedImage {
  std::vector<DecodedFrame> frames;
  // Pixel Spacing, else Imager Pixel Spacing, else 0 (unknown).
  double row_spacing_mm = 0;
  double column_spacing_mm = 0;
  std::string source_photometric;  // as found in the object, e.g. MONOCHROME1
  std::string modality;            // (0008,0060)
  std::string body_part;           // (0018,0015)
  std::string view_position;       // (0018,5101)
  std::string sop_class_uid;
};

// Registers DCMTK's JPEG, JPEG-LS and RLE decoders. Idempotent, thread-safe.
void RegisterDecoders();

// INVALID_ARGUMENT for an object without usable pixel data, attributes that
// contradict the pixel data, bounds exceeded, or a codec that failed, crashed
// or was stopped; RESOURCE_EXHAUSTED when the codec ran out of its memory;
// UNIMPLEMENTED for a transfer syntax no decoder handles; never throws.
absl::StatusOr<DecodedImage> DecodeImageFile(const std::string& path, const DecodeOptions& options);

// Why DecodeImageFile failed, as a small fixed set of labels (metrics, the
// read's skipped images): the codec's child process crashed, ran past its CPU
// or wall-clock limit, ran out of its memory, or was killed for a system call
// its filter forbids; else the object itself could not be decoded.
inline constexpr const char* kDecoderCrashed = "decoder_crashed";
inline constexpr const char* kDecoderTimeout = "decoder_timeout";
inline constexpr const char* kDecoderOutOfMemory = "decoder_out_of_memory";
inline constexpr const char* kDecoderForbiddenSyscall = "decoder_forbidden_syscall";
inline constexpr const char* kUndecodable = "undecodable";
inline constexpr const char* kDecodeFailureReasons[] = {kDecoderCrashed, kDecoderTimeout, kDecoderOutOfMemory,
                                                        kDecoderForbiddenSyscall, kUndecodable};
std::string DecodeFailureReason(const absl::Status& status);

}  // namespace secondread::scp
