#include "scp/receive/dataset_limits.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "common/posix.h"
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctag.h"

namespace secondread::scp {
namespace {

constexpr uint64_t kUndefined = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kUndefinedLength = 0xFFFFFFFFu;
constexpr size_t kChunk = 64 * 1024;

constexpr uint16_t kItemGroup = 0xFFFE;
constexpr uint16_t kItem = 0xE000;
constexpr uint16_t kItemDelimitation = 0xE00D;
constexpr uint16_t kSequenceDelimitation = 0xE0DD;

// A forward-only byte stream with a small look-ahead. Positions count bytes
// of the dataset as a parser sees them (inflated ones for a deflated
// dataset).
class Source {
 public:
  virtual ~Source() = default;
  // Makes at least n bytes available at buffered(); false when the data ends
  // first (or an error was recorded).
  bool Ensure(size_t n) {
    while (end_ - begin_ < n) {
      if (begin_ > 0) {
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
      size_t got = 0;
      if (!Fill(buf_.data() + end_, buf_.size() - end_, got) || got == 0) return false;
      end_ += got;
    }
    return true;
  }
  const uint8_t* buffered() const { return buf_.data() + begin_; }
  size_t available() const { return end_ - begin_; }
  void Consume(size_t n) {
    begin_ += n;
    pos_ += n;
  }
  bool Read(uint8_t* out, size_t n) {
    if (!Ensure(n)) return false;
    std::memcpy(out, buffered(), n);
    Consume(n);
    return true;
  }
  // Skips n bytes; false when fewer remain.
  bool Skip(uint64_t n) {
    if (Remaining() != kUndefined && n > Remaining()) return false;
    const uint64_t buffered_part = std::min<uint64_t>(n, end_ - begin_);
    Consume(static_cast<size_t>(buffered_part));
    n -= buffered_part;
    // Bulk data (pixels) is passed over without being read where the source
    // can seek.
    if (n > 0 && Jump(n)) {
      pos_ += n;
      return true;
    }
    while (n > 0) {
      if (end_ == begin_ && !Ensure(1)) return false;
      const uint64_t step = std::min<uint64_t>(n, end_ - begin_);
      Consume(static_cast<size_t>(step));
      n -= step;
    }
    return true;
  }
  bool AtEnd() { return !Ensure(1); }
  uint64_t pos() const { return pos_; }
  // Bytes left, when the source knows; kUndefined when it can only tell by
  // reading (a deflated stream).
  virtual uint64_t Remaining() const = 0;

  StructureProblem failure = StructureProblem::kNone;
  std::string failure_detail;
  absl::Status io = absl::OkStatus();

 protected:
  // Adds up to cap bytes at out; got = 0 at the end of the data.
  virtual bool Fill(uint8_t* out, size_t cap, size_t& got) = 0;
  // Moves past n unbuffered bytes without reading them; false when the
  // source cannot (then they are read and dropped).
  virtual bool Jump(uint64_t) { return false; }

 private:
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(kChunk);
  size_t begin_ = 0;
  size_t end_ = 0;
  uint64_t pos_ = 0;
};

class FileSource : public Source {
 public:
  FileSource(int fd, uint64_t size) : fd_(fd), size_(size) {}
  uint64_t Remaining() const override { return size_ - pos(); }

 protected:
  bool Jump(uint64_t n) override {
    if (n > size_ - offset_) return false;
    offset_ += n;
    return true;
  }
  bool Fill(uint8_t* out, size_t cap, size_t& got) override {
    got = 0;
    if (offset_ >= size_) return true;
    ssize_t n;
    do {
      n = ::pread(fd_, out, std::min<uint64_t>(cap, size_ - offset_), static_cast<off_t>(offset_));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      io = posix::ErrnoStatus("reading the received dataset");
      return false;
    }
    offset_ += static_cast<uint64_t>(n);
    got = static_cast<size_t>(n);
    return true;
  }

 private:
  int fd_;
  uint64_t size_;
  uint64_t offset_ = 0;  // file offset of the next byte to fill
};

// Inflates a raw deflate stream (PS3.5 A.5) from another source, counting
// what it produces against a bound so a small stream cannot grow without one.
class InflateSource : public Source {
 public:
  InflateSource(Source* compressed, uint64_t max_bytes) : in_(compressed), max_(max_bytes) {
    std::memset(&z_, 0, sizeof z_);
    ok_ = inflateInit2(&z_, -MAX_WBITS) == Z_OK;
  }
  ~InflateSource() override {
    if (ok_) inflateEnd(&z_);
  }
  uint64_t Remaining() const override { return kUndefined; }

