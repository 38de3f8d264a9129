#include "audit/audit_trail.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

namespace secondread::audit {
namespace {

class AuditTrailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/audit_trail_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  void TearDown() override {
    ::close(fd_);
    std::filesystem::remove_all(dir_);
  }
  AuditOptions Options() {
    AuditOptions o;
    o.enabled = true;
    o.repository.host = "127.0.0.1";
    o.repository.port = port_;
    o.repository.transport = "udp";
    o.spool_dir = dir_ + "/audit";
    o.node.source_id = "test-source";
    o.syslog.hostname = "node1";
    return o;
  }
  std::string Receive(int timeout_ms = 5000) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return "";
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  std::string dir_;
  int fd_ = -1;
  uint16_t port_ = 0;
};

TEST_F(AuditTrailTest, RecordedMessageArrivesAsOneSyslogDatagramAndLeavesTheSpool) {
  metrics::MetricsRegistry registry;
  auto trail = AuditTrail::Create(Options(), registry);
  ASSERT_TRUE(trail.ok()) << trail.status();
  (*trail)->Start();
  (*trail)->Record(ApplicationActivity((*trail)->node(), true));
  std::string got = Receive();
  EXPECT_EQ(got.rfind("<85>1 ", 0), 0u) << got;
  EXPECT_NE(got.find(" node1 secondread "), std::string::npos);
  EXPECT_NE(got.find(" IHE+RFC-3881 - \xEF\xBB\xBF<?xml"), std::string::npos);
  EXPECT_NE(got.find("AuditSourceID=\"test-source\""), std::string::npos);
  (*trail)->Stop();
  std::string metrics = registry.Serialize();
  EXPECT_NE(metrics.find("secondread_audit_messages_total{event=\"application_activity\",outcome=\"success\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("secondread_audit_spool_bytes 0"), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/audit"));
}

TEST_F(AuditTrailTest, MessagesSpooledBeforeStartAreSentOldestFirst) {
  metrics::MetricsRegistry registry;
  auto trail = AuditTrail::Create(Options(), registry);
  ASSERT_TRUE(trail.ok());
  // Not started: the messages wait in the spool, on disk.
  (*trail)->Record(ApplicationActivity((*trail)->node(), true));
  (*trail)->Record(ApplicationActivity((*trail)->node(), false));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_ + "/audit"), {}), 2);
  EXPECT_EQ(Receive(200), "");
  (*trail)->Start();
  EXPECT_NE(Receive().find("110120"), std::string::npos);
  EXPECT_NE(Receive().find("110121"), std::string::npos);
}

TEST_F(AuditTrailTest, TlsWithoutFilesIsRefusedAtCreate) {
  metrics::MetricsRegistry registry;
  AuditOptions o = Options();
  o.repository.transport = "tls";
  EXPECT_EQ(AuditTrail::Create(o, registry).status().code(), absl::StatusCode::kInvalidArgument);
  o.repository.ca = o.repository.certificate = o.repository.private_key = dir_ + "/missing.pem";
  EXPECT_EQ(AuditTrail::Create(o, registry).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace secondread::audit
