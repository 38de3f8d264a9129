#include "worklist/pipeline/result_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "common/digest.h"
#include "common/posix.h"

namespace secondread::worklist {
namespace {

using posix::ErrnoStatus;
absl::Status Errno(const std::string& what) { return ErrnoStatus(what); }
absl::Status FsyncDir(const std::string& dir) { return posix::FsyncDirectory(dir); }

}  // namespace

absl::StatusOr<ResultFiles> ResultFiles::Open(const std::string& spool_dir) {
  if (spool_dir.empty()) return absl::InvalidArgumentError("storage.spool_dir must be set");
  std::string dir = spool_dir + "/results";
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) return Errno("create " + dir);
  RETURN_IF_ERROR(FsyncDir(spool_dir));
  return ResultFiles(dir);
}

std::string ResultFiles::PathFor(const std::string& file_name) const { return dir_ + "/" + file_name + ".dcm"; }

void ResultFiles::Remove(const std::string& file_name) const { ::unlink(PathFor(file_name).c_str()); }

absl::StatusOr<uint64_t> ResultFiles::Purge(const std::string& file_name) const {
  const std::string path = PathFor(file_name);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return 0;
    return Errno("stat result file");
  }
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return 0;
    return Errno("unlink result file");
  }
  return static_cast<uint64_t>(st.st_size);
}

absl::Status ResultFiles::SyncDirectory() const { return FsyncDir(dir_); }

absl::StatusOr<std::string> ResultFiles::Write(const std::string& key, const std::string& bytes) const {
  std::string name = Sha256Hex(key);
  std::random_device rd;
  std::string tmp = dir_ + "/." + name + "." + std::to_string(rd()) + ".part";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return Errno("create result file");
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status st = Errno("write result file");
      ::close(fd);
      ::unlink(tmp.c_str());
      return st;
    }
    off += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    absl::Status st = Errno("fdatasync result file");
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), PathFor(name).c_str()) != 0) {
    absl::Status st = Errno("rename result file");
    ::unlink(tmp.c_str());
    return st;
  }
  RETURN_IF_ERROR(FsyncDir(dir_));
  return name;
}

}  // namespace secondread::worklist