 protected:
  bool Fill(uint8_t* out, size_t cap, size_t& got) override {
    got = 0;
    if (!ok_ || finished_) return ok_;
    z_.next_out = out;
    z_.avail_out = static_cast<uInt>(std::min<size_t>(cap, std::numeric_limits<uInt>::max()));
    while (z_.avail_out > 0 && !finished_) {
      if (z_.avail_in == 0) {
        if (!in_->Ensure(1)) {
          if (!in_->io.ok()) io = in_->io;
          break;  // the compressed data ends: whatever was produced is all
        }
        const size_t avail = std::min(in_->available(), kChunk);
        pending_.assign(in_->buffered(), in_->buffered() + avail);
        in_->Consume(avail);
        z_.next_in = pending_.data();
        z_.avail_in = static_cast<uInt>(pending_.size());
      }
      const int rc = inflate(&z_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) {
        finished_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        failure = StructureProblem::kMalformed;
        failure_detail = "the deflated dataset is not a valid deflate stream";
        return false;
      } else if (rc == Z_BUF_ERROR && z_.avail_in > 0) {
        break;
      }
    }
    got = static_cast<size_t>(z_.next_out - out);
    produced_ += got;
    if (max_ > 0 && produced_ > max_) {
      failure = StructureProblem::kInflatesTooLarge;
      failure_detail = "the deflated dataset inflates beyond " + std::to_string(max_) + " bytes";
      return false;
    }
    return true;
  }

 private:
  Source* in_;
  uint64_t max_;
  z_stream z_;
  bool ok_ = false;
  bool finished_ = false;
  uint64_t produced_ = 0;
  std::vector<uint8_t> pending_;
};

struct Encoding {
  bool explicit_vr = true;
  bool big_endian = false;
};

uint16_t U16(const uint8_t* p, bool big) {
  return big ? static_cast<uint16_t>(p[0] << 8 | p[1]) : static_cast<uint16_t>(p[1] << 8 | p[0]);
}
uint32_t U32(const uint8_t* p, bool big) {
  return big ? (uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3])
             : (uint32_t{p[3]} << 24 | uint32_t{p[2]} << 16 | uint32_t{p[1]} << 8 | p[0]);
}

// PS3.5 7.1.2: the VRs whose explicit encoding has two reserved bytes and a
// 32-bit length.
bool LongLengthVr(const char vr[2]) {
  static const char* const kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
  for (const char* v : kLong) {
    if (vr[0] == v[0] && vr[1] == v[1]) return true;
  }
  return false;
}

bool KnownShortVr(const char vr[2]) {
  static const char* const kShort[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO",
                                       "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"};
  for (const char* v : kShort) {
    if (vr[0] == v[0] && vr[1] == v[1]) return true;
  }
  return false;
}

bool DictionarySaysSequence(uint16_t group, uint16_t element) {
  return DcmTag(group, element).getEVR() == EVR_SQ;
}

enum class Kind { kDataset, kSequence, kItem, kFragments };

struct Frame {
  Kind kind;
  Encoding encoding;
  uint64_t end;  // position where a defined-length container ends; kUndefined otherwise
};

std::string Tag(uint16_t g, uint16_t e) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "(%04X,%04X)", g, e);
  return buf;
}

class Scanner {
 public:
  Scanner(Source* src, const DatasetLimits& limits, Encoding encoding) : src_(src), limits_(limits) {
    stack_.push_back({Kind::kDataset, encoding, kUndefined});
  }

  StructureReport Run() {
    while (report_.ok() && !stack_.empty()) Step();
    if (report_.ok() && src_->failure != StructureProblem::kNone) Fail(src_->failure, src_->failure_detail);
    return report_;
  }

 private:
  void Fail(StructureProblem p, const std::string& detail) {
    if (!report_.ok()) return;
    // A failure inside the source (inflating too far, a broken stream)
    // explains a short read better than the read itself.
    if (src_->failure != StructureProblem::kNone) {
      report_.problem = src_->failure;
      report_.detail = src_->failure_detail;
      return;
    }
    report_.problem = p;
    report_.detail = detail;
  }

  void Truncated(const std::string& what) {
    Fail(StructureProblem::kLengthBeyondData, what + " at byte " + std::to_string(src_->pos()) +
                                                  " runs past the end of the data received");
  }

  bool CountElement() {
    if (++report_.elements > limits_.max_elements) {
      Fail(StructureProblem::kTooManyElements,
           "more than " + std::to_string(limits_.max_elements) + " elements and items");
      return false;
    }
    return true;
  }

