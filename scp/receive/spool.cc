#include "scp/receive/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "common/digest.h"
#include "common/posix.h"

namespace secondread::scp {
namespace {

absl::Status Errno(const std::string& what) { return posix::ErrnoStatus(what); }

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0750) != 0 && errno != EEXIST) return Errno("mkdir " + path);
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path) { return posix::FsyncDirectory(path); }

std::string RandomHex(size_t bytes) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    auto b = static_cast<unsigned>(rng() & 0xff);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

int ShardIndex(const std::string& name) { return std::stoi(name.substr(0, 2), nullptr, 16); }

}  // namespace

TempFile::~TempFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !path_.empty()) ::unlink(path_.c_str());
}

bool IsSpoolName(std::string_view name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Spool::NameForSopInstanceUid(std::string_view sop_instance_uid) { return Sha256Hex(sop_instance_uid); }

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const SpoolOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("storage.spool_dir must be set");
  std::unique_ptr<Spool> spool(new Spool(options));
  spool->shard_fds_.fill(-1);
  spool->objects_dir_ = options.dir + "/objects";
  spool->tmp_dir_ = options.dir + "/tmp";
  RETURN_IF_ERROR(MakeDir(options.dir));
  RETURN_IF_ERROR(MakeDir(spool->objects_dir_));
  RETURN_IF_ERROR(MakeDir(spool->tmp_dir_));
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) {
    std::string shard = spool->objects_dir_ + "/" + kHex[i >> 4] + kHex[i & 0xf];
    RETURN_IF_ERROR(MakeDir(shard));
    int fd = ::open(shard.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno("open " + shard);
    spool->shard_fds_[i] = fd;
  }
  // The shard directories themselves must be durable before any file in them.
  RETURN_IF_ERROR(FsyncPath(spool->objects_dir_));
  RETURN_IF_ERROR(FsyncPath(spool->tmp_dir_));
  RETURN_IF_ERROR(FsyncPath(options.dir));
  return spool;
}

Spool::~Spool() {
  for (int fd : shard_fds_) {
    if (fd >= 0) ::close(fd);
  }
}

std::string Spool::PathFor(const std::string& name) const {
  return objects_dir_ + "/" + name.substr(0, 2) + "/" + name + ".dcm";
}

SpoolNameLock::~SpoolNameLock() {
  if (spool_) spool_->UnlockName(name_);
}

SpoolNameLock Spool::LockName(const std::string& name) {
  std::unique_lock<std::mutex> lock(names_mu_);
  names_cv_.wait(lock, [&] { return locked_names_.count(name) == 0; });
  locked_names_.insert(name);
  return SpoolNameLock(this, name);
}

void Spool::UnlockName(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(names_mu_);
    locked_names_.erase(name);
  }
  // Waiters on other names wake and wait again; a name is rarely contended.
  names_cv_.notify_all();
}

absl::StatusOr<TempFile> Spool::CreateTemp() {
  std::string path = tmp_dir_ + "/" + RandomHex(16) + ".part";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return Errno("create " + path);
  return TempFile(fd, path);
}

absl::StatusOr<CommitResult> Spool::Commit(TempFile& file, const std::string& name) {
  if (!IsSpoolName(name)) return absl::InvalidArgumentError("not a spool name");
  if (::fdatasync(file.fd_) != 0) return Errno("fdatasync " + file.path_);
  std::string dest = PathFor(name);
  CommitResult result;
  struct stat st;
  result.replaced = ::stat(dest.c_str(), &st) == 0;
  if (::rename(file.path_.c_str(), dest.c_str()) != 0) return Errno("rename to " + dest);
  file.committed_ = true;
  ::close(file.fd_);
  file.fd_ = -1;
  if (::fsync(shard_fds_[ShardIndex(name)]) != 0) return Errno("fsync shard directory");
  return result;
}

absl::Status Spool::Remove(const std::string& name) {
  if (!IsSpoolName(name)) return absl::InvalidArgumentError("not a spool name");
  std::string path = PathFor(name);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("unlink " + path);
  if (::fsync(shard_fds_[ShardIndex(name)]) != 0) return Errno("fsync shard directory");
  return absl::OkStatus();
}

absl::Status Spool::CheckFreeSpace() const {
  struct statvfs vfs;
  if (::statvfs(options_.dir.c_str(), &vfs) != 0) return Errno("statvfs " + options_.dir);
  uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (free_bytes < options_.min_free_bytes) {
    return absl::ResourceExhaustedError("spool free space " + std::to_string(free_bytes) +
                                        " bytes is below the floor of " + std::to_string(options_.min_free_bytes));
  }
  return absl::OkStatus();
}

absl::Status Spool::CheckWritable() const {
  std::string probe = tmp_dir_ + "/ready-" + RandomHex(8) + ".probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return Errno("spool not writable");
  bool ok = ::write(fd, "x", 1) == 1;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!ok) return Errno("spool not writable");
  return CheckFreeSpace();
}

absl::StatusOr<std::vector<std::string>> Spool::ListObjects() const {
  std::vector<std::string> names;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) {
    std::string shard = objects_dir_ + "/" + kHex[i >> 4] + kHex[i & 0xf];
    DIR* d = ::opendir(shard.c_str());
    if (!d) return Errno("opendir " + shard);
    while (dirent* e = ::readdir(d)) {
      std::string_view n(e->d_name);
      if (n.size() == 68 && n.substr(64) == ".dcm" && IsSpoolName(n.substr(0, 64))) names.emplace_back(n.substr(0, 64));
    }
    ::closedir(d);
  }
  return names;
}

int Spool::CleanTemp() {
  int removed = 0;
  DIR* d = ::opendir(tmp_dir_.c_str());
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    std::string n(e->d_name);
    if (n == "." || n == "..") continue;
    if (::unlink((tmp_dir_ + "/" + n).c_str()) == 0) ++removed;
  }
  ::closedir(d);
  return removed;
}

}  // namespace secondread::scp
