// Tests of the C-STORE SCU against a real DCMTK storescp on 127.0.0.1.
#include "scp/send/store_scu.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/oflog/oflog.h"

namespace secondread::scp {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCrImageStorage = "1.2.840.10008.5.1.4.1.1.1";

// A port nobody listens on right now (bound, read back, released).
uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return 0;
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool PortAccepts(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

pid_t Spawn(const std::vector<std::string>& argv, bool quiet) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    if (quiet) {
      FILE* null = std::fopen("/dev/null", "w");
      if (null != nullptr) {
        dup2(fileno(null), STDOUT_FILENO);
        dup2(fileno(null), STDERR_FILENO);
      }
    }
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int RunTool(const std::vector<std::string>& argv) {
  pid_t pid = Spawn(argv, true);
  if (pid < 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A DCMTK storescp child writing into `dir`; killed on destruction.
class StoreScp {
 public:
  StoreScp(const fs::path& dir, const std::vector<std::string>& extra) : port_(FreePort()) {
    std::vector<std::string> argv = {"storescp", "-aet", "PACS", "-od", dir.string(), "-dhl", "-ta", "5", "-ts", "10"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(std::to_string(port_));
    pid_ = Spawn(argv, true);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (PortAccepts(port_)) {
        ready_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~StoreScp() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool ready() const { return ready_; }
  uint16_t port() const { return port_; }

 private:
  uint16_t port_;
  pid_t pid_ = -1;
  bool ready_ = false;
};

class StoreScuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // as the node does
    char tmpl[] = "/tmp/store_scu_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ / "in");
    fs::create_directories(root_ / "out");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Writes a small 12-bit CR image; returns its path and SOP Instance UID.
  std::string MakeImage(const std::string& name, E_TransferSyntax xfer, std::string* uid_out,
                        const char* sop_class = kCrImageStorage) {
    char uid[100];
    dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
    char study[100];
    dcmGenerateUniqueIdentifier(study, SITE_STUDY_UID_ROOT);
    char series[100];
    dcmGenerateUniqueIdentifier(series, SITE_SERIES_UID_ROOT);
    DcmFileFormat file;
    DcmDataset* ds = file.getDataset();
    ds->putAndInsertString(DCM_SOPClassUID, sop_class);
    ds->putAndInsertString(DCM_SOPInstanceUID, uid);
    ds->putAndInsertString(DCM_StudyInstanceUID, study);
    ds->putAndInsertString(DCM_SeriesInstanceUID, series);
    ds->putAndInsertString(DCM_Modality, "CR");
    ds->putAndInsertString(DCM_PatientName, "Test^Scu");
    ds->putAndInsertString(DCM_PatientID, "SCU-1");
    ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
    ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    ds->putAndInsertUint16(DCM_Rows, 64);
    ds->putAndInsertUint16(DCM_Columns, 48);
    ds->putAndInsertUint16(DCM_BitsAllocated, 16);
    ds->putAndInsertUint16(DCM_BitsStored, 12);
    ds->putAndInsertUint16(DCM_HighBit, 11);
    ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    std::vector<Uint16> pixels(64 * 48);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<Uint16>((i * 37 + name.size()) % 4096);
    ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), pixels.size());
    const std::string path = (root_ / "in" / name).string();
    EXPECT_TRUE(file.saveFile(path.c_str(), xfer).good());
    if (uid_out != nullptr) *uid_out = uid;
    return path;
  }

  // The dataset (without meta header) re-encoded as Explicit VR Little Endian
  // for files in uncompressed syntaxes, or as stored for encapsulated ones.
  static std::string DatasetBytes(const std::string& path, const fs::path& scratch) {
    DcmFileFormat file;
    if (file.loadFile(path.c_str()).bad()) return "";
    DcmDataset* ds = file.getDataset();
    E_TransferSyntax xfer = ds->getOriginalXfer();
    if (!DcmXfer(xfer).isEncapsulated()) xfer = EXS_LittleEndianExplicit;
    if (ds->saveFile(scratch.string().c_str(), xfer).bad()) return "";
    std::ifstream in(scratch, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Received file holding `uid`, or "".
  std::string Received(const std::string& uid) const {
    for (const auto& entry : fs::directory_iterator(root_ / "out")) {
      DcmFileFormat file;
      if (file.loadFile(entry.path().string().c_str()).bad()) continue;
      OFString v;
      if (file.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, v).good() && uid == v.c_str())
        return entry.path().string();
    }
    return "";
  }

  StoreDestination Destination(uint16_t port) const {
    StoreDestination d;
    d.name = "test-pacs";
    d.ae_title = "PACS";
    d.host = "127.0.0.1";
    d.port = port;
    d.connect_timeout_s = 3;
    d.dimse_timeout_s = 10;
    return d;
  }

  fs::path root_;
};

TEST_F(StoreScuTest, SendsFilesInTheirOwnSyntaxes) {
  StoreScp scp(root_ / "out", {});
  ASSERT_TRUE(scp.ready());
  std::string uid1, uid2;
  const std::string f1 = MakeImage("a.dcm", EXS_LittleEndianExplicit, &uid1);
  const std::string f2 = MakeImage("b.dcm", EXS_LittleEndianImplicit, &uid2);

  auto results = SendFiles(Destination(scp.port()), {f1, f2});
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].sop_instance_uid, uid1);
  EXPECT_EQ((*results)[1].sop_instance_uid, uid2);
  EXPECT_EQ((*results)[0].dimse_status, 0);
  EXPECT_EQ((*results)[1].dimse_status, 0);

  for (const auto& [sent, uid] : {std::pair{f1, uid1}, std::pair{f2, uid2}}) {
    const std::string got = Received(uid);
    ASSERT_FALSE(got.empty()) << "not received: " << uid;
    const std::string a = DatasetBytes(sent, root_ / "sent.bin");
    const std::string b = DatasetBytes(got, root_ / "got.bin");
    ASSERT_FALSE(a.empty());
    EXPECT_TRUE(a == b) << "dataset content differs for " << uid;
  }
}

// An exporter that lost its claim stops between objects: what was sent
// stays sent, nothing after it goes out.
TEST_F(StoreScuTest, StopsBeforeTheNextObjectWhenToldTo) {
  StoreScp scp(root_ / "out", {});
  ASSERT_TRUE(scp.ready());
  std::string uid1, uid2;
  const std::string f1 = MakeImage("a.dcm", EXS_LittleEndianExplicit, &uid1);
  const std::string f2 = MakeImage("b.dcm", EXS_LittleEndianExplicit, &uid2);
  int asked = 0;
  auto results = SendFiles(Destination(scp.port()), {f1, f2}, [&asked] { return ++asked < 2; });
  ASSERT_FALSE(results.ok());
  EXPECT_EQ(results.status().code(), absl::StatusCode::kAborted) << results.status();
  EXPECT_EQ(asked, 2);
  EXPECT_FALSE(Received(uid1).empty());
  EXPECT_TRUE(Received(uid2).empty());
}

TEST_F(StoreScuTest, SendsCompressedObjectUnchangedWhenPeerAcceptsIt) {
  std::string uid;
  const std::string raw = MakeImage("raw.dcm", EXS_LittleEndianExplicit, &uid);
  const std::string jls = (root_ / "in" / "jls.dcm").string();
  if (RunTool({"dcmcjpls", raw, jls}) != 0) GTEST_SKIP() << "dcmcjpls not available";

  StoreScp scp(root_ / "out", {"+xa"});
  ASSERT_TRUE(scp.ready());
  auto results = SendFiles(Destination(scp.port()), {jls});
  ASSERT_TRUE(results.ok()) << results.status();
  const std::string got = Received(uid);
  ASSERT_FALSE(got.empty());
  DcmFileFormat received;
  ASSERT_TRUE(received.loadFile(got.c_str()).good());
  EXPECT_EQ(received.getDataset()->getOriginalXfer(), EXS_JPEGLSLossless);
  EXPECT_TRUE(DatasetBytes(jls, root_ / "sent.bin") == DatasetBytes(got, root_ / "got.bin"));
}

TEST_F(StoreScuTest, CompressedObjectThePeerOnlyTakesUncompressedIsPermanentFailure) {
  const std::string raw = MakeImage("raw.dcm", EXS_LittleEndianExplicit, nullptr);
  const std::string jls = (root_ / "in" / "jls.dcm").string();
  if (RunTool({"dcmcjpls", raw, jls}) != 0) GTEST_SKIP() << "dcmcjpls not available";

  StoreScp scp(root_ / "out", {});  // default: uncompressed syntaxes only
  ASSERT_TRUE(scp.ready());
  auto results = SendFiles(Destination(scp.port()), {jls});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kFailedPrecondition) << results.status();
}

TEST_F(StoreScuTest, UnsupportedSopClassIsPermanentFailure) {
  StoreScp scp(root_ / "out", {});
  ASSERT_TRUE(scp.ready());
  const std::string f = MakeImage("private.dcm", EXS_LittleEndianExplicit, nullptr, "1.2.826.0.1.3680043.10.1139.99.1");
  auto results = SendFiles(Destination(scp.port()), {f});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kFailedPrecondition) << results.status();
}

TEST_F(StoreScuTest, ClosedPortIsUnavailable) {
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr);
  auto results = SendFiles(Destination(FreePort()), {f});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
}

