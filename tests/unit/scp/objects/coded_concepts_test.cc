// Every coded concept the node writes into its SR and Secondary Capture must
// be the concept its code value names. The reference is DCMTK's own code
// tables (dcmsr/codes/*.h and the context groups in dcmsr/cmr/cid*.h), read
// from the installed headers, so a wrong code meaning or a code borrowed from
// the wrong concept fails here instead of in a PACS.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp {
namespace {

namespace fs = std::filesystem;

using Key = std::pair<std::string, std::string>;  // (scheme, value)

// (scheme, value) -> meaning, from DCMTK's code tables.
std::map<Key, std::string> DcmtkCodeTables() {
  std::map<Key, std::string> table;
  const fs::path root = SECONDREAD_DCMSR_INCLUDE_DIR;
  // codes/*.h: #define CODE_X DSRBasicCodedEntry("value", "scheme", "meaning")
  const std::regex define(R"re(DSRBasicCodedEntry\("([^"]*)",\s*"([^"]*)",\s*"([^"]*)"\))re");
  // cmr/cid*.h: /// (value,scheme,"meaning")
  const std::regex comment(R"re(///\s*\(([^,]+),([^,]+),"([^"]*)"\))re");
  for (const char* sub : {"codes", "cmr"}) {
    for (const auto& entry : fs::directory_iterator(root / sub)) {
      if (entry.path().extension() != ".h") continue;
      std::ifstream in(entry.path());
      for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (std::regex_search(line, m, define) || std::regex_search(line, m, comment)) {
          table.emplace(Key{m[2].str(), m[1].str()}, m[3].str());
        }
      }
    }
  }
  return table;
}

// SNOMED CT concepts we write that DCMTK 3.6.7's small SCT table lacks, with
// the PS3.16 context group each comes from. Anything else in SCT must be in
// DCMTK's table.
const std::map<Key, std::string>& SnomedNotInDcmtk() {
  static const auto* kCodes = new std::map<Key, std::string>{
      {{"SCT", "10828004"}, "Positive"},             // CID 6335 / TID 1500 qualitative evaluation
      {{"SCT", "260385009"}, "Negative"},            // idem
      {{"SCT", "168537006"}, "Plain radiography"},   // CID 100 Quantitative Diagnostic Imaging Procedures
      {{"SCT", "27925004"}, "Nodule"},               // the test model's label (model.yaml supplies it)
  };
  return *kCodes;
}

struct Concept {
  std::string value, scheme, meaning, where;
};

void Collect(DcmItem& item, const std::string& where, std::vector<Concept>& out) {
  OFString value, scheme, meaning;
  const bool has_value = item.findAndGetOFString(DCM_CodeValue, value).good() ||
                         item.findAndGetOFString(DCM_LongCodeValue, value).good() ||
                         item.findAndGetOFString(DCM_URNCodeValue, value).good();
  if (has_value && item.findAndGetOFString(DCM_CodingSchemeDesignator, scheme).good()) {
    item.findAndGetOFString(DCM_CodeMeaning, meaning);
    out.push_back({value.c_str(), scheme.c_str(), meaning.c_str(), where});
  }
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* element = item.getElement(i);
    if (element->ident() != EVR_SQ) continue;
    auto* sequence = static_cast<DcmSequenceOfItems*>(element);
    for (unsigned long k = 0; k < sequence->card(); ++k) {
      Collect(*sequence->getItem(k), where + "/" + element->getTag().toString().c_str(), out);
    }
  }
}

std::vector<Concept> ConceptsOf(const BuiltObject& object) {
  DcmInputBufferStream stream;
  stream.setBuffer(object.part10.data(), object.part10.size());
  stream.setEos();
  DcmFileFormat file;
  file.transferInit();
  EXPECT_TRUE(file.read(stream).good());
  file.transferEnd();
  std::vector<Concept> out;
  Collect(*file.getDataset(), "", out);
  return out;
}

class CodedConceptsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "codes-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    algorithm_.model_name = "synthetic-nodule-demo";
    algorithm_.model_version = "3";
    algorithm_.software_version = "0.1.0";
    algorithm_.parameters = "threshold nodule=0.277";
    identity_.sop_instance_uid = "2.25.1234567890123456789";
    identity_.series_instance_uid = "2.25.9876543210987654321";
    identity_.series_number = 9901;
    when_ = {"20240131", "101500"};
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  SourceImage WriteSource(const std::string& modality, const char* sop_class) {
    DcmFileFormat ff;
    DcmDataset* ds = ff.getDataset();
    const std::string instance = "1.2.826.0.1.3680043.8.498.2" + std::to_string(modality.size() + modality[0]);
    ds->putAndInsertString(DCM_SOPClassUID, sop_class);
    ds->putAndInsertString(DCM_SOPInstanceUID, instance.c_str());
    ds->putAndInsertString(DCM_StudyInstanceUID, "1.2.826.0.1.3680043.8.498.1");
    ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.826.0.1.3680043.8.498.3");
    ds->putAndInsertString(DCM_PatientName, "Doe^Jane");
    ds->putAndInsertString(DCM_PatientID, "CODES-1");
    ds->putAndInsertString(DCM_StudyDate, "20240130");
    ds->putAndInsertString(DCM_StudyTime, "090000");
    ds->putAndInsertString(DCM_Modality, modality.c_str());
    ds->putAndInsertString(DCM_BodyPartExamined, "CHEST");
    ds->putAndInsertUint16(DCM_Rows, 32);
    ds->putAndInsertUint16(DCM_Columns, 32);
    ds->putAndInsertUint16(DCM_BitsAllocated, 16);
    ds->putAndInsertUint16(DCM_BitsStored, 12);
    ds->putAndInsertUint16(DCM_HighBit, 11);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
    ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    std::vector<uint16_t> pixels(32 * 32);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint16_t>(i % 4096);
    ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), pixels.size());
    const std::string path = (fs::path(dir_) / (modality + ".dcm")).string();
    EXPECT_TRUE(ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
    SourceImage source;
    source.path = path;
    source.sop_class_uid = sop_class;
    source.sop_instance_uid = instance;
    source.series_instance_uid = "1.2.826.0.1.3680043.8.498.3";
    source.rows = 32;
    source.columns = 32;
    return source;
  }

  static Finding MakeFinding(double score) {
    Finding f;
    f.label = "nodule";
    f.code = {"SCT", "27925004", "Nodule"};
    f.score = score;
    f.threshold = 0.277;
    f.above_threshold = score >= f.threshold;
    f.has_peak = true;
    f.peak_column = 10.5;
    f.peak_row = 12.5;
    return f;
  }

  std::string dir_;
  AlgorithmInfo algorithm_;
  ResultIdentity identity_;
  ContentTime when_;
};

