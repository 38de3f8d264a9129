// C-STORE SCU over DCMTK's DcmSCU. See store_scu.h for the contract.
//
// Notes on DCMTK 3.6.7 behaviour this relies on:
//  - Nagle's algorithm: dcmnet sets TCP_NODELAY on an outgoing socket only when
//    the TCP_NODELAY environment variable says so (dulfsm.cc), which is
//    process-wide and racy to set at run time. Instead we install a transport
//    layer whose createConnection() sets TCP_NODELAY on the freshly connected
//    socket. DcmSCU only exposes installing a layer through
//    useSecureConnection(), which also marks the association "secure"; for a
//    plain DcmTCPConnection that flag only means DUL calls
//    clientSideHandshake(), which is a no-op returning success.
//  - TLS: the layer is then a DcmTLSTransportLayer (client role), one per
//    association, so that its SSL_CTX carries only this destination's trust.
//    dcmtls 3.6.7 checks the chain but not the peer's name; our
//    createConnection() builds the SSL object itself to add SNI and the
//    name check, then hands it to a stock DcmTLSConnection. OpenSSL reports
//    only "certificate verify failed"; a verify callback keeps the check
//    that failed (thread-local: the handshake runs on the calling thread).
//  - setConnectionTimeout() is a global dcmnet setting (dcmConnectionTimeout).
//  - Nothing here logs; DCMTK's own logger is configured elsewhere.
#include "scp/send/store_scu.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <utility>

#include "dcmtk/config/osconfig.h"  // must come first among DCMTK headers
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmnet/cond.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/scu.h"
#include "dcmtk/dcmtls/tlslayer.h"
#include "dcmtk/dcmtls/tlstrans.h"

namespace secondread::scp {
namespace {

constexpr Uint32 kMaxPdu = 131072;
constexpr size_t kMaxPresentationContexts = 128;  // odd IDs 1..255

void SetNoDelay(DcmNativeSocketType socket) {
  int on = 1;
  // Best effort: a failure only costs latency, not correctness.
  (void)setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

// Creates plain TCP connections with Nagle's algorithm disabled.
class NoDelayTransportLayer : public DcmTransportLayer {
 public:
  DcmTransportConnection* createConnection(DcmNativeSocketType socket, OFBool /*secure*/) override {
    SetNoDelay(socket);
    return new DcmTCPConnection(socket);
  }
};

// The first certificate check that failed in this thread's handshake.
thread_local std::string tls_verify_failure;

extern "C" int RecordVerifyFailure(int ok, X509_STORE_CTX* store) {
  if (ok == 0 && tls_verify_failure.empty()) {
    tls_verify_failure = X509_verify_cert_error_string(X509_STORE_CTX_get_error(store));
  }
  return ok;
}

bool IsIpv4Address(const std::string& text) {
  in_addr addr{};
  return inet_pton(AF_INET, text.c_str(), &addr) == 1;
}

// TLS connections to one destination whose certificate must name `peer_name`.
class TlsTransportLayer : public DcmTLSTransportLayer {
 public:
  explicit TlsTransportLayer(std::string peer_name)
      : DcmTLSTransportLayer(NET_REQUESTOR, nullptr, OFTrue), peer_name_(std::move(peer_name)) {}

  DcmTransportConnection* createConnection(DcmNativeSocketType socket, OFBool secure) override {
    SetNoDelay(socket);
    if (!secure) return new DcmTCPConnection(socket);
    SSL* ssl = SSL_new(getNativeHandle());
    if (ssl == nullptr) return nullptr;  // DUL closes the socket and reports it
    bool ok = SSL_set_fd(ssl, static_cast<int>(socket)) == 1;
    if (IsIpv4Address(peer_name_)) {
      ok = ok && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), peer_name_.c_str()) == 1;
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = ok && SSL_set1_host(ssl, peer_name_.c_str()) == 1 &&
           SSL_set_tlsext_host_name(ssl, peer_name_.c_str()) == 1;
    }
    if (!ok) {
      SSL_free(ssl);
      return nullptr;
    }
    return new DcmTLSConnection(socket, ssl);
  }

