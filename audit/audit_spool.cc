#include "audit/audit_spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <vector>

#include "common/posix.h"

namespace secondread::audit {
namespace {

constexpr char kSuffix[] = ".msg";
constexpr size_t kDigits = 20;

std::string NameFor(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu%s", static_cast<unsigned long long>(seq), kSuffix);
  return buf;
}

// The sequence number of a spool file name, or 0 for anything else.
uint64_t SeqOf(const std::string& name) {
  if (name.size() != kDigits + 4 || name.compare(kDigits, 4, kSuffix) != 0) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < kDigits; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  return v;
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return posix::ErrnoStatus("write audit spool file");
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<AuditSpool>> AuditSpool::Open(const std::string& dir, uint64_t max_bytes) {
  if (dir.empty()) return absl::InvalidArgumentError("audit spool directory is empty");
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return posix::ErrnoStatus("create " + dir);
  std::unique_ptr<AuditSpool> spool(new AuditSpool(dir, max_bytes));
  DIR* d = ::opendir(dir.c_str());
  if (!d) return posix::ErrnoStatus("open " + dir);
  std::vector<std::pair<uint64_t, std::string>> found;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (name.rfind("tmp-", 0) == 0) {
      ::unlink((dir + "/" + name).c_str());
      continue;
    }
    if (uint64_t seq = SeqOf(name); seq != 0) found.emplace_back(seq, name);
  }
  ::closedir(d);
  std::sort(found.begin(), found.end());
  for (const auto& [seq, name] : found) {
    struct stat st;
    if (::stat((dir + "/" + name).c_str(), &st) != 0) continue;
    spool->files_.emplace_back(name, static_cast<uint64_t>(st.st_size));
    spool->bytes_ += static_cast<uint64_t>(st.st_size);
    spool->next_seq_ = seq + 1;
  }
  return spool;
}

absl::Status AuditSpool::Append(const std::string& message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes_ + message.size() > max_bytes_) {
    return absl::ResourceExhaustedError("audit spool full (" + std::to_string(bytes_) + " of " +
                                        std::to_string(max_bytes_) + " bytes)");
  }
  const uint64_t seq = next_seq_++;
  const std::string name = NameFor(seq);
  const std::string tmp = dir_ + "/tmp-" + name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return posix::ErrnoStatus("create " + tmp);
  absl::Status st = WriteAll(fd, message);
  if (st.ok() && ::fsync(fd) != 0) st = posix::ErrnoStatus("fsync " + tmp);
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), (dir_ + "/" + name).c_str()) != 0) st = posix::ErrnoStatus("rename " + tmp);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  RETURN_IF_ERROR(posix::FsyncDirectory(dir_));
  files_.emplace_back(name, message.size());
  bytes_ += message.size();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<AuditSpool::Entry>> AuditSpool::Oldest() {
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (files_.empty()) return std::optional<Entry>();
    name = files_.front().first;
  }
  int fd = ::open((dir_ + "/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return posix::ErrnoStatus("open audit spool file " + name);
  std::string data;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return posix::ErrnoStatus("read audit spool file " + name);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return std::optional<Entry>(Entry{name, std::move(data)});
}

absl::Status AuditSpool::Remove(const std::string& name) {
  if (::unlink((dir_ + "/" + name).c_str()) != 0 && errno != ENOENT) {
    return posix::ErrnoStatus("remove audit spool file " + name);
  }
  RETURN_IF_ERROR(posix::FsyncDirectory(dir_));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(files_.begin(), files_.end(), [&](const auto& f) { return f.first == name; });
  if (it != files_.end()) {
    bytes_ -= it->second;
    files_.erase(it);
  }
  return absl::OkStatus();
}

uint64_t AuditSpool::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t AuditSpool::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return files_.size();
}

}  // namespace secondread::audit