  // A container of `length` bytes starting here must fit in its parent and
  // in the data.
  bool Fits(uint64_t length, const std::string& what) {
    const Frame& parent = stack_.back();
    if (parent.end != kUndefined && src_->pos() + length > parent.end) {
      Fail(StructureProblem::kLengthBeyondData, what + " is longer than the item or sequence that holds it");
      return false;
    }
    if (src_->Remaining() != kUndefined && length > src_->Remaining()) {
      Fail(StructureProblem::kLengthBeyondData,
           what + " has length " + std::to_string(length) + " but only " + std::to_string(src_->Remaining()) +
               " bytes follow");
      return false;
    }
    return true;
  }

  void PushSequence(Encoding encoding, uint32_t length, const std::string& tag) {
    uint64_t end = kUndefined;
    if (length != kUndefinedLength) {
      if (!Fits(length, "sequence " + tag)) return;
      end = src_->pos() + length;
    }
    stack_.push_back({Kind::kSequence, encoding, end});
    if (++depth_ > report_.depth) report_.depth = depth_;
    if (depth_ > limits_.max_depth) {
      Fail(StructureProblem::kTooDeep, "sequences nested deeper than " + std::to_string(limits_.max_depth) +
                                           " levels (at " + tag + ")");
    }
  }

  void Pop() {
    if (stack_.back().kind == Kind::kSequence) --depth_;
    stack_.pop_back();
  }

  void Step() {
    Frame& f = stack_.back();
    if (f.end != kUndefined) {
      if (src_->pos() == f.end) return Pop();
      if (src_->pos() > f.end) {
        return Fail(StructureProblem::kLengthBeyondData, "content runs past the length of its item or sequence");
      }
    }
    if (f.kind == Kind::kDataset && src_->AtEnd()) {
      if (!src_->io.ok()) return Fail(StructureProblem::kMalformed, "read error");
      return Pop();
    }
    const bool big = f.encoding.big_endian;
    uint8_t head[8];
    if (!src_->Read(head, 4)) return Truncated("a tag");
    const uint16_t group = U16(head, big);
    const uint16_t element = U16(head + 2, big);
    const std::string tag = Tag(group, element);

    if (f.kind == Kind::kSequence || f.kind == Kind::kFragments) {
      if (!src_->Read(head + 4, 4)) return Truncated("an item length");
      const uint32_t length = U32(head + 4, big);
      if (group == kItemGroup && element == kItem) {
        if (!CountElement()) return;
        if (f.kind == Kind::kFragments) {
          if (length == kUndefinedLength) return Fail(StructureProblem::kMalformed, "a pixel data fragment has no length");
          if (!Fits(length, "a pixel data fragment")) return;
          if (!src_->Skip(length)) return Truncated("a pixel data fragment");
          return;
        }
        uint64_t end = kUndefined;
        if (length != kUndefinedLength) {
          if (!Fits(length, "an item")) return;
          end = src_->pos() + length;
        }
        stack_.push_back({Kind::kItem, f.encoding, end});
        return;
      }
      if (group == kItemGroup && element == kSequenceDelimitation) return Pop();
      return Fail(StructureProblem::kMalformed, "expected an item in a sequence, found " + tag);
    }

    // In the dataset or an item.
    if (group == kItemGroup) {
      if (!src_->Read(head + 4, 4)) return Truncated("a delimiter length");
      if (element == kItemDelimitation && f.kind == Kind::kItem && f.end == kUndefined) return Pop();
      return Fail(StructureProblem::kMalformed, "unexpected delimiter or item " + tag);
    }
    if (!CountElement()) return;

    char vr[2] = {0, 0};
    uint32_t length = 0;
    if (f.encoding.explicit_vr) {
      if (!src_->Read(head + 4, 4)) return Truncated("an element header");
      vr[0] = static_cast<char>(head[4]);
      vr[1] = static_cast<char>(head[5]);
      if (LongLengthVr(vr)) {
        if (!src_->Read(head, 4)) return Truncated("an element length");
        length = U32(head, big);
      } else if (KnownShortVr(vr)) {
        length = U16(head + 6, big);
      } else {
        return Fail(StructureProblem::kMalformed, "element " + tag + " has an unknown value representation");
      }
    } else {
      if (!src_->Read(head + 4, 4)) return Truncated("an element length");
      length = U32(head + 4, big);
    }
    const bool is_sq_vr = f.encoding.explicit_vr ? (vr[0] == 'S' && vr[1] == 'Q') : DictionarySaysSequence(group, element);
    const bool is_un = f.encoding.explicit_vr && vr[0] == 'U' && vr[1] == 'N';

    if (length == kUndefinedLength) {
      if (is_sq_vr || !f.encoding.explicit_vr) return PushSequence(f.encoding, length, tag);
      // PS3.5 6.2.2: UN of undefined length holds a sequence in Implicit VR
      // Little Endian.
      if (is_un) return PushSequence(Encoding{false, false}, length, tag);
      if ((vr[0] == 'O' && (vr[1] == 'B' || vr[1] == 'W'))) {
        stack_.push_back({Kind::kFragments, f.encoding, kUndefined});
        return;
      }
      return Fail(StructureProblem::kMalformed, "element " + tag + " has an undefined length");
    }
    if (is_sq_vr) return PushSequence(f.encoding, length, tag);
    if (!Fits(length, "element " + tag)) return;
    // A parser that knows a private or unknown tag as a sequence (from a
    // private dictionary, or by converting UN) would descend into it; so does
    // this scan whenever such a value starts like an item.
    const bool opaque = is_un || (!f.encoding.explicit_vr && (group & 1) != 0);
    if (opaque && length >= 8 && src_->Ensure(4)) {
      const bool value_big = is_un ? false : big;
      if (U16(src_->buffered(), value_big) == kItemGroup && U16(src_->buffered() + 2, value_big) == kItem) {
        return PushSequence(is_un ? Encoding{false, false} : f.encoding, length, tag);
      }
    }
    if (!src_->Skip(length)) return Truncated("element " + tag);
  }

