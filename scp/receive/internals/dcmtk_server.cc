// Everything that touches DCMTK's network layer. Mirrors Orthanc's
// Internals/: DCMTK callbacks are caught here and turned into DIMSE statuses.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <random>
#include <vector>

#include "common/log.h"
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrma.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/scppool.h"
#include "dcmtk/dcmnet/scpthrd.h"
#include "dcmtk/dcmtls/tlslayer.h"
#include "dcmtk/dcmtls/tlstrans.h"
#include "dcmtk/oflog/oflog.h"
#include "scp/receive/dicom_server.h"
#include "scp/receive/internals/acceptor.h"
#include "scp/receive/internals/handover.h"

namespace secondread::scp {
namespace {

// Streams a received dataset to the spool file descriptor. Past the size limit
// or after a write error it keeps draining the network but stops writing, so
// the sender gets a proper refusal and the disk is not filled.
class SpoolConsumer : public DcmConsumer {
 public:
  SpoolConsumer(int fd, uint64_t limit) : fd_(fd), limit_(limit) {}
  OFBool good() const override { return OFTrue; }
  OFCondition status() const override { return EC_Normal; }
  OFBool isFlushed() const override { return OFTrue; }
  offile_off_t avail() const override { return 1 << 30; }
  offile_off_t write(const void* buf, offile_off_t buflen) override {
    stats_.bytes += static_cast<uint64_t>(buflen);
    if (stats_.over_limit || stats_.write_errno != 0) return buflen;
    if (stats_.bytes > limit_) {
      stats_.over_limit = true;
      return buflen;
    }
    const char* p = static_cast<const char*>(buf);
    offile_off_t left = buflen;
    while (left > 0) {
      ssize_t n = ::write(fd_, p, static_cast<size_t>(left));
      if (n < 0) {
        if (errno == EINTR) continue;
        stats_.write_errno = errno;
        return buflen;
      }
      p += n;
      left -= n;
    }
    file_bytes_ += static_cast<uint64_t>(buflen);
    // Start write-back while later PDVs arrive, so the fdatasync before the
    // response has little left to flush.
    if (file_bytes_ - synced_ >= kWritebackChunk) {
      ::sync_file_range(fd_, static_cast<off64_t>(synced_), static_cast<off64_t>(file_bytes_ - synced_),
                        SYNC_FILE_RANGE_WRITE);
      synced_ = file_bytes_;
    }
    return buflen;
  }
  void flush() override {}
  // What was written so far is the meta header: from here on bytes count
  // against the instance size limit and the received-bytes statistics.
  void StartDataset() { stats_.bytes = 0; }
  const ReceiveStats& stats() const { return stats_; }

 private:
  static constexpr uint64_t kWritebackChunk = 128 << 10;
  int fd_;
  uint64_t limit_;
  uint64_t file_bytes_ = 0;
  uint64_t synced_ = 0;
  ReceiveStats stats_;
};

class SpoolOutputStream : public DcmOutputStream {
 public:
  explicit SpoolOutputStream(SpoolConsumer* consumer) : DcmOutputStream(consumer) {}
};

bool WriteMetaHeader(const StoreRequest& request, DcmOutputStream& out) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, request.sop_class_uid.c_str());
  ds->putAndInsertString(DCM_SOPInstanceUID, request.sop_instance_uid.c_str());
  E_TransferSyntax xfer = DcmXfer(request.transfer_syntax_uid.c_str()).getXfer();
  if (ff.validateMetaInfo(xfer).bad()) return false;
  DcmMetaInfo* meta = ff.getMetaInfo();
  meta->transferInit();
  OFCondition cond = meta->write(out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
  meta->transferEnd();
  return cond.good();
}

std::string NewAssociationId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

// What the acceptor learnt about a connection before DCMTK saw it.
struct PeerInfo {
  bool tls = false;
  std::string subject;
  PeerTable::Ticket ticket;
};

struct Context {
  ScpOptions options;
  StoreProcessor* processor;
  InstanceSink* sink;
  ScpMetrics* metrics;
  Spool* spool;
  audit::AuditSink* audit = nullptr;
};

class Pool;

const char* kTransferSyntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_RLELosslessTransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_JPEG2000TransferSyntax,
};