 private:
  std::string peer_name_;
};

// The TLS reasons OpenSSL queued for this thread's last failure, drained:
// alerts from the peer (such as "tlsv13 alert certificate required", which
// arrives after the handshake, on the first read) and protocol failures.
// Other libraries' entries are left out: DCMTK's dump of the peer's
// certificate leaves ASN.1 noise ("too large" for a 128-bit serial number).
std::string OpenSslReasons() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    if (ERR_GET_LIB(e) != ERR_LIB_SSL) continue;
    // DCMTK closes a failed handshake with SSL_shutdown, which adds this.
    if (ERR_GET_REASON(e) == SSL_R_SHUTDOWN_WHILE_IN_INIT) continue;
    const char* reason = ERR_reason_error_string(e);
    if (reason == nullptr || out.find(reason) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out;
}

std::string ConditionText(const OFCondition& cond) { return cond.text() != nullptr ? cond.text() : "unknown"; }

absl::StatusOr<std::unique_ptr<TlsTransportLayer>> MakeTlsLayer(const StoreDestination& dest) {
  const StoreTls& tls = dest.tls;
  if (tls.ca_file.empty())
    return absl::InvalidArgumentError("TLS needs the CA certificates that the destination's certificate chains to");
  if (tls.certificate_file.empty() != tls.private_key_file.empty())
    return absl::InvalidArgumentError("a TLS client certificate and its private key go together");
  ERR_clear_error();
  auto layer = std::make_unique<TlsTransportLayer>(tls.server_name.empty() ? dest.host : tls.server_name);
  if (!*layer) return absl::InternalError("cannot create a TLS context: " + OpenSslReasons());
  // The Non-downgrading BCP 195 profile: TLS 1.2 with its four ECDHE/DHE
  // RSA AES-GCM suites, or TLS 1.3. The floor is also set on the context, so
  // that no later DCMTK default can lower it.
  OFCondition cond = layer->setTLSProfile(TSP_Profile_BCP195_ND);
  if (cond.good()) cond = layer->activateCipherSuites();
  if (cond.bad()) return absl::InternalError("cannot set the BCP 195 TLS profile: " + ConditionText(cond));
  SSL_CTX* ctx = layer->getNativeHandle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
    return absl::InternalError("cannot require TLS 1.2 or newer");
  cond = layer->addTrustedCertificateFile(tls.ca_file.c_str(), DCF_Filetype_PEM);
  if (cond.bad())
    return absl::InvalidArgumentError("cannot load CA certificates from " + tls.ca_file + ": " + ConditionText(cond));
  if (!tls.certificate_file.empty()) {
    cond = layer->setCertificateFile(tls.certificate_file.c_str(), DCF_Filetype_PEM);
    if (cond.bad())
      return absl::InvalidArgumentError("cannot load the TLS certificate " + tls.certificate_file + ": " +
                                        ConditionText(cond));
    cond = layer->setPrivateKeyFile(tls.private_key_file.c_str(), DCF_Filetype_PEM);
    if (cond.bad())
      return absl::InvalidArgumentError("cannot load the TLS private key " + tls.private_key_file + ": " +
                                        ConditionText(cond));
    if (!layer->checkPrivateKeyMatchesCertificate())
      return absl::InvalidArgumentError("the TLS private key " + tls.private_key_file + " is not the key of " +
                                        tls.certificate_file);
  }
  layer->setCertificateVerification(DCV_requireCertificate);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, RecordVerifyFailure);
  ERR_clear_error();
  return layer;
}

// Exposes the protected pieces of DcmSCU that we need.
class Scu : public DcmSCU {
 public:
  OFCondition UseLayer(DcmTransportLayer* layer) { return useSecureConnection(layer); }
  std::string AcceptedTransferSyntax(T_ASC_PresentationContextID id) {
    OFString abstract_syntax, transfer_syntax;
    findPresentationContext(id, abstract_syntax, transfer_syntax);
    return transfer_syntax.c_str();
  }
};

std::string Hex4(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04X", v & 0xFFFFu);
  return buf;
}

bool IsValidAeTitle(const std::string& ae) {
  if (ae.empty() || ae.size() > 16) return false;
  if (ae.front() == ' ' || ae.back() == ' ') return false;
  for (unsigned char c : ae) {
    if (c < 0x20 || c >= 0x7F || c == '\\') return false;
  }
  return true;
}

bool IsValidHost(const std::string& host) {
  // DcmSCU keeps "host:port" in a 64-byte buffer: at most 57 characters of host.
  if (host.empty() || host.size() > 57) return false;
  for (unsigned char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_';
    if (!ok) return false;
  }
  return host.front() != '-' && host.front() != '.';
}

