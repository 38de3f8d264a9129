// What one HTTP client can hold of a server, with real sockets against the
// real servers: slow-header clients cannot stall /healthz for others, a
// request with too many or too large headers is refused before it costs
// memory, Range is ignored, and connections are capped per peer and in
// total. Clients bind distinct loopback addresses (127.0.0.x) to be
// distinct peers.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/http_server.h"
#include "common/metrics.h"

namespace secondread {
namespace {

using Clock = std::chrono::steady_clock;

int Connect(uint16_t port, const char* source) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in src{};
  src.sin_family = AF_INET;
  inet_pton(AF_INET, source, &src.sin_addr);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes, or until `timeout` passes.
std::string ReadUntilClose(int fd, std::chrono::milliseconds timeout, size_t max_bytes = 64 << 20) {
  std::string out;
  auto deadline = Clock::now() + timeout;
  char buf[65536];
  while (out.size() < max_bytes) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

int StatusOf(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

// A whole GET from `source`; the status, or 0 when no answer came in time.
int Get(uint16_t port, const char* source, const std::string& path, std::chrono::milliseconds timeout) {
  int fd = Connect(port, source);
  if (fd < 0) return 0;
  SendAll(fd, "GET " + path + " HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n");
  int status = StatusOf(ReadUntilClose(fd, timeout));
  ::close(fd);
  return status;
}

int64_t RssKiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

std::vector<HttpRoute> Routes() {
  return {{"GET", "/healthz", [](const HttpRequest&) { return HttpResponse::Json(200, {{"status", "alive"}}); }},
          {"GET", "/app.js", [](const HttpRequest&) {
             HttpResponse res;
             res.content_type = "text/javascript";
             res.body = std::string(3000, 'j');
             return res;
           }}};
}

std::unique_ptr<HttpServer> StartApi(const HttpServerOptions& opt, metrics::MetricsRegistry* registry = nullptr) {
  auto server = HttpServer::Start(opt, Routes(), registry);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

// Sockets from `source` that each send a request line and then one header
// line a second, as long as `run` is set.
class SlowClients {
 public:
  SlowClients(uint16_t port, const char* source, int n) {
    for (int i = 0; i < n; ++i) {
      int fd = Connect(port, source);
      if (fd >= 0) fds_.push_back(fd);
    }
    thread_ = std::thread([this] {
      for (int fd : fds_) SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: node\r\n");
      for (int line = 0; run_; ++line) {
        for (int i = 0; i < 10 && run_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        for (int fd : fds_) SendAll(fd, "X-Slow-" + std::to_string(line) + ": 1\r\n");
      }
    });
  }
  ~SlowClients() {
    run_ = false;
    thread_.join();
    for (int fd : fds_) ::close(fd);
  }
  size_t size() const { return fds_.size(); }
  // How many were answered 503 (refused at the door) within `timeout`.
  int Refused(std::chrono::milliseconds timeout) {
    int refused = 0;
    auto deadline = Clock::now() + timeout;
    for (int fd : fds_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, std::max<int>(0, static_cast<int>(left.count()))) > 0) {
        char buf[512];
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK);
        if (n > 0 && StatusOf(std::string(buf, static_cast<size_t>(n))) == 503) ++refused;
      }
    }
    return refused;
  }

 private:
  std::vector<int> fds_;
  std::atomic<bool> run_{true};
  std::thread thread_;
};

TEST(HttpLimitsTest, SlowHeaderClientsDoNotStallHealthForOthers) {
  HttpServerOptions opt;
  opt.port = 0;
  auto api = StartApi(opt);
  ASSERT_NE(api, nullptr);
  metrics::MetricsRegistry registry;
  HttpOptions ops_opt;
  ops_opt.port = 0;
  auto ops = OpsHttpServer::Start(ops_opt, &registry, nullptr);
  ASSERT_TRUE(ops.ok()) << ops.status();

  // More slow sockets from one peer than either server has threads today.
  SlowClients slow_api(api->port(), "127.0.0.1", 24);
  SlowClients slow_ops((*ops)->port(), "127.0.0.1", 24);
  ASSERT_EQ(slow_api.size(), 24u);
  ASSERT_EQ(slow_ops.size(), 24u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  for (int probe = 0; probe < 3; ++probe) {
    auto start = Clock::now();
    EXPECT_EQ(Get(api->port(), "127.0.0.2", "/healthz", std::chrono::milliseconds(1000)), 200) << "api probe " << probe;
    EXPECT_EQ(Get((*ops)->port(), "127.0.0.2", "/healthz", std::chrono::milliseconds(1000)), 200) << "ops probe " << probe;
    EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(2000));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  // One peer holds at most max_connections_per_peer (8) of them.
  EXPECT_EQ(slow_api.Refused(std::chrono::milliseconds(1500)), 16);
  EXPECT_EQ(slow_ops.Refused(std::chrono::milliseconds(500)), 16);
  EXPECT_NE(registry.Serialize().find(
                "secondread_http_refused_total{reason=\"too_many_connections_from_peer\",server=\"ops\"} 16"),
            std::string::npos)
      << registry.Serialize();
}

TEST(HttpLimitsTest, HeadersMustArriveInTime) {
  HttpServerOptions opt;
  opt.port = 0;
  opt.limits.header_timeout_s = 2;
  metrics::MetricsRegistry registry;
  auto api = StartApi(opt, &registry);
  ASSERT_NE(api, nullptr);
  auto start = Clock::now();
  int fd = Connect(api->port(), "127.0.0.3");
  ASSERT_GE(fd, 0);
  // One header line every 0.5 s: each recv is quick, the whole is not.
  std::string answer;
  std::thread drip([fd] {
    SendAll(fd, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 16; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      if (!SendAll(fd, "X-Drip: " + std::to_string(i) + "\r\n")) break;
    }
  });
  answer = ReadUntilClose(fd, std::chrono::milliseconds(7000));
  auto took = Clock::now() - start;
  drip.join();
  ::close(fd);
  EXPECT_EQ(StatusOf(answer), 408) << answer;
  EXPECT_GE(took, std::chrono::milliseconds(1500));
  EXPECT_LT(took, std::chrono::milliseconds(6000));
  EXPECT_NE(registry.Serialize().find("secondread_http_refused_total{reason=\"header_timeout\",server=\"api\"}"),
            std::string::npos);
  // A connection that sends nothing is dropped too.
  int idle = Connect(api->port(), "127.0.0.4");
  ASSERT_GE(idle, 0);
  start = Clock::now();
  ReadUntilClose(idle, std::chrono::milliseconds(7000));
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(6000));
  ::close(idle);
}

TEST(HttpLimitsTest, FatHeadersAreRefusedBeforeTheyCostMemory) {
  HttpServerOptions opt;
  opt.port = 0;
  auto api = StartApi(opt);
  ASSERT_NE(api, nullptr);

  // 20,000 headers of 8 KB (160 MB) offered; the server must stop reading
  // long before.
  int64_t before = RssKiB();
  int fd = Connect(api->port(), "127.0.0.5");
  ASSERT_GE(fd, 0);
  std::thread sender([fd] {
    if (!SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: node\r\n")) return;
    const std::string value(8000, 'v');
    for (int i = 0; i < 20000; ++i) {
      if (!SendAll(fd, "X-Fat-" + std::to_string(i) + ": " + value + "\r\n")) return;
    }
    SendAll(fd, "\r\n");
  });
  std::string answer = ReadUntilClose(fd, std::chrono::milliseconds(20000));
  ::shutdown(fd, SHUT_RDWR);
  sender.join();
  ::close(fd);
  int64_t grown_kib = RssKiB() - before;
  RecordProperty("rss_growth_kib", std::to_string(grown_kib));
  EXPECT_EQ(StatusOf(answer), 431) << answer.substr(0, 200);
  EXPECT_LT(grown_kib, 32 * 1024) << "RSS grew by " << grown_kib << " KiB";

  // Many small headers: the count is bounded as well (64 by default).
  fd = Connect(api->port(), "127.0.0.5");
  ASSERT_GE(fd, 0);
  std::string many = "GET /healthz HTTP/1.1\r\nHost: node\r\n";
  for (int i = 0; i < 200; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  SendAll(fd, many + "\r\n");
  answer = ReadUntilClose(fd, std::chrono::milliseconds(5000));
  ::close(fd);
  EXPECT_EQ(StatusOf(answer), 431) << answer.substr(0, 200);

  // A normal request still passes.
  EXPECT_EQ(Get(api->port(), "127.0.0.5", "/healthz", std::chrono::milliseconds(3000)), 200);
}

TEST(HttpLimitsTest, RangeIsIgnored) {
  HttpServerOptions opt;
  opt.port = 0;
  auto api = StartApi(opt);
  ASSERT_NE(api, nullptr);
  // 2,600 overlapping ranges in one 7.8 KB header line.
  std::string ranges = "bytes=0-";
  for (int i = 1; i < 2600; ++i) ranges += ",0-";
  int fd = Connect(api->port(), "127.0.0.6");
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /app.js HTTP/1.1\r\nHost: node\r\nRange: " + ranges + "\r\nConnection: close\r\n\r\n");
  std::string answer = ReadUntilClose(fd, std::chrono::milliseconds(10000), 256 << 20);
  ::close(fd);
  EXPECT_EQ(StatusOf(answer), 200) << answer.substr(0, 200);
  EXPECT_LT(answer.size(), 4000u);
  EXPECT_EQ(answer.find("multipart"), std::string::npos);
  EXPECT_NE(answer.find("Accept-Ranges: none"), std::string::npos);
  size_t body = answer.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  EXPECT_EQ(answer.substr(body + 4), std::string(3000, 'j'));
}

TEST(HttpLimitsTest, ConnectionsAreCappedPerPeerAndInTotal) {
  HttpServerOptions opt;
  opt.port = 0;
  opt.limits.max_connections = 6;
  opt.limits.max_connections_per_peer = 3;
  metrics::MetricsRegistry registry;
  auto api = StartApi(opt, &registry);
  ASSERT_NE(api, nullptr);

  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(Connect(api->port(), "127.0.0.7"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Get(api->port(), "127.0.0.7", "/healthz", std::chrono::milliseconds(3000)), 503);
  // Another peer still gets in, up to the total.
  EXPECT_EQ(Get(api->port(), "127.0.0.8", "/healthz", std::chrono::milliseconds(3000)), 200);
  for (int i = 0; i < 3; ++i) held.push_back(Connect(api->port(), "127.0.0.8"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Get(api->port(), "127.0.0.9", "/healthz", std::chrono::milliseconds(3000)), 503);
  for (int fd : held) ::close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Get(api->port(), "127.0.0.9", "/healthz", std::chrono::milliseconds(3000)), 200);
  std::string text = registry.Serialize();
  EXPECT_NE(text.find("secondread_http_refused_total{reason=\"too_many_connections_from_peer\",server=\"api\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("secondread_http_refused_total{reason=\"too_many_connections\",server=\"api\"} 1"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace secondread

namespace secondread {
namespace {

TEST(HttpLimitsConfigTest, DefaultsAndBounds) {
  auto empty = config::ConfigTree::FromString("other: 1\n");
  ASSERT_TRUE(empty.ok());
  HttpLimits limits;
  ASSERT_TRUE(ParseHttpLimits(*empty, "api.limits", limits).ok());
  EXPECT_EQ(limits.header_timeout_s, 10);
  EXPECT_EQ(limits.max_header_bytes, 16u * 1024);
  EXPECT_EQ(limits.max_headers, 64);
  EXPECT_EQ(limits.max_connections, 64);
  EXPECT_EQ(limits.max_connections_per_peer, 8);

  auto set = config::ConfigTree::FromString(
      "api:\n  limits:\n    header_timeout_seconds: 3\n    max_header_bytes: 8KiB\n    max_headers: 20\n"
      "    max_connections: 4\n");
  ASSERT_TRUE(set.ok());
  HttpLimits small;
  ASSERT_TRUE(ParseHttpLimits(*set, "api.limits", small).ok());
  EXPECT_EQ(small.header_timeout_s, 3);
  EXPECT_EQ(small.max_header_bytes, 8u * 1024);
  EXPECT_EQ(small.max_headers, 20);
  EXPECT_EQ(small.max_connections, 4);
  EXPECT_EQ(small.max_connections_per_peer, 4) << "the per-peer default never exceeds the total";

  for (const char* bad : {"api:\n  limits:\n    max_header_bytes: 1MiB\n",
                          "api:\n  limits:\n    max_connections: 4\n    max_connections_per_peer: 5\n",
                          "api:\n  limits:\n    header_timeout_seconds: 0\n"}) {
    auto t = config::ConfigTree::FromString(bad);
    ASSERT_TRUE(t.ok());
    HttpLimits l;
    EXPECT_FALSE(ParseHttpLimits(*t, "api.limits", l).ok()) << bad;
  }
}

}  // namespace
}  // namespace secondread
