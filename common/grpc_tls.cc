#include "common/grpc_tls.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>

#include "common/log.h"

namespace secondread::grpc_tls {

namespace {

namespace ge = ::grpc::experimental;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using StackPtr = std::unique_ptr<STACK_OF(X509), StackFree>;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every certificate in a PEM text, in order.
StackPtr ParseCertificates(std::string_view pem) {
  StackPtr out(sk_X509_new_null());
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return out;
  while (X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) sk_X509_push(out.get(), x);
  BIO_free(bio);
  return out;
}

X509Ptr FirstCertificate(std::string_view pem) {
  StackPtr all = ParseCertificates(pem);
  if (sk_X509_num(all.get()) == 0) return nullptr;
  X509* first = sk_X509_shift(all.get());
  return X509Ptr(first);
}

std::string Subject(X509* x) {
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<size_t>(n));
  BIO_free(bio);
  return s;
}

std::string Serial(X509* x) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  std::string s = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return s;
}

// The certificate's subjectAltName entries of the kinds asked for, as text
// (IP addresses in their usual notation).
std::vector<std::string> AltNames(X509* x, bool dns, bool uri, bool ip) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if ((dns && g->type == GEN_DNS) || (uri && g->type == GEN_URI)) {
      const ASN1_IA5STRING* s = g->type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (ip && g->type == GEN_IPADD) {
      const int len = ASN1_STRING_length(g->d.iPAddress);
      const unsigned char* p = ASN1_STRING_get0_data(g->d.iPAddress);
      char text[INET6_ADDRSTRLEN] = {};
      if (len == 4 && inet_ntop(AF_INET, p, text, sizeof text) != nullptr) out.emplace_back(text);
      if (len == 16 && inet_ntop(AF_INET6, p, text, sizeof text) != nullptr) out.emplace_back(text);
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

nlohmann::json Identity(X509* x, const std::vector<std::string>& names) {
  return {{"subject", Subject(x)}, {"serial", Serial(x)}, {"names", names}};
}

// The CA bundle a worker checks client certificates against, read again at
// most once per interval so that a rotated bundle takes effect as the
// server's own certificate does. A bundle that cannot be read or holds no
// certificate leaves the previous one in force: a file caught mid-write must
// not lock every client out.
class CaStore {
 public:
  CaStore(std::string path, std::chrono::seconds interval) : path_(std::move(path)), interval_(interval) {}

  std::shared_ptr<X509_STORE> Get() {
    std::lock_guard lk(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (store_ != nullptr && now - checked_ < interval_) return store_;
    checked_ = now;
    auto text = ReadFile(path_);
    if (!text.ok()) {
      if (store_ != nullptr) log::Warn("grpc_tls_ca_unreadable", {{"file", path_}, {"kept", "previous bundle"}});
      return store_;
    }
    if (*text == text_ && store_ != nullptr) return store_;
    StackPtr certs = ParseCertificates(*text);
    if (sk_X509_num(certs.get()) == 0) {
      if (store_ != nullptr) log::Warn("grpc_tls_ca_empty", {{"file", path_}, {"kept", "previous bundle"}});
      return store_;
    }
    std::shared_ptr<X509_STORE> store(X509_STORE_new(), StoreFree{});
    for (int i = 0; i < sk_X509_num(certs.get()); ++i) X509_STORE_add_cert(store.get(), sk_X509_value(certs.get(), i));
    if (store_ != nullptr) log::Info("grpc_tls_ca_reloaded", {{"file", path_}, {"certificates", sk_X509_num(certs.get())}});
    store_ = std::move(store);
    text_ = std::move(*text);
    return store_;
  }

 private:
  const std::string path_;
  const std::chrono::seconds interval_;
  std::mutex mu_;
  std::shared_ptr<X509_STORE> store_;
  std::string text_;
  std::chrono::steady_clock::time_point checked_{};
};

// The worker's check of a client after the handshake. The handshake itself
// asked for a certificate without verifying it, so that the reasons below
// reach the log; the client proved it holds the certificate's key either way.
class ClientVerifier : public ge::ExternalCertificateVerifier {
 public:
  ClientVerifier(const std::string& ca, std::chrono::seconds interval, std::vector<std::string> allowed)
      : cas_(ca, interval), allowed_(std::move(allowed)) {}

  bool Verify(ge::TlsCustomVerificationCheckRequest* request, std::function<void(grpc::Status)> /*callback*/,
              grpc::Status* sync_status) override {
    *sync_status = Check(*request);
    return true;
  }

  void Cancel(ge::TlsCustomVerificationCheckRequest* /*request*/) override {}

 private:
  grpc::Status Refuse(const std::string& reason, nlohmann::json peer) {
    peer["reason"] = reason;
    log::Warn("grpc_client_refused", std::move(peer));
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "client certificate refused: " + reason);
  }

  grpc::Status Check(ge::TlsCustomVerificationCheckRequest& request) {
    const grpc::string_ref leaf_pem = request.peer_cert();
    if (leaf_pem.empty()) return Refuse("no client certificate", nlohmann::json::object());
    X509Ptr leaf = FirstCertificate(std::string_view(leaf_pem.data(), leaf_pem.size()));
    if (leaf == nullptr) return Refuse("unparsable client certificate", nlohmann::json::object());
    const std::vector<std::string> names = AltNames(leaf.get(), true, true, false);
    nlohmann::json peer = Identity(leaf.get(), names);

    std::shared_ptr<X509_STORE> store = cas_.Get();
    if (store == nullptr) return Refuse("no usable CA bundle", std::move(peer));
    const grpc::string_ref chain_pem = request.peer_cert_full_chain();
    StackPtr chain = ParseCertificates(std::string_view(chain_pem.data(), chain_pem.size()));
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    if (ctx == nullptr || X509_STORE_CTX_init(ctx, store.get(), leaf.get(), chain.get()) != 1) {
      X509_STORE_CTX_free(ctx);
      return Refuse("cannot set up verification", std::move(peer));
    }
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    const bool verified = X509_verify_cert(ctx) == 1;
    const int error = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    if (!verified) return Refuse(X509_verify_cert_error_string(error), std::move(peer));
    if (!NameAllowed(names, allowed_)) return Refuse("no subjectAltName on tls.allowed_clients", std::move(peer));
    log::Info("grpc_client_verified", std::move(peer));
    return grpc::Status::OK;
  }

  CaStore cas_;
  const std::vector<std::string> allowed_;
};

// The node's check of a worker: gRPC has verified the chain against the CA
// bundle; the certificate must also name the host the node meant to reach,
// or any certificate from the same CA (another worker's, a node's) would do.
class ServerNameVerifier : public ge::ExternalCertificateVerifier {
 public:
  ServerNameVerifier(std::string endpoint, std::string expected)
      : endpoint_(std::move(endpoint)), expected_(std::move(expected)) {}

  bool Verify(ge::TlsCustomVerificationCheckRequest* request, std::function<void(grpc::Status)> /*callback*/,
              grpc::Status* sync_status) override {
    const grpc::string_ref pem = request->peer_cert();
    X509Ptr leaf = FirstCertificate(std::string_view(pem.data(), pem.size()));
    if (leaf == nullptr) {
      log::Warn("grpc_worker_refused", {{"endpoint", endpoint_}, {"reason", "no worker certificate"}});
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "worker certificate missing");
      return true;
    }
    const std::vector<std::string> names = AltNames(leaf.get(), true, false, true);
    if (NameAllowed(names, {expected_})) {
      *sync_status = grpc::Status::OK;
      return true;
    }
    nlohmann::json fields = Identity(leaf.get(), names);
    fields["endpoint"] = endpoint_;
    fields["expected"] = expected_;
    fields["reason"] = "the worker certificate does not name the expected host";
    log::Warn("grpc_worker_refused", std::move(fields));
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                "worker certificate does not name " + expected_);
    return true;
  }

  void Cancel(ge::TlsCustomVerificationCheckRequest* /*request*/) override {}

 private:
  const std::string endpoint_;
  const std::string expected_;
};

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::shared_ptr<ge::FileWatcherCertificateProvider> Provider(const Files& f) {
  return std::make_shared<ge::FileWatcherCertificateProvider>(f.private_key, f.certificate, f.ca,
                                                              static_cast<unsigned int>(f.reload_interval_seconds));
}

}  // namespace