TEST_F(StoreScuTest, RejectedAssociationIsUnavailable) {
  StoreScp scp(root_ / "out", {"--refuse"});
  ASSERT_TRUE(scp.ready());
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr);
  auto results = SendFiles(Destination(scp.port()), {f});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
}

TEST_F(StoreScuTest, PeerAbortIsUnavailable) {
  StoreScp scp(root_ / "out", {"--abort-after"});
  ASSERT_TRUE(scp.ready());
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr);
  auto results = SendFiles(Destination(scp.port()), {f});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
}

TEST_F(StoreScuTest, UnreadableFileIsInvalidArgumentBeforeConnecting) {
  const std::string good = MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr);
  const std::string bad = (root_ / "in" / "garbage.dcm").string();
  std::ofstream(bad) << "this is not DICOM";
  // Nobody listens: an INVALID_ARGUMENT answer shows the files were checked first.
  auto results = SendFiles(Destination(FreePort()), {good, bad});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kInvalidArgument) << results.status();
  results = SendFiles(Destination(FreePort()), {(root_ / "in" / "missing.dcm").string()});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kInvalidArgument) << results.status();
}

TEST_F(StoreScuTest, NoFilesIsEmptySuccess) {
  auto results = SendFiles(Destination(FreePort()), {});
  ASSERT_TRUE(results.ok());
  EXPECT_TRUE(results->empty());
}

