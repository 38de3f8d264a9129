// TID 1500 Measurement Report of volumetric lesions (Comprehensive 3D SR).
//
// Content tree:
//   CONTAINER Imaging Measurement Report [TID 1500]
//     HAS CONCEPT MOD  Language of Content = en-US
//     HAS OBS CONTEXT  Observer Type = Device, Device Observer UID/Name/
//                      Manufacturer/Model Name (TID 1002/1004)
//     HAS CONCEPT MOD  Procedure reported
//     CONTAINS Image Library > Image Library Group > IMAGE per source frame
//     CONTAINS Imaging Measurements
//       CONTAINS Measurement Group [TID 1411] per lesion
//         HAS OBS CONTEXT Tracking Identifier, Tracking Unique Identifier
//         CONTAINS IMAGE  Referenced Segment (SEG, segment number)
//         CONTAINS UIDREF Source series for segmentation
//         CONTAINS CODE   Finding = the segment's type
//         HAS CONCEPT MOD Algorithm Name, Version, Parameters (TID 4019)
//         CONTAINS NUM    Volume (mm3)
//         CONTAINS NUM    Attenuation Coefficient | SUVbw, Derivation Mean
//         CONTAINS NUM    Attenuation Coefficient | SUVbw, Derivation Maximum
//         CONTAINS NUM    Probability (1)
//         CONTAINS SCOORD3D Center = POINT, source Frame of Reference
//         CONTAINS TEXT   Qualitative Evaluations = key slice, resampling if
//                         any, unverified, not a diagnosis

#include <cmath>
#include <cstdio>
#include <map>
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
#include "scp/objects/volumetric_results.h"

namespace secondread::scp {
namespace {

using internals::ContentBuilder;
using internals::FromCondition;
using T = DSRTypes;

DSRCodedEntryValue Coded(const CodedConcept& code) {
  return DSRCodedEntryValue(code.value.c_str(), code.scheme.c_str(), code.meaning.c_str());
}

// DS holds at most 16 characters.
std::string DecimalString(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", value);
  return buffer;
}

// The quantity a mean or maximum is of, and its UCUM unit. HU and SUVbw as
// PS3.16 CID 7180/CID 85 and QIBA's and dcmqi's reports write them; DCMTK
// 3.6.7's CID 7181 table still spells SUVbw "g/ml{SUVbw}", the form PS3.16
// used before the unit annotation moved to the front.
struct Quantity {
  DSRCodedEntryValue concept_name;
  DSRCodedEntryValue unit;
};

Quantity QuantityOf(const std::string& units) {
  if (units == "SUVbw") {
    return {CODE_DCM_SUVbw, DSRCodedEntryValue("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")};
  }
  return {CODE_DCM_AttenuationCoefficient, DSRCodedEntryValue("[hnsf'U]", "UCUM", "Hounsfield unit")};
}

absl::Status Num(ContentBuilder& b, const DSRCodedEntryValue& name, double value, const DSRCodedEntryValue& unit,
                 const DSRCodedEntryValue* derivation) {
  const std::string text = DecimalString(value);
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Num, &name, [&](DSRContentItem& item) {
    return item.setNumericValue(DSRNumericMeasurementValue(text.c_str(), unit));
  }));
  if (derivation != nullptr) {
    RETURN_IF_ERROR(b.Code(T::RT_hasConceptMod, CODE_DCM_Derivation, *derivation));
  }
  return b.Close();
}

// A radiologist reading the numbers must know they come from a resampled
// grid, not from the slices on screen.
std::string ResampledNote(const Volume& volume) {
  if (!(volume.resampled_spacing_mm > 0)) return "";
  char spacing[32];
  std::snprintf(spacing, sizeof spacing, "%.4g", volume.resampled_spacing_mm);
  return std::string("; the series' slices are unevenly spaced: the model read it, and these measurements were ") +
         "made, resampled to uniform " + spacing + " mm slices";
}