absl::Status ParseFiles(config::ConfigTree& tree, const std::string& prefix, Files* out) {
  ASSIGN_OR_RETURN(out->certificate, tree.String(prefix + ".certificate", ""));
  ASSIGN_OR_RETURN(out->private_key, tree.String(prefix + ".private_key", ""));
  ASSIGN_OR_RETURN(out->ca, tree.String(prefix + ".ca", ""));
  ASSIGN_OR_RETURN(int64_t reload,
                   tree.Int(prefix + ".reload_interval_seconds", out->reload_interval_seconds, 1, 86400));
  out->reload_interval_seconds = static_cast<int>(reload);
  if (out->enabled() && (out->certificate.empty() || out->private_key.empty() || out->ca.empty())) {
    return absl::InvalidArgumentError("config keys '" + prefix + ".certificate', '" + prefix + ".private_key' and '" +
                                      prefix + ".ca' go together");
  }
  return absl::OkStatus();
}

absl::Status CheckFiles(const Files& f) {
  ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(f.certificate));
  ASSIGN_OR_RETURN(std::string key_pem, ReadFile(f.private_key));
  ASSIGN_OR_RETURN(std::string ca_pem, ReadFile(f.ca));
  X509Ptr cert = FirstCertificate(cert_pem);
  if (cert == nullptr) return absl::FailedPreconditionError(f.certificate + " holds no PEM certificate");
  BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = bio != nullptr ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (key == nullptr) return absl::FailedPreconditionError(f.private_key + " holds no unencrypted PEM private key");
  const bool match = X509_check_private_key(cert.get(), key) == 1;
  EVP_PKEY_free(key);
  if (!match) return absl::FailedPreconditionError(f.private_key + " is not the key of " + f.certificate);
  StackPtr cas = ParseCertificates(ca_pem);
  if (sk_X509_num(cas.get()) == 0) return absl::FailedPreconditionError(f.ca + " holds no PEM certificate");
  return absl::OkStatus();
}

