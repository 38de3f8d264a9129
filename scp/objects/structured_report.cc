// TID 1500 Measurement Report writer (Comprehensive 3D SR).
//
// Content tree:
//   CONTAINER Imaging Measurement Report [TID 1500]
//     HAS CONCEPT MOD  Language of Content = en-US
//     HAS OBS CONTEXT  Observer Type = Device, Device Observer UID/Name/
//                      Manufacturer/Model Name (TID 1002/1004)
//     HAS CONCEPT MOD  Procedure reported
//     CONTAINS Image Library > Image Library Group > IMAGE per source
//     CONTAINS Imaging Measurements
//       CONTAINS Measurement Group [TID 1501] per finding
//         HAS OBS CONTEXT Tracking Identifier, Tracking Unique Identifier
//         CONTAINS Finding = the finding's code
//         HAS CONCEPT MOD Algorithm Name, Version, Parameters (TID 4019)
//         CONTAINS NUM Probability (TID 300)
//           INFERRED FROM IMAGE source
//           INFERRED FROM SCOORD POINT Center > SELECTED FROM IMAGE source
//         CONTAINS CODE <finding> = Positive/Negative at the operating point
//         CONTAINS TEXT Qualitative Evaluations = score against threshold

#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "dcmtk/dcmsr/codes/umls.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "scp/objects/derived_uid.h"
#include "scp/objects/internals/result_common.h"
#include "scp/objects/internals/sr_content.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp {
namespace {

using internals::ContentBuilder;
using internals::FromCondition;

constexpr const char* kComprehensive3DSr = UID_Comprehensive3DSRStorage;

DSRCodedEntryValue Coded(const CodedConcept& code) {
  return DSRCodedEntryValue(code.value.c_str(), code.scheme.c_str(), code.meaning.c_str());
}

bool ValidCode(const CodedConcept& code) {
  return !code.scheme.empty() && !code.value.empty() && !code.meaning.empty() &&
         Coded(code).isValid();
}

// DS holds at most 16 characters; six significant digits are more than a
// model's probability carries.
std::string DecimalString(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", value);
  return buffer;
}

absl::Status Validate(const std::vector<SourceImage>& sources, const std::vector<Finding>& findings,
                      const AlgorithmInfo& algorithm) {
  if (sources.empty()) return absl::InvalidArgumentError("SR needs at least one source image");
  for (const SourceImage& source : sources) {
    if (source.sop_class_uid.empty() || source.sop_instance_uid.empty() || source.series_instance_uid.empty() ||
        DcmUniqueIdentifier::checkStringValue(source.sop_class_uid.c_str(), "1").bad() ||
        DcmUniqueIdentifier::checkStringValue(source.sop_instance_uid.c_str(), "1").bad()) {
      return absl::InvalidArgumentError("source image without valid SOP Class, SOP Instance or Series UID");
    }
  }
  if (algorithm.model_name.empty() || algorithm.model_version.empty()) {
    return absl::InvalidArgumentError("SR needs the model name and version");
  }
  for (const Finding& finding : findings) {
    if (finding.image_index >= sources.size()) {
      return absl::InvalidArgumentError("finding '" + finding.label + "' refers to a source that does not exist");
    }
    if (!ValidCode(finding.code)) {
      return absl::InvalidArgumentError("finding '" + finding.label + "' has no valid code");
    }
    if (!std::isfinite(finding.score) || !std::isfinite(finding.threshold)) {
      return absl::InvalidArgumentError("finding '" + finding.label + "' has a non-finite score or threshold");
    }
    if (finding.has_peak && (!std::isfinite(finding.peak_column) || !std::isfinite(finding.peak_row) ||
                             finding.peak_column < 0 || finding.peak_row < 0)) {
      return absl::InvalidArgumentError("finding '" + finding.label + "' has an invalid peak position");
    }
  }
  return absl::OkStatus();
}

// PS3.16 has no procedure code for "AI read"; the report describes the
// imaging the sources came from. Projection radiography is the common case
// and has its own code; anything else gets the generic one.
DSRCodedEntryValue ProcedureReported(const std::string& modality) {
  if (modality == "CR" || modality == "DX") return DSRCodedEntryValue("168537006", "SCT", "Plain radiography");
  return DSRCodedEntryValue("363679005", "SCT", "Imaging procedure");
}

absl::Status AddMeasurementGroup(ContentBuilder& b, const Finding& finding, size_t index,
                                 const SourceImage& source, const AlgorithmInfo& algorithm,
                                 const ResultIdentity& identity) {
  using T = DSRTypes;
  const DSRCodedEntryValue group = CODE_DCM_MeasurementGroup;
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Container, &group, [](DSRContentItem& item) {
    return item.setTemplateIdentification("1501", "DCMR");
  }));

  // Tracking: the label for people, a UID that stays the same when the same
  // result is written again so that later reports can refer to it.
  const std::string tracking_id = finding.label.empty() ? "finding " + std::to_string(index + 1) : finding.label;
  RETURN_IF_ERROR(b.Text(T::RT_hasObsContext, CODE_DCM_TrackingIdentifier, tracking_id));
  const std::string tracking_uid =
      DerivedUid({identity.sop_instance_uid, "finding", std::to_string(index), finding.label, source.sop_instance_uid});
  RETURN_IF_ERROR(b.UidRef(T::RT_hasObsContext, CODE_DCM_TrackingUniqueIdentifier, tracking_uid));

  RETURN_IF_ERROR(b.Code(T::RT_contains, CODE_DCM_Finding, Coded(finding.code)));

  // TID 4019, included by TID 1501 as concept modifiers of the group.
  RETURN_IF_ERROR(b.Text(T::RT_hasConceptMod, CODE_DCM_AlgorithmName, algorithm.model_name));
  RETURN_IF_ERROR(b.Text(T::RT_hasConceptMod, CODE_DCM_AlgorithmVersion, algorithm.model_version));
  RETURN_IF_ERROR(b.Text(T::RT_hasConceptMod, CODE_DCM_AlgorithmParameters, algorithm.parameters));

  // The score as a TID 300 measurement. "Probability" (DCM 122157) is the
  // generic PS3.16 concept; "Probability of cancer" (DCM 111047) would claim
  // malignancy for findings that are not tumours. What the probability is of
  // is stated by the group's Finding. A probability is a ratio: UCUM "1".
  const DSRCodedEntryValue probability = CODE_DCM_Probability;
  const std::string score = DecimalString(finding.score);
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Num, &probability, [&score](DSRContentItem& item) {
    return item.setNumericValue(DSRNumericMeasurementValue(score.c_str(), DSRCodedEntryValue("1", "UCUM", "no units")));
  }));
  RETURN_IF_ERROR(b.Image(T::RT_inferredFrom, nullptr, source));
  if (finding.has_peak) {
    // The heatmap maximum: where on the source the model saw the finding.
    const DSRCodedEntryValue center = CODE_DCM_Center;
    RETURN_IF_ERROR(b.Open(T::RT_inferredFrom, T::VT_SCoord, &center, [&finding](DSRContentItem& item) {
      DSRSpatialCoordinatesValue point(DSRTypes::GT_Point);
      point.getGraphicDataList().addItem(static_cast<Float32>(finding.peak_column),
                                         static_cast<Float32>(finding.peak_row));
      return item.setSpatialCoordinates(point);
    }));
    RETURN_IF_ERROR(b.Image(T::RT_selectedFrom, nullptr, source));
    RETURN_IF_ERROR(b.Close());
  }
  RETURN_IF_ERROR(b.Close());

  // Qualitative evaluation (TID 1501 row 11): the finding's own concept,
  // valued Positive or Negative, i.e. the model's call at its operating
  // point. The text row states the numbers behind the call, since PS3.16 has
  // no generic concept for a classifier threshold.
  const DSRCodedEntryValue call = finding.above_threshold
                                      ? DSRCodedEntryValue("10828004", "SCT", "Positive")
                                      : DSRCodedEntryValue("260385009", "SCT", "Negative");
  RETURN_IF_ERROR(b.Code(T::RT_contains, Coded(finding.code), call));
  RETURN_IF_ERROR(b.Text(T::RT_contains, CODE_UMLS_QualitativeEvaluations,
                         "AI score " + score + (finding.above_threshold ? " at or above" : " below") +
                             " operating point " + DecimalString(finding.threshold) +
                             "; unverified algorithm output, not a diagnosis"));
  return b.Close();
}