constexpr int kNumTransferSyntaxes = sizeof(kTransferSyntaxes) / sizeof(kTransferSyntaxes[0]);

const char* kUncompressed[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
};
constexpr int kNumUncompressed = 3;

class Worker : public DcmBaseSCPPool::DcmBaseSCPWorker, private DcmThreadSCP {
 public:
  Worker(Pool& pool, const Context& ctx);

  OFCondition setSharedConfig(const DcmSharedSCPConfig& config) override {
    return DcmThreadSCP::setSharedConfig(config);
  }
  OFBool busy() override { return DcmThreadSCP::isConnected(); }
  void SetPeer(PeerInfo peer) { peer_ = std::move(peer); }
  // True from start until the association's connection is closed; the
  // association's bookkeeping afterwards does not hold a slot.
  bool live() const { return live_.load(); }

 protected:
  // Replaces DcmBaseSCPWorker::run, which has the pool delete the worker
  // without ever joining its thread: glibc then keeps every ended thread's
  // stack and descriptor, tens of kilobytes of RSS per association. It could
  // also delete a worker before OFThread::start had stored its handle in it.
  void run() override;

  OFCondition workerListen(T_ASC_Association* const assoc) override {
    assoc_ = assoc;
    summary_ = AssociationSummary{};
    summary_.association.id = NewAssociationId();
    summary_.outcome = "released";
    accepted_ = false;
    OFCondition cond;
    try {
      cond = DcmThreadSCP::run(assoc);
    } catch (const std::exception& e) {
      log::Error("association_exception", {{"association", summary_.association.id}, {"error", e.what()}});
      cond = EC_IllegalCall;
    }
    live_.store(false);
    peer_.ticket = PeerTable::Ticket();
    if (accepted_) {
      ctx_.metrics->active_associations.Decrement();
      if (ctx_.sink) ctx_.sink->AssociationEnded(summary_);
      log::Info("association_ended", {{"association", summary_.association.id},
                                      {"calling_ae", summary_.association.calling_ae},
                                      {"outcome", summary_.outcome},
                                      {"stored", summary_.instances_stored},
                                      {"refused", summary_.instances_refused},
                                      {"bytes", summary_.bytes_received}});
    }
    assoc_ = nullptr;
    return cond;
  }

  OFBool checkCalledAETitleAccepted(const OFString& called) override {
    if (!ctx_.options.check_called_ae || called == ctx_.options.ae_title.c_str()) return OFTrue;
    Reject("called_ae_not_recognized");
    return OFFalse;
  }

  OFBool checkCallingAETitleAccepted(const OFString& calling) override {
    std::string host = getPeerIP().c_str();
    if (!CallerAllowed(ctx_.options.allowed_callers, calling.c_str(), host)) {
      Reject("calling_ae_not_allowed");
      return OFFalse;
    }
    // On the TLS port an AE title is a claim; the certificate proves it.
    if (peer_.tls && ctx_.options.tls.require_subject_binding &&
        !SubjectBound(ctx_.options.tls.caller_subjects, calling.c_str(), peer_.subject)) {
      Reject("certificate_not_bound_to_ae");
      return OFFalse;
    }
    return OFTrue;
  }

  void notifyAssociationAcknowledge() override {
    accepted_ = true;
    ctx_.metrics->associations_accepted.Increment();
    ctx_.metrics->active_associations.Increment();
    summary_.association.calling_ae = getPeerAETitle().c_str();
    summary_.association.called_ae = getCalledAETitle().c_str();
    summary_.association.peer_host = getPeerIP().c_str();
    nlohmann::json fields = {{"association", summary_.association.id},
                             {"calling_ae", summary_.association.calling_ae},
                             {"peer", summary_.association.peer_host},
                             {"tls", peer_.tls}};
    if (peer_.tls && !peer_.subject.empty()) fields["certificate_subject"] = peer_.subject;
    log::Info("association_accepted", std::move(fields));
  }