// DICOM TLS against storescp +tls with certificates from scripts/lib/tls.sh:
// a CA the destination's certificate chains to, and one it does not.
class TlsStoreScuTest : public StoreScuTest {
 protected:
  void SetUp() override {
    StoreScuTest::SetUp();
    certs_ = root_ / "certs";
    ASSERT_EQ(Certs("make_ca $D ca && make_ca $D other && "
                    "issue_cert $D/ca $D/server /CN=pacs.test --server --san IP:127.0.0.1,DNS:localhost && "
                    "issue_cert $D/ca $D/client /O=secondread/CN=SECONDREAD --client"),
              0);
  }

  // Runs a shell snippet with the helper loaded and D set to the certificate directory.
  int Certs(const std::string& snippet) {
    const std::string script = std::string("set -e; source '") + SECONDREAD_SOURCE_DIR + "/scripts/lib/tls.sh'; D='" +
                               certs_.string() + "'; " + snippet;
    return RunTool({"bash", "-c", script});
  }
  std::string Cert(const std::string& name) const { return (certs_ / (name + ".pem")).string(); }
  std::string Key(const std::string& name) const { return (certs_ / (name + ".key")).string(); }

  // storescp over TLS with `server`'s certificate; client certificates are
  // required and must chain to the first CA unless told otherwise.
  std::vector<std::string> TlsScpArgs(const std::string& server, const std::string& peer_check = "-rc") const {
    return {"+tls", Key(server), Cert(server), "+cf", Cert("ca"), peer_check};
  }

