// The lease a JobRunner keeps for a running handler, against a real
// PostgreSQL: heartbeats outlast many lease periods and reapings, and a
// claim taken away is reported, with the cancel callback run once.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <pqxx/pqxx>
#include <thread>

#include "worklist/pipeline/job_runner.h"

namespace secondread::worklist {
namespace {

using namespace std::chrono_literals;

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = std::getenv("SECONDREAD_TEST_DATABASE_URL");
    if (url == nullptr) GTEST_SKIP() << "SECONDREAD_TEST_DATABASE_URL is not set";
    url_ = url;
    db_.url = url_;
    db_.max_connections = 4;
    pool_ = std::make_unique<PgPool>(db_, nullptr);
    QueueOptions o;
    o.lease = 1500ms;  // heartbeats every 500 ms
    queue_ = std::make_unique<JobQueue>(pool_.get(), o);
    static std::atomic<int> n{0};
    name_ = "t_lease_" + std::to_string(getpid()) + "_" + std::to_string(++n);
    NewJob j;
    j.queue = name_;
    j.max_attempts = 3;
    ASSERT_TRUE(queue_->Enqueue(j).ok());
    auto jobs = queue_->Claim(name_, "test", 1);
    ASSERT_TRUE(jobs.ok() && jobs->size() == 1);
    job_ = jobs->front();
  }

  std::string State() {
    pqxx::connection c(url_);
    pqxx::nontransaction tx(c);
    return tx.exec_params1("SELECT state::text || ' ' || attempt FROM jobs WHERE id = $1", job_.id)[0]
        .as<std::string>();
  }

  std::string url_;
  DatabaseOptions db_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<JobQueue> queue_;
  std::string name_;
  Job job_;
};

TEST_F(LeaseTest, HeartbeatsKeepAClaimPastManyLeases) {
  Lease lease(queue_.get(), job_);
  for (int i = 0; i < 25; ++i) {  // 5 s: more than three leases
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(queue_->ReapExpired().ok());
  }
  EXPECT_FALSE(lease.lost());
  EXPECT_TRUE(lease.Check().ok());
  EXPECT_EQ(State(), "running 1");
}

TEST_F(LeaseTest, ALostClaimIsReportedAndCancelsOnce) {
  Lease lease(queue_.get(), job_);
  std::atomic<int> cancelled{0};
  lease.OnLost([&cancelled] { ++cancelled; });
  // What the reaper does after heartbeats stopped arriving in time.
  {
    pqxx::connection c(url_);
    pqxx::nontransaction tx(c);
    tx.exec_params("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1", job_.id);
  }
  ASSERT_TRUE(queue_->ReapExpired().ok());
  EXPECT_EQ(State(), "retryable 1");
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!lease.lost() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(lease.lost());
  EXPECT_EQ(lease.Check().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cancelled.load(), 1);
  // A callback set after the loss runs at once.
  lease.OnLost([&cancelled] { ++cancelled; });
  EXPECT_EQ(cancelled.load(), 2);
}

}  // namespace
}  // namespace secondread::worklist
