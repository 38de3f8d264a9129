#include "fuzz/part10_input.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/oflog/oflog.h"
#include "scp/receive/dataset_limits.h"

namespace secondread::fuzz {
namespace {

// In the order of the first input byte; the seed corpus script uses the same
// indexes.
constexpr TransferSyntax kSyntaxes[] = {
    {"1.2.840.10008.1.2", "implicit_le"},
    {"1.2.840.10008.1.2.1", "explicit_le"},
    {"1.2.840.10008.1.2.2", "explicit_be"},
    {"1.2.840.10008.1.2.1.99", "deflated"},
    {"1.2.840.10008.1.2.4.50", "jpeg_baseline"},
    {"1.2.840.10008.1.2.4.51", "jpeg_extended"},
    {"1.2.840.10008.1.2.4.57", "jpeg_lossless"},
    {"1.2.840.10008.1.2.4.70", "jpeg_lossless_sv1"},
    {"1.2.840.10008.1.2.4.80", "jpegls_lossless"},
    {"1.2.840.10008.1.2.4.81", "jpegls_near_lossless"},
    {"1.2.840.10008.1.2.5", "rle"},
    {"1.2.840.10008.1.2.4.90", "jpeg2000_lossless"},
    {"1.2.840.10008.1.2.4.91", "jpeg2000"},
};
constexpr size_t kCount = sizeof kSyntaxes / sizeof kSyntaxes[0];

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::abort();
}

// The meta header the receiver writes for a request in this syntax.
std::string MetaHeader(const char* ts) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.7");
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1125.1");
  if (ff.validateMetaInfo(DcmXfer(ts).getXfer()).bad()) Die("validateMetaInfo");
  std::vector<char> buf(4096);
  DcmOutputBufferStream out(buf.data(), buf.size());
  DcmMetaInfo* meta = ff.getMetaInfo();
  meta->transferInit();
  OFCondition cond = meta->write(out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
  meta->transferEnd();
  if (cond.bad()) Die("writing the meta header");
  void* written = nullptr;
  offile_off_t length = 0;
  out.flushBuffer(written, length);
  std::string header(static_cast<const char*>(written), static_cast<size_t>(length));
  if (header.size() < 132 || header.compare(128, 4, "DICM") != 0) Die("meta header without preamble");
  return header;
}

}  // namespace

const TransferSyntax* TransferSyntaxes(size_t* count) {
  *count = kCount;
  return kSyntaxes;
}

Part10Input::Part10Input() {
  // As the node's server does: DCMTK's warnings about each odd dataset would
  // otherwise be most of a run's time.
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  fd_ = ::memfd_create("fuzz-instance", MFD_CLOEXEC);
  if (fd_ < 0) Die("memfd_create");
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

Part10Input& Part10Input::Instance() {
  static Part10Input* input = new Part10Input();
  return *input;
}

bool Part10Input::SetAccepted(const uint8_t* data, size_t size) {
  if (!Set(data, size)) return false;
  secondread::scp::DatasetLimits limits;
  limits.max_inflated_bytes = 1 << 20;
  auto report = secondread::scp::CheckDatasetStructure(fd_, ts_, limits);
  if (!report.ok()) std::abort();
  return report->ok();
}

bool Part10Input::Set(const uint8_t* data, size_t size) {
  if (size == 0) return false;
  static std::map<size_t, std::string>* headers = new std::map<size_t, std::string>();
  const size_t index = data[0] % kCount;
  auto it = headers->find(index);
  if (it == headers->end()) it = headers->emplace(index, MetaHeader(kSyntaxes[index].uid)).first;
  ts_ = kSyntaxes[index].uid;
  std::string file = it->second;
  file.append(reinterpret_cast<const char*>(data + 1), size - 1);
  if (::ftruncate(fd_, 0) != 0) Die("ftruncate");
  size_t off = 0;
  while (off < file.size()) {
    ssize_t n = ::pwrite(fd_, file.data() + off, file.size() - off, static_cast<off_t>(off));
    if (n <= 0) Die("pwrite");
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace secondread::fuzz