struct FileInfo {
  std::string path;
  std::string sop_class;
  std::string sop_instance;
  E_TransferSyntax xfer = EXS_Unknown;
};

// Loads a file; the dataset's large values stay on disk until needed.
absl::Status LoadFile(const std::string& path, DcmFileFormat& file) {
  OFCondition cond = file.loadFile(OFFilename(path.c_str()), EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                                   ERM_autoDetect);
  if (cond.bad()) return absl::InvalidArgumentError("cannot read " + path + ": " + cond.text());
  return absl::OkStatus();
}

absl::StatusOr<FileInfo> Inspect(const std::string& path) {
  DcmFileFormat file;
  RETURN_IF_ERROR(LoadFile(path, file));
  DcmDataset* ds = file.getDataset();
  FileInfo info;
  info.path = path;
  OFString v;
  if (ds->findAndGetOFString(DCM_SOPClassUID, v).bad() || v.empty())
    return absl::InvalidArgumentError(path + ": SOP Class UID is missing");
  info.sop_class = v.c_str();
  if (ds->findAndGetOFString(DCM_SOPInstanceUID, v).bad() || v.empty())
    return absl::InvalidArgumentError(path + ": SOP Instance UID is missing");
  info.sop_instance = v.c_str();
  info.xfer = ds->getOriginalXfer();
  if (info.xfer == EXS_Unknown) return absl::InvalidArgumentError(path + ": unknown transfer syntax");
  return info;
}

// The transfer syntaxes proposed for an object stored in `stored`.
OFList<OFString> ProposedSyntaxes(E_TransferSyntax stored) {
  std::vector<std::string> uids;
  uids.push_back(DcmXfer(stored).getXferID());
  uids.push_back(UID_LittleEndianExplicitTransferSyntax);
  uids.push_back(UID_LittleEndianImplicitTransferSyntax);
  OFList<OFString> out;
  std::vector<std::string> seen;
  for (const std::string& uid : uids) {
    if (std::find(seen.begin(), seen.end(), uid) != seen.end()) continue;
    seen.push_back(uid);
    out.push_back(OFString(uid.c_str()));
  }
  return out;
}

bool IsNetworkFailure(const OFCondition& cond) {
  // Everything that is not about the data itself: connection, association,
  // PDU and DIMSE transport conditions, timeouts.
  return cond.module() == OFM_dcmnet;
}

// What a C-STORE response status means for this object.
enum class Outcome { kStored, kTransient, kPermanent };

Outcome Classify(Uint16 status) {
  if (status == 0x0000) return Outcome::kStored;
  if ((status & 0xF000) == 0xB000) return Outcome::kStored;      // warnings: B000, B006, B007
  if ((status & 0xFF00) == 0xA700) return Outcome::kTransient;   // out of resources
  if ((status & 0xFF00) == 0xA900) return Outcome::kPermanent;   // data set does not match SOP class
  if ((status & 0xF000) == 0xC000) return Outcome::kPermanent;   // cannot understand
  switch (status) {
    case 0x0122:  // SOP class not supported
    case 0x0124:  // not authorized
    case 0x0117:  // invalid SOP instance
    case 0x0211:  // unrecognized operation
      return Outcome::kPermanent;
    default:
      // 0110 processing failure, 0213 resource limitation, FE00 cancel and
      // anything unknown: assume the peer may succeed later.
      return Outcome::kTransient;
  }
}