  void notifyAbortRequest() override { summary_.outcome = "aborted"; }
  void notifyConnectionTimeout() override { summary_.outcome = "timeout"; }
  void notifyDIMSEError(const OFCondition& cond) override {
    if (summary_.outcome == "released") summary_.outcome = "error";
    log::Warn("dimse_error", {{"association", summary_.association.id}, {"error", cond.text()}});
  }

  // DCMTK's association profile holds at most 128 presentation contexts,
  // fewer than the Storage SOP Classes it knows; like storescp we accept
  // directly against the full table instead.
  OFCondition negotiateAssociation() override {
    const char* verification[] = {UID_VerificationSOPClass};
    OFCondition cond = ASC_acceptContextsWithPreferredTransferSyntaxes(
        assoc_->params, verification, 1, const_cast<const char**>(kUncompressed), kNumUncompressed);
    if (cond.bad()) return cond;
    return ASC_acceptContextsWithPreferredTransferSyntaxes(
        assoc_->params, dcmAllStorageSOPClassUIDs, numberOfDcmAllStorageSOPClassUIDs,
        const_cast<const char**>(kTransferSyntaxes), kNumTransferSyntaxes);
  }

  OFCondition handleIncomingCommand(T_DIMSE_Message* msg, const DcmPresentationContextInfo& info) override {
    if (msg->CommandField == DIMSE_C_STORE_RQ) return HandleStore(msg->msg.CStoreRQ, info);
    return DcmThreadSCP::handleIncomingCommand(msg, info);
  }

 private:
  void Reject(const char* reason) {
    ctx_.metrics->associations_rejected.Increment();
    // The offered AE title is allow-listed or not; either way it is not PHI.
    nlohmann::json fields = {
        {"reason", reason}, {"calling_ae", getPeerAETitle().c_str()}, {"peer", getPeerIP().c_str()}, {"tls", peer_.tls}};
    if (peer_.tls) fields["certificate_subject"] = peer_.subject;
    log::Warn("association_rejected", std::move(fields));
    if (ctx_.audit) {
      ctx_.audit->Record(audit::SecurityAlert(ctx_.audit->node(), audit::kNodeAuthentication,
                                              {getPeerAETitle().c_str(), getPeerIP().c_str()}, reason));
    }
  }

