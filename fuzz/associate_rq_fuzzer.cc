// The A-ASSOCIATE-RQ as the node parses it before any allow-list check: the
// acceptor's structural check (AssociateRqProblem), then DCMTK's parse of
// what passes it (scp/receive/internals/handover.h) and the A-ASSOCIATE-AC a worker
// builds from it. The input is the PDU's body; the harness writes the 6-byte
// header, as the acceptor checks the header before reading the body.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/oflog/oflog.h"
#include "scp/receive/internals/acceptor.h"
#include "scp/receive/internals/handover.h"

namespace {

struct Harness {
  T_ASC_Network* network = nullptr;
  secondread::scp::HandOverLayer layer;
  int listener = -1;
  sockaddr_in address{};

  Harness() {
    std::signal(SIGPIPE, SIG_IGN);
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    dcmDisableGethostbyaddr.set(OFTrue);
    if (secondread::scp::InitializeHandOverNetwork(5, &network).bad()) std::abort();
    ASC_setTransportLayer(network, &layer, 0);
    // DCMTK sets TCP options on the socket, so the pair must be TCP.
    listener = ::socket(AF_INET, SOCK_STREAM, 0);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof address;
    if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener, 16) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &len) != 0) {
      std::abort();
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness* h = new Harness();
  // The acceptor refuses bodies over 64 KiB and under the 68-byte fixed part.
  if (size < 68 || size > 65530) return 0;
  std::string pdu("\x01\x00", 2);
  for (int shift : {24, 16, 8, 0}) pdu += static_cast<char>((size >> shift) & 0xff);
  pdu.append(reinterpret_cast<const char*>(data), size);
  // The acceptor's own check comes first, as in the node.
  if (!secondread::scp::AssociateRqProblem(pdu).empty()) return 0;

  int client = ::socket(AF_INET, SOCK_STREAM, 0);
  // Closed with a reset, so millions of inputs leave no TIME_WAIT behind to
  // exhaust the ephemeral ports.
  linger reset = {1, 0};
  ::setsockopt(client, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  if (::connect(client, reinterpret_cast<sockaddr*>(&h->address), sizeof h->address) != 0) {
    ::close(client);
    return 0;
  }
  int server = ::accept(h->listener, nullptr, nullptr);
  if (server < 0) std::abort();
  T_ASC_Association* assoc = nullptr;
  secondread::scp::ReceiveHandedOver(h->network, h->layer, server, nullptr, std::move(pdu), 16384, &assoc);
  if (assoc) {
    // What a worker does next (DcmSCP::processAssociationRQ, then
    // Worker::negotiateAssociation): refuse a foreign application context,
    // otherwise accept contexts from the parsed request and answer it, which
    // builds an A-ASSOCIATE-AC from the peer's items.
    char context[65] = {0};
    ASC_getApplicationContextName(assoc->params, context, sizeof context);
    if (std::string(context) != UID_StandardApplicationContext) {
      T_ASC_RejectParameters reject = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                                       ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED};
      ASC_rejectAssociation(assoc, &reject);
    } else {
      const char* syntaxes[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax,
                                UID_JPEG2000TransferSyntax};
      const char* abstracts[] = {UID_VerificationSOPClass, UID_CTImageStorage, UID_MRImageStorage};
      ASC_acceptContextsWithPreferredTransferSyntaxes(assoc->params, abstracts, 3, syntaxes, 3);
      ASC_acknowledgeAssociation(assoc);
    }
  }
  ::close(client);
  if (assoc) {
    ASC_dropAssociation(assoc);
    ASC_destroyAssociation(&assoc);
  }
  return 0;
}
