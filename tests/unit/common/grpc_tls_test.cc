#include "common/grpc_tls.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "grpc/health/v1/health.grpc.pb.h"

namespace secondread::grpc_tls {
namespace {

namespace fs = std::filesystem;

TEST(GrpcTlsAddressTest, HostOf) {
  EXPECT_EQ(HostOf("127.0.0.1:50051"), "127.0.0.1");
  EXPECT_EQ(HostOf("[::1]:50051"), "::1");
  EXPECT_EQ(HostOf("dns:///worker.example.org:50051"), "worker.example.org");
  EXPECT_EQ(HostOf("ipv4:10.0.0.7:50051"), "10.0.0.7");
  EXPECT_EQ(HostOf("worker"), "worker");
  EXPECT_EQ(HostOf("::1"), "::1");
}

TEST(GrpcTlsAddressTest, LoopbackOnly) {
  EXPECT_TRUE(IsLoopback("127.0.0.1:50051"));
  EXPECT_TRUE(IsLoopback("127.8.9.10:50051"));
  EXPECT_TRUE(IsLoopback("localhost:50051"));
  EXPECT_TRUE(IsLoopback("LocalHost:1"));
  EXPECT_TRUE(IsLoopback("[::1]:50051"));
  EXPECT_TRUE(IsLoopback("unix:/run/secondread/worker.sock"));
  EXPECT_FALSE(IsLoopback("0.0.0.0:50051"));
  EXPECT_FALSE(IsLoopback("[::]:50051"));
  EXPECT_FALSE(IsLoopback(":50051"));
  EXPECT_FALSE(IsLoopback("10.0.0.7:50051"));
  EXPECT_FALSE(IsLoopback("dns:///worker.example.org:50051"));
  EXPECT_FALSE(IsLoopback("128.0.0.1:50051"));
  EXPECT_FALSE(IsLoopback("localhost.example.org:50051"));
}

TEST(GrpcTlsNamesTest, AllowList) {
  EXPECT_TRUE(NameAllowed({"secondread-node"}, {"other", "secondread-node"}));
  EXPECT_TRUE(NameAllowed({"Secondread-Node"}, {"secondread-node"}));  // DNS names ignore case
  EXPECT_TRUE(NameAllowed({"spiffe://hospital/node"}, {"spiffe://hospital/node"}));
  EXPECT_FALSE(NameAllowed({"spiffe://hospital/NODE"}, {"spiffe://hospital/node"}));
  EXPECT_FALSE(NameAllowed({"secondread-node.evil"}, {"secondread-node"}));
  EXPECT_FALSE(NameAllowed({}, {"secondread-node"}));
  EXPECT_FALSE(NameAllowed({"secondread-node"}, {}));
}

TEST(GrpcTlsConfigTest, FilesGoTogether) {
  auto t = config::ConfigTree::FromString("tls:\n  certificate: /a.pem\n");
  ASSERT_TRUE(t.ok());
  Files f;
  EXPECT_EQ(ParseFiles(*t, "tls", &f).code(), absl::StatusCode::kInvalidArgument);

  auto none = config::ConfigTree::FromString("");
  ASSERT_TRUE(none.ok());
  Files g;
  ASSERT_TRUE(ParseFiles(*none, "tls", &g).ok());
  EXPECT_FALSE(g.enabled());
  EXPECT_EQ(g.reload_interval_seconds, 60);

  auto all = config::ConfigTree::FromString(
      "tls:\n  certificate: /a.pem\n  private_key: /a.key\n  ca: /ca.pem\n  reload_interval_seconds: 5\n");
  ASSERT_TRUE(all.ok());
  Files h;
  ASSERT_TRUE(ParseFiles(*all, "tls", &h).ok());
  EXPECT_TRUE(h.enabled());
  EXPECT_EQ(h.reload_interval_seconds, 5);
}

// Certificates from scripts/lib/tls.sh, made once for the suite: a CA, a
// worker (localhost, 127.0.0.1), a node client (secondread-node), and a
// stranger from the same CA.
class GrpcTlsHandshakeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("grpc_tls_test." + std::to_string(getpid())));
    fs::create_directories(*dir_);
    const std::string script = std::string("set -e; . '") + SECONDREAD_SOURCE_DIR + "/scripts/lib/tls.sh'; cd '" +
                               dir_->string() +
                               "'; make_ca . ca; "
                               "issue_cert ca worker /CN=worker --server --san IP:127.0.0.1,DNS:localhost; "
                               "issue_cert ca node /CN=node --client --san DNS:secondread-node; "
                               "issue_cert ca stranger /CN=stranger --client --san DNS:stranger";
    ASSERT_EQ(std::system(("bash -c \"" + script + "\" >/dev/null 2>&1").c_str()), 0);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static Files FilesOf(const std::string& name) {
    Files f;
    f.certificate = (*dir_ / (name + ".pem")).string();
    f.private_key = (*dir_ / (name + ".key")).string();
    f.ca = (*dir_ / "ca.pem").string();
    f.reload_interval_seconds = 1;
    return f;
  }