  OFCondition HandleStore(T_DIMSE_C_StoreRQ& req, const DcmPresentationContextInfo& info) {
    auto start = std::chrono::steady_clock::now();
    StoreRequest request{req.AffectedSOPClassUID, req.AffectedSOPInstanceUID, info.acceptedTransferSyntax.c_str()};
    T_ASC_PresentationContextID pres_id = info.presentationContextID;
    const DcmSCPConfig& cfg = getConfig();
    DimseOutcome outcome;

    std::optional<DimseOutcome> pre = ctx_.processor->Precheck(request);
    std::optional<TempFile> temp;
    if (!pre) {
      auto created = ctx_.spool->CreateTemp();
      if (created.ok()) {
        temp.emplace(std::move(*created));
      } else {
        pre = DimseOutcome{dimse_status::kOutOfResources, "storage_error", "Spool temp file could not be created"};
      }
    }
    if (pre) {
      DIC_UL bytes = 0, pdvs = 0;
      OFCondition cond = DIMSE_ignoreDataSet(assoc_, cfg.getDIMSEBlockingMode(), cfg.getDIMSETimeout(), &bytes, &pdvs);
      if (cond.bad()) return cond;
      ctx_.metrics->bytes_received.Increment(bytes);
      summary_.bytes_received += bytes;
      outcome = ctx_.processor->Refuse(pre->status, pre->reason, pre->comment, summary_.association);
    } else {
      // We write the Part 10 meta header from the request, then append the
      // dataset exactly as received, without re-encoding.
      SpoolConsumer consumer(temp->fd(), ctx_.processor->max_instance_bytes());
      SpoolOutputStream stream(&consumer);
      if (!WriteMetaHeader(request, stream)) {
        return EC_IllegalCall;
      }
      consumer.StartDataset();
      T_ASC_PresentationContextID data_pres_id = pres_id;
      OFCondition cond = DIMSE_receiveDataSetInFile(assoc_, cfg.getDIMSEBlockingMode(), cfg.getDIMSETimeout(), &data_pres_id,
                                        &stream, nullptr, nullptr);
      ctx_.metrics->bytes_received.Increment(static_cast<double>(consumer.stats().bytes));
      summary_.bytes_received += consumer.stats().bytes;
      if (cond.bad()) {
        // The peer vanished or broke the protocol mid-dataset: the temp file
        // is removed when `temp` goes out of scope, nothing is registered.
        summary_.outcome = "aborted";
        log::Warn("store_incomplete", {{"association", summary_.association.id}, {"error", cond.text()}});
        return cond;
      }
      if (data_pres_id != pres_id) {
        outcome = ctx_.processor->Refuse(dimse_status::kCannotUnderstand, "unparsable",
                                         "Dataset arrived on a different presentation context", summary_.association);
      } else {
        outcome = ctx_.processor->Complete(request, summary_.association, std::move(*temp), consumer.stats());
      }
    }
    if (outcome.ok()) {
      ++summary_.instances_stored;
    } else {
      ++summary_.instances_refused;
    }
    DcmDataset* detail = nullptr;
    if (!outcome.ok() && !outcome.comment.empty()) {
      detail = new DcmDataset();
      detail->putAndInsertString(DCM_ErrorComment, outcome.comment.substr(0, 64).c_str());
    }
    OFCondition sent = sendSTOREResponse(pres_id, req.MessageID, req.AffectedSOPClassUID, req.AffectedSOPInstanceUID,
                                         outcome.status, detail);
    delete detail;
    ctx_.metrics->store_latency.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return sent;
  }

  Pool& pool_;
  Context ctx_;
  T_ASC_Association* assoc_ = nullptr;
  AssociationSummary summary_;
  bool accepted_ = false;
  PeerInfo peer_;
  std::atomic<bool> live_{true};
};

// DCMTK 3.6.7's DcmBaseSCPPool reads each association request on its one
// listener thread, so one silent peer stalls every other, and it never joins
// a worker thread (see Worker::run). The pool therefore runs its own loop:
// the Acceptor holds connections until a whole A-ASSOCIATE-RQ is in memory,
// then DCMTK parses it at once here and a worker thread per association
// negotiates and serves it; ended workers are joined on the next tick.
class Pool : public DcmBaseSCPPool {
 public:
  Pool(Context ctx, Acceptor* acceptor) : ctx_(std::move(ctx)), acceptor_(acceptor) {}

