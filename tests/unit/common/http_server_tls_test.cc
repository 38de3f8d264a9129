// The routed HTTP server over TLS: a client that trusts the certificate gets
// the route's answer, a plain-HTTP client gets nothing, and a certificate and
// key that do not belong together are refused at start. The certificates are
// made by the openssl command for each run.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/http_server.h"
#include "httplib.h"

namespace secondread {
namespace {

namespace fs = std::filesystem;

class HttpServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "sr-tls-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    ASSERT_TRUE(MakeCertificate("a"));
    ASSERT_TRUE(MakeCertificate("b"));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  // A self-signed certificate for 127.0.0.1, as a hospital's own CA would
  // issue one for the node.
  bool MakeCertificate(const std::string& name) {
    const std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
                                "-addext subjectAltName=IP:127.0.0.1 -keyout '" +
                                Path(name + ".key") + "' -out '" + Path(name + ".crt") + "' >/dev/null 2>&1";
    return std::system(command.c_str()) == 0;
  }

  static std::vector<HttpRoute> Routes() {
    return {{"GET", "/hello", [](const HttpRequest&) { return HttpResponse::Json(200, {{"hello", "tls"}}); }}};
  }

  std::string dir_;
};

TEST_F(HttpServerTlsTest, ServesHttpsToAClientThatTrustsTheCertificate) {
  HttpServerOptions opt;
  opt.port = 0;
  opt.tls_cert_file = Path("a.crt");
  opt.tls_key_file = Path("a.key");
  auto server = HttpServer::Start(opt, Routes());
  ASSERT_TRUE(server.ok()) << server.status();

  httplib::SSLClient client("127.0.0.1", (*server)->port());
  client.set_ca_cert_path(Path("a.crt").c_str());
  client.enable_server_certificate_verification(true);
  auto res = client.Get("/hello");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("tls"), std::string::npos);
  EXPECT_EQ(res->get_header_value("Strict-Transport-Security"), "max-age=31536000");

  // A client that trusts another certificate does not get through.
  httplib::SSLClient stranger("127.0.0.1", (*server)->port());
  stranger.set_ca_cert_path(Path("b.crt").c_str());
  stranger.enable_server_certificate_verification(true);
  EXPECT_FALSE(stranger.Get("/hello"));

  // Plain HTTP to the HTTPS port gets no answer.
  httplib::Client plain("127.0.0.1", (*server)->port());
  plain.set_read_timeout(2, 0);
  auto clear = plain.Get("/hello");
  EXPECT_TRUE(!clear || clear->status >= 400);
  (*server)->Stop();
}

TEST_F(HttpServerTlsTest, AClientThatNeverFinishesTheHandshakeIsDropped) {
  HttpServerOptions opt;
  opt.port = 0;
  opt.tls_cert_file = Path("a.crt");
  opt.tls_key_file = Path("a.key");
  opt.limits.header_timeout_s = 1;
  auto server = HttpServer::Start(opt, Routes());
  ASSERT_TRUE(server.ok()) << server.status();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons((*server)->port());
  inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst), 0);
  auto start = std::chrono::steady_clock::now();
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 8000), 1) << "the server kept a silent TLS client";
  char buf[16];
  EXPECT_LE(::recv(fd, buf, sizeof buf, 0), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  ::close(fd);
  // Others are still served.
  httplib::SSLClient client("127.0.0.1", (*server)->port());
  client.set_ca_cert_path(Path("a.crt").c_str());
  client.enable_server_certificate_verification(true);
  auto res = client.Get("/hello");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  (*server)->Stop();
}

TEST_F(HttpServerTlsTest, RefusesToStartWithABadCertificateOrKey) {
  HttpServerOptions opt;
  opt.port = 0;
  opt.tls_cert_file = Path("a.crt");
  opt.tls_key_file = Path("b.key");  // not a's key
  auto mismatched = HttpServer::Start(opt, Routes());
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);

  opt.tls_key_file = Path("missing.key");
  EXPECT_EQ(HttpServer::Start(opt, Routes()).status().code(), absl::StatusCode::kInvalidArgument);

  opt.tls_key_file = "";  // a certificate alone
  EXPECT_EQ(HttpServer::Start(opt, Routes()).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace secondread