std::string HostOf(std::string_view target) {
  for (std::string_view scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (target.starts_with(scheme)) {
      target.remove_prefix(scheme.size());
      break;
    }
  }
  if (target.starts_with("[")) {
    const size_t end = target.find(']');
    return std::string(target.substr(1, end == std::string_view::npos ? std::string_view::npos : end - 1));
  }
  const size_t first = target.find(':');
  if (first == std::string_view::npos) return std::string(target);
  // More than one colon without brackets: a bare IPv6 address, no port.
  if (target.find(':', first + 1) != std::string_view::npos) return std::string(target);
  return std::string(target.substr(0, first));
}

bool IsLoopback(std::string_view target) {
  if (target.starts_with("unix:") || target.starts_with("unix-abstract:")) return true;
  const std::string host = HostOf(target);
  if (Lower(host) == "localhost") return true;
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1) return buf[0] == 127;
  if (inet_pton(AF_INET6, host.c_str(), buf) == 1) {
    static constexpr unsigned char kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::equal(std::begin(buf), std::end(buf), std::begin(kLoopback6));
  }
  return false;
}

bool NameAllowed(const std::vector<std::string>& cert_names, const std::vector<std::string>& allowed) {
  for (const auto& n : cert_names) {
    for (const auto& a : allowed) {
      // DNS names are case-insensitive; URIs are compared as written.
      if (n == a || (n.find(':') == std::string::npos && Lower(n) == Lower(a))) return true;
    }
  }
  return false;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const ServerOptions& o) {
  RETURN_IF_ERROR(CheckFiles(o.files));
  if (o.allowed_clients.empty()) return absl::InvalidArgumentError("TLS needs at least one allowed client name");
  ge::TlsServerCredentialsOptions options(Provider(o.files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  options.set_certificate_verifier(ge::ExternalCertificateVerifier::Create<ClientVerifier>(
      o.files.ca, std::chrono::seconds(o.files.reload_interval_seconds), o.allowed_clients));
  auto creds = ge::TlsServerCredentials(options);
  if (creds == nullptr) return absl::InternalError("cannot create the gRPC TLS server credentials");
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(const ClientOptions& o,
                                                                            const std::string& endpoint,
                                                                            grpc::ChannelArguments* args) {
  RETURN_IF_ERROR(CheckFiles(o.files));
  const std::string expected = o.server_name.empty() ? HostOf(endpoint) : o.server_name;
  if (expected.empty()) return absl::InvalidArgumentError("no server name to check for endpoint " + endpoint);
  ge::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(o.files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_check_call_host(false);
  options.set_certificate_verifier(ge::ExternalCertificateVerifier::Create<ServerNameVerifier>(endpoint, expected));
  args->SetSslTargetNameOverride(expected);
  auto creds = ge::TlsCredentials(options);
  if (creds == nullptr) return absl::InternalError("cannot create the gRPC TLS channel credentials");
  return creds;
}

}  // namespace secondread::grpc_tls
