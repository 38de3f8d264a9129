#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "tests/unit/support/dicom_checks.h"
#include "scp/objects/derived_uid.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp {
namespace {

using secondread::test_support::DciodvfyErrors;
// Every value, as the report writes multi-valued attributes.
const auto& Get = secondread::test_support::GetAll;

constexpr char kPatientName[] = "DOE^JANE";
constexpr char kPatientId[] = "PID-4711";
constexpr char kAccession[] = "ACC-0815";

class StructuredReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/sr_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    char uid[100];
    study_uid_ = dcmGenerateUniqueIdentifier(uid, SITE_STUDY_UID_ROOT);
    series_uid_ = dcmGenerateUniqueIdentifier(uid, SITE_SERIES_UID_ROOT);
    source_.path = dir_ + "/source.dcm";
    source_.sop_class_uid = UID_ComputedRadiographyImageStorage;
    source_.sop_instance_uid = dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
    source_.series_instance_uid = series_uid_;
    source_.rows = 64;
    source_.columns = 64;
    WriteSource();
  }

  void TearDown() override {
    if (!dir_.empty()) {
      std::string command = "rm -rf '" + dir_ + "'";
      ASSERT_EQ(std::system(command.c_str()), 0);
    }
  }

  void WriteSource() {
    DcmFileFormat file;
    DcmDataset* d = file.getDataset();
    d->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100");
    d->putAndInsertString(DCM_SOPClassUID, source_.sop_class_uid.c_str());
    d->putAndInsertString(DCM_SOPInstanceUID, source_.sop_instance_uid.c_str());
    d->putAndInsertString(DCM_StudyDate, "20240305");
    d->putAndInsertString(DCM_StudyTime, "101500");
    d->putAndInsertString(DCM_AccessionNumber, kAccession);
    d->putAndInsertString(DCM_Modality, "CR");
    d->putAndInsertString(DCM_Manufacturer, "ACME");
    d->putAndInsertString(DCM_ReferringPhysicianName, "SMITH^JOHN");
    d->putAndInsertString(DCM_StudyDescription, "CHEST PA");
    d->putAndInsertString(DCM_PatientName, kPatientName);
    d->putAndInsertString(DCM_PatientID, kPatientId);
    d->putAndInsertString(DCM_IssuerOfPatientID, "HOSP");
    d->putAndInsertString(DCM_PatientBirthDate, "19700101");
    d->putAndInsertString(DCM_PatientSex, "F");
    d->putAndInsertString(DCM_PatientAge, "054Y");
    d->putAndInsertString(DCM_StudyInstanceUID, study_uid_.c_str());
    d->putAndInsertString(DCM_SeriesInstanceUID, series_uid_.c_str());
    d->putAndInsertString(DCM_StudyID, "S1");
    d->putAndInsertString(DCM_SeriesNumber, "1");
    d->putAndInsertString(DCM_InstanceNumber, "1");
    d->putAndInsertString(DCM_PatientOrientation, "P\\F");
    d->putAndInsertString(DCM_BodyPartExamined, "CHEST");
    d->putAndInsertString(DCM_ViewPosition, "PA");
    d->putAndInsertString(DCM_ImageType, "ORIGINAL\\PRIMARY");
    d->putAndInsertUint16(DCM_SamplesPerPixel, 1);
    d->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    d->putAndInsertUint16(DCM_Rows, 64);
    d->putAndInsertUint16(DCM_Columns, 64);
    d->putAndInsertUint16(DCM_BitsAllocated, 16);
    d->putAndInsertUint16(DCM_BitsStored, 12);
    d->putAndInsertUint16(DCM_HighBit, 11);
    d->putAndInsertUint16(DCM_PixelRepresentation, 0);
    std::vector<Uint16> pixels(64 * 64);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<Uint16>((i * 37) % 4096);
    d->putAndInsertUint16Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size()));
    ASSERT_TRUE(file.saveFile(source_.path.c_str(), EXS_LittleEndianExplicit).good());
  }

  std::vector<Finding> TwoFindings() const {
    Finding nodule;
    nodule.label = "nodule";
    nodule.code = {"SCT", "27925004", "Nodule"};
    nodule.score = 0.8125;
    nodule.threshold = 0.277;
    nodule.above_threshold = true;
    nodule.image_index = 0;
    nodule.has_peak = true;
    nodule.peak_column = 20.5;
    nodule.peak_row = 33.5;
    Finding effusion;
    effusion.label = "effusion";
    effusion.code = {"SCT", "60046008", "Pleural effusion"};
    effusion.score = 0.125;
    effusion.threshold = 0.5;
    effusion.above_threshold = false;
    effusion.image_index = 0;
    return {nodule, effusion};
  }

  AlgorithmInfo Algorithm() const {
    AlgorithmInfo a;
    a.model_name = "chest-xray-triage";
    a.model_version = "3";
    a.parameters = "threshold nodule=0.277 effusion=0.5";
    a.software_version = "1.4.0";
    return a;
  }

  ResultIdentity Identity() const {
    ResultIdentity id;
    id.sop_instance_uid = DerivedUid({study_uid_, "chest-xray-triage", "3", "sr"});
    id.series_instance_uid = DerivedUid({study_uid_, "chest-xray-triage", "3", "series"});
    id.series_number = 9001;
    id.instance_number = 1;
    return id;
  }

  absl::StatusOr<BuiltObject> Build(const std::vector<SourceImage>& sources, const std::vector<Finding>& findings) {
    return BuildStructuredReport(sources, findings, Algorithm(), Identity(), ContentTime{"20240305", "102030"});
  }

  std::string WriteOut(const std::string& bytes, const std::string& name) {
    const std::string path = dir_ + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  std::string dir_;
  std::string study_uid_;
  std::string series_uid_;
  SourceImage source_;
};