TEST_F(CodedConceptsTest, EveryCodeWrittenIsTheConceptDcmtkNamesForIt) {
  const auto table = DcmtkCodeTables();
  ASSERT_GT(table.size(), 3000u) << "DCMTK's code tables were not found under " << SECONDREAD_DCMSR_INCLUDE_DIR;

  std::vector<Concept> concepts;
  for (const auto& [modality, sop_class] :
       std::vector<std::pair<std::string, const char*>>{{"CR", UID_ComputedRadiographyImageStorage},
                                                        {"CT", UID_CTImageStorage}}) {
    const SourceImage source = WriteSource(modality, sop_class);
    // One finding above and one below the operating point, so both
    // qualitative evaluations are written.
    std::vector<Finding> findings = {MakeFinding(0.91), MakeFinding(0.05)};
    auto sr = BuildStructuredReport({source}, findings, algorithm_, identity_, when_);
    ASSERT_TRUE(sr.ok()) << sr.status();
    auto sc = BuildSecondaryCapture(source, nullptr, {findings[0]}, algorithm_, identity_, when_);
    ASSERT_TRUE(sc.ok()) << sc.status();
    for (const auto* object : {&*sr, &*sc}) {
      auto found = ConceptsOf(*object);
      concepts.insert(concepts.end(), found.begin(), found.end());
    }
  }
  ASSERT_GT(concepts.size(), 30u);

  std::set<std::tuple<std::string, std::string, std::string>> checked;
  for (const Concept& c : concepts) {
    SCOPED_TRACE("(" + c.value + ", " + c.scheme + ", \"" + c.meaning + "\") at " + c.where);
    checked.emplace(c.value, c.scheme, c.meaning);
    auto it = table.find({c.scheme, c.value});
    if (it != table.end()) {
      EXPECT_EQ(c.meaning, it->second) << "the meaning differs from DCMTK's code table";
      continue;
    }
    auto extra = SnomedNotInDcmtk().find({c.scheme, c.value});
    ASSERT_NE(extra, SnomedNotInDcmtk().end()) << "code is in none of DCMTK's code tables";
    EXPECT_EQ(c.meaning, extra->second);
  }
  // Both purposes of reference are present, with their own concepts.
  EXPECT_TRUE(checked.count({"109102", "DCM", "Processing Equipment"})) << "Contributing Equipment purpose";
  EXPECT_TRUE(checked.count({"121322", "DCM", "Source image for image processing operation"}));
  EXPECT_FALSE(checked.count({"109103", "DCM", "Processing Algorithm"}));
}

}  // namespace
}  // namespace secondread::scp
