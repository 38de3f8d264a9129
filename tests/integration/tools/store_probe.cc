// A deliberately misbehaving C-STORE SCU for integration tests: it sends a
// file's dataset with an Affected SOP Instance UID of the caller's choosing,
// so the receiver's request/dataset consistency checks can be exercised.
//
//   store_probe HOST PORT CALLING_AE CALLED_AE FILE [AFFECTED_SOP_INSTANCE_UID]
//
// Prints the DIMSE status as four hex digits; exits 0 when a response came.
#include <cstdio>
#include <cstring>
#include <string>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/oflog/oflog.h"

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s HOST PORT CALLING_AE CALLED_AE FILE [AFFECTED_UID]\n", argv[0]);
    return 2;
  }
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  std::string peer = std::string(argv[1]) + ":" + argv[2];
  DcmFileFormat ff;
  if (ff.loadFile(argv[5]).bad()) {
    std::fprintf(stderr, "cannot read %s\n", argv[5]);
    return 2;
  }
  DcmDataset* ds = ff.getDataset();
  OFString sop_class, sop_instance;
  ds->findAndGetOFString(DCM_SOPClassUID, sop_class);
  ds->findAndGetOFString(DCM_SOPInstanceUID, sop_instance);
  std::string affected = argc > 6 ? argv[6] : sop_instance.c_str();

  T_ASC_Network* net = nullptr;
  T_ASC_Parameters* params = nullptr;
  T_ASC_Association* assoc = nullptr;
  if (ASC_initializeNetwork(NET_REQUESTOR, 0, 30, &net).bad()) return 3;
  ASC_createAssociationParameters(&params, 131072);
  ASC_setAPTitles(params, argv[3], argv[4], nullptr);
  ASC_setPresentationAddresses(params, "localhost", peer.c_str());
  const char* ts[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
  ASC_addPresentationContext(params, 1, sop_class.c_str(), ts, 2);
  if (ASC_requestAssociation(net, params, &assoc).bad() || ASC_countAcceptedPresentationContexts(params) == 0) {
    std::fprintf(stderr, "association failed\n");
    return 4;
  }
  T_ASC_PresentationContextID pres_id = ASC_findAcceptedPresentationContextID(assoc, sop_class.c_str());
  T_DIMSE_C_StoreRQ req;
  std::memset(&req, 0, sizeof req);
  req.MessageID = assoc->nextMsgID++;
  OFStandard::strlcpy(req.AffectedSOPClassUID, sop_class.c_str(), sizeof req.AffectedSOPClassUID);
  OFStandard::strlcpy(req.AffectedSOPInstanceUID, affected.c_str(), sizeof req.AffectedSOPInstanceUID);
  req.DataSetType = DIMSE_DATASET_PRESENT;
  req.Priority = DIMSE_PRIORITY_MEDIUM;
  T_DIMSE_C_StoreRSP rsp;
  std::memset(&rsp, 0, sizeof rsp);
  DcmDataset* detail = nullptr;
  OFCondition cond = DIMSE_storeUser(assoc, pres_id, &req, nullptr, ds, nullptr, nullptr, DIMSE_BLOCKING, 0, &rsp,
                                     &detail);
  delete detail;
  int rc = 0;
  if (cond.good()) {
    std::printf("%04X\n", rsp.DimseStatus);
    ASC_releaseAssociation(assoc);
  } else {
    std::fprintf(stderr, "C-STORE failed: %s\n", cond.text());
    ASC_abortAssociation(assoc);
    rc = 5;
  }
  ASC_destroyAssociation(&assoc);
  ASC_dropNetwork(&net);
  return rc;
}
