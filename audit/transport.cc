#include "audit/transport.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "audit/syslog.h"

namespace secondread::audit {
namespace {

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// A connected socket of the given type, or UNAVAILABLE.
absl::StatusOr<int> Connect(const RepositoryOptions& o, int socktype) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(o.port);
  if (int rc = ::getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError("audit repository " + o.host + ": " + gai_strerror(rc));
  }
  std::string last = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval tv{o.connect_timeout_ms / 1000, (o.connect_timeout_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    last = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return absl::UnavailableError("audit repository " + o.host + ":" + port + ": " + last);
}

class TlsTransport : public Transport {
 public:
  TlsTransport(RepositoryOptions o, SSL_CTX* ctx) : o_(std::move(o)), ctx_(ctx) {}
  ~TlsTransport() override {
    Close();
    SSL_CTX_free(ctx_);
  }

  absl::Status Send(const std::string& message) override {
    // The repository never writes to us: a readable socket means it closed
    // or sent an alert. Writing then would succeed locally and lose the
    // message, so reconnect first.
    if (ssl_ && !Alive()) Close();
    if (!ssl_) RETURN_IF_ERROR(Open());
    const std::string frame = OctetCounted(message);
    size_t off = 0;
    while (off < frame.size()) {
      int n = SSL_write(ssl_, frame.data() + off, static_cast<int>(frame.size() - off));
      if (n <= 0) {
        std::string why = OpenSslError();
        Close();
        return absl::UnavailableError("audit repository write failed: " + why);
      }
      off += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  void Close() override {
    if (ssl_) {
      SSL_shutdown(ssl_);
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool Alive() {
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, 0);
    return rc == 0;
  }

  absl::Status Open() {
    ASSIGN_OR_RETURN(fd_, Connect(o_, SOCK_STREAM));
    ssl_ = SSL_new(ctx_);
    const std::string& name = o_.server_name.empty() ? o_.host : o_.server_name;
    SSL_set_tlsext_host_name(ssl_, name.c_str());
    // Matches a DNS name or an IP address in the certificate.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1) SSL_set1_host(ssl_, name.c_str());
    SSL_set_fd(ssl_, fd_);
    if (SSL_connect(ssl_) != 1) {
      std::string why = OpenSslError();
      long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) why = X509_verify_cert_error_string(verify);
      Close();
      return absl::UnavailableError("audit repository TLS handshake failed: " + why);
    }
    return absl::OkStatus();
  }

  RepositoryOptions o_;
  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
};

class UdpTransport : public Transport {
 public:
  explicit UdpTransport(RepositoryOptions o) : o_(std::move(o)) {}
  ~UdpTransport() override { Close(); }

  absl::Status Send(const std::string& message) override {
    if (fd_ < 0) {
      ASSIGN_OR_RETURN(fd_, Connect(o_, SOCK_DGRAM));
    }
    // RFC 5426: one message per datagram, no framing.
    ssize_t n = ::send(fd_, message.data(), message.size(), 0);
    if (n != static_cast<ssize_t>(message.size())) {
      std::string why = n < 0 ? std::strerror(errno) : "short send";
      Close();
      return absl::UnavailableError("audit repository UDP send failed: " + why);
    }
    return absl::OkStatus();
  }

  void Close() override {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  RepositoryOptions o_;
  int fd_ = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> MakeTransport(const RepositoryOptions& o) {
  if (o.host.empty()) return absl::InvalidArgumentError("audit.repository has no host");
  if (o.transport == "udp") return std::unique_ptr<Transport>(new UdpTransport(o));
  if (o.transport != "tls") return absl::InvalidArgumentError("audit.transport must be tls or udp");
  if (o.ca.empty() || o.certificate.empty() || o.private_key.empty()) {
    return absl::InvalidArgumentError("audit.transport tls needs audit.tls.ca, audit.tls.certificate and "
                                      "audit.tls.private_key");
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return absl::InternalError("cannot create the audit TLS context");
  auto fail = [&](const std::string& what) {
    std::string why = OpenSslError();
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(what + ": " + why);
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_load_verify_locations(ctx, o.ca.c_str(), nullptr) != 1) return fail("audit.tls.ca " + o.ca);
  if (SSL_CTX_use_certificate_chain_file(ctx, o.certificate.c_str()) != 1) {
    return fail("audit.tls.certificate " + o.certificate);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, o.private_key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("audit.tls.private_key " + o.private_key);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) return fail("audit.tls.private_key does not match the certificate");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return std::unique_ptr<Transport>(new TlsTransport(o, ctx));
}

}  // namespace secondread::audit
