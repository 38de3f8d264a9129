#include "scp/receive/internals/acceptor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <thread>
#include <vector>

namespace secondread::scp {
namespace {

using namespace std::chrono_literals;

uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string Item(unsigned char type, const std::string& value) {
  std::string out(1, static_cast<char>(type));
  out += '\0';
  out += static_cast<char>(value.size() >> 8);
  out += static_cast<char>(value.size() & 0xff);
  return out + value;
}

// A valid A-ASSOCIATE-RQ: the fixed part, an application context,
// Verification with Implicit VR Little Endian, and user information.
std::string AssociateRq(const std::string& calling = "STORESCU        ") {
  std::string body;
  body += std::string("\x00\x01\x00\x00", 4);
  body += std::string("SECONDREAD      ") + calling;
  body += std::string(32, '\0');
  body += Item(0x10, "1.2.840.10008.3.1.1.1");
  body += Item(0x20, std::string("\x01\x00\x00\x00", 4) + Item(0x30, "1.2.840.10008.1.1") +
                         Item(0x40, "1.2.840.10008.1.2"));
  body += Item(0x50, Item(0x51, std::string("\x00\x00\x40\x00", 4)) + Item(0x52, "1.2.3.4"));
  std::string pdu = "\x01";
  pdu += '\0';
  uint32_t n = static_cast<uint32_t>(body.size());
  for (int shift : {24, 16, 8, 0}) pdu += static_cast<char>((n >> shift) & 0xff);
  return pdu + body;
}

TEST(AssociateRqProblemTest, AcceptsAWellFormedRequestAndLegacyNulPadding) {
  EXPECT_EQ(AssociateRqProblem(AssociateRq()), "");
  EXPECT_EQ(AssociateRqProblem(AssociateRq(std::string("STORESCU") + std::string(8, '\0'))), "");
}

TEST(AssociateRqProblemTest, RefusesItemsThatOverrunTheirContainer) {
  std::string rq = AssociateRq();
  // The presentation context item claims 200 bytes more than the PDU holds.
  size_t pc = rq.find(std::string("\x20\x00", 2), 74);
  ASSERT_NE(pc, std::string::npos);
  std::string overrun = rq;
  overrun[pc + 3] = static_cast<char>(static_cast<unsigned char>(overrun[pc + 3]) + 200);
  EXPECT_EQ(AssociateRqProblem(overrun), "item overruns the PDU");
  // A sub-item longer than its presentation context.
  std::string sub = rq;
  sub[pc + 4 + 4 + 3] = static_cast<char>(static_cast<unsigned char>(sub[pc + 4 + 4 + 3]) + 40);
  EXPECT_EQ(AssociateRqProblem(sub), "sub-item overruns its presentation context");
  // Cut inside the user information item.
  std::string cut = rq.substr(0, rq.size() - 3);
  EXPECT_EQ(AssociateRqProblem(cut), "item overruns the PDU");
}

TEST(AssociateRqProblemTest, RefusesWhatDcmtkWouldMisreadOrLeakOn) {
  // The request the fuzzer found: a presentation context whose length runs
  // past the PDU (fuzz/regressions/associate_rq_items_overrun, the body). DCMTK 3.6.7 refused it but kept about 47 bytes of
  // it, per request, before any allow-list check.
  std::string found(
      "\x01\x00\x00\x00\x00\x7c\x00\x01\x00\x00\x53\x45\x43\x4f\x4e\x44\x52\x45\x41\x44\x20\x20\x20\x20"
      "\x20\x20\x53\x54\x4f\x52\x45\x53\x43\x55\x20\x20\x20\x20\x20\x20\x20\x20\x00\x00\x00\x00\x02\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x16\x00\x00\x00\x00"
      "\x00\x00\x10\x00\x00\x15\x31\x2e\x32\x2e\x38\x34\x30\x2e\x31\x55\x4e\x00\x00\xff\xff\xff\xff\x2e"
      "\x31\x2e\x31\x20\x00\x00\x2e\x01\x00\x00\x00\x30\x00\x00\x11\x39\x2e\x32\x2e\x38\x34\x30\x2e\x31"
      "\x30\x30\x30\x38\x2e\x31\x54\x45\x53\x54",
      130);
  EXPECT_EQ(AssociateRqProblem(found), "item overruns the PDU");
  // A presentation context holding a sub-item of type 0 after its abstract
  // syntax (fuzz/regressions/associate_rq_untyped_sub_item): DCMTK 3.6.7
  // refused it ("Presentation Context translation failure") and kept about
  // 350 bytes of it per request.
  std::string untyped = AssociateRq();
  size_t ts = untyped.find(std::string("\x40\x00", 2), 74);
  ASSERT_NE(ts, std::string::npos);
  untyped[ts] = '\0';
  EXPECT_EQ(AssociateRqProblem(untyped), "unexpected sub-item type 0 in presentation context");
  std::string two_abstract = AssociateRq();
  two_abstract[ts] = '\x30';
  EXPECT_EQ(AssociateRqProblem(two_abstract),
            "presentation context without one abstract syntax followed by transfer syntaxes");
  std::string odd_user = AssociateRq();
  size_t ui = odd_user.find(std::string("\x51\x00", 2), 74);
  odd_user[ui] = '\x60';
  EXPECT_EQ(AssociateRqProblem(odd_user), "") << "an unknown user information sub-item is skipped, not refused";
  // User information sub-items are checked inside too: a SOP Class Extended
  // Negotiation sub-item whose UID length runs past its end
  // (fuzz/regressions/associate_rq_extended_negotiation_overrun) made DCMTK
  // 3.6.7 keep about 70 bytes per request.
  auto with_user_item = [](const std::string& sub) {
    std::string rq = AssociateRq();
    size_t ui = rq.find(std::string("\x50\x00", 2), 74);
    size_t len = (static_cast<unsigned char>(rq[ui + 2]) << 8) | static_cast<unsigned char>(rq[ui + 3]);
    len += sub.size();
    rq[ui + 2] = static_cast<char>(len >> 8);
    rq[ui + 3] = static_cast<char>(len & 0xff);
    rq += sub;
    uint32_t n = static_cast<uint32_t>(rq.size() - 6);
    for (int i = 0; i < 4; ++i) rq[2 + i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
    return rq;
  };
  std::string uid = "1.2.840.10008.5.1.4.1.1.2";
  std::string good_ext = Item(0x56, std::string("\x00\x19", 2) + uid + "\x01");
  EXPECT_EQ(AssociateRqProblem(with_user_item(good_ext)), "");
  std::string bad_ext = Item(0x56, std::string("\x31\x2e", 2) + uid);
  EXPECT_EQ(AssociateRqProblem(with_user_item(bad_ext)), "malformed user information sub-item 86");
  std::string role = Item(0x54, std::string("\x00\x19", 2) + uid + "\x01\x01");
  EXPECT_EQ(AssociateRqProblem(with_user_item(role)), "");
  std::string short_role = Item(0x54, std::string("\x00\x19", 2) + uid);
  EXPECT_EQ(AssociateRqProblem(with_user_item(short_role)), "malformed user information sub-item 84");
  std::string identity = Item(0x58, std::string("\x02\x01\x00\x05", 4) + "alice" + std::string("\x00\x06", 2) + "secret");
  EXPECT_EQ(AssociateRqProblem(with_user_item(identity)), "");
  std::string lying_identity = Item(0x58, std::string("\x02\x01\x00\x50", 4) + "alice" + std::string("\x00\x06", 2) + "secret");
  EXPECT_EQ(AssociateRqProblem(with_user_item(lying_identity)), "malformed user information sub-item 88");
  // An unknown identity type, or a secondary field on a type without one
  // (fuzz/regressions/associate_rq_identity_type_10): DCMTK misread the rest
  // and kept the extended negotiation item parsed before.
  std::string kerberos_with_secondary =
      Item(0x58, std::string("\x03\x01\x00\x05", 4) + "alice" + std::string("\x00\x06", 2) + "secret");
  EXPECT_EQ(AssociateRqProblem(with_user_item(kerberos_with_secondary)), "malformed user information sub-item 88");
  std::string type_10 = Item(0x58, std::string("\x0a\x01\x00\x05", 4) + "alice" + std::string("\x00\x00", 2));
  EXPECT_EQ(AssociateRqProblem(with_user_item(type_10)), "malformed user information sub-item 88");
  std::string jwt = Item(0x58, std::string("\x05\x00\x00\x05", 4) + "a.b.c" + std::string("\x00\x00", 2));
  EXPECT_EQ(AssociateRqProblem(with_user_item(jwt)), "");
  // A transfer syntax longer than a UID may be
  // (fuzz/regressions/associate_rq_long_transfer_syntax): DCMTK refused it
  // and kept about 170 bytes per request.
  {
    std::string body;
    body += std::string("\x00\x01\x00\x00", 4) + "SECONDREAD      STORESCU        " + std::string(32, '\0');
    body += Item(0x10, "1.2.840.10008.3.1.1.1");
    body += Item(0x20, std::string("\x01\x00\x00\x00", 4) + Item(0x30, "1.2.840.10008.1.1") +
                           Item(0x40, "1.2.840.10008.1.2." + std::string(60, '1')));
    body += Item(0x50, Item(0x51, std::string("\x00\x00\x40\x00", 4)));
    std::string rq = "\x01";
    rq += '\0';
    uint32_t n = static_cast<uint32_t>(body.size());
    for (int shift : {24, 16, 8, 0}) rq += static_cast<char>((n >> shift) & 0xff);
    EXPECT_EQ(AssociateRqProblem(rq + body), "abstract or transfer syntax longer than 64 bytes");
  }
  std::string common = Item(0x57, std::string("\x00\x19", 2) + uid + std::string("\x00\x05", 2) + "1.2.3" +
                                      std::string("\x00\x07\x00\x05", 4) + "1.2.4");
  EXPECT_EQ(AssociateRqProblem(with_user_item(common)), "");
  std::string bad_common = Item(0x57, std::string("\x00\x19", 2) + uid + std::string("\x00\x05", 2) + "1.2.3" +
                                          std::string("\x00\x09\x00\x05", 4) + "1.2.4");
  EXPECT_EQ(AssociateRqProblem(with_user_item(bad_common)), "malformed user information sub-item 87");
  EXPECT_NE(AssociateRqProblem(AssociateRq(std::string(16, ' '))), "") << "an empty calling AE title";
  EXPECT_NE(AssociateRqProblem(AssociateRq(std::string("\0\0STORESCU      ", 16))), "");
  EXPECT_NE(AssociateRqProblem(AssociateRq(std::string("STORE\x07SCU       ", 16))), "");
  std::string no_pc = AssociateRq();
  size_t pc = no_pc.find(std::string("\x20\x00", 2), 74);
  size_t pc_len = 4 + ((static_cast<unsigned char>(no_pc[pc + 2]) << 8) | static_cast<unsigned char>(no_pc[pc + 3]));
  no_pc.erase(pc, pc_len);
  uint32_t n = static_cast<uint32_t>(no_pc.size() - 6);
  for (int i = 0; i < 4; ++i) no_pc[2 + i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  EXPECT_EQ(AssociateRqProblem(no_pc), "no presentation context");
  std::string unknown = AssociateRq();
  unknown[74] = '\x33';
  EXPECT_EQ(AssociateRqProblem(unknown), "unexpected item type 51");
}

class AcceptorTest : public ::testing::Test {
 protected:
  void Start(AcceptorOptions o) {
    o.bind_address = "127.0.0.1";
    o.plain_port = FreePort();
    port_ = o.plain_port;
    auto a = Acceptor::Create(o, nullptr, &metrics_);
    ASSERT_TRUE(a.ok()) << a.status();
    acceptor_ = std::move(*a);
    thread_ = std::thread([this] {
      acceptor_->Run(
          [this](ReadyConnection c) {
            std::lock_guard<std::mutex> lock(mu_);
            ready_.push_back(std::move(c));
            cv_.notify_all();
          },
          nullptr);
    });
  }
  void TearDown() override {
    if (acceptor_) {
      acceptor_->Stop();
      thread_.join();
    }
    for (auto& c : ready_) ::close(c.fd);
    for (int fd : clients_) ::close(fd);
  }
  int Connect() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    clients_.push_back(fd);
    return fd;
  }
  // Milliseconds until the node closes the connection, or -1 if it stays
  // open for `wait`.
  static long ClosedWithin(int fd, std::chrono::milliseconds wait) {
    auto start = std::chrono::steady_clock::now();
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return -1;
    char b;
    if (::recv(fd, &b, 1, 0) > 0) return -1;
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  }
  bool WaitReady(size_t n, std::chrono::milliseconds wait = 2000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, wait, [&] { return ready_.size() >= n; });
  }
  double Dropped(const std::string& reason) { return metrics_.ConnectionDropped(reason).Value(); }

  metrics::MetricsRegistry registry_;
  ScpMetrics metrics_{registry_};
  uint16_t port_ = 0;
  std::unique_ptr<Acceptor> acceptor_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ReadyConnection> ready_;
  std::vector<int> clients_;
};

TEST_F(AcceptorTest, HandsOverAWholeRequestThatArrivedInPieces) {
  Start({});
  int fd = Connect();
  std::string rq = AssociateRq();
  for (size_t off : {size_t{0}, size_t{3}, size_t{40}}) {
    size_t end = off == 40 ? rq.size() : (off == 0 ? 3 : 40);
    ASSERT_EQ(::send(fd, rq.data() + off, end - off, 0), static_cast<ssize_t>(end - off));
    if (end != rq.size()) {
      std::this_thread::sleep_for(50ms);
      std::lock_guard<std::mutex> lock(mu_);
      EXPECT_TRUE(ready_.empty()) << "handed over before the request was complete";
    }
  }
  ASSERT_TRUE(WaitReady(1));
  EXPECT_EQ(ready_[0].associate_rq, rq);
  EXPECT_EQ(ready_[0].peer, "127.0.0.1");
  EXPECT_FALSE(ready_[0].tls);
  EXPECT_EQ(::fcntl(ready_[0].fd, F_GETFL) & O_NONBLOCK, 0) << "DCMTK expects a blocking socket";
  EXPECT_EQ(acceptor_->peers()->Count("127.0.0.1"), 1) << "the handed-over connection still counts";
}

TEST_F(AcceptorTest, ClosesASilentConnectionAtItsDeadline) {
  AcceptorOptions o;
  o.association_deadline = 300ms;
  Start(o);
  int fd = Connect();
  long ms = ClosedWithin(fd, 3000ms);
  EXPECT_GE(ms, 200);
  EXPECT_LE(ms, 1500);
  for (int i = 0; i < 100 && Dropped("deadline") < 1; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(Dropped("deadline"), 1);
  // The peer sees the close a moment before the loop forgets the connection.
  for (int i = 0; i < 100 && acceptor_->peers()->Count("127.0.0.1") > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(acceptor_->peers()->Count("127.0.0.1"), 0);
}

TEST_F(AcceptorTest, ATricklingPeerIsClosedAtTheSameDeadline) {
  AcceptorOptions o;
  o.association_deadline = 400ms;
  Start(o);
  int fd = Connect();
  std::string rq = AssociateRq();
  auto start = std::chrono::steady_clock::now();
  long closed = -1;
  for (size_t i = 0; i < rq.size() && closed < 0; ++i) {
    if (::send(fd, rq.data() + i, 1, MSG_NOSIGNAL) != 1) break;
    closed = ClosedWithin(fd, 50ms);
  }
  long ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LE(ms, 1500);
  EXPECT_EQ(Dropped("deadline"), 1);
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_TRUE(ready_.empty());
}

TEST_F(AcceptorTest, RefusesWhatIsNotAnAssociateRequest) {
  Start({});
  int fd = Connect();
  std::string pdata("\x04\x00\x00\x00\x00\x10", 6);
  ::send(fd, pdata.data(), pdata.size(), 0);
  EXPECT_GE(ClosedWithin(fd, 2000ms), 0);
  EXPECT_EQ(Dropped("not_associate_rq"), 1);
  int tls = Connect();
  std::string hello("\x16\x03\x01\x00\x10", 5);
  ::send(tls, hello.data(), hello.size(), 0);
  EXPECT_GE(ClosedWithin(tls, 2000ms), 0);
  EXPECT_EQ(Dropped("tls_on_plain_port"), 1);
}

TEST_F(AcceptorTest, RefusesARequestLargerThanTheLimitBeforeReadingIt) {
  AcceptorOptions o;
  o.max_associate_rq_bytes = 4096;
  Start(o);
  int fd = Connect();
  std::string head("\x01\x00\x00\x00\x10\x00", 6);  // 4096 bytes of body: 4102 in all
  ::send(fd, head.data(), head.size(), 0);
  EXPECT_GE(ClosedWithin(fd, 2000ms), 0);
  EXPECT_EQ(Dropped("associate_rq_too_large"), 1);
  int small = Connect();
  std::string tiny("\x01\x00\x00\x00\x00\x10", 6);  // 16 bytes cannot hold the fixed part
  ::send(small, tiny.data(), tiny.size(), 0);
  EXPECT_GE(ClosedWithin(small, 2000ms), 0);
  EXPECT_EQ(Dropped("malformed_associate_rq"), 1);
}

TEST_F(AcceptorTest, CapsConnectionsPerPeerIncludingHandedOverOnes) {
  AcceptorOptions o;
  o.max_connections_per_peer = 2;
  Start(o);
  int a = Connect();
  std::string rq = AssociateRq();
  ::send(a, rq.data(), rq.size(), 0);
  ASSERT_TRUE(WaitReady(1));
  int b = Connect();
  int c = Connect();
  EXPECT_GE(ClosedWithin(c, 2000ms), 0) << "a third connection from one address was kept";
  EXPECT_EQ(ClosedWithin(b, 200ms), -1);
  EXPECT_EQ(Dropped("per_peer_limit"), 1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_[0].ticket = PeerTable::Ticket();  // the association ended
  }
  int d = Connect();
  EXPECT_EQ(ClosedWithin(d, 300ms), -1) << "the slot of an ended association was not given back";
  EXPECT_EQ(Dropped("per_peer_limit"), 1);
}

TEST_F(AcceptorTest, PendingBoundClosesTheOldestToMakeRoom) {
  AcceptorOptions o;
  o.max_pending_connections = 2;
  Start(o);
  int first = Connect();
  std::this_thread::sleep_for(50ms);
  int second = Connect();
  std::this_thread::sleep_for(50ms);
  int third = Connect();
  EXPECT_GE(ClosedWithin(first, 2000ms), 0) << "the oldest pending connection stayed";
  EXPECT_EQ(ClosedWithin(second, 200ms), -1);
  std::string rq = AssociateRq();
  ::send(third, rq.data(), rq.size(), 0);
  EXPECT_TRUE(WaitReady(1)) << "the newest connection was not served";
  EXPECT_EQ(Dropped("pending_limit"), 1);
}

TEST_F(AcceptorTest, APeerThatGoesAwayIsCountedNotLeaked) {
  Start({});
  int fd = Connect();
  std::this_thread::sleep_for(50ms);
  ::close(fd);
  clients_.pop_back();
  for (int i = 0; i < 100 && Dropped("peer_closed") < 1; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(Dropped("peer_closed"), 1);
  EXPECT_EQ(acceptor_->peers()->Count("127.0.0.1"), 0);
}

TEST(AcceptorOptionsTest, NeedsAPortAndATlsContextForTheTlsPort) {
  metrics::MetricsRegistry registry;
  ScpMetrics metrics(registry);
  AcceptorOptions none;
  none.plain_port = 0;
  EXPECT_FALSE(Acceptor::Create(none, nullptr, &metrics).ok());
  AcceptorOptions tls;
  tls.plain_port = 0;
  tls.tls_port = FreePort();
  EXPECT_FALSE(Acceptor::Create(tls, nullptr, &metrics).ok());
  AcceptorOptions defaults;
  EXPECT_EQ(defaults.association_deadline, std::chrono::milliseconds(10000));
}

}  // namespace
}  // namespace secondread::scp
