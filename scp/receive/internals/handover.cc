#include "scp/receive/internals/handover.h"

#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmtls/tlstrans.h"

namespace secondread::scp {

OFCondition InitializeHandOverNetwork(int acse_timeout_s, T_ASC_Network** network) {
  // While an external socket is set, DCMTK creates an acceptor network
  // without a listening socket: the acceptor owns the ports.
  dcmExternalSocketHandle.set(1);
  OFCondition cond = ASC_initializeNetwork(NET_ACCEPTOR, 0, acse_timeout_s, network);
  dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
  return cond;
}

OFCondition ReceiveHandedOver(T_ASC_Network* network, HandOverLayer& layer, int fd, SSL* ssl,
                              std::string associate_rq, int max_pdu, T_ASC_Association** assoc) {
  DcmTransportConnection* inner = ssl ? static_cast<DcmTransportConnection*>(new DcmTLSConnection(fd, ssl))
                                      : new DcmTCPConnection(fd);
  layer.Offer(new HandedOverConnection(fd, inner, std::move(associate_rq)), fd);
  dcmExternalSocketHandle.set(fd);
  OFCondition cond = ASC_receiveAssociation(network, assoc, max_pdu, nullptr, nullptr, OFFalse, DUL_NOBLOCK, 1);
  dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
  if (DcmTransportConnection* unclaimed = layer.Unclaimed()) delete unclaimed;  // closes the socket
  return cond;
}

}  // namespace secondread::scp
