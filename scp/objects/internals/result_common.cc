#include "scp/objects/internals/result_common.h"

#include <cctype>

#include <vector>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "dcmtk/ofstd/ofstd.h"

namespace secondread::scp::internals {
namespace {

struct CopiedTag {
  DcmTagKey tag;
  bool type2;  // written empty when the source lacks it
};

// Specific Character Set first: the copied text values are encoded in it.
const CopiedTag kCopiedTags[] = {
    {DCM_SpecificCharacterSet, false},
    // Patient
    {DCM_PatientName, true},
    {DCM_PatientID, true},
    {DCM_IssuerOfPatientID, false},
    {DCM_IssuerOfPatientIDQualifiersSequence, false},
    {DCM_TypeOfPatientID, false},
    {DCM_PatientBirthDate, true},
    {DCM_PatientBirthTime, false},
    {DCM_PatientSex, true},
    {DCM_OtherPatientIDsSequence, false},
    {DCM_OtherPatientNames, false},
    {DCM_EthnicGroup, false},
    {DCM_PatientComments, false},
    {DCM_PatientSpeciesDescription, false},
    {DCM_PatientSpeciesCodeSequence, false},
    {DCM_PatientBreedDescription, false},
    {DCM_PatientBreedCodeSequence, false},
    {DCM_BreedRegistrationSequence, false},
    {DCM_ResponsiblePerson, false},
    {DCM_ResponsiblePersonRole, false},
    {DCM_ResponsibleOrganization, false},
    {DCM_PatientIdentityRemoved, false},
    {DCM_DeidentificationMethod, false},
    {DCM_DeidentificationMethodCodeSequence, false},
    {DCM_QualityControlSubject, false},
    // General Study
    {DCM_StudyInstanceUID, false},
    {DCM_StudyDate, true},
    {DCM_StudyTime, true},
    {DCM_ReferringPhysicianName, true},
    {DCM_ReferringPhysicianIdentificationSequence, false},
    {DCM_ConsultingPhysicianName, false},
    {DCM_ConsultingPhysicianIdentificationSequence, false},
    {DCM_StudyID, true},
    {DCM_AccessionNumber, true},
    {DCM_IssuerOfAccessionNumberSequence, false},
    {DCM_StudyDescription, false},
    {DCM_PhysiciansOfRecord, false},
    {DCM_PhysiciansOfRecordIdentificationSequence, false},
    {DCM_NameOfPhysiciansReadingStudy, false},
    {DCM_PhysiciansReadingStudyIdentificationSequence, false},
    {DCM_RequestingServiceCodeSequence, false},
    {DCM_ReferencedStudySequence, false},
    {DCM_ProcedureCodeSequence, false},
    {DCM_ReasonForPerformedProcedureCodeSequence, false},
    // Patient Study
    {DCM_AdmittingDiagnosesDescription, false},
    {DCM_AdmittingDiagnosesCodeSequence, false},
    {DCM_PatientAge, false},
    {DCM_PatientSize, false},
    {DCM_PatientWeight, false},
    {DCM_PatientBodyMassIndex, false},
    {DCM_MeasuredAPDimension, false},
    {DCM_MeasuredLateralDimension, false},
    {DCM_Occupation, false},
    {DCM_AdditionalPatientHistory, false},
    {DCM_AdmissionID, false},
    {DCM_IssuerOfAdmissionIDSequence, false},
    {DCM_ServiceEpisodeID, false},
    {DCM_IssuerOfServiceEpisodeIDSequence, false},
    {DCM_ServiceEpisodeDescription, false},
    {DCM_PatientSexNeutered, false},
    {DCM_SmokingStatus, false},
    {DCM_PregnancyStatus, false},
    {DCM_LastMenstrualDate, false},
    {DCM_PatientState, false},
};

bool AllDigits(const std::string& s) {
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

absl::Status Put(DcmItem& target, const DcmTagKey& tag, const std::string& value) {
  return FromCondition(target.putAndInsertOFStringArray(tag, value.c_str()),
                       std::string("writing ") + DcmTag(tag).getTagName());
}

absl::Status FromCondition(const OFCondition& cond, std::string_view what) {
  if (cond.good()) return absl::OkStatus();
  return absl::InternalError(std::string(what) + ": " + cond.text());
}

absl::StatusOr<std::unique_ptr<DcmFileFormat>> LoadSource(const std::string& path, bool with_pixel_data) {
  if (path.empty() || !OFStandard::fileExists(path.c_str())) {
    return absl::NotFoundError("source instance not found");
  }
  auto file = std::make_unique<DcmFileFormat>();
  // Without pixel data, values over 4 KiB stay on disk and are read only if
  // touched; that skips the frames without truncating the dataset.
  OFCondition cond = file->loadFile(path.c_str(), EXS_Unknown, EGL_noChange,
                                    with_pixel_data ? DCM_MaxReadLength : 4096, ERM_autoDetect);
  if (cond.bad()) return absl::InvalidArgumentError("source is not a DICOM file: " + std::string(cond.text()));
  return file;
}

absl::Status CopyPatientAndStudy(DcmItem& source, DcmItem& target) {
  OFString study_uid;
  if (source.findAndGetOFString(DCM_StudyInstanceUID, study_uid).bad() || study_uid.empty()) {
    return absl::InvalidArgumentError("source instance has no Study Instance UID");
  }
  for (const CopiedTag& entry : kCopiedTags) {
    DcmElement* element = nullptr;
    if (source.findAndGetElement(entry.tag, element).good() && element != nullptr) {
      DcmElement* copy = OFstatic_cast(DcmElement*, element->clone());
      OFCondition cond = target.insert(copy, /*replaceOld=*/true);
      if (cond.bad()) {
        delete copy;
        return FromCondition(cond, std::string("copying ") + DcmTag(entry.tag).getTagName());
      }
    } else if (entry.type2) {
      RETURN_IF_ERROR(FromCondition(target.insertEmptyElement(entry.tag, /*replaceOld=*/true),
                                    std::string("writing empty ") + DcmTag(entry.tag).getTagName()));
    } else if (entry.tag == DCM_SpecificCharacterSet) {
      // The source's text is in the default repertoire then; a character set
      // left over in the target would misdeclare it.
      delete target.remove(entry.tag);
    }
  }
  return absl::OkStatus();
}

absl::Status AddResultCommon(DcmItem& target, const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                             const ContentTime& when, const std::string& sop_class_uid,
                             const std::string& modality, const std::string& series_description) {
  if (sop_class_uid.empty() || identity.sop_instance_uid.empty() || identity.series_instance_uid.empty()) {
    return absl::InvalidArgumentError("result needs SOP Class, SOP Instance and Series Instance UIDs");
  }
  if (modality.empty()) return absl::InvalidArgumentError("result needs a modality");
  if (when.date.size() != 8 || !AllDigits(when.date) || when.time.size() < 4 || !AllDigits(when.time)) {
    return absl::InvalidArgumentError("content time must be YYYYMMDD and HHMMSS");
  }
  const std::string manufacturer = algorithm.manufacturer.empty() ? "secondread" : algorithm.manufacturer;

  // SOP Common
  RETURN_IF_ERROR(Put(target, DCM_SOPClassUID, sop_class_uid));
  RETURN_IF_ERROR(Put(target, DCM_SOPInstanceUID, identity.sop_instance_uid));
  RETURN_IF_ERROR(Put(target, DCM_InstanceCreationDate, when.date));
  RETURN_IF_ERROR(Put(target, DCM_InstanceCreationTime, when.time));
  RETURN_IF_ERROR(Put(target, DCM_InstanceNumber, std::to_string(identity.instance_number)));

  // General Series
  RETURN_IF_ERROR(Put(target, DCM_Modality, modality));
  RETURN_IF_ERROR(Put(target, DCM_SeriesInstanceUID, identity.series_instance_uid));
  RETURN_IF_ERROR(Put(target, DCM_SeriesNumber, std::to_string(identity.series_number)));
  if (!series_description.empty()) {
    RETURN_IF_ERROR(Put(target, DCM_SeriesDescription, TruncateValue(series_description, 64)));
  }

  // General Equipment. Model name and version are what a reader needs to know
  // which algorithm produced the object; the node's version is the software.
  RETURN_IF_ERROR(Put(target, DCM_Manufacturer, TruncateValue(manufacturer, 64)));
  if (!algorithm.model_name.empty()) {
    RETURN_IF_ERROR(Put(target, DCM_ManufacturerModelName, TruncateValue(algorithm.model_name, 64)));
  }
  if (!algorithm.software_version.empty()) {
    RETURN_IF_ERROR(Put(target, DCM_SoftwareVersions, TruncateValue(algorithm.software_version, 64)));
  }

  RETURN_IF_ERROR(Put(target, DCM_ContentDate, when.date));
  RETURN_IF_ERROR(Put(target, DCM_ContentTime, when.time));

  // Contributing Equipment: marks the object as made by a processing
  // algorithm (IHE AIR), naming the model and its version separately from the
  // node that hosts it.
  delete target.remove(DCM_ContributingEquipmentSequence);
  DcmItem* equipment = nullptr;
  RETURN_IF_ERROR(FromCondition(target.findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, equipment, 0),
                                "creating Contributing Equipment Sequence"));
  DcmItem* purpose = nullptr;
  RETURN_IF_ERROR(FromCondition(equipment->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0),
                                "creating Purpose of Reference Code Sequence"));
  // CID 7005: the node processed the source instances into new ones
  // (109102), which is what an AI result is. 109103 would claim the node
  // modified the sources themselves. DCMTK's table supplies the triple so the
  // meaning cannot drift from the value.
  const DSRBasicCodedEntry processing = CODE_DCM_ProcessingEquipment;
  RETURN_IF_ERROR(Put(*purpose, DCM_CodeValue, processing.CodeValue.c_str()));
  RETURN_IF_ERROR(Put(*purpose, DCM_CodingSchemeDesignator, processing.CodingSchemeDesignator.c_str()));
  RETURN_IF_ERROR(Put(*purpose, DCM_CodeMeaning, processing.CodeMeaning.c_str()));
  RETURN_IF_ERROR(Put(*equipment, DCM_Manufacturer, TruncateValue(manufacturer, 64)));
  if (!algorithm.model_name.empty()) {
    RETURN_IF_ERROR(Put(*equipment, DCM_ManufacturerModelName, TruncateValue(algorithm.model_name, 64)));
  }
  std::vector<std::string> versions;
  if (!algorithm.model_version.empty()) versions.push_back(TruncateValue(algorithm.model_version, 64));
  if (!algorithm.software_version.empty()) versions.push_back(TruncateValue(algorithm.software_version, 64));
  if (!versions.empty()) {
    std::string joined;
    for (const std::string& v : versions) {
      if (v.find('\\') != std::string::npos) return absl::InvalidArgumentError("version contains a backslash");
      joined += (joined.empty() ? "" : "\\") + v;
    }
    RETURN_IF_ERROR(Put(*equipment, DCM_SoftwareVersions, joined));
  }
  RETURN_IF_ERROR(Put(*equipment, DCM_ContributionDateTime, when.date + when.time));
  std::string description = "AI second read by " + algorithm.model_name;
  if (!algorithm.model_version.empty()) description += " version " + algorithm.model_version;
  RETURN_IF_ERROR(Put(*equipment, DCM_ContributionDescription, TruncateValue(description, 1024)));
  return absl::OkStatus();
}

absl::Status AddRenderedCapture(DcmItem& target, DcmItem& source, const std::string& source_class,
                                const std::string& source_instance, uint32_t frame, const ContentTime& when,
                                uint32_t rows, uint32_t columns, const std::vector<uint8_t>& rgb) {
  // A lossy source stays flagged as such in anything derived from it.
  OFString lossy;
  if (source.findAndGetOFString(DCM_LossyImageCompression, lossy).good() && lossy == "01") {
    RETURN_IF_ERROR(Put(target, DCM_LossyImageCompression, "01"));
  }
  DcmItem* ref = nullptr;
  RETURN_IF_ERROR(FromCondition(target.findOrCreateSequenceItem(DCM_SourceImageSequence, ref, 0),
                                "creating Source Image Sequence"));
  RETURN_IF_ERROR(Put(*ref, DCM_ReferencedSOPClassUID, source_class));
  RETURN_IF_ERROR(Put(*ref, DCM_ReferencedSOPInstanceUID, source_instance));
  if (frame > 0) RETURN_IF_ERROR(Put(*ref, DCM_ReferencedFrameNumber, std::to_string(frame)));
  DcmItem* purpose = nullptr;
  RETURN_IF_ERROR(FromCondition(ref->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0),
                                "creating Purpose of Reference Code Sequence"));
  // CID 7202 Source Image Purpose of Reference.
  RETURN_IF_ERROR(Put(*purpose, DCM_CodeValue, "121322"));
  RETURN_IF_ERROR(Put(*purpose, DCM_CodingSchemeDesignator, "DCM"));
  RETURN_IF_ERROR(Put(*purpose, DCM_CodeMeaning, "Source image for image processing operation"));