struct ParsedReport {
  DcmFileFormat file;
  DSRDocument document;
};

::testing::AssertionResult Parse(const std::string& bytes, ParsedReport& out) {
  DcmInputBufferStream stream;
  stream.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  stream.setEos();
  out.file.transferInit();
  OFCondition cond = out.file.read(stream, EXS_Unknown);
  out.file.transferEnd();
  if (cond.bad()) return ::testing::AssertionFailure() << "Part 10 parse: " << cond.text();
  cond = out.document.read(*out.file.getDataset());
  if (cond.bad()) return ::testing::AssertionFailure() << "DSRDocument read: " << cond.text();
  return ::testing::AssertionSuccess();
}

TEST_F(StructuredReportTest, WritesValidTid1500Report) {
  auto built = Build({source_}, TwoFindings());
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->sop_class_uid, UID_Comprehensive3DSRStorage);
  EXPECT_EQ(built->sop_instance_uid, Identity().sop_instance_uid);
  EXPECT_EQ(built->series_instance_uid, Identity().series_instance_uid);

  const std::string path = WriteOut(built->part10, "sr.dcm");
  std::string output;
  const std::vector<std::string> errors = DciodvfyErrors(path, &output);
  EXPECT_TRUE(errors.empty()) << output;
  if (std::getenv("SR_TEST_SHOW_DCIODVFY") != nullptr) std::fprintf(stderr, "%s", output.c_str());

  ParsedReport report;
  ASSERT_TRUE(Parse(built->part10, report));
  DcmDataset& d = *report.file.getDataset();
  EXPECT_EQ(Get(*report.file.getMetaInfo(), DCM_TransferSyntaxUID), UID_LittleEndianExplicitTransferSyntax);
  EXPECT_EQ(Get(*report.file.getMetaInfo(), DCM_MediaStorageSOPInstanceUID), Identity().sop_instance_uid);
  EXPECT_EQ(report.document.getVerificationFlag(), DSRTypes::VF_Unverified);
  EXPECT_EQ(report.document.getCompletionFlag(), DSRTypes::CF_Complete);
  EXPECT_EQ(Get(d, DCM_PatientName), kPatientName);
  EXPECT_EQ(Get(d, DCM_PatientID), kPatientId);
  EXPECT_EQ(Get(d, DCM_PatientBirthDate), "19700101");
  EXPECT_EQ(Get(d, DCM_AccessionNumber), kAccession);
  EXPECT_EQ(Get(d, DCM_StudyInstanceUID), study_uid_);
  EXPECT_EQ(Get(d, DCM_SpecificCharacterSet), "ISO_IR 100");
  EXPECT_EQ(Get(d, DCM_Modality), "SR");
  EXPECT_EQ(Get(d, DCM_SeriesNumber), "9001");
  EXPECT_NE(Get(d, DCM_SeriesInstanceUID), series_uid_);
  const std::string description = Get(d, DCM_SeriesDescription);
  EXPECT_LE(description.size(), 64u);
  EXPECT_EQ(description.rfind("AI RESULT (chest-xray-triage)", 0), 0u) << description;

  DcmItem* equipment = nullptr;
  ASSERT_TRUE(d.findAndGetSequenceItem(DCM_ContributingEquipmentSequence, equipment, 0).good());
  DcmItem* purpose = nullptr;
  ASSERT_TRUE(equipment->findAndGetSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0).good());
  EXPECT_EQ(Get(*purpose, DCM_CodeValue), "109102");
  EXPECT_EQ(Get(*purpose, DCM_CodingSchemeDesignator), "DCM");
  EXPECT_EQ(Get(*equipment, DCM_ManufacturerModelName), "chest-xray-triage");

  DcmItem* evidence = nullptr;
  ASSERT_TRUE(d.findAndGetSequenceItem(DCM_CurrentRequestedProcedureEvidenceSequence, evidence, 0).good());
  EXPECT_EQ(Get(*evidence, DCM_StudyInstanceUID), study_uid_);

  DSRDocumentTree& tree = report.document.getTree();
  ASSERT_GT(tree.gotoRoot(), 0u);
  OFString template_id, mapping;
  ASSERT_TRUE(tree.getCurrentContentItem().getTemplateIdentification(template_id, mapping).good());
  EXPECT_EQ(template_id, "1500");
  EXPECT_EQ(mapping, "DCMR");
  EXPECT_EQ(tree.getCurrentContentItem().getConceptName().getCodeValue(), "126000");

  std::vector<std::string> finding_codes, probabilities, image_refs, calls;
  int points = 0;
  do {
    DSRContentItem& item = tree.getCurrentContentItem();
    const std::string concept_value = item.getConceptName().getCodeValue().c_str();
    switch (item.getValueType()) {
      case DSRTypes::VT_Code:
        if (concept_value == "121071") finding_codes.push_back(item.getCodeValue().getCodeValue().c_str());
        if (concept_value == "27925004" || concept_value == "60046008") {
          calls.push_back(concept_value + "=" + item.getCodeValue().getCodeValue().c_str());
        }
        break;
      case DSRTypes::VT_Num:
        probabilities.push_back(item.getNumericValue().getNumericValue().c_str());
        EXPECT_EQ(item.getNumericValue().getMeasurementUnit().getCodeValue(), "1");
        break;
      case DSRTypes::VT_Image:
        image_refs.push_back(item.getImageReference().getSOPInstanceUID().c_str());
        break;
      case DSRTypes::VT_SCoord: {
        ++points;
        Float32 column = 0, row = 0;
        DSRSpatialCoordinatesValue scoord = item.getSpatialCoordinates();
        EXPECT_EQ(scoord.getGraphicType(), DSRTypes::GT_Point);
        ASSERT_TRUE(scoord.getGraphicDataList().getItem(1, column, row).good());
        EXPECT_FLOAT_EQ(column, 20.5f);
        EXPECT_FLOAT_EQ(row, 33.5f);
        break;
      }
      default:
        break;
    }
  } while (tree.iterate() > 0);

  EXPECT_EQ(finding_codes, (std::vector<std::string>{"27925004", "60046008"}));
  EXPECT_EQ(probabilities, (std::vector<std::string>{"0.8125", "0.125"}));
  EXPECT_EQ(calls, (std::vector<std::string>{"27925004=10828004", "60046008=260385009"}));
  EXPECT_EQ(points, 1);
  // Image library, one INFERRED FROM per probability, one SELECTED FROM.
  ASSERT_EQ(image_refs.size(), 4u);
  for (const std::string& ref : image_refs) EXPECT_EQ(ref, source_.sop_instance_uid);
}