  StoreDestination TlsDestination(uint16_t port, const std::string& trusted = "ca",
                                  const std::string& client = "client") const {
    StoreDestination d = Destination(port);
    d.tls.enabled = true;
    d.tls.ca_file = Cert(trusted);
    if (!client.empty()) {
      d.tls.certificate_file = Cert(client);
      d.tls.private_key_file = Key(client);
    }
    return d;
  }

  fs::path certs_;
};

TEST_F(TlsStoreScuTest, SendsOverTlsWithItsClientCertificate) {
  StoreScp scp(root_ / "out", TlsScpArgs("server"));
  ASSERT_TRUE(scp.ready());
  std::string uid;
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, &uid);
  auto results = SendFiles(TlsDestination(scp.port()), {f});
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 1u);
  const std::string got = Received(uid);
  ASSERT_FALSE(got.empty());
  EXPECT_TRUE(DatasetBytes(f, root_ / "sent.bin") == DatasetBytes(got, root_ / "got.bin"));
}

// A destination limited to TLS 1.2 (storescp's Extended BCP 195 profile)
// is served with one of the profile's TLS 1.2 cipher suites.
TEST_F(TlsStoreScuTest, SendsToADestinationLimitedToTls12) {
  std::vector<std::string> args = TlsScpArgs("server");
  args.push_back("+pz");
  StoreScp scp(root_ / "out", args);
  ASSERT_TRUE(scp.ready());
  std::string uid;
  auto results = SendFiles(TlsDestination(scp.port()), {MakeImage("a.dcm", EXS_LittleEndianExplicit, &uid)});
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_FALSE(Received(uid).empty());
}

// Exporter threads send at once: each association keeps its own trust and
// its own failure reason.
TEST_F(TlsStoreScuTest, ConcurrentSendsKeepTheirOwnOutcome) {
  StoreScp good(root_ / "out", TlsScpArgs("server"));
  StoreScp bad(root_ / "out", TlsScpArgs("server"));
  ASSERT_TRUE(good.ready() && bad.ready());
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr);
  const StoreDestination trusted = TlsDestination(good.port());
  const StoreDestination untrusted = TlsDestination(bad.port(), "other");
  constexpr int kRounds = 4;
  std::vector<absl::Status> good_results(kRounds), bad_results(kRounds);
  std::thread a([&] {
    for (int i = 0; i < kRounds; ++i) good_results[i] = SendFiles(trusted, {f}).status();
  });
  std::thread b([&] {
    for (int i = 0; i < kRounds; ++i) bad_results[i] = SendFiles(untrusted, {f}).status();
  });
  a.join();
  b.join();
  for (int i = 0; i < kRounds; ++i) {
    EXPECT_TRUE(good_results[i].ok()) << good_results[i];
    EXPECT_EQ(bad_results[i].code(), absl::StatusCode::kUnavailable) << bad_results[i];
    EXPECT_NE(bad_results[i].message().find("failed the check"), std::string::npos) << bad_results[i];
  }
}

TEST_F(TlsStoreScuTest, PlainAssociationToATlsPortFails) {
  StoreScp scp(root_ / "out", TlsScpArgs("server"));
  ASSERT_TRUE(scp.ready());
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr);
  auto results = SendFiles(Destination(scp.port()), {f});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
}

