// The fetch client against the node's own HTTP server: a file streamed from
// disk arrives byte for byte, the status codes map to what the callers retry
// or not, an oversized body stops and leaves no file, the bearer token is
// sent.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "common/http_client.h"
#include "common/http_server.h"

namespace secondread {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/http_client_test.XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
    // 3 MiB of random bytes: several reads of the content provider.
    std::mt19937 rng(7);
    payload_.resize(3 << 20);
    for (auto& c : payload_) c = static_cast<char>(rng());
    std::ofstream(dir_ + "/payload", std::ios::binary) << payload_;
    HttpServerOptions options;
    options.port = 0;
    options.name = "test";
    std::vector<HttpRoute> routes = {
        {"GET", "/file", [this](const HttpRequest& r) {
           last_auth_ = r.Header("authorization");
           HttpResponse out;
           out.content_type = "application/octet-stream";
           out.file_path = dir_ + "/payload";
           return out;
         }},
        {"GET", "/missing-file", [this](const HttpRequest&) {
           HttpResponse out;
           out.file_path = dir_ + "/nothing-here";
           return out;
         }},
        {"GET", "/denied", [](const HttpRequest&) { return HttpResponse::Error(401, "unauthorized"); }},
        {"GET", "/broken", [](const HttpRequest&) { return HttpResponse::Error(503, "unavailable"); }},
    };
    auto server = HttpServer::Start(options, std::move(routes));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override {
    server_->Stop();
    std::string cmd = "rm -rf " + dir_;
    (void)::system(cmd.c_str());
  }

  HttpFetch Fetch(const std::string& path) {
    HttpFetch f;
    f.base_url = base_;
    f.path = path;
    f.bearer_token = "the-cluster-token";
    return f;
  }

  std::string dir_, base_, payload_, last_auth_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpClientTest, StreamsAFileByteForByteAndSendsTheToken) {
  uint64_t bytes = 0;
  ASSERT_TRUE(HttpGetToFile(Fetch("/file"), dir_ + "/got", &bytes).ok());
  EXPECT_EQ(bytes, payload_.size());
  EXPECT_EQ(ReadFile(dir_ + "/got"), payload_);
  EXPECT_EQ(last_auth_, "Bearer the-cluster-token");
}

TEST_F(HttpClientTest, StatusCodesMapToWhatCallersRetry) {
  EXPECT_EQ(HttpGetToFile(Fetch("/missing-file"), dir_ + "/a").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(HttpGetToFile(Fetch("/no-route"), dir_ + "/b").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(HttpGetToFile(Fetch("/denied"), dir_ + "/c").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(HttpGetToFile(Fetch("/broken"), dir_ + "/d").code(), absl::StatusCode::kUnavailable);
  for (const char* f : {"/a", "/b", "/c", "/d"}) EXPECT_NE(::access((dir_ + f).c_str(), F_OK), 0) << f;
  HttpFetch dead = Fetch("/file");
  dead.base_url = "http://127.0.0.1:1";
  EXPECT_EQ(HttpGetToFile(dead, dir_ + "/e").code(), absl::StatusCode::kUnavailable);
  dead.base_url = "ftp://127.0.0.1:1";
  EXPECT_EQ(HttpGetToFile(dead, dir_ + "/f").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(HttpClientTest, AnOversizedBodyStopsAndLeavesNoFile) {
  HttpFetch f = Fetch("/file");
  f.max_bytes = 1 << 20;
  EXPECT_EQ(HttpGetToFile(f, dir_ + "/big").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(::access((dir_ + "/big").c_str(), F_OK), 0);
}

TEST_F(HttpClientTest, ACallerCanStopATransfer) {
  HttpFetch f = Fetch("/file");
  f.keep_going = [] { return false; };
  EXPECT_FALSE(HttpGetToFile(f, dir_ + "/stopped").ok());
  EXPECT_NE(::access((dir_ + "/stopped").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace secondread