absl::Status AddLesionGroup(ContentBuilder& b, const LesionMeasurement& lesion, const Volume& volume,
                            const SegmentationReference& seg, const std::string& source_series,
                            const std::string& frame_of_reference, const AlgorithmInfo& algorithm,
                            const ResultIdentity& identity) {
  const SegmentDefinition& segment = seg.segments[lesion.segment_number - 1];
  const DSRCodedEntryValue group = CODE_DCM_MeasurementGroup;
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Container, &group, [](DSRContentItem& item) {
    return item.setTemplateIdentification("1411", "DCMR");
  }));
  // The segment's label and the lesion's number within it, for people; a
  // UID that stays the same when the same read is written again, for later
  // reports that track the lesion.
  const std::string tracking_id = segment.label + " " + std::to_string(lesion.lesion_number);
  RETURN_IF_ERROR(b.Text(T::RT_hasObsContext, CODE_DCM_TrackingIdentifier, tracking_id));
  RETURN_IF_ERROR(b.UidRef(T::RT_hasObsContext, CODE_DCM_TrackingUniqueIdentifier,
                           DerivedUid({identity.sop_instance_uid, "lesion", std::to_string(lesion.segment_number),
                                       std::to_string(lesion.lesion_number)})));

  const DSRCodedEntryValue referenced_segment = CODE_DCM_ReferencedSegment;
  RETURN_IF_ERROR(b.Leaf(T::RT_contains, T::VT_Image, &referenced_segment, [&](DSRContentItem& item) {
    DSRImageReferenceValue reference(seg.sop_class_uid.c_str(), seg.sop_instance_uid.c_str());
    reference.getSegmentList().addItem(lesion.segment_number);
    return item.setImageReference(reference);
  }));
  RETURN_IF_ERROR(b.UidRef(T::RT_contains, CODE_DCM_SourceSeriesForSegmentation, source_series));
  RETURN_IF_ERROR(b.Code(T::RT_contains, CODE_DCM_Finding, Coded(segment.type)));

  RETURN_IF_ERROR(b.Text(T::RT_hasConceptMod, CODE_DCM_AlgorithmName, algorithm.model_name));
  RETURN_IF_ERROR(b.Text(T::RT_hasConceptMod, CODE_DCM_AlgorithmVersion, algorithm.model_version));
  RETURN_IF_ERROR(b.Text(T::RT_hasConceptMod, CODE_DCM_AlgorithmParameters, algorithm.parameters));

  RETURN_IF_ERROR(Num(b, DSRCodedEntryValue("118565006", "SCT", "Volume"), lesion.volume_mm3,
                      DSRCodedEntryValue("mm3", "UCUM", "cubic millimeter"), nullptr));
  if (lesion.has_values) {
    const Quantity quantity = QuantityOf(lesion.units);
    const DSRCodedEntryValue mean("373098007", "SCT", "Mean");
    const DSRCodedEntryValue maximum("56851009", "SCT", "Maximum");
    RETURN_IF_ERROR(Num(b, quantity.concept_name, lesion.mean, quantity.unit, &mean));
    RETURN_IF_ERROR(Num(b, quantity.concept_name, lesion.maximum, quantity.unit, &maximum));
  }
  if (lesion.has_probability) {
    RETURN_IF_ERROR(Num(b, CODE_DCM_Probability, lesion.probability, DSRCodedEntryValue("1", "UCUM", "no units"),
                        nullptr));
  }
  const DSRCodedEntryValue center = CODE_DCM_Center;
  RETURN_IF_ERROR(b.Leaf(T::RT_contains, T::VT_SCoord3D, &center, [&](DSRContentItem& item) {
    DSRSpatialCoordinates3DValue point(T::GT3_Point);
    point.getGraphicDataList().addItem(static_cast<Float32>(lesion.centroid_mm[0]),
                                       static_cast<Float32>(lesion.centroid_mm[1]),
                                       static_cast<Float32>(lesion.centroid_mm[2]));
    const OFCondition set = point.setFrameOfReferenceUID(frame_of_reference.c_str());
    if (set.bad()) return set;
    return item.setSpatialCoordinates3D(point);
  }));
  RETURN_IF_ERROR(b.Text(T::RT_contains, CODE_UMLS_QualitativeEvaluations,
                         "Key slice " + std::to_string(lesion.key_slice + 1) + " of " +
                             std::to_string(volume.depth) + ResampledNote(volume) +
                             "; unverified algorithm output, not a diagnosis"));
  return b.Close();
}

