// Opens many short associations against a DICOM node, several at a time, and
// samples the node's memory as they complete: the soak behind
// tests/integration/association_memory_test.sh and bench/association_soak.sh.
//
//   assoc_soak HOST PORT CALLED_AE TOTAL CONCURRENCY [--aet CALLING_AE]
//              [--pid PID] [--sample-every N] [--store FILE --store-every K]
//
// Each association sends one C-ECHO, or, every K-th one, a C-STORE of FILE
// (the same instance each time, so the receiver's storage stays flat). With
// --pid it prints, after every N completed associations and at the start,
//   associations rss_kb vm_kb mappings
// read from /proc/PID. Exits 0 only if every association succeeded.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/oflog/oflog.h"

namespace {

struct Options {
  std::string host;
  std::string port;
  std::string called_ae;
  std::string calling_ae = "STORESCU";
  long total = 0;
  int concurrency = 1;
  long pid = 0;
  long sample_every = 1000;
  std::string store_file;
  long store_every = 0;
};

struct Sample {
  long rss_kb = -1;
  long vm_kb = -1;
  long mappings = -1;
};

Sample ReadSample(long pid) {
  Sample s;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kb = std::atol(line.c_str() + 6);
    if (line.rfind("VmSize:", 0) == 0) s.vm_kb = std::atol(line.c_str() + 7);
  }
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  s.mappings = 0;
  while (std::getline(maps, line)) ++s.mappings;
  return s;
}

class Soak {
 public:
  explicit Soak(const Options& o) : o_(o) {}