absl::Status BuildTree(DSRDocumentTree& tree, const std::vector<SourceImage>& sources,
                       const std::vector<Finding>& findings, const AlgorithmInfo& algorithm,
                       const ResultIdentity& identity, const std::string& source_modality) {
  using T = DSRTypes;
  ContentBuilder b(tree);
  RETURN_IF_ERROR(OpenImagingMeasurementReport(b, algorithm));

  RETURN_IF_ERROR(b.Code(T::RT_hasConceptMod, CODE_DCM_ProcedureReported, ProcedureReported(source_modality)));

  const DSRCodedEntryValue library = CODE_DCM_ImageLibrary;
  const DSRCodedEntryValue library_group = CODE_DCM_ImageLibraryGroup;
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Container, &library));
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Container, &library_group));
  std::set<std::pair<std::string, uint32_t>> listed;
  for (const SourceImage& source : sources) {
    if (!listed.insert({source.sop_instance_uid, source.frame}).second) continue;
    RETURN_IF_ERROR(b.Image(T::RT_contains, nullptr, source));
  }
  RETURN_IF_ERROR(b.Close());
  RETURN_IF_ERROR(b.Close());

  const DSRCodedEntryValue measurements = CODE_DCM_ImagingMeasurements;
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Container, &measurements));
  for (size_t i = 0; i < findings.size(); ++i) {
    RETURN_IF_ERROR(
        AddMeasurementGroup(b, findings[i], i, sources[findings[i].image_index], algorithm, identity));
  }
  RETURN_IF_ERROR(b.Close());
  if (!tree.isValid()) return absl::InternalError("SR: content tree is not valid for Comprehensive 3D SR");
  return absl::OkStatus();
}