  // SC Equipment and SC Image
  RETURN_IF_ERROR(Put(target, DCM_ConversionType, "WSD"));
  RETURN_IF_ERROR(Put(target, DCM_DateOfSecondaryCapture, when.date));
  RETURN_IF_ERROR(Put(target, DCM_TimeOfSecondaryCapture, when.time));

  // Image Pixel
  if (rows > 0xffff || columns > 0xffff || rgb.size() != uint64_t{rows} * columns * 3) {
    return absl::InvalidArgumentError("rendered image does not match its size");
  }
  RETURN_IF_ERROR(FromCondition(target.putAndInsertUint16(DCM_SamplesPerPixel, 3), "writing Samples per Pixel"));
  RETURN_IF_ERROR(Put(target, DCM_PhotometricInterpretation, "RGB"));
  RETURN_IF_ERROR(FromCondition(target.putAndInsertUint16(DCM_PlanarConfiguration, 0), "writing Planar Configuration"));
  RETURN_IF_ERROR(FromCondition(target.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(rows)), "writing Rows"));
  RETURN_IF_ERROR(FromCondition(target.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(columns)), "writing Columns"));
  RETURN_IF_ERROR(FromCondition(target.putAndInsertUint16(DCM_BitsAllocated, 8), "writing Bits Allocated"));
  RETURN_IF_ERROR(FromCondition(target.putAndInsertUint16(DCM_BitsStored, 8), "writing Bits Stored"));
  RETURN_IF_ERROR(FromCondition(target.putAndInsertUint16(DCM_HighBit, 7), "writing High Bit"));
  RETURN_IF_ERROR(FromCondition(target.putAndInsertUint16(DCM_PixelRepresentation, 0), "writing Pixel Representation"));
  return FromCondition(target.putAndInsertUint8Array(DCM_PixelData, rgb.data(), static_cast<unsigned long>(rgb.size())),
                       "writing Pixel Data");
}

