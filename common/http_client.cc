#include "common/http_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "httplib.h"

namespace secondread {

struct HttpConnectionPool::Impl {
  std::mutex mu;
  std::map<std::string, std::vector<std::unique_ptr<httplib::Client>>> idle;  // by base URL and CA file
};

HttpConnectionPool::HttpConnectionPool() : impl_(std::make_unique<Impl>()) {}
HttpConnectionPool::~HttpConnectionPool() = default;

namespace {

constexpr size_t kMaxIdlePerServer = 4;

std::unique_ptr<httplib::Client> NewClient(const HttpFetch& fetch, bool keep_alive) {
  auto client = std::make_unique<httplib::Client>(fetch.base_url);
  if (fetch.base_url.rfind("https://", 0) == 0) {
    client->enable_server_certificate_verification(true);
    if (!fetch.ca_file.empty()) client->set_ca_cert_path(fetch.ca_file.c_str());
  }
  client->set_connection_timeout(fetch.connect_timeout_s, 0);
  client->set_read_timeout(fetch.read_timeout_s, 0);
  client->set_write_timeout(fetch.connect_timeout_s, 0);
  client->set_keep_alive(keep_alive);
  client->set_follow_location(false);
  // Small answers must not wait for a delayed ACK (40 ms per file).
  client->set_tcp_nodelay(true);
  return client;
}

struct Outcome {
  int status = 0;
  httplib::Error error = httplib::Error::Success;
  bool too_large = false;
  bool sink_failed = false;
  std::string exception;
};

// One GET; `sink` takes each piece of the body and returns false to stop.
Outcome Get(const HttpFetch& fetch, HttpConnectionPool* pool, const std::function<bool(const char*, size_t)>& sink) {
  Outcome out;
  const std::string key = fetch.base_url + "\n" + fetch.ca_file;
  std::unique_ptr<httplib::Client> client;
  if (pool) {
    std::lock_guard<std::mutex> lock(pool->impl()->mu);
    auto& idle = pool->impl()->idle[key];
    if (!idle.empty()) {
      client = std::move(idle.back());
      idle.pop_back();
    }
  }
  try {
    if (!client) client = NewClient(fetch, pool != nullptr);
    httplib::Headers headers;
    if (!fetch.bearer_token.empty()) headers.emplace("Authorization", "Bearer " + fetch.bearer_token);
    uint64_t received = 0;
    auto res = client->Get(
        fetch.path, headers,
        [&](const httplib::Response& r) {
          out.status = r.status;
          return r.status == 200;
        },
        [&](const char* data, size_t length) {
          if (fetch.keep_going && !fetch.keep_going()) return false;
          if (received + length > fetch.max_bytes) {
            out.too_large = true;
            return false;
          }
          received += length;
          if (!sink(data, length)) {
            out.sink_failed = true;
            return false;
          }
          return true;
        });
    out.error = res.error();
    if (res && out.status == 0) out.status = res->status;
  } catch (const std::exception& e) {
    out.exception = e.what();
  }
  // Only a connection whose last exchange ended cleanly goes back.
  if (pool && client && out.exception.empty() && out.error == httplib::Error::Success && out.status == 200) {
    std::lock_guard<std::mutex> lock(pool->impl()->mu);
    auto& idle = pool->impl()->idle[key];
    if (idle.size() < kMaxIdlePerServer) idle.push_back(std::move(client));
  }
  return out;
}

absl::Status StatusOf(const HttpFetch& fetch, const Outcome& o) {
  if (!o.exception.empty()) return absl::UnavailableError("fetch failed: " + o.exception);
  if (o.too_large) return absl::ResourceExhaustedError("the body exceeds " + std::to_string(fetch.max_bytes) + " bytes");
  if (o.status == 404) return absl::NotFoundError("not found at " + fetch.base_url);
  if (o.status == 401 || o.status == 403) {
    return absl::PermissionDeniedError("refused by " + fetch.base_url + " (HTTP " + std::to_string(o.status) + ")");
  }
  if (o.status != 0 && o.status != 200) {
    return absl::UnavailableError("HTTP " + std::to_string(o.status) + " from " + fetch.base_url);
  }
  if (o.error != httplib::Error::Success) {
    return absl::UnavailableError("fetch from " + fetch.base_url + " failed: " + httplib::to_string(o.error));
  }
  if (o.status == 0) return absl::UnavailableError("no answer from " + fetch.base_url);
  return absl::OkStatus();
}

bool IsHttpUrl(const std::string& url) { return url.rfind("https://", 0) == 0 || url.rfind("http://", 0) == 0; }

}  // namespace

absl::Status HttpGetToFile(const HttpFetch& fetch, const std::string& dest, uint64_t* bytes, HttpConnectionPool* pool) {
  if (!IsHttpUrl(fetch.base_url)) return absl::InvalidArgumentError("not an http or https URL: " + fetch.base_url);
  int fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError("cannot create " + dest + ": " + std::strerror(errno));
  uint64_t written = 0;
  int write_errno = 0;
  Outcome o = Get(fetch, pool, [&](const char* data, size_t length) {
    size_t off = 0;
    while (off < length) {
      ssize_t n = ::write(fd, data + off, length - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        write_errno = errno;
        return false;
      }
      off += static_cast<size_t>(n);
    }
    written += length;
    return true;
  });
  if (::close(fd) != 0 && write_errno == 0) write_errno = errno;
  absl::Status st = (o.sink_failed || write_errno != 0)
                        ? absl::UnavailableError("cannot write " + dest + ": " + std::strerror(write_errno))
                        : StatusOf(fetch, o);
  if (!st.ok()) {
    ::unlink(dest.c_str());
    return st;
  }
  if (bytes) *bytes = written;
  return absl::OkStatus();
}

absl::StatusOr<std::string> HttpGet(const HttpFetch& fetch) {
  if (!IsHttpUrl(fetch.base_url)) return absl::InvalidArgumentError("not an http or https URL: " + fetch.base_url);
  std::string body;
  Outcome o = Get(fetch, nullptr, [&](const char* data, size_t length) {
    body.append(data, length);
    return true;
  });
  RETURN_IF_ERROR(StatusOf(fetch, o));
  return body;
}

}  // namespace secondread