TEST_F(TlsStoreScuTest, DestinationWhoseCertificateIsFromAnotherCaIsUnavailable) {
  StoreScp scp(root_ / "out", TlsScpArgs("server"));
  ASSERT_TRUE(scp.ready());
  std::string uid;
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, &uid);
  auto results = SendFiles(TlsDestination(scp.port(), "other"), {f});
  ASSERT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
  const std::string message(results.status().message());
  EXPECT_NE(message.find("test-pacs"), std::string::npos) << message;
  EXPECT_NE(message.find("TLS"), std::string::npos) << message;
  // storescp sends its CA along with its certificate: the chain ends in a
  // self-signed CA we do not trust.
  EXPECT_TRUE(message.find("self-signed certificate in certificate chain") != std::string::npos ||
              message.find("unable to get local issuer certificate") != std::string::npos)
      << message;
  EXPECT_TRUE(Received(uid).empty());
}

TEST_F(TlsStoreScuTest, CertificateNotNamingTheDestinationIsUnavailable) {
  ASSERT_EQ(Certs("issue_cert $D/ca $D/elsewhere /CN=pacs.test --server --san DNS:pacs.test,IP:10.9.9.9"), 0);
  StoreScp scp(root_ / "out", TlsScpArgs("elsewhere"));
  ASSERT_TRUE(scp.ready());
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr);

  // Addressed by IP: the certificate names 10.9.9.9, not 127.0.0.1.
  auto results = SendFiles(TlsDestination(scp.port()), {f});
  ASSERT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
  EXPECT_NE(results.status().message().find("IP address mismatch"), std::string::npos) << results.status();

  // Addressed by name: the certificate names pacs.test, not localhost.
  StoreDestination by_name = TlsDestination(scp.port());
  by_name.host = "localhost";
  results = SendFiles(by_name, {f});
  ASSERT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
  EXPECT_NE(results.status().message().find("hostname mismatch"), std::string::npos) << results.status();

  // The name the PACS's certificate carries, given for an address.
  StoreDestination named = TlsDestination(scp.port());
  named.tls.server_name = "pacs.test";
  results = SendFiles(named, {f});
  EXPECT_TRUE(results.ok()) << results.status();
}

TEST_F(TlsStoreScuTest, DestinationAddressedByTheNameInItsCertificateIsAccepted) {
  StoreScp scp(root_ / "out", TlsScpArgs("server"));
  ASSERT_TRUE(scp.ready());
  StoreDestination d = TlsDestination(scp.port());
  d.host = "localhost";
  auto results = SendFiles(d, {MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr)});
  EXPECT_TRUE(results.ok()) << results.status();
}

TEST_F(TlsStoreScuTest, ExpiredDestinationCertificateIsUnavailable) {
  ASSERT_EQ(Certs("issue_cert $D/ca $D/expired /CN=pacs.test --server --san IP:127.0.0.1 "
                  "--not-before 20200101000000Z --not-after 20200201000000Z"),
            0);
  StoreScp scp(root_ / "out", TlsScpArgs("expired"));
  ASSERT_TRUE(scp.ready());
  auto results = SendFiles(TlsDestination(scp.port()), {MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr)});
  ASSERT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
  EXPECT_NE(results.status().message().find("certificate has expired"), std::string::npos) << results.status();
}

TEST_F(TlsStoreScuTest, DestinationRequiringAClientCertificateRefusesUsWithoutOne) {
  StoreScp scp(root_ / "out", TlsScpArgs("server"));
  ASSERT_TRUE(scp.ready());
  std::string uid;
  const std::string f = MakeImage("a.dcm", EXS_LittleEndianExplicit, &uid);
  auto results = SendFiles(TlsDestination(scp.port(), "ca", ""), {f});
  ASSERT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
  EXPECT_NE(results.status().message().find("TLS"), std::string::npos) << results.status();
  EXPECT_TRUE(Received(uid).empty());
  // A destination that does not ask for one takes the association.
  StoreScp lenient(root_ / "out", TlsScpArgs("server", "-ic"));
  ASSERT_TRUE(lenient.ready());
  results = SendFiles(TlsDestination(lenient.port(), "ca", ""), {f});
  EXPECT_TRUE(results.ok()) << results.status();
}

