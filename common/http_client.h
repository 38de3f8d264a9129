// Plain GETs over HTTP or HTTPS: how node replicas fetch each other's files
// (streamed to disk) and how the worklist fetches an identity provider's key
// set (in memory). cpp-httplib is used only here and in http_server.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace secondread {

struct HttpFetch {
  std::string base_url;  // http://host:port or https://host:port
  std::string path;      // /internal/v1/...
  std::string bearer_token;
  // HTTPS: CA certificates (PEM) the server's certificate must chain to; its
  // name must match the URL's host. Empty: the system's trust store.
  std::string ca_file;
  int connect_timeout_s = 5;
  int read_timeout_s = 60;  // between two reads of the body
  uint64_t max_bytes = 4ull << 30;
  // Polled while the body arrives; false stops the transfer.
  std::function<bool()> keep_going;
};

// Keeps connections open between fetches from the same server, so that a
// read fetching hundreds of slices from another replica pays for one TLS
// handshake, not one per slice. Thread-safe: a connection serves one fetch
// at a time; concurrent fetches open more.
class HttpConnectionPool {
 public:
  HttpConnectionPool();
  ~HttpConnectionPool();
  struct Impl;
  Impl* impl() { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

// Writes the body to `dest` (not fsync'ed: the copy is a cache, the holder
// keeps the durable one). NOT_FOUND for a 404, PERMISSION_DENIED for 401/403,
// RESOURCE_EXHAUSTED over max_bytes, UNAVAILABLE for every network failure
// and other status; the file is removed on any failure. With a pool, the
// connection is reused.
absl::Status HttpGetToFile(const HttpFetch& fetch, const std::string& dest, uint64_t* bytes = nullptr,
                           HttpConnectionPool* pool = nullptr);

// The body in memory, at most fetch.max_bytes; the same status mapping.
absl::StatusOr<std::string> HttpGet(const HttpFetch& fetch);

}  // namespace secondread