  Source* src_;
  const DatasetLimits& limits_;
  std::vector<Frame> stack_;
  int depth_ = 0;
  StructureReport report_;
};

// Skips the preamble, "DICM" and the group 0002 meta header (always Explicit
// VR Little Endian).
bool SkipMetaHeader(Source& src, StructureReport& report) {
  uint8_t b[12];
  if (!src.Skip(128) || !src.Read(b, 4) || std::memcmp(b, "DICM", 4) != 0) {
    report.problem = StructureProblem::kMalformed;
    report.detail = "not a Part 10 file";
    return false;
  }
  while (src.Ensure(2) && U16(src.buffered(), false) == 0x0002) {
    if (!src.Read(b, 8)) break;
    char vr[2] = {static_cast<char>(b[4]), static_cast<char>(b[5])};
    uint32_t length = U16(b + 6, false);
    if (LongLengthVr(vr)) {
      if (!src.Read(b, 4)) break;
      length = U32(b, false);
    }
    if (length == kUndefinedLength || !src.Skip(length)) {
      report.problem = StructureProblem::kMalformed;
      report.detail = "the meta header is malformed";
      return false;
    }
  }
  return true;
}

}  // namespace

const char* StructureProblemName(StructureProblem problem) {
  switch (problem) {
    case StructureProblem::kNone:
      return "none";
    case StructureProblem::kTooDeep:
      return "nesting_too_deep";
    case StructureProblem::kTooManyElements:
      return "too_many_elements";
    case StructureProblem::kLengthBeyondData:
      return "length_beyond_data";
    case StructureProblem::kInflatesTooLarge:
      return "inflates_too_large";
    case StructureProblem::kMalformed:
      return "malformed";
  }
  return "unknown";
}

absl::StatusOr<StructureReport> CheckDatasetStructure(int fd, const std::string& transfer_syntax_uid,
                                                      const DatasetLimits& limits) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return posix::ErrnoStatus("stat of the received dataset");
  FileSource file(fd, static_cast<uint64_t>(st.st_size));
  StructureReport report;
  if (!SkipMetaHeader(file, report)) {
    if (!file.io.ok()) return file.io;
    return report;
  }
  Encoding encoding;
  if (transfer_syntax_uid == "1.2.840.10008.1.2") {
    encoding = {false, false};
  } else if (transfer_syntax_uid == "1.2.840.10008.1.2.2") {
    encoding = {true, true};
  }
  if (transfer_syntax_uid == "1.2.840.10008.1.2.1.99") {
    InflateSource inflated(&file, limits.max_inflated_bytes);
    report = Scanner(&inflated, limits, encoding).Run();
    if (!inflated.io.ok()) return inflated.io;
  } else {
    report = Scanner(&file, limits, encoding).Run();
  }
  if (!file.io.ok()) return file.io;
  return report;
}

}  // namespace secondread::scp