  bool LoadStoreFile() {
    if (o_.store_file.empty()) return true;
    if (file_.loadFile(o_.store_file.c_str()).bad()) return false;
    file_.getDataset()->findAndGetOFString(DCM_SOPClassUID, sop_class_);
    file_.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, sop_instance_);
    return !sop_class_.empty() && !sop_instance_.empty();
  }

  void Run() {
    PrintSample(0);
    std::vector<std::thread> threads;
    for (int i = 0; i < o_.concurrency; ++i) threads.emplace_back([this] { Loop(); });
    for (auto& t : threads) t.join();
  }

  long failures() const { return failures_.load(); }

 private:
  void Loop() {
    T_ASC_Network* net = nullptr;
    if (ASC_initializeNetwork(NET_REQUESTOR, 0, 30, &net).bad()) {
      failures_ += 1;
      return;
    }
    // Each thread loads its own copy: DCMTK loads values lazily, so even
    // copying one shared DcmFileFormat races on its file.
    DcmFileFormat file;
    if (!o_.store_file.empty() && (file.loadFile(o_.store_file.c_str()).bad() || file.loadAllDataIntoMemory().bad())) {
      failures_ += 1;
      ASC_dropNetwork(&net);
      return;
    }
    for (;;) {
      long n = next_.fetch_add(1);
      if (n >= o_.total) break;
      bool store = o_.store_every > 0 && !o_.store_file.empty() && n % o_.store_every == 0;
      if (!OneAssociation(net, store ? file.getDataset() : nullptr)) failures_ += 1;
      long done = done_.fetch_add(1) + 1;
      if (o_.pid > 0 && (done % o_.sample_every == 0 || done == o_.total)) PrintSample(done);
    }
    ASC_dropNetwork(&net);
  }

  bool OneAssociation(T_ASC_Network* net, DcmDataset* store) {
    T_ASC_Parameters* params = nullptr;
    T_ASC_Association* assoc = nullptr;
    std::string peer = o_.host + ":" + o_.port;
    ASC_createAssociationParameters(&params, 16384);
    ASC_setAPTitles(params, o_.calling_ae.c_str(), o_.called_ae.c_str(), nullptr);
    ASC_setPresentationAddresses(params, "localhost", peer.c_str());
    const char* ts[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
    const char* abstract = store ? sop_class_.c_str() : UID_VerificationSOPClass;
    ASC_addPresentationContext(params, 1, abstract, ts, 2);
    OFCondition requested = ASC_requestAssociation(net, params, &assoc);
    if (requested.bad()) {
      Report("association request", requested);
      // ASC_requestAssociation hands params to assoc even when it fails.
      if (assoc) {
        ASC_dropAssociation(assoc);
        ASC_destroyAssociation(&assoc);
      } else {
        ASC_destroyAssociationParameters(&params);
      }
      return false;
    }
    bool ok = ASC_countAcceptedPresentationContexts(assoc->params) == 1;
    if (!ok) Report("presentation context", EC_IllegalCall);
    if (ok && store) {
      T_DIMSE_C_StoreRQ req;
      std::memset(&req, 0, sizeof req);
      req.MessageID = assoc->nextMsgID++;
      OFStandard::strlcpy(req.AffectedSOPClassUID, sop_class_.c_str(), sizeof req.AffectedSOPClassUID);
      OFStandard::strlcpy(req.AffectedSOPInstanceUID, sop_instance_.c_str(), sizeof req.AffectedSOPInstanceUID);
      req.DataSetType = DIMSE_DATASET_PRESENT;
      req.Priority = DIMSE_PRIORITY_MEDIUM;
      T_DIMSE_C_StoreRSP rsp;
      std::memset(&rsp, 0, sizeof rsp);
      DcmDataset* status_detail = nullptr;
      T_ASC_PresentationContextID pres_id = ASC_findAcceptedPresentationContextID(assoc, sop_class_.c_str());
      OFCondition cond = DIMSE_storeUser(assoc, pres_id, &req, nullptr, store, nullptr, nullptr, DIMSE_BLOCKING, 0,
                                         &rsp, &status_detail);
      ok = cond.good() && rsp.DimseStatus == 0;
      if (!ok) Report("C-STORE", cond, rsp.DimseStatus);
      delete status_detail;
    } else if (ok) {
      DIC_US status = 0;
      DcmDataset* status_detail = nullptr;
      OFCondition cond = DIMSE_echoUser(assoc, assoc->nextMsgID++, DIMSE_BLOCKING, 0, &status, &status_detail);
      ok = cond.good() && status == 0;
      if (!ok) Report("C-ECHO", cond, status);
      delete status_detail;
    }
    if (ok) {
      OFCondition released = ASC_releaseAssociation(assoc);
      ok = released.good();
      if (!ok) Report("release", released);
    } else {
      ASC_abortAssociation(assoc);
    }
    ASC_dropSCPAssociation(assoc);
    ASC_destroyAssociation(&assoc);
    return ok;
  }

  // The first few failures say what failed, so a red run can be read.
  void Report(const char* step, const OFCondition& cond, unsigned status = 0) {
    if (reported_.fetch_add(1) >= 10) return;
    std::lock_guard<std::mutex> lock(print_mu_);
    std::fprintf(stderr, "%s failed: %s (status 0x%04x)\n", step, cond.text(), status);
  }

  void PrintSample(long done) {
    if (o_.pid <= 0) return;
    std::lock_guard<std::mutex> lock(print_mu_);
    Sample s = ReadSample(o_.pid);
    std::printf("%ld %ld %ld %ld\n", done, s.rss_kb, s.vm_kb, s.mappings);
    std::fflush(stdout);
  }

  Options o_;
  DcmFileFormat file_;
  OFString sop_class_;
  OFString sop_instance_;
  std::mutex print_mu_;
  std::atomic<long> next_{0};
  std::atomic<long> done_{0};
  std::atomic<long> failures_{0};
  std::atomic<long> reported_{0};
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: %s HOST PORT CALLED_AE TOTAL CONCURRENCY [--aet AE] [--pid PID] [--sample-every N] "
                 "[--store FILE --store-every K]\n",
                 argv[0]);
    return 2;
  }
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  Options o;
  o.host = argv[1];
  o.port = argv[2];
  o.called_ae = argv[3];
  o.total = std::atol(argv[4]);
  o.concurrency = std::max(1, std::atoi(argv[5]));
  for (int i = 6; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--aet") {
      o.calling_ae = argv[i + 1];
    } else if (flag == "--pid") {
      o.pid = std::atol(argv[i + 1]);
    } else if (flag == "--sample-every") {
      o.sample_every = std::max(1L, std::atol(argv[i + 1]));
    } else if (flag == "--store") {
      o.store_file = argv[i + 1];
    } else if (flag == "--store-every") {
      o.store_every = std::atol(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  Soak soak(o);
  if (!soak.LoadStoreFile()) {
    std::fprintf(stderr, "cannot read %s\n", o.store_file.c_str());
    return 2;
  }
  soak.Run();
  if (soak.failures() > 0) {
    std::fprintf(stderr, "%ld of %ld associations failed\n", soak.failures(), o.total);
    return 1;
  }
  return 0;
}