absl::StatusOr<std::string> SerializePart10(DcmFileFormat& file) {
  const E_TransferSyntax xfer = EXS_LittleEndianExplicit;
  DcmDataset* dataset = file.getDataset();
  if (dataset == nullptr) return absl::InternalError("file has no dataset");
  RETURN_IF_ERROR(FromCondition(dataset->chooseRepresentation(xfer, nullptr), "converting to Explicit VR Little Endian"));
  if (!dataset->canWriteXfer(xfer)) return absl::InternalError("dataset cannot be written as Explicit VR Little Endian");
  // A fresh meta header: validateMetaInfo (called by write) then fills every
  // element from the dataset and this node's implementation identity.
  file.getMetaInfo()->clear();

  std::string out;
  std::vector<char> buffer(64 * 1024);
  DcmOutputBufferStream stream(buffer.data(), buffer.size());
  auto drain = [&out, &stream]() {
    void* data = nullptr;
    offile_off_t length = 0;
    stream.flushBuffer(data, length);
    if (length > 0) out.append(static_cast<const char*>(data), static_cast<size_t>(length));
  };
  file.transferInit();
  OFCondition cond = EC_StreamNotifyClient;
  while (cond == EC_StreamNotifyClient) {
    cond = file.write(stream, xfer, EET_ExplicitLength, nullptr, EGL_recalcGL, EPD_noChange, 0, 0, 0,
                      EWM_fileformat);
    drain();
  }
  file.transferEnd();
  RETURN_IF_ERROR(FromCondition(cond, "encoding Part 10 file"));
  stream.flush();
  drain();
  return out;
}