  // Starts a worker-like server with the health service on a free port.
  void Serve(std::vector<std::string> allowed) {
    ServerOptions o{FilesOf("worker"), std::move(allowed)};
    auto creds = ServerCredentials(o);
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", *creds, &port_);
    b.RegisterService(&health_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
  }

  // A health check through the node's credentials; the status code.
  grpc::StatusCode Check(const std::string& client, const std::string& server_name) {
    ClientOptions o{FilesOf(client), server_name};
    const std::string endpoint = "127.0.0.1:" + std::to_string(port_);
    grpc::ChannelArguments args;
    auto creds = ChannelCredentials(o, endpoint, &args);
    EXPECT_TRUE(creds.ok()) << creds.status();
    if (!creds.ok()) return grpc::StatusCode::INTERNAL;
    auto stub = grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(endpoint, *creds, args));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    return stub->Check(&ctx, req, &resp).error_code();
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  // Always SERVING: what is under test is whether the call gets through.
  class Serving : public grpc::health::v1::Health::Service {
    grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest*,
                       grpc::health::v1::HealthCheckResponse* resp) override {
      resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
      return grpc::Status::OK;
    }
  };

  static fs::path* dir_;
  Serving health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

fs::path* GrpcTlsHandshakeTest::dir_ = nullptr;

TEST_F(GrpcTlsHandshakeTest, NodeReachesWorkerByItsAddress) {
  Serve({"secondread-node"});
  EXPECT_EQ(Check("node", ""), grpc::StatusCode::OK);
  EXPECT_EQ(Check("node", "localhost"), grpc::StatusCode::OK);
}

TEST_F(GrpcTlsHandshakeTest, NodeRefusesWorkerWithoutTheExpectedName) {
  Serve({"secondread-node"});
  EXPECT_EQ(Check("node", "worker.example.org"), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsHandshakeTest, WorkerRefusesClientNotAllowed) {
  Serve({"secondread-node"});
  EXPECT_EQ(Check("stranger", ""), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsHandshakeTest, StartRefusesUnusableFiles) {
  Files mismatched = FilesOf("worker");
  mismatched.private_key = (*dir_ / "node.key").string();
  EXPECT_EQ(CheckFiles(mismatched).code(), absl::StatusCode::kFailedPrecondition);
  Files missing = FilesOf("worker");
  missing.ca = (*dir_ / "absent.pem").string();
  EXPECT_EQ(CheckFiles(missing).code(), absl::StatusCode::kFailedPrecondition);
  Files not_a_ca = FilesOf("worker");
  not_a_ca.ca = (*dir_ / "worker.key").string();
  EXPECT_EQ(CheckFiles(not_a_ca).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(CheckFiles(FilesOf("worker")).ok());
  EXPECT_EQ(ServerCredentials(ServerOptions{FilesOf("worker"), {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace secondread::grpc_tls
