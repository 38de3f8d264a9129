// A plain GET of one file over HTTP or HTTPS, streamed to disk: how node
// replicas fetch each other's files. cpp-httplib is used only here and in
// http_server.cc.
#pragma once

#include <cstdint>
#include <functional>
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

// Writes the body to `dest` (created, fsync'ed only by the caller's choice:
// the copy is a cache, the holder keeps the durable one). NOT_FOUND for a 404,
// PERMISSION_DENIED for 401/403, UNAVAILABLE for every network failure and
// other status; the file is removed on any failure.
absl::Status HttpGetToFile(const HttpFetch& fetch, const std::string& dest, uint64_t* bytes = nullptr);

}  // namespace secondread
