#include "scp/receive/dataset_limits.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcuid.h"

namespace secondread::scp {
namespace {

namespace fs = std::filesystem;

constexpr char kImplicitLE[] = "1.2.840.10008.1.2";
constexpr char kExplicitLE[] = "1.2.840.10008.1.2.1";
constexpr char kExplicitBE[] = "1.2.840.10008.1.2.2";
constexpr char kDeflated[] = "1.2.840.10008.1.2.1.99";
constexpr uint32_t kUndefined = 0xFFFFFFFFu;

// A minimal encoder for hand-made (and hostile) datasets in each transfer
// syntax, so every limit is tested at its boundary on exact bytes.
struct Enc {
  bool explicit_vr = true;
  bool big = false;

  std::string U16(uint16_t v) const {
    std::string s(2, '\0');
    s[big ? 0 : 1] = static_cast<char>(v >> 8);
    s[big ? 1 : 0] = static_cast<char>(v & 0xff);
    return s;
  }
  std::string U32(uint32_t v) const {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[big ? 3 - i : i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
  }
  std::string Tag(uint16_t g, uint16_t e) const { return U16(g) + U16(e); }
  // Any element; `length` overrides the value's size (to lie).
  std::string Element(uint16_t g, uint16_t e, const std::string& vr, const std::string& value,
                      int64_t length = -1) const {
    const uint32_t len = length < 0 ? static_cast<uint32_t>(value.size()) : static_cast<uint32_t>(length);
    std::string out = Tag(g, e);
    if (!explicit_vr) return out + U32(len) + value;
    out += vr;
    static const std::string kLong = "OB OD OF OL OV OW SQ SV UC UN UR UT UV";
    if (kLong.find(vr) != std::string::npos) return out + std::string(2, '\0') + U32(len) + value;
    return out + U16(static_cast<uint16_t>(len)) + value;
  }
  std::string Item(const std::string& content, bool defined) const {
    if (defined) return Tag(0xFFFE, 0xE000) + U32(static_cast<uint32_t>(content.size())) + content;
    return Tag(0xFFFE, 0xE000) + U32(kUndefined) + content + Tag(0xFFFE, 0xE00D) + U32(0);
  }
  std::string Sequence(uint16_t g, uint16_t e, const std::string& items, bool defined) const {
    if (defined) return Element(g, e, "SQ", items);
    return Element(g, e, "SQ", items + Tag(0xFFFE, 0xE0DD) + U32(0), kUndefined);
  }
  // `depth` sequences nested inside each other, a short string at the bottom.
  std::string Nest(int depth, bool defined) const {
    const std::string bottom = Element(0x0010, 0x0010, "PN", "DEEP^NEST ");
    if (defined) {
      std::string inner = bottom;
      for (int i = 0; i < depth; ++i) {
        // Referenced Image Sequence is SQ in the dictionary, as Implicit VR needs.
        inner = Sequence(0x0008, 0x1140, Item(inner, true), true);
      }
      return inner;
    }
    // Undefined lengths: the same opening for every level, then the closings.
    const std::string open = Element(0x0008, 0x1140, "SQ", "", kUndefined) + Tag(0xFFFE, 0xE000) + U32(kUndefined);
    const std::string close = Tag(0xFFFE, 0xE00D) + U32(0) + Tag(0xFFFE, 0xE0DD) + U32(0);
    std::string out;
    out.reserve((open.size() + close.size()) * depth + bottom.size());
    for (int i = 0; i < depth; ++i) out += open;
    out += bottom;
    for (int i = 0; i < depth; ++i) out += close;
    return out;
  }
  std::string Basics() const {
    return Element(0x0008, 0x0016, "UI", std::string("1.2.840.10008.5.1.4.1.1.7") + '\0') +
           Element(0x0008, 0x0018, "UI", "1.2.3.4.5.6");
  }
};

Enc EncodingOf(const std::string& ts) {
  if (ts == kImplicitLE) return {false, false};
  if (ts == kExplicitBE) return {true, true};
  return {true, false};
}

std::string Deflate(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, in.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

class DatasetLimitsTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "limits-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string ts() const { return GetParam(); }
  Enc enc() const { return EncodingOf(ts()); }

  // A Part 10 file around the dataset bytes (deflated for that syntax).
  StructureReport Check(const std::string& dataset, const DatasetLimits& limits = {}) {
    Enc meta{true, false};
    std::string file(128, '\0');
    file += "DICM";
    std::string uid = ts();
    if (uid.size() % 2) uid += '\0';
    const std::string group = meta.Element(0x0002, 0x0001, "OB", std::string("\0\1", 2)) +
                              meta.Element(0x0002, 0x0010, "UI", uid);
    file += meta.Element(0x0002, 0x0000, "UL", meta.U32(static_cast<uint32_t>(group.size()))) + group;
    file += ts() == kDeflated ? Deflate(dataset) : dataset;
    const std::string path = dir_ + "/in.dcm";
    std::ofstream(path, std::ios::binary) << file;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    auto report = CheckDatasetStructure(fd, ts(), limits);
    ::close(fd);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *report : StructureReport{StructureProblem::kMalformed, "io", 0, 0};
  }

  std::string dir_;
};

TEST_P(DatasetLimitsTest, NestingIsRefusedJustPastTheLimit) {
  for (bool defined : {false, true}) {
    SCOPED_TRACE(defined ? "defined lengths" : "undefined lengths");
    auto at = Check(enc().Basics() + enc().Nest(64, defined));
    EXPECT_TRUE(at.ok()) << at.detail;
    EXPECT_EQ(at.depth, 64);
    auto over = Check(enc().Basics() + enc().Nest(65, defined));
    EXPECT_EQ(over.problem, StructureProblem::kTooDeep) << over.detail;
    DatasetLimits tight;
    tight.max_depth = 3;
    EXPECT_TRUE(Check(enc().Nest(3, defined), tight).ok());
    EXPECT_EQ(Check(enc().Nest(4, defined), tight).problem, StructureProblem::kTooDeep);
  }
}

TEST_P(DatasetLimitsTest, HundredThousandLevelsAreRefusedWithoutRecursion) {
  // Deep enough to overflow a recursive parser's stack many times over; the
  // scan stops at the limit without building anything.
  auto report = Check(enc().Nest(100000, false));
  EXPECT_EQ(report.problem, StructureProblem::kTooDeep);
  EXPECT_EQ(report.depth, 65);
}

TEST_P(DatasetLimitsTest, ElementCountIsRefusedJustPastTheLimit) {
  DatasetLimits limits;
  limits.max_elements = 10;
  std::string ten;
  for (int i = 0; i < 10; ++i) ten += enc().Element(0x0009, static_cast<uint16_t>(0x1000 + i), "LO", "AB");
  EXPECT_TRUE(Check(ten, limits).ok());
  EXPECT_EQ(Check(ten + enc().Element(0x0011, 0x1000, "LO", "AB"), limits).problem,
            StructureProblem::kTooManyElements);
  // Items count too: one sequence, one item, eight elements inside = 10.
  std::string eight;
  for (int i = 0; i < 8; ++i) eight += enc().Element(0x0010, static_cast<uint16_t>(0x0010 + i), "LO", "AB");
  EXPECT_TRUE(Check(enc().Sequence(0x0008, 0x1140, enc().Item(eight, false), false), limits).ok());
  eight += enc().Element(0x0010, 0x0030, "DA", "20240101");
  EXPECT_EQ(Check(enc().Sequence(0x0008, 0x1140, enc().Item(eight, false), false), limits).problem,
            StructureProblem::kTooManyElements);
}

TEST_P(DatasetLimitsTest, LengthsLargerThanTheDataAreRefused) {
  const std::string value(16, 'x');
  // The last value's length is exactly what follows, then one more.
  EXPECT_TRUE(Check(enc().Basics() + enc().Element(0x0009, 0x1010, "OB", value)).ok());
  auto lying = Check(enc().Basics() + enc().Element(0x0009, 0x1010, "OB", value, 17));
  EXPECT_EQ(lying.problem, StructureProblem::kLengthBeyondData) << lying.detail;
  auto huge = Check(enc().Basics() + enc().Element(0x0009, 0x1010, "OB", value, 0x7FFFFFF0));
  EXPECT_EQ(huge.problem, StructureProblem::kLengthBeyondData);

  // An item longer than its defined-length sequence.
  const std::string item = enc().Item(enc().Element(0x0008, 0x1150, "UI", "1.2.3.4"), true);
  std::string seq = enc().Element(0x0008, 0x1140, "SQ", item);
  EXPECT_TRUE(Check(seq).ok());
  seq = enc().Element(0x0008, 0x1140, "SQ", item, static_cast<int64_t>(item.size()) - 1);
  EXPECT_EQ(Check(seq).problem, StructureProblem::kLengthBeyondData);
  // An item whose length points past the end of the data.
  std::string long_item = enc().Tag(0xFFFE, 0xE000) + enc().U32(1000) + enc().Element(0x0008, 0x1150, "UI", "1.2");
  EXPECT_EQ(Check(enc().Element(0x0008, 0x1140, "SQ", long_item, kUndefined)).problem,
            StructureProblem::kLengthBeyondData);
  // A dataset cut off inside an undefined-length sequence.
  std::string cut = enc().Nest(3, false);
  cut.resize(cut.size() - 8);
  EXPECT_EQ(Check(cut).problem, StructureProblem::kLengthBeyondData);
}

TEST_P(DatasetLimitsTest, SequencesHiddenInUnknownAndPrivateValuesCount) {
  // PS3.5 6.2.2: an undefined-length UN holds Implicit VR Little Endian.
  Enc implicit{false, false};
  const std::string deep = implicit.Nest(70, false);
  if (enc().explicit_vr) {
    std::string un = enc().Tag(0x0009, 0x1010) + "UN" + std::string(2, '\0') + enc().U32(kUndefined) +
                     implicit.Item(deep, false) + implicit.Tag(0xFFFE, 0xE0DD) + implicit.U32(0);
    EXPECT_EQ(Check(un).problem, StructureProblem::kTooDeep);
    // A defined-length UN whose value is items: a parser that converts it
    // descends, so the scan does too.
    const std::string items = implicit.Item(implicit.Nest(70, true), true);
    std::string un_defined = enc().Tag(0x0009, 0x1010) + "UN" + std::string(2, '\0') +
                             enc().U32(static_cast<uint32_t>(items.size())) + items;
    EXPECT_EQ(Check(un_defined).problem, StructureProblem::kTooDeep);
  } else {
    // A private tag in Implicit VR that a private dictionary may call SQ.
    const std::string items = implicit.Item(implicit.Nest(70, true), true);
    EXPECT_EQ(Check(implicit.Element(0x0009, 0x1010, "", items)).problem, StructureProblem::kTooDeep);
  }
}

// Encapsulated pixel data exists only in Explicit VR syntaxes.
class ExplicitDatasetLimitsTest : public DatasetLimitsTest {};

TEST_P(ExplicitDatasetLimitsTest, EncapsulatedPixelDataIsWalkedAsFragments) {
  std::string fragments = enc().Item(std::string(), true) + enc().Item(std::string(64, '\x7f'), true) +
                          enc().Tag(0xFFFE, 0xE0DD) + enc().U32(0);
  std::string pixel = enc().Tag(0x7FE0, 0x0010) + "OB" + std::string(2, '\0') + enc().U32(kUndefined) + fragments;
  EXPECT_TRUE(Check(enc().Basics() + pixel).ok());
  std::string lying = enc().Tag(0x7FE0, 0x0010) + "OB" + std::string(2, '\0') + enc().U32(kUndefined) +
                      enc().Tag(0xFFFE, 0xE000) + enc().U32(500) + std::string(64, '\x7f');
  EXPECT_EQ(Check(enc().Basics() + lying).problem, StructureProblem::kLengthBeyondData);
}

TEST_P(DatasetLimitsTest, BrokenEncodingsAreMalformed) {
  if (enc().explicit_vr) {
    std::string bad_vr = enc().Tag(0x0010, 0x0010) + "Q!" + enc().U16(2) + "AB";
    EXPECT_EQ(Check(enc().Basics() + bad_vr).problem, StructureProblem::kMalformed);
  }
  std::string stray = enc().Basics() + enc().Tag(0xFFFE, 0xE00D) + enc().U32(0);
  EXPECT_EQ(Check(stray).problem, StructureProblem::kMalformed);
  std::string not_item = enc().Element(0x0008, 0x1140, "SQ", enc().Element(0x0010, 0x0010, "PN", "AB"), kUndefined);
  EXPECT_EQ(Check(not_item).problem, StructureProblem::kMalformed);
}

INSTANTIATE_TEST_SUITE_P(EveryTransferSyntax, DatasetLimitsTest,
                         ::testing::Values(kImplicitLE, kExplicitLE, kExplicitBE, kDeflated),
                         [](const auto& info) {
                           const std::string ts = info.param;
                           if (ts == kImplicitLE) return std::string("ImplicitLittle");
                           if (ts == kExplicitLE) return std::string("ExplicitLittle");
                           if (ts == kExplicitBE) return std::string("ExplicitBig");
                           return std::string("Deflated");
                         });

INSTANTIATE_TEST_SUITE_P(ExplicitSyntaxes, ExplicitDatasetLimitsTest,
                         ::testing::Values(kExplicitLE, kExplicitBE, kDeflated));

// The deflate bomb: a small stream that inflates far beyond the instance
// size limit is refused while inflating, at the bound and not before.
TEST(DatasetLimitsDeflateTest, InflatingPastTheBoundIsRefused) {
  Enc e{true, false};
  std::string dir = (fs::temp_directory_path() / "bomb-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  auto check = [&](const std::string& dataset, uint64_t max) {
    std::string file(128, '\0');
    file += "DICM";
    file += e.Element(0x0002, 0x0010, "UI", std::string(kDeflated) + '\0');
    file += Deflate(dataset);
    const std::string path = dir + "/bomb.dcm";
    std::ofstream(path, std::ios::binary) << file;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    DatasetLimits limits;
    limits.max_inflated_bytes = max;
    auto report = CheckDatasetStructure(fd, kDeflated, limits);
    ::close(fd);
    EXPECT_TRUE(report.ok());
    return *report;
  };
  const std::string zeros = e.Element(0x0009, 0x1010, "OB", std::string(64 << 20, '\0'));
  EXPECT_LT(Deflate(zeros).size(), 200u * 1024);  // 64 MiB in well under 200 KiB
  EXPECT_EQ(check(zeros, 8 << 20).problem, StructureProblem::kInflatesTooLarge);
  const std::string small = e.Element(0x0009, 0x1010, "OB", std::string(4096, '\0'));
  EXPECT_TRUE(check(small, small.size()).ok());
  EXPECT_EQ(check(small, small.size() - 1).problem, StructureProblem::kInflatesTooLarge);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// Objects written by DCMTK itself, in every transfer syntax it writes, pass.
TEST(DatasetLimitsDcmtkTest, ObjectsDcmtkWritesPass) {
  std::string dir = (fs::temp_directory_path() / "dcmtk-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4.5");
  ds->putAndInsertString(DCM_PatientName, "Doe^Jane");
  DcmItem* item = nullptr;
  ds->findOrCreateSequenceItem(DCM_ReferencedImageSequence, item, 0);
  item->putAndInsertString(DCM_ReferencedSOPInstanceUID, "1.2.3");
  DcmItem* inner = nullptr;
  item->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, inner, 0);
  inner->putAndInsertString(DCM_CodeValue, "121322");
  std::vector<Uint16> pixels(64 * 64, 512);
  ds->putAndInsertUint16(DCM_Rows, 64);
  ds->putAndInsertUint16(DCM_Columns, 64);
  ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), pixels.size());
  for (auto [xfer, uid] : std::vector<std::pair<E_TransferSyntax, const char*>>{
           {EXS_LittleEndianImplicit, kImplicitLE},
           {EXS_LittleEndianExplicit, kExplicitLE},
           {EXS_BigEndianExplicit, kExplicitBE},
           {EXS_DeflatedLittleEndianExplicit, kDeflated}}) {
    for (E_EncodingType seq : {EET_UndefinedLength, EET_ExplicitLength}) {
      const std::string path = dir + "/dcmtk.dcm";
      ASSERT_TRUE(ff.saveFile(path.c_str(), xfer, seq).good());
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      auto report = CheckDatasetStructure(fd, uid, {});
      ::close(fd);
      ASSERT_TRUE(report.ok());
      EXPECT_TRUE(report->ok()) << uid << ": " << report->detail;
      EXPECT_EQ(report->depth, 2) << uid;
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// Real objects from pydicom's test corpus (legacy, private and odd ones among
// them) that DCMTK parses also pass: the limits refuse nothing real.
TEST(DatasetLimitsDcmtkTest, RealObjectsDcmtkParsesPass) {
  const fs::path corpus = "/usr/lib/python3/dist-packages/pydicom/data/test_files";
  ASSERT_TRUE(fs::exists(corpus)) << "python3-pydicom (a test dependency) provides the corpus";
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    if (entry.path().extension() != ".dcm") continue;
    DcmFileFormat ff;
    if (ff.loadFile(entry.path().c_str(), EXS_Unknown, EGL_noChange, 64, ERM_fileOnly).bad()) continue;
    OFString uid;
    if (ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, uid).bad()) continue;
    int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    auto report = CheckDatasetStructure(fd, uid.c_str(), {});
    ::close(fd);
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok()) << entry.path().filename() << ": " << StructureProblemName(report->problem) << ": "
                              << report->detail;
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

}  // namespace
}  // namespace secondread::scp