  OFCondition listen() override {
    DcmSCPConfig& cfg = getConfig();
    DcmSharedSCPConfig shared(cfg);
    T_ASC_Network* network = nullptr;
    OFCondition cond = InitializeHandOverNetwork(static_cast<int>(cfg.getACSETimeout()), &network);
    if (cond.bad()) return cond;
    HandOverLayer layer;
    ASC_setTransportLayer(network, &layer, 0);
    acceptor_->Run(
        [&](ReadyConnection ready) { Receive(network, layer, shared, std::move(ready)); },
        [&] { JoinEnded(); });
    std::vector<Worker*> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      all.swap(running_);
      all.insert(all.end(), ended_.begin(), ended_.end());
      ended_.clear();
    }
    for (Worker* w : all) {
      w->join();
      delete w;
    }
    ASC_setTransportLayer(network, nullptr, 0);
    ASC_dropNetwork(&network);
    return EC_Normal;
  }

  void stopAfterCurrentAssociations() override { acceptor_->Stop(); }

  // Called on the worker's own thread as its last act: from here the
  // listener may join it.
  void WorkerEnded(Worker* w) {
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(std::find(running_.begin(), running_.end(), w));
    ended_.push_back(w);
  }

 protected:
  DcmBaseSCPWorker* createSCPWorker() override { return new Worker(*this, ctx_); }

  // The listener drops an association here when every worker is busy (after
  // rejecting it with local-limit-exceeded) or when the request was not a
  // valid A-ASSOCIATE-RQ.
  void dropAndDestroyAssociation(T_ASC_Association* assoc) override {
    if (assoc) {
      ctx_.metrics->associations_rejected.Increment();
      log::Warn("association_dropped", {{"reason", "busy_or_malformed"}});
    }
    DcmBaseSCPPool::dropAndDestroyAssociation(assoc);
  }

 private:
  // The whole A-ASSOCIATE-RQ is in memory, so DCMTK parses it without
  // waiting on the network.
  void Receive(T_ASC_Network* network, HandOverLayer& layer, const DcmSharedSCPConfig& shared,
               ReadyConnection ready) {
    T_ASC_Association* assoc = nullptr;
    OFCondition cond = ReceiveHandedOver(network, layer, ready.fd, ready.ssl, std::move(ready.associate_rq),
                                         static_cast<int>(getConfig().getMaxReceivePDULength()), &assoc);
    if (cond.bad()) {
      log::Warn("connection_dropped", {{"reason", "handover_failed"},
                                       {"peer", ready.peer},
                                       {"port", ready.tls ? "tls" : "plain"},
                                       {"detail", cond.text()}});
      ctx_.metrics->ConnectionDropped("handover_failed").Increment();
      if (assoc) DcmBaseSCPPool::dropAndDestroyAssociation(assoc);
      return;
    }
    Start(assoc, shared, PeerInfo{ready.tls, std::move(ready.peer_subject), std::move(ready.ticket)});
  }

  void Start(T_ASC_Association* assoc, const DcmSharedSCPConfig& shared, PeerInfo peer) {
    size_t live = 0, threads = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads = running_.size();
      for (Worker* w : running_) live += w->live() ? 1 : 0;
    }
    // Associations being served count against the limit; threads only
    // recording an ended association do not, up to a backstop.
    if (live >= getMaxThreads() || threads >= 4u * getMaxThreads()) {
      rejectAssociation(assoc, ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
      dropAndDestroyAssociation(assoc);
      return;
    }
    auto* w = static_cast<Worker*>(createSCPWorker());
    w->setSharedConfig(shared);
    w->setAssociation(assoc);
    w->SetPeer(std::move(peer));
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_.push_back(w);
    }
    if (w->start() != 0) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        running_.pop_back();
      }
      delete w;
      rejectAssociation(assoc, ASC_REASON_SP_PRES_TEMPORARYCONGESTION);
      dropAndDestroyAssociation(assoc);
    }
  }

  // Joining frees the ended thread's stack; the join waits at most for the
  // few instructions between WorkerEnded and the thread's exit.
  void JoinEnded() {
    std::vector<Worker*> ended;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ended.swap(ended_);
    }
    for (Worker* w : ended) {
      w->join();
      delete w;
    }
  }

  Context ctx_;
  Acceptor* acceptor_;
  std::mutex mu_;
  std::vector<Worker*> running_;  // threads serving an association
  std::vector<Worker*> ended_;    // threads past WorkerEnded, not yet joined
};

Worker::Worker(Pool& pool, const Context& ctx) : DcmBaseSCPWorker(pool), DcmThreadSCP(), pool_(pool), ctx_(ctx) {}

void Worker::run() {
  T_ASC_Association* assoc = DcmBaseSCPWorker::m_assoc;
  DcmBaseSCPWorker::m_assoc = nullptr;
  if (assoc) workerListen(assoc);
  pool_.WorkerEnded(this);
}

}  // namespace

absl::StatusOr<CallerRule> ParseCallerRule(const std::string& text) {
  CallerRule rule;
  auto at = text.find('@');
  rule.ae_title = text.substr(0, at);
  if (at != std::string::npos) rule.host = text.substr(at + 1);
  if (rule.ae_title.empty() || rule.ae_title.size() > 16) {
    return absl::InvalidArgumentError("AE title must have 1 to 16 characters: '" + text + "'");
  }
  if (at != std::string::npos && rule.host.empty()) return absl::InvalidArgumentError("empty host in '" + text + "'");
  return rule;
}