absl::Status Validate(const Volume& volume, const std::vector<SourceImage>& series,
                      const std::vector<LesionMeasurement>& lesions, const SegmentationReference& seg,
                      const AlgorithmInfo& algorithm) {
  if (series.empty()) return absl::InvalidArgumentError("SR needs the source series");
  if (algorithm.model_name.empty() || algorithm.model_version.empty()) {
    return absl::InvalidArgumentError("SR needs the model name and version");
  }
  if (seg.sop_class_uid.empty() || seg.sop_instance_uid.empty() || seg.series_instance_uid.empty() ||
      DcmUniqueIdentifier::checkStringValue(seg.sop_instance_uid.c_str(), "1").bad()) {
    return absl::InvalidArgumentError("SR needs the Segmentation's SOP Class, Instance and Series UIDs");
  }
  for (const SegmentDefinition& segment : seg.segments) {
    if (segment.type.scheme.empty() || segment.type.value.empty() || segment.type.meaning.empty() ||
        segment.label.empty()) {
      return absl::InvalidArgumentError("segment without a label or a valid type code");
    }
  }
  std::set<std::string> in_series;
  for (const SourceImage& image : series) in_series.insert(image.sop_instance_uid);
  for (const SliceSource& source : volume.sources) {
    if (!in_series.count(source.sop_instance_uid)) {
      return absl::InvalidArgumentError("a slice of the volume comes from an instance not in the series");
    }
  }
  for (const LesionMeasurement& lesion : lesions) {
    if (lesion.segment_number == 0 || lesion.segment_number > seg.segments.size()) {
      return absl::InvalidArgumentError("lesion of segment " + std::to_string(lesion.segment_number) +
                                        ", which the Segmentation does not have");
    }
    if (!std::isfinite(lesion.volume_mm3) || !std::isfinite(lesion.mean) || !std::isfinite(lesion.maximum) ||
        !std::isfinite(lesion.probability) || !std::isfinite(lesion.centroid_mm[0]) ||
        !std::isfinite(lesion.centroid_mm[1]) || !std::isfinite(lesion.centroid_mm[2])) {
      return absl::InvalidArgumentError("lesion with a non-finite measurement");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<BuiltObject> Build(const Volume& volume, const std::vector<SourceImage>& series,
                                  const std::vector<LesionMeasurement>& lesions, const SegmentationReference& seg,
                                  const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                  const ContentTime& when) {
  RETURN_IF_ERROR(Validate(volume, series, lesions, seg, algorithm));
  ASSIGN_OR_RETURN(std::unique_ptr<DcmFileFormat> source_file,
                   internals::LoadSource(series[0].path, /*with_pixel_data=*/false));
  DcmDataset& source = *source_file->getDataset();
  OFString study_uid, frame_of_reference;
  source.findAndGetOFString(DCM_StudyInstanceUID, study_uid);
  source.findAndGetOFString(DCM_FrameOfReferenceUID, frame_of_reference);
  if (study_uid.empty()) return absl::InvalidArgumentError("source instance has no Study Instance UID");
  if (frame_of_reference.empty()) {
    return absl::InvalidArgumentError("source series has no Frame of Reference; a lesion centre has no place");
  }

  DSRDocument document(DSRTypes::DT_Comprehensive3DSR);
  DSRDocumentTree& tree = document.getTree();
  ContentBuilder b(tree);
  RETURN_IF_ERROR(OpenImagingMeasurementReport(b, algorithm));
  RETURN_IF_ERROR(b.Code(T::RT_hasConceptMod, CODE_DCM_ProcedureReported,
                         DSRCodedEntryValue("363679005", "SCT", "Imaging procedure")));

  // The library lists the slices the volume was read from, in volume order.
  std::map<std::string, const SourceImage*> by_uid;
  for (const SourceImage& image : series) by_uid.emplace(image.sop_instance_uid, &image);
  const DSRCodedEntryValue library = CODE_DCM_ImageLibrary;
  const DSRCodedEntryValue library_group = CODE_DCM_ImageLibraryGroup;
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Container, &library));
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Container, &library_group));
  std::set<std::pair<std::string, uint32_t>> listed;
  for (const SliceSource& slice : volume.sources) {
    if (!listed.insert({slice.sop_instance_uid, slice.frame_number}).second) continue;
    SourceImage image = *by_uid.at(slice.sop_instance_uid);
    image.frame = slice.frame_number;
    RETURN_IF_ERROR(b.Image(T::RT_contains, nullptr, image));
  }
  RETURN_IF_ERROR(b.Close());
  RETURN_IF_ERROR(b.Close());

  const DSRCodedEntryValue measurements = CODE_DCM_ImagingMeasurements;
  RETURN_IF_ERROR(b.Open(T::RT_contains, T::VT_Container, &measurements));
  for (const LesionMeasurement& lesion : lesions) {
    RETURN_IF_ERROR(AddLesionGroup(b, lesion, volume, seg, series[0].series_instance_uid, frame_of_reference.c_str(),
                                   algorithm, identity));
  }
  RETURN_IF_ERROR(b.Close());
  if (!tree.isValid()) return absl::InternalError("SR: content tree is not valid for Comprehensive 3D SR");

  // COMPLETE and UNVERIFIED, as the 2D report (structured_report.cc).
  RETURN_IF_ERROR(FromCondition(document.completeDocument(), "SR: completion flag"));
  for (const ObjectReference& earlier : identity.predecessors) {
    if (earlier.sop_instance_uid == identity.sop_instance_uid) continue;
    RETURN_IF_ERROR(FromCondition(document.getPredecessorDocuments().addItem(
                                      earlier.study_instance_uid, earlier.series_instance_uid,
                                      earlier.sop_class_uid, earlier.sop_instance_uid),
                                  "SR: Predecessor Documents Sequence"));
  }
  // Evidence: the source slices and the SEG whose segments the groups reference.
  std::set<std::string> evidence;
  for (const SliceSource& slice : volume.sources) {
    if (!evidence.insert(slice.sop_instance_uid).second) continue;
    const SourceImage& image = *by_uid.at(slice.sop_instance_uid);
    RETURN_IF_ERROR(FromCondition(document.getCurrentRequestedProcedureEvidence().addItem(
                                      study_uid, image.series_instance_uid.c_str(), image.sop_class_uid.c_str(),
                                      image.sop_instance_uid.c_str()),
                                  "SR: Current Requested Procedure Evidence"));
  }
  if (!lesions.empty()) {
    RETURN_IF_ERROR(FromCondition(document.getPertinentOtherEvidence().addItem(
                                      study_uid, seg.series_instance_uid.c_str(),
                                      seg.sop_class_uid.c_str(), seg.sop_instance_uid.c_str()),
                                  "SR: Pertinent Other Evidence"));
  }

  DcmFileFormat file;
  DcmDataset& dataset = *file.getDataset();
  RETURN_IF_ERROR(FromCondition(document.write(dataset), "SR: writing document"));
  RETURN_IF_ERROR(internals::CopyPatientAndStudy(source, dataset));
  RETURN_IF_ERROR(internals::AddResultCommon(dataset, algorithm, identity, when, UID_Comprehensive3DSRStorage, "SR",
                                             internals::ResultSeriesDescription(algorithm.model_name)));
  for (const DcmTagKey& tag : {DCM_ReferencedPerformedProcedureStepSequence, DCM_PerformedProcedureCodeSequence}) {
    if (!dataset.tagExists(tag)) {
      RETURN_IF_ERROR(FromCondition(dataset.insertEmptyElement(tag), "SR: empty type 2 sequence"));
    }
  }

  BuiltObject built;
  built.sop_class_uid = UID_Comprehensive3DSRStorage;
  built.sop_instance_uid = identity.sop_instance_uid;
  built.series_instance_uid = identity.series_instance_uid;
  ASSIGN_OR_RETURN(built.part10, internals::SerializePart10(file));
  return built;
}

}  // namespace

absl::StatusOr<BuiltObject> BuildVolumetricReport(const Volume& volume, const std::vector<SourceImage>& series,
                                                  const std::vector<LesionMeasurement>& lesions,
                                                  const SegmentationReference& segmentation,
                                                  const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                                                  const ContentTime& when) {
  try {
    return Build(volume, series, lesions, segmentation, algorithm, identity, when);
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("SR: ") + e.what());
  } catch (...) {
    return absl::InternalError("SR: unexpected exception");
  }
}

}  // namespace secondread::scp