std::string TruncateValue(const std::string& value, size_t max_chars) {
  if (value.size() <= max_chars) return value;
  size_t cut = max_chars;
  // Step back over UTF-8 continuation bytes so the cut lands on a boundary.
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  std::string out = value.substr(0, cut);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string ResultSeriesDescription(const std::string& model_name) {
  const std::string head = "AI RESULT (";
  const std::string tail = ") - FOR REVIEW, NOT A DIAGNOSIS";
  const size_t room = 64 - head.size() - tail.size();
  return head + TruncateValue(model_name, room) + tail;
}

std::string NormalizedBodyPart(std::string_view body_part) {
  while (!body_part.empty() && body_part.front() == ' ') body_part.remove_prefix(1);
  while (!body_part.empty() && body_part.back() == ' ') body_part.remove_suffix(1);
  if (body_part.size() > 16) return "";
  std::string out(body_part);
  for (char& c : out) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == '_')) return "";
  }
  return out;
}

bool IsPairedBodyPart(std::string_view body_part) {
  static constexpr std::string_view kPaired[] = {
      "ACJOINT", "ANKLE",  "ARM",      "BREAST",  "CLAVICLE", "EAR",    "ELBOW",    "EXTREMITY", "EYE",
      "FEMUR",   "FIBULA", "FINGER",   "FOOT",    "FOREARM",  "HAND",   "HEEL",     "HIP",       "HUMERUS",
      "KIDNEY",  "KNEE",   "LEG",      "LOWLEG",  "ORBIT",    "OVARY",  "PATELLA",  "RADIUS",    "SCAPULA",
      "SCJOINT", "SHOULDER", "SIJOINT", "TESTIS", "THIGH",    "THUMB",  "TIBIA",    "TMJ",       "TOE",
      "ULNA",    "UPRARM", "WRIST"};
  for (std::string_view p : kPaired)
    if (body_part == p) return true;
  return false;
}

}  // namespace secondread::scp::internals