absl::StatusOr<std::vector<StoreResult>> SendFilesImpl(const StoreDestination& dest,
                                                       const std::vector<std::string>& paths,
                                                       const std::function<bool()>& keep_going) {
  if (!IsValidAeTitle(dest.ae_title)) return absl::InvalidArgumentError("invalid called AE title");
  if (!IsValidAeTitle(dest.calling_ae)) return absl::InvalidArgumentError("invalid calling AE title");
  if (!IsValidHost(dest.host)) return absl::InvalidArgumentError("invalid destination host");
  if (dest.port == 0) return absl::InvalidArgumentError("invalid destination port");
  if (paths.empty()) return std::vector<StoreResult>{};

  // Read every file before touching the network, so that a bad file is an
  // INVALID_ARGUMENT rather than a half-sent association.
  std::vector<FileInfo> files;
  files.reserve(paths.size());
  std::map<std::pair<std::string, E_TransferSyntax>, int> contexts;
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(FileInfo info, Inspect(path));
    contexts.emplace(std::make_pair(info.sop_class, info.xfer), 0);
    files.push_back(std::move(info));
  }
  if (contexts.size() > kMaxPresentationContexts)
    return absl::InvalidArgumentError("more than 128 distinct SOP class / transfer syntax pairs in one batch");

  const std::string label = dest.name.empty() ? dest.ae_title : dest.name;

  // The layer must outlive scu, which keeps a pointer to it.
  NoDelayTransportLayer plain_layer;
  std::unique_ptr<TlsTransportLayer> tls_layer;
  if (dest.tls.enabled) {
    auto made = MakeTlsLayer(dest);
    // A file that cannot be loaded now may be in the middle of being
    // replaced; start-up has checked it once (CheckTls). Never fall back to
    // the clear.
    if (!made.ok())
      return absl::UnavailableError("TLS setup for " + label + " failed: " + std::string(made.status().message()));
    tls_layer = *std::move(made);
  }
  DcmTransportLayer* layer = tls_layer ? static_cast<DcmTransportLayer*>(tls_layer.get()) : &plain_layer;
  // What a failed TLS association or transfer was about, for its status.
  auto tls_detail = [&]() -> std::string {
    if (!tls_layer) return "";
    std::string detail;
    if (!tls_verify_failure.empty()) detail = "the destination's certificate failed the check: " + tls_verify_failure;
    const std::string reasons = OpenSslReasons();
    if (!reasons.empty() && detail.find(reasons) == std::string::npos) detail += (detail.empty() ? "" : "; ") + reasons;
    return detail.empty() ? "" : " (TLS: " + detail + ")";
  };

  Scu scu;
  scu.setAETitle(dest.calling_ae.c_str());
  scu.setPeerAETitle(dest.ae_title.c_str());
  scu.setPeerHostName(dest.host.c_str());
  scu.setPeerPort(dest.port);
  scu.setMaxReceivePDULength(kMaxPdu);
  scu.setConnectionTimeout(std::max(1, dest.connect_timeout_s));
  scu.setACSETimeout(static_cast<Uint32>(std::max(1, dest.connect_timeout_s)));
  scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  scu.setDIMSETimeout(static_cast<Uint32>(std::max(1, dest.dimse_timeout_s)));
  scu.setDatasetConversionMode(OFFalse);  // we convert (or refuse) ourselves
  scu.setProgressNotificationMode(OFFalse);
  for (const auto& [key, unused] : contexts) {
    scu.addPresentationContext(key.first.c_str(), ProposedSyntaxes(key.second));
  }

  OFCondition cond = scu.initNetwork();
  if (cond.bad()) return absl::InternalError("C-STORE SCU network setup failed: " + std::string(cond.text()));
  cond = scu.UseLayer(layer);
  if (cond.bad()) return absl::InternalError("C-STORE SCU transport setup failed: " + std::string(cond.text()));

  tls_verify_failure.clear();
  ERR_clear_error();
  cond = scu.negotiateAssociation();
  if (cond.bad()) {
    if (cond == NET_EC_NoAcceptablePresentationContexts) {
      if (scu.isConnected()) scu.releaseAssociation();
      return absl::FailedPreconditionError(label + " accepted none of the proposed presentation contexts");
    }
    const std::string detail = tls_detail();
    if (scu.isConnected()) scu.abortAssociation();
    if (cond == DUL_ASSOCIATIONREJECTED)
      return absl::UnavailableError(label + " rejected the association");
    if (tls_layer)
      return absl::UnavailableError("cannot associate with " + label + " over TLS: " + ConditionText(cond) + detail);
    return absl::UnavailableError("cannot associate with " + label + ": " + cond.text());
  }

  std::vector<StoreResult> results;
  results.reserve(files.size());
  const std::string of_n = " of " + std::to_string(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    const FileInfo& info = files[i];
    const std::string which = "object " + std::to_string(i + 1) + of_n;
    if (keep_going && !keep_going()) {
      scu.releaseAssociation();
      return absl::AbortedError("sending to " + label + " stopped before " + which);
    }
    DcmFileFormat file;
    if (absl::Status s = LoadFile(info.path, file); !s.ok()) {
      scu.abortAssociation();
      return s;
    }
    DcmDataset* ds = file.getDataset();
    const std::string stored_uid = DcmXfer(info.xfer).getXferID();
    T_ASC_PresentationContextID pc = scu.findPresentationContextID(info.sop_class.c_str(), stored_uid.c_str());
    if (pc == 0) {
      // Fall back to an accepted uncompressed context for this SOP class.
      for (const char* ts : {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax}) {
        pc = scu.findPresentationContextID(info.sop_class.c_str(), ts);
        if (pc != 0) break;
      }
    }
    if (pc == 0) {
      scu.releaseAssociation();
      return absl::FailedPreconditionError(label + " accepted no presentation context for " + which);
    }
    const std::string network_uid = scu.AcceptedTransferSyntax(pc);
    if (network_uid != stored_uid) {
      const E_TransferSyntax network = DcmXfer(network_uid.c_str()).getXfer();
      // Decoders for compressed syntaxes are not linked here; an encapsulated
      // object that the peer will only take uncompressed cannot be sent.
      if (ds->chooseRepresentation(network, nullptr).bad() || !ds->canWriteXfer(network, info.xfer)) {
        scu.releaseAssociation();
        return absl::FailedPreconditionError(label + " accepted " + which +
                                             " only in a transfer syntax it cannot be converted to");
      }
    }
    Uint16 status = 0;
    cond = scu.sendSTORERequest(pc, OFFilename(), ds, status);
    if (cond.bad()) {
      if (cond == DUL_PEERABORTEDASSOCIATION) {
        scu.closeAssociation(DCMSCU_PEER_ABORTED_ASSOCIATION);  // frees without sending
      } else if (scu.isConnected()) {
        scu.abortAssociation();
      }
      if (IsNetworkFailure(cond) || cond.module() == OFM_dcmtls)
        return absl::UnavailableError("C-STORE of " + which + " to " + label + " failed: " + cond.text() +
                                      tls_detail());
      return absl::FailedPreconditionError("C-STORE of " + which + " to " + label + " failed: " + cond.text());
    }
    switch (Classify(status)) {
      case Outcome::kStored:
        results.push_back(StoreResult{info.sop_instance, status});
        break;
      case Outcome::kTransient:
        scu.releaseAssociation();
        return absl::UnavailableError(label + " answered status 0x" + Hex4(status) + " for " + which);
      case Outcome::kPermanent:
        scu.releaseAssociation();
        return absl::FailedPreconditionError(label + " refused " + which + " with status 0x" + Hex4(status));
    }
  }

  cond = scu.releaseAssociation();
  if (cond.bad()) {
    // Every object was acknowledged; a failed release does not undo that.
    if (scu.isConnected()) scu.abortAssociation();
  }
  return results;
}

}  // namespace