TEST_F(StructuredReportTest, SameInputsGiveSameObject) {
  auto first = Build({source_}, TwoFindings());
  auto second = Build({source_}, TwoFindings());
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->sop_instance_uid, second->sop_instance_uid);
  ParsedReport a, b;
  ASSERT_TRUE(Parse(first->part10, a));
  ASSERT_TRUE(Parse(second->part10, b));
  EXPECT_EQ(Get(*a.file.getDataset(), DCM_SOPInstanceUID), Get(*b.file.getDataset(), DCM_SOPInstanceUID));
  EXPECT_EQ(Get(*a.file.getDataset(), DCM_SOPInstanceUID), Identity().sop_instance_uid);
}

// A re-read of a study that gained images replaces the earlier report: the
// new one names it in the Predecessor Documents Sequence (PS3.3 C.17.2) and
// stays valid.
TEST_F(StructuredReportTest, SuccessorNamesItsPredecessorAndStaysValid) {
  ResultIdentity id = Identity();
  id.sop_instance_uid = DerivedUid({study_uid_, "generation 2"});
  const ObjectReference earlier{study_uid_, Identity().series_instance_uid, UID_Comprehensive3DSRStorage,
                                Identity().sop_instance_uid};
  id.predecessors.push_back(earlier);
  auto built = BuildStructuredReport({source_}, TwoFindings(), Algorithm(), id, ContentTime{"20240305", "102030"});
  ASSERT_TRUE(built.ok()) << built.status();

  const std::string path = WriteOut(built->part10, "successor.dcm");
  std::string output;
  const std::vector<std::string> errors = DciodvfyErrors(path, &output);
  EXPECT_TRUE(errors.empty()) << output;

  ParsedReport report;
  ASSERT_TRUE(Parse(built->part10, report));
  DcmItem* item = nullptr;
  ASSERT_TRUE(report.file.getDataset()->findAndGetSequenceItem(DCM_PredecessorDocumentsSequence, item, 0).good())
      << "no Predecessor Documents Sequence";
  EXPECT_EQ(Get(*item, DCM_StudyInstanceUID), study_uid_);
  DcmItem* series = nullptr;
  ASSERT_TRUE(item->findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series, 0).good());
  EXPECT_EQ(Get(*series, DCM_SeriesInstanceUID), Identity().series_instance_uid);
  DcmItem* sop = nullptr;
  ASSERT_TRUE(series->findAndGetSequenceItem(DCM_ReferencedSOPSequence, sop, 0).good());
  EXPECT_EQ(Get(*sop, DCM_ReferencedSOPClassUID), UID_Comprehensive3DSRStorage);
  EXPECT_EQ(Get(*sop, DCM_ReferencedSOPInstanceUID), Identity().sop_instance_uid);
}