// Type 2 sequences of the SR Document General module; DCMTK writes them only
// when it has content for them.
absl::Status EnsureEmptySequence(DcmItem& dataset, const DcmTagKey& tag) {
  if (dataset.tagExists(tag)) return absl::OkStatus();
  return FromCondition(dataset.insertEmptyElement(tag), "SR: empty type 2 sequence");
}

absl::StatusOr<BuiltObject> Build(const std::vector<SourceImage>& sources, const std::vector<Finding>& findings,
                                  const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                  const ContentTime& when) {
  RETURN_IF_ERROR(Validate(sources, findings, algorithm));
  ASSIGN_OR_RETURN(std::unique_ptr<DcmFileFormat> source_file,
                   internals::LoadSource(sources[0].path, /*with_pixel_data=*/false));
  DcmDataset& source = *source_file->getDataset();
  OFString study_uid;
  OFString source_modality;
  source.findAndGetOFString(DCM_StudyInstanceUID, study_uid);
  source.findAndGetOFString(DCM_Modality, source_modality);
  if (study_uid.empty()) return absl::InvalidArgumentError("source instance has no Study Instance UID");

  DSRDocument document(DSRTypes::DT_Comprehensive3DSR);
  RETURN_IF_ERROR(BuildTree(document.getTree(), sources, findings, algorithm, identity, source_modality.c_str()));

  // COMPLETE: the document holds everything the algorithm produced for these
  // sources and nothing will be appended to it; a re-run over the same
  // sources writes a replacement under the same UID, and a re-run over more
  // sources a new document that names this one as its predecessor. That it
  // has not been reviewed is what the Verification Flag (UNVERIFIED, never
  // set otherwise here) says.
  RETURN_IF_ERROR(FromCondition(document.completeDocument(), "SR: completion flag"));
  for (const ObjectReference& earlier : identity.predecessors) {
    if (earlier.sop_instance_uid == identity.sop_instance_uid) continue;  // a replacement, not a successor
    RETURN_IF_ERROR(FromCondition(document.getPredecessorDocuments().addItem(
                                      earlier.study_instance_uid, earlier.series_instance_uid,
                                      earlier.sop_class_uid, earlier.sop_instance_uid),
                                  "SR: Predecessor Documents Sequence"));
  }

  // Every source is evidence for this report. The node reads one study per
  // job, so all sources belong to the study of sources[0].
  for (const SourceImage& image : sources) {
    RETURN_IF_ERROR(FromCondition(document.getCurrentRequestedProcedureEvidence().addItem(
                                      study_uid, image.series_instance_uid.c_str(), image.sop_class_uid.c_str(),
                                      image.sop_instance_uid.c_str()),
                                  "SR: Current Requested Procedure Evidence"));
  }

  DcmFileFormat file;
  DcmDataset& dataset = *file.getDataset();
  RETURN_IF_ERROR(FromCondition(document.write(dataset), "SR: writing document"));
  RETURN_IF_ERROR(internals::CopyPatientAndStudy(source, dataset));
  const std::string series_description = internals::ResultSeriesDescription(algorithm.model_name);
  RETURN_IF_ERROR(internals::AddResultCommon(dataset, algorithm, identity, when, kComprehensive3DSr, "SR",
                                             series_description));
  RETURN_IF_ERROR(EnsureEmptySequence(dataset, DCM_ReferencedPerformedProcedureStepSequence));
  RETURN_IF_ERROR(EnsureEmptySequence(dataset, DCM_PerformedProcedureCodeSequence));

  BuiltObject built;
  built.sop_class_uid = kComprehensive3DSr;
  built.sop_instance_uid = identity.sop_instance_uid;
  built.series_instance_uid = identity.series_instance_uid;
  ASSIGN_OR_RETURN(built.part10, internals::SerializePart10(file));
  return built;
}

}  // namespace

absl::StatusOr<BuiltObject> BuildStructuredReport(const std::vector<SourceImage>& sources,
                                                  const std::vector<Finding>& findings,
                                                  const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                                  const ContentTime& when) {
  // DCMTK and the standard library may throw (allocation, OFString); nothing
  // escapes the module boundary.
  try {
    return Build(sources, findings, algorithm, identity, when);
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("SR: ") + e.what());
  } catch (...) {
    return absl::InternalError("SR: unexpected exception");
  }
}

}  // namespace secondread::scp