absl::StatusOr<StoreDestination> ParseStoreDestination(const std::string& text) {
  const size_t at = text.rfind('@');
  if (at == std::string::npos) return absl::InvalidArgumentError("store destination must look like AE@HOST:PORT");
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon < at)
    return absl::InvalidArgumentError("store destination must look like AE@HOST:PORT");
  StoreDestination dest;
  dest.ae_title = text.substr(0, at);
  dest.host = text.substr(at + 1, colon - at - 1);
  const std::string port = text.substr(colon + 1);
  if (!IsValidAeTitle(dest.ae_title))
    return absl::InvalidArgumentError(
        "store destination AE title must be 1-16 printable characters without backslash or edge spaces");
  if (!IsValidHost(dest.host)) return absl::InvalidArgumentError("store destination host is not a valid host name or IPv4 address");
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return absl::InvalidArgumentError("store destination port must be a number 1-65535");
  const long value = std::stol(port);
  if (value < 1 || value > 65535) return absl::InvalidArgumentError("store destination port must be a number 1-65535");
  dest.port = static_cast<uint16_t>(value);
  dest.name = text;
  return dest;
}

absl::Status CheckTls(const StoreDestination& destination) {
  if (!destination.tls.enabled) return absl::OkStatus();
  try {
    auto layer = MakeTlsLayer(destination);
    if (!layer.ok()) return absl::InvalidArgumentError(std::string(layer.status().message()));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("TLS setup failed: ") + e.what());
  }
}

absl::StatusOr<std::vector<StoreResult>> SendFiles(const StoreDestination& destination,
                                                   const std::vector<std::string>& paths,
                                                   const std::function<bool()>& keep_going) {
  try {
    return SendFilesImpl(destination, paths, keep_going);
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("C-STORE SCU failed: ") + e.what());
  } catch (...) {
    return absl::InternalError("C-STORE SCU failed with an unknown exception");
  }
}

}  // namespace secondread::scp
