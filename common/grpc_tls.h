// Mutual TLS for the gRPC link between the node and its workers, in one place
// for both sides. Certificates, keys and CA bundles are read from files that
// gRPC's FileWatcherCertificateProvider re-reads every reload interval, so a
// rotated certificate takes effect on the next handshake without a restart.
//
// The worker (server) asks for a client certificate and verifies it itself,
// after the handshake, against the CA bundle it re-reads on the same
// interval: that way every refusal (no certificate, another CA, expired, a
// name not on the allow-list) is logged with its reason instead of ending
// inside OpenSSL unseen. The node (client) lets gRPC verify the worker's
// chain and then checks that the worker's certificate names the expected
// host.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/status.h"

namespace grpc {
class ChannelArguments;
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

namespace secondread::grpc_tls {

struct Files {
  std::string certificate;  // PEM, the leaf first, then any intermediates
  std::string private_key;  // PEM, unencrypted
  std::string ca;           // PEM bundle of the CAs the peer's certificate may come from
  int reload_interval_seconds = 60;

  bool enabled() const { return !certificate.empty() || !private_key.empty() || !ca.empty(); }
};

struct ServerOptions {
  Files files;
  // The client certificates accepted: each entry is compared, as text, with
  // the certificate's subjectAltName DNS names and URIs.
  std::vector<std::string> allowed_clients;
};

struct ClientOptions {
  Files files;
  // The name the worker's certificate must carry (a DNS or IP subjectAltName).
  // Empty: the host part of each endpoint's address.
  std::string server_name;
};

// Reads PREFIX.certificate, .private_key, .ca and .reload_interval_seconds.
// Either all three files are given or none.
absl::Status ParseFiles(config::ConfigTree& tree, const std::string& prefix, Files* out);

// Loads the files once, so that a missing file, a key that does not belong to
// the certificate or a CA bundle without a certificate stops start-up with
// the reason rather than failing every handshake later.
absl::Status CheckFiles(const Files& files);

// The host part of a gRPC target ("127.0.0.1:50051", "[::1]:50051",
// "dns:///worker:50051", "ipv4:10.0.0.1:50051").
std::string HostOf(std::string_view target);

// True when the target or listen address can only be reached from this host:
// 127.0.0.0/8, ::1, localhost or a unix socket. Plaintext is allowed only there.
bool IsLoopback(std::string_view target);

// Whether one of the certificate's names is on the allow-list.
bool NameAllowed(const std::vector<std::string>& cert_names, const std::vector<std::string>& allowed);

// The worker's server credentials: TLS 1.2 or later, a client certificate
// asked for and checked as described above.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const ServerOptions& options);

// The node's channel credentials for one endpoint. Sets the TLS target name
// on `args` so that SNI and the name check agree.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(const ClientOptions& options,
                                                                            const std::string& endpoint,
                                                                            grpc::ChannelArguments* args);

}  // namespace secondread::grpc_tls
