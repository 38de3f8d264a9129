// What the worklist API takes from a request head before any route runs
// (worklist/review/api.h): the client address from X-Forwarded-For behind trusted
// proxies (api.trusted_proxies parsed by ParseAddressRange) and the bearer
// token of the Authorization header.
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/socket.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "worklist/review/api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace secondread;
  FuzzedDataProvider in(data, size);
  std::vector<worklist::AddressRange> trusted;
  const size_t proxies = in.ConsumeIntegralInRange<size_t>(0, 3);
  for (size_t i = 0; i < proxies; ++i) {
    auto range = worklist::ParseAddressRange(in.ConsumeRandomLengthString(48));
    if (range.ok()) {
      if (range->prefix_bits < 0 || range->prefix_bits > (range->family == AF_INET ? 32 : 128)) std::abort();
      trusted.push_back(*range);
    }
  }
  HttpRequest req;
  req.method = "GET";
  req.path = "/api/v1/worklist";
  req.remote_addr = in.ConsumeRandomLengthString(48);
  const std::string authorization = in.ConsumeRandomLengthString(600);
  req.headers["authorization"] = authorization;
  const std::string forwarded = in.ConsumeRemainingBytesAsString();
  req.headers["x-forwarded-for"] = forwarded;
  const std::string client = worklist::ClientAddress(req, trusted);
  // The answer is the peer or one entry of the header, never a made-up one.
  if (client != req.remote_addr && forwarded.find(client) == std::string::npos) std::abort();
  static const std::vector<worklist::ApiToken> tokens = {
      {"reader", "radiologist", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},  // "test"
  };
  auto who = worklist::Authenticate(tokens, authorization);
  if (who && who->name != "reader") std::abort();
  return 0;
}
