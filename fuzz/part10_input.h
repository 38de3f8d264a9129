// Turns fuzzer bytes into a received instance as the receiver spools it: the
// Part 10 preamble and meta header written from the request (by DCMTK, as
// scp/receive/internals/dcmtk_server.cc does), then the dataset bytes exactly as
// they arrived. The first input byte picks the transfer syntax of the
// presentation context; the rest is the dataset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace secondread::fuzz {

struct TransferSyntax {
  const char* uid;
  const char* name;
};

// The transfer syntaxes the receiver accepts, indexed by the first byte
// (modulo the count). Index 0 is Implicit VR Little Endian.
const TransferSyntax* TransferSyntaxes(size_t* count);

// A spooled instance in an anonymous in-memory file, reused across inputs so
// a long run holds one descriptor.
class Part10Input {
 public:
  // False for an empty input.
  bool Set(const uint8_t* data, size_t size);
  // Set, then the receiver's structural scan: true only for an instance the
  // node would keep, the only ones its parser and decoder ever see. Aborts
  // (a finding) when the scan itself fails.
  bool SetAccepted(const uint8_t* data, size_t size);
  int fd() const { return fd_; }
  // A path that opens the same file, for readers that take a path.
  const std::string& path() const { return path_; }
  const std::string& transfer_syntax() const { return ts_; }

  static Part10Input& Instance();

 private:
  Part10Input();
  int fd_ = -1;
  std::string path_;
  std::string ts_;
};

}  // namespace secondread::fuzz
