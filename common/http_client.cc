#include "common/http_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "httplib.h"

namespace secondread {

absl::Status HttpGetToFile(const HttpFetch& fetch, const std::string& dest, uint64_t* bytes) {
  const bool https = fetch.base_url.rfind("https://", 0) == 0;
  if (!https && fetch.base_url.rfind("http://", 0) != 0) {
    return absl::InvalidArgumentError("not an http or https URL: " + fetch.base_url);
  }
  int fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError("cannot create " + dest + ": " + std::strerror(errno));
  uint64_t written = 0;
  bool write_failed = false;
  bool too_large = false;
  int status = 0;
  httplib::Error error = httplib::Error::Success;
  try {
    httplib::Client client(fetch.base_url);
    if (https) {
      client.enable_server_certificate_verification(true);
      if (!fetch.ca_file.empty()) client.set_ca_cert_path(fetch.ca_file.c_str());
    }
    client.set_connection_timeout(fetch.connect_timeout_s, 0);
    client.set_read_timeout(fetch.read_timeout_s, 0);
    client.set_write_timeout(fetch.connect_timeout_s, 0);
    client.set_keep_alive(false);
    httplib::Headers headers;
    if (!fetch.bearer_token.empty()) headers.emplace("Authorization", "Bearer " + fetch.bearer_token);
    auto res = client.Get(
        fetch.path, headers,
        [&](const httplib::Response& r) {
          status = r.status;
          return r.status == 200;
        },
        [&](const char* data, size_t length) {
          if (fetch.keep_going && !fetch.keep_going()) return false;
          if (written + length > fetch.max_bytes) {
            too_large = true;
            return false;
          }
          size_t off = 0;
          while (off < length) {
            ssize_t n = ::write(fd, data + off, length - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
              write_failed = true;
              return false;
            }
            off += static_cast<size_t>(n);
          }
          written += length;
          return true;
        });
    error = res.error();
    if (res && status == 0) status = res->status;
  } catch (const std::exception& e) {
    ::close(fd);
    ::unlink(dest.c_str());
    return absl::UnavailableError(std::string("fetch failed: ") + e.what());
  }
  const bool closed = ::close(fd) == 0;
  absl::Status st;
  if (write_failed || !closed) {
    st = absl::UnavailableError("cannot write " + dest + ": " + std::strerror(errno));
  } else if (too_large) {
    st = absl::ResourceExhaustedError("the body exceeds " + std::to_string(fetch.max_bytes) + " bytes");
  } else if (status == 404) {
    st = absl::NotFoundError("not found at " + fetch.base_url);
  } else if (status == 401 || status == 403) {
    st = absl::PermissionDeniedError("refused by " + fetch.base_url + " (HTTP " + std::to_string(status) + ")");
  } else if (status != 200) {
    st = absl::UnavailableError("HTTP " + std::to_string(status) + " from " + fetch.base_url);
  } else if (error != httplib::Error::Success) {
    st = absl::UnavailableError("fetch from " + fetch.base_url + " failed: " + httplib::to_string(error));
  }
  if (!st.ok() && status == 0 && error != httplib::Error::Success) {
    st = absl::UnavailableError("fetch from " + fetch.base_url + " failed: " + httplib::to_string(error));
  }
  if (!st.ok()) {
    ::unlink(dest.c_str());
    return st;
  }
  if (bytes) *bytes = written;
  return absl::OkStatus();
}

}  // namespace secondread
