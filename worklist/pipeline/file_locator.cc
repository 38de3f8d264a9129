#include "worklist/pipeline/file_locator.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace secondread::worklist {

StagingDir::~StagingDir() {
  if (path_.empty()) return;
  if (DIR* d = ::opendir(path_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      ::unlink((path_ + "/" + e->d_name).c_str());
    }
    ::closedir(d);
  }
  ::rmdir(path_.c_str());
}

absl::StatusOr<std::string> StagingDir::Path() {
  if (!path_.empty()) return path_;
  std::string templ = parent_ + "/fetch-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    return absl::UnavailableError("cannot create a staging directory in " + parent_ + ": " + std::strerror(errno));
  }
  path_ = templ;
  return path_;
}

}  // namespace secondread::worklist
