// Handing an accepted connection to DCMTK once the acceptor has read its
// whole A-ASSOCIATE-RQ (scp/receive/internals/acceptor.h). DCMTK-only; used by the
// listener (dcmtk_server.cc) and by the A-ASSOCIATE-RQ fuzz harness.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dcmtrans.h"

typedef struct ssl_st SSL;

namespace secondread::scp {

// The connection DCMTK gets for an accepted socket: the acceptor has already
// read the A-ASSOCIATE-RQ (and done the TLS handshake), so those bytes are
// served from memory first, then the real connection takes over.
class HandedOverConnection : public DcmTransportConnection {
 public:
  HandedOverConnection(int fd, DcmTransportConnection* inner, std::string prefix)
      : DcmTransportConnection(fd), inner_(inner), prefix_(std::move(prefix)) {}
  ~HandedOverConnection() override { delete inner_; }

  OFCondition serverSideHandshake() override { return EC_Normal; }
  OFCondition clientSideHandshake() override { return EC_IllegalCall; }
  OFCondition renegotiate(const char* suite) override { return inner_->renegotiate(suite); }
  ssize_t read(void* buf, size_t nbyte) override {
    if (pos_ < prefix_.size()) {
      size_t n = std::min(nbyte, prefix_.size() - pos_);
      std::memcpy(buf, prefix_.data() + pos_, n);
      pos_ += n;
      if (pos_ == prefix_.size()) std::string().swap(prefix_), pos_ = 0;
      return static_cast<ssize_t>(n);
    }
    return inner_->read(buf, nbyte);
  }
  ssize_t write(void* buf, size_t nbyte) override { return inner_->write(buf, nbyte); }
  void close() override {
    inner_->close();
    setSocket(-1);
  }
  void closeTransportConnection() override {
    inner_->closeTransportConnection();
    setSocket(-1);
  }
  unsigned long getPeerCertificateLength() override { return inner_->getPeerCertificateLength(); }
  unsigned long getPeerCertificate(void* buf, unsigned long len) override { return inner_->getPeerCertificate(buf, len); }
  OFBool networkDataAvailable(int timeout) override {
    return Buffered() ? OFTrue : inner_->networkDataAvailable(timeout);
  }
  // Not transparent while bytes wait in memory: DCMTK then asks
  // networkDataAvailable instead of polling the socket.
  OFBool isTransparentConnection() override { return Buffered() ? OFFalse : inner_->isTransparentConnection(); }
  OFString& dumpConnectionParameters(OFString& str) override { return inner_->dumpConnectionParameters(str); }

 private:
  bool Buffered() const { return pos_ < prefix_.size(); }
  DcmTransportConnection* inner_;
  std::string prefix_;
  size_t pos_ = 0;
};

// DCMTK asks its transport layer for the connection of a socket it was told
// about (dcmExternalSocketHandle); this layer answers with the one the
// acceptor prepared.
class HandOverLayer : public DcmTransportLayer {
 public:
  void Offer(DcmTransportConnection* connection, int fd) {
    offered_ = connection;
    fd_ = fd;
  }
  // The offered connection when DCMTK did not take it.
  DcmTransportConnection* Unclaimed() {
    DcmTransportConnection* c = offered_;
    offered_ = nullptr;
    return c;
  }
  DcmTransportConnection* createConnection(DcmNativeSocketType sock, OFBool) override {
    if (offered_ == nullptr || sock != fd_) return nullptr;
    return Unclaimed();
  }

 private:
  DcmTransportConnection* offered_ = nullptr;
  int fd_ = -1;
};

// DCMTK parses `associate_rq` (a whole A-ASSOCIATE-RQ PDU, header included,
// already read off `fd`) into *assoc without waiting on the network; from then
// on the association reads and writes `fd` (through `ssl` when not null). The
// descriptor and `ssl` are owned by the association, or closed here when
// DCMTK did not take them. Must not run on two threads at once: DCMTK learns
// the socket from a process-wide variable.
OFCondition ReceiveHandedOver(T_ASC_Network* network, HandOverLayer& layer, int fd, SSL* ssl,
                              std::string associate_rq, int max_pdu, T_ASC_Association** assoc);

// A DCMTK acceptor network without a listening socket of its own.
OFCondition InitializeHandOverNetwork(int acse_timeout_s, T_ASC_Network** network);

}  // namespace secondread::scp