bool SubjectBound(const std::vector<CallerSubject>& bindings, const std::string& calling_ae,
                  const std::string& subject) {
  if (subject.empty()) return false;
  for (const auto& b : bindings) {
    if (b.ae_title == calling_ae && b.subject == subject) return true;
  }
  return false;
}

bool CallerAllowed(const std::vector<CallerRule>& rules, const std::string& calling_ae, const std::string& peer_host) {
  for (const auto& rule : rules) {
    if (rule.ae_title == calling_ae && (rule.host.empty() || rule.host == peer_host)) return true;
  }
  return false;
}

struct DicomServer::Impl {
  Context ctx;
  std::unique_ptr<DcmTLSTransportLayer> tls;  // owns the SSL_CTX of the TLS port
  std::unique_ptr<Acceptor> acceptor;
  std::unique_ptr<Pool> pool;
};

namespace {

// The TLS port's context: DCMTK's BCP 195 non-downgrading profile (TLS 1.2
// or later, its cipher suites), our certificate, and the CAs trusted for
// client certificates.
absl::StatusOr<std::unique_ptr<DcmTLSTransportLayer>> MakeTlsLayer(const TlsListenerOptions& o) {
  if (o.certificate.empty() || o.private_key.empty()) {
    return absl::InvalidArgumentError("dicom.tls.port needs dicom.tls.certificate and dicom.tls.private_key");
  }
  if (o.require_client_certificate && o.ca.empty()) {
    return absl::InvalidArgumentError("dicom.tls.require_client_certificate needs dicom.tls.ca");
  }
  auto layer = std::make_unique<DcmTLSTransportLayer>(NET_ACCEPTOR, nullptr, OFTrue);
  if (!*layer) return absl::InternalError("cannot create the TLS context");
  if (layer->setTLSProfile(TSP_Profile_BCP195_ND).bad() || layer->activateCipherSuites().bad()) {
    return absl::InternalError("cannot apply the BCP 195 TLS profile");
  }
  if (layer->setPrivateKeyFile(o.private_key.c_str(), DCF_Filetype_PEM).bad()) {
    return absl::InvalidArgumentError("dicom.tls.private_key: cannot load " + o.private_key);
  }
  if (layer->setCertificateFile(o.certificate.c_str(), DCF_Filetype_PEM).bad()) {
    return absl::InvalidArgumentError("dicom.tls.certificate: cannot load " + o.certificate);
  }
  if (!layer->checkPrivateKeyMatchesCertificate()) {
    return absl::InvalidArgumentError("dicom.tls.private_key does not match dicom.tls.certificate");
  }
  if (!o.ca.empty() && layer->addTrustedCertificateFile(o.ca.c_str(), DCF_Filetype_PEM).bad()) {
    return absl::InvalidArgumentError("dicom.tls.ca: cannot load " + o.ca);
  }
  layer->setCertificateVerification(o.require_client_certificate ? DCV_requireCertificate
                                    : o.ca.empty()                ? DCV_ignoreCertificate
                                                                  : DCV_checkCertificate);
  return layer;
}

}  // namespace

DicomServer::DicomServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DicomServer::~DicomServer() = default;