// The Non-downgrading BCP 195 profile: a peer that speaks only TLS 1.1 is refused.
TEST_F(TlsStoreScuTest, DestinationOfferingOnlyTls11IsRefused) {
  const uint16_t port = FreePort();
  const pid_t server = Spawn({"openssl", "s_server", "-quiet", "-accept", "127.0.0.1:" + std::to_string(port),
                              "-cert", Cert("server"), "-key", Key("server"), "-tls1_1", "-cipher",
                              "DEFAULT:@SECLEVEL=0"},
                             true);
  ASSERT_GT(server, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!PortAccepts(port) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto results = SendFiles(TlsDestination(port), {MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr)});
  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
  ASSERT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
  EXPECT_NE(results.status().message().find("TLS"), std::string::npos) << results.status();
}

TEST_F(TlsStoreScuTest, CheckTlsNamesTheFileThatCannotBeUsed) {
  EXPECT_TRUE(CheckTls(TlsDestination(FreePort())).ok());
  EXPECT_TRUE(CheckTls(Destination(FreePort())).ok());

  StoreDestination d = TlsDestination(FreePort());
  d.tls.ca_file = (certs_ / "missing.pem").string();
  absl::Status st = CheckTls(d);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("missing.pem"), std::string::npos) << st;

  d = TlsDestination(FreePort());
  d.tls.ca_file.clear();
  EXPECT_EQ(CheckTls(d).code(), absl::StatusCode::kInvalidArgument);

  d = TlsDestination(FreePort());
  d.tls.private_key_file = Key("server");  // not the certificate's key
  st = CheckTls(d);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;

  d = TlsDestination(FreePort());
  const std::string junk = (certs_ / "junk.pem").string();
  std::ofstream(junk) << "not a certificate\n";
  d.tls.certificate_file = junk;
  st = CheckTls(d);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("junk.pem"), std::string::npos) << st;

  // A connection attempt with a file that cannot be used is retried later
  // (the file may be being replaced), not sent in the clear.
  d = TlsDestination(FreePort());
  d.tls.ca_file = junk;
  auto results = SendFiles(d, {MakeImage("a.dcm", EXS_LittleEndianExplicit, nullptr)});
  EXPECT_EQ(results.status().code(), absl::StatusCode::kUnavailable) << results.status();
}

TEST(ParseStoreDestinationTest, AcceptsGoodDestinations) {
  auto d = ParseStoreDestination("PACS@10.1.2.3:104");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ae_title, "PACS");
  EXPECT_EQ(d->host, "10.1.2.3");
  EXPECT_EQ(d->port, 104);
  EXPECT_EQ(d->calling_ae, "SECONDREAD");

  d = ParseStoreDestination("ARCHIVE_MAIN-01@pacs.hospital.example:11112");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ae_title, "ARCHIVE_MAIN-01");
  EXPECT_EQ(d->host, "pacs.hospital.example");
  EXPECT_EQ(d->port, 11112);

  d = ParseStoreDestination("ABCDEFGHIJKLMNOP@h:65535");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->port, 65535);
}

TEST(ParseStoreDestinationTest, RejectsBadDestinations) {
  for (const char* text : {
           "", "PACS", "PACS@host", "@host:104", "PACS@:104", "PACS@host:", "PACS@host:0",
           "PACS@host:65536", "PACS@host:-1", "PACS@host:10x", "PACS@host:1040000",
           "ABCDEFGHIJKLMNOPQ@host:104",  // 17 characters
           "PA\\CS@host:104", "PA\nCS@host:104", "PA\tCS@host:104", " PACS@host:104", "PACS @host:104",
           "PACS@ho st:104", "PACS@host;rm:104", "PACS@[::1]:104", "host:104@PACS",
       }) {
    EXPECT_FALSE(ParseStoreDestination(text).ok()) << "accepted: " << text;
  }
}

}  // namespace
}  // namespace secondread::scp