// A replacement under the same UID is not its own successor.
TEST_F(StructuredReportTest, ReplacementUnderTheSameUidHasNoPredecessor) {
  ResultIdentity id = Identity();
  id.predecessors.push_back({study_uid_, id.series_instance_uid, UID_Comprehensive3DSRStorage, id.sop_instance_uid});
  auto built = BuildStructuredReport({source_}, TwoFindings(), Algorithm(), id, ContentTime{"20240305", "102030"});
  ASSERT_TRUE(built.ok()) << built.status();
  ParsedReport report;
  ASSERT_TRUE(Parse(built->part10, report));
  EXPECT_FALSE(report.file.getDataset()->tagExists(DCM_PredecessorDocumentsSequence));
}

TEST_F(StructuredReportTest, MultiFrameSourceAndNoFindingsStayValid) {
  SourceImage framed = source_;
  // A frame reference is valid only for a multi-frame SOP Class.
  framed.sop_class_uid = UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage;
  framed.frame = 1;
  auto built = Build({framed}, {});
  ASSERT_TRUE(built.ok()) << built.status();
  std::string output;
  EXPECT_TRUE(DciodvfyErrors(WriteOut(built->part10, "empty.dcm"), &output).empty()) << output;
}

TEST_F(StructuredReportTest, RefusesNoSources) {
  auto built = Build({}, TwoFindings());
  EXPECT_EQ(built.status().code(), absl::StatusCode::kInvalidArgument) << built.status();
}

TEST_F(StructuredReportTest, RefusesFindingOnMissingSource) {
  std::vector<Finding> findings = TwoFindings();
  findings[1].image_index = 1;
  auto built = Build({source_}, findings);
  EXPECT_EQ(built.status().code(), absl::StatusCode::kInvalidArgument) << built.status();
}

TEST_F(StructuredReportTest, MissingSourceFileIsNotFound) {
  SourceImage missing = source_;
  missing.path = dir_ + "/does-not-exist.dcm";
  auto built = Build({missing}, TwoFindings());
  EXPECT_EQ(built.status().code(), absl::StatusCode::kNotFound) << built.status();
}

}  // namespace
}  // namespace secondread::scp