absl::StatusOr<std::unique_ptr<DicomServer>> DicomServer::Create(const ScpOptions& options, StoreProcessor* processor,
                                                                 InstanceSink* sink, ScpMetrics* metrics,
                                                                 audit::AuditSink* audit) {
  if (options.ae_title.empty() || options.ae_title.size() > 16) {
    return absl::InvalidArgumentError("dicom.ae_title must have 1 to 16 characters");
  }
  if (options.max_associations < 1 || options.max_associations > 1000) {
    return absl::InvalidArgumentError("dicom.max_associations must be between 1 and 1000");
  }
  // DCMTK's own logger writes free text; our JSON log carries what matters.
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  // Reverse DNS would stall association set-up and the allow-list matches IPs.
  dcmDisableGethostbyaddr.set(OFTrue);
  // DCMTK 3.6.7 leaves Nagle's algorithm on unless this documented variable
  // is set when a connection is accepted; with one outstanding C-STORE per
  // association Nagle costs a delayed-ACK wait on every response.
  ::setenv("TCP_NODELAY", "1", 1);
  // DCMTK's timeouts poll before a read, but a TLS record that arrives in
  // part makes OpenSSL block inside the read for the rest. The socket's own
  // timeouts (set by DCMTK on every connection it creates) bound that wait,
  // and a write to a peer that stopped reading, to the idle timeout.
  dcmSocketReceiveTimeout.set(options.idle_timeout_s);
  dcmSocketSendTimeout.set(options.idle_timeout_s);

  auto impl = std::make_unique<Impl>();
  impl->ctx = Context{options, processor, sink, metrics, nullptr, audit};
  impl->ctx.spool = processor ? processor->spool() : nullptr;
  if (options.tls.port != 0) {
    ASSIGN_OR_RETURN(impl->tls, MakeTlsLayer(options.tls));
  }
  AcceptorOptions ao;
  ao.bind_address = options.bind_address;
  ao.plain_port = options.port;
  ao.tls_port = options.tls.port;
  ao.association_deadline = std::chrono::milliseconds(options.association_deadline_ms);
  ao.max_connections_per_peer = options.max_connections_per_peer;
  ao.max_pending_connections = options.max_pending_connections;
  ao.max_associate_rq_bytes = options.max_associate_rq_bytes;
  ASSIGN_OR_RETURN(impl->acceptor,
                   Acceptor::Create(ao, impl->tls ? impl->tls->getNativeHandle() : nullptr, metrics, audit));
  impl->pool = std::make_unique<Pool>(impl->ctx, impl->acceptor.get());
  DcmSCPConfig& cfg = impl->pool->getConfig();
  cfg.setAETitle(options.ae_title.c_str());
  cfg.setPort(options.port);
  cfg.setMaxReceivePDULength(options.max_pdu_bytes);
  cfg.setConnectionBlockingMode(DUL_NOBLOCK);
  cfg.setConnectionTimeout(1);
  cfg.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  cfg.setDIMSETimeout(static_cast<Uint32>(options.idle_timeout_s));
  cfg.setACSETimeout(static_cast<Uint32>(std::min(options.idle_timeout_s, 30)));
  cfg.setHostLookupEnabled(OFFalse);

  OFList<OFString> uncompressed;
  uncompressed.push_back(UID_LittleEndianExplicitTransferSyntax);
  uncompressed.push_back(UID_LittleEndianImplicitTransferSyntax);
  uncompressed.push_back(UID_BigEndianExplicitTransferSyntax);
  if (cfg.addPresentationContext(UID_VerificationSOPClass, uncompressed).bad()) {
    return absl::InternalError("cannot configure Verification presentation context");
  }
  // The profile only has to be valid: Worker::negotiateAssociation accepts
  // every Storage SOP Class DCMTK knows, beyond the profile's 128-context cap.
  impl->pool->setMaxThreads(static_cast<Uint16>(options.max_associations));
  return std::unique_ptr<DicomServer>(new DicomServer(std::move(impl)));
}

uint16_t DicomServer::plain_port() const { return impl_->acceptor->plain_port(); }
uint16_t DicomServer::tls_port() const { return impl_->acceptor->tls_port(); }

absl::Status DicomServer::Run() {
  log::Info("dicom_listening", {{"ae_title", impl_->ctx.options.ae_title},
                                {"port", impl_->acceptor->plain_port()},
                                {"tls_port", impl_->acceptor->tls_port()},
                                {"bind_address", impl_->ctx.options.bind_address}});
  OFCondition cond = impl_->pool->listen();
  if (cond.bad()) return absl::UnavailableError(std::string("DICOM listener failed: ") + cond.text());
  return absl::OkStatus();
}

void DicomServer::Stop() { impl_->pool->stopAfterCurrentAssociations(); }

}  // namespace secondread::scp
