#include "worklist/db/job_queue.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "tests/unit/support/pg_test_server.h"

namespace secondread::worklist {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string DatabaseUrl() {
  const char* url = std::getenv("SECONDREAD_TEST_DATABASE_URL");
  return url ? url : "";
}

// What the tests inspect of a job row, read on a connection of their own.
struct Row {
  std::string state;
  int attempt = 0;
  nlohmann::json errors;
  double backoff_ms = 0;  // scheduled_at - the time of the last error
  bool finalized = false;
  bool leased = false;
};

class JobQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = DatabaseUrl();
    if (url_.empty()) GTEST_SKIP() << "SECONDREAD_TEST_DATABASE_URL is not set";
    db_.url = url_;
    db_.max_connections = 10;
    pool_ = std::make_unique<PgPool>(db_, nullptr);
    static std::atomic<int> counter{0};
    queue_ = std::string("t_") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
             std::to_string(getpid()) + "_" + std::to_string(counter++);
  }

  JobQueue Queue(QueueOptions o = {}) { return JobQueue(pool_.get(), o); }

  NewJob MakeJob(int priority = kPriorityRoutine, nlohmann::json args = nlohmann::json::object()) {
    NewJob j;
    j.queue = queue_;
    j.priority = priority;
    j.args = std::move(args);
    return j;
  }

  Row Read(int64_t id) {
    pqxx::connection c(url_);
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params(
        "SELECT state::text, attempt, errors::text, "
        "COALESCE(extract(epoch FROM scheduled_at - (errors->-1->>'at')::timestamptz) * 1000, 0), "
        "finalized_at IS NOT NULL, lease_expires_at IS NOT NULL FROM jobs WHERE id = $1",
        id);
    EXPECT_EQ(r.size(), 1u);
    Row row;
    if (r.empty()) return row;
    row.state = r[0][0].as<std::string>();
    row.attempt = r[0][1].as<int>();
    row.errors = nlohmann::json::parse(r[0][2].as<std::string>());
    row.backoff_ms = r[0][3].as<double>();
    row.finalized = r[0][4].as<bool>();
    row.leased = r[0][5].as<bool>();
    return row;
  }

  std::vector<Job> ClaimAll(JobQueue& q, int max = 100) {
    auto jobs = q.Claim(queue_, "w1", max);
    EXPECT_TRUE(jobs.ok()) << jobs.status();
    return jobs.ok() ? *jobs : std::vector<Job>{};
  }

  std::string url_;
  DatabaseOptions db_;
  std::unique_ptr<PgPool> pool_;
  std::string queue_;
};

TEST_F(JobQueueTest, EnqueueClaimComplete) {
  JobQueue q = Queue();
  auto id = q.Enqueue(MakeJob(kPriorityRoutine, {{"study", "1.2.3"}}));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_GT(*id, 0);
  EXPECT_EQ(Read(*id).state, "available");

  auto before = std::chrono::system_clock::now();
  auto jobs = ClaimAll(q, 10);
  ASSERT_EQ(jobs.size(), 1u);
  const Job& j = jobs[0];
  EXPECT_EQ(j.id, *id);
  EXPECT_EQ(j.queue, queue_);
  EXPECT_EQ(j.args, nlohmann::json({{"study", "1.2.3"}}));
  EXPECT_EQ(j.attempt, 1);
  EXPECT_EQ(j.max_attempts, 10);
  EXPECT_EQ(j.claimed_by, "w1");
  EXPECT_LT(std::chrono::abs(j.created_at - before), 10s);
  Row running = Read(j.id);
  EXPECT_EQ(running.state, "running");
  EXPECT_TRUE(running.leased);
  EXPECT_TRUE(ClaimAll(q).empty());

  ASSERT_TRUE(q.Complete(j).ok());
  Row done = Read(j.id);
  EXPECT_EQ(done.state, "completed");
  EXPECT_TRUE(done.finalized);
  EXPECT_FALSE(done.leased);
  // A retried Complete of the same claim (reply lost with the connection) succeeds.
  EXPECT_TRUE(q.Complete(j).ok());

  auto counts = q.Counts();
  ASSERT_TRUE(counts.ok()) << counts.status();
  int64_t completed = -1;
  for (const auto& c : *counts) {
    if (c.queue == queue_) {
      EXPECT_EQ(c.state, "completed");
      completed = c.count;
    }
  }
  EXPECT_EQ(completed, 1);
}

TEST_F(JobQueueTest, RejectsInvalidJobs) {
  JobQueue q = Queue();
  NewJob bad = MakeJob();
  bad.queue = "";
  EXPECT_EQ(q.Enqueue(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = MakeJob(7);
  EXPECT_EQ(q.Enqueue(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = MakeJob(kPriorityStat, nlohmann::json::array());
  EXPECT_EQ(q.Enqueue(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = MakeJob();
  bad.max_attempts = 0;
  EXPECT_EQ(q.Enqueue(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(JobQueueTest, ClaimsStatFirstThenScheduledAtThenId) {
  JobQueue q = Queue();
  std::vector<int64_t> ids;
  for (int p : {kPriorityRoutine, kPriorityRoutine, kPriorityStat, kPriorityRoutine, kPriorityStat}) {
    auto id = q.Enqueue(MakeJob(p));
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  // The fourth job (routine) was due earlier than the other routine jobs.
  {
    pqxx::connection c(url_);
    pqxx::nontransaction(c).exec_params("UPDATE jobs SET scheduled_at = now() - interval '1 hour' WHERE id = $1",
                                        ids[3]);
  }
  std::vector<int64_t> want = {ids[2], ids[4], ids[3], ids[0], ids[1]};
  std::vector<int64_t> one_by_one;
  for (int i = 0; i < 5; ++i) {
    auto jobs = ClaimAll(q, 1);
    ASSERT_EQ(jobs.size(), 1u);
    one_by_one.push_back(jobs[0].id);
  }
  EXPECT_EQ(one_by_one, want);
  EXPECT_TRUE(ClaimAll(q).empty());
}

TEST_F(JobQueueTest, BatchClaimIsReturnedInClaimOrder) {
  JobQueue q = Queue();
  auto r1 = q.Enqueue(MakeJob(kPriorityRoutine));
  auto s1 = q.Enqueue(MakeJob(kPriorityStat));
  auto r2 = q.Enqueue(MakeJob(kPriorityRoutine));
  ASSERT_TRUE(r1.ok() && s1.ok() && r2.ok());
  auto jobs = ClaimAll(q, 2);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id, *s1);
  EXPECT_EQ(jobs[0].priority, kPriorityStat);
  EXPECT_EQ(jobs[1].id, *r1);
}

TEST_F(JobQueueTest, DelayedJobIsNotClaimableBeforeItIsDue) {
  JobQueue q = Queue();
  NewJob j = MakeJob();
  j.delay = 700ms;
  auto start = Clock::now();
  auto id = q.Enqueue(j);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_TRUE(ClaimAll(q).empty());
  std::this_thread::sleep_until(start + 800ms);
  auto jobs = ClaimAll(q);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, *id);
}

TEST_F(JobQueueTest, UniqueKeyDedupesLiveJobsOnly) {
  JobQueue q = Queue();
  NewJob j = MakeJob();
  j.unique_key = queue_ + ":study-1";
  auto first = q.Enqueue(j);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_GT(*first, 0);
  auto dup = q.Enqueue(j);
  ASSERT_TRUE(dup.ok()) << dup.status();
  EXPECT_EQ(*dup, 0);
  {
    pqxx::connection c(url_);
    pqxx::work tx(c);
    EXPECT_EQ(JobQueue::EnqueueInTx(tx, j), 0);
    tx.commit();
  }
  // Still deduplicated while running.
  auto jobs = ClaimAll(q);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(*q.Enqueue(j), 0);
  ASSERT_TRUE(q.Complete(jobs[0]).ok());

  auto again = q.Enqueue(j);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_GT(*again, *first);
  // Jobs without a key are never deduplicated.
  EXPECT_GT(*q.Enqueue(MakeJob()), 0);
  EXPECT_GT(*q.Enqueue(MakeJob()), 0);
}

TEST_F(JobQueueTest, FailBacksOffThenDiscardsAfterMaxAttempts) {
  QueueOptions o;
  o.backoff_base = 400ms;
  o.backoff_max = 600ms;
  JobQueue q = Queue(o);
  NewJob nj = MakeJob();
  nj.max_attempts = 3;
  auto id = q.Enqueue(nj);
  ASSERT_TRUE(id.ok()) << id.status();

  // Attempt n waits base * 2^(n-1) +-10 %, capped at backoff_max before jitter.
  const double want_ms[] = {400, 600};
  for (int attempt = 1; attempt <= 2; ++attempt) {
    std::vector<Job> jobs;
    auto deadline = Clock::now() + 2s;
    while (jobs.empty() && Clock::now() < deadline) {
      jobs = ClaimAll(q);
      if (jobs.empty()) std::this_thread::sleep_for(20ms);
    }
    ASSERT_EQ(jobs.size(), 1u);
    ASSERT_EQ(jobs[0].attempt, attempt);
    ASSERT_TRUE(q.Fail(jobs[0], "boom " + std::to_string(attempt), false).ok());
    Row r = Read(*id);
    EXPECT_EQ(r.state, "retryable");
    EXPECT_FALSE(r.finalized);
    EXPECT_FALSE(r.leased);
    EXPECT_GE(r.backoff_ms, want_ms[attempt - 1] * 0.9 - 1);
    EXPECT_LE(r.backoff_ms, want_ms[attempt - 1] * 1.1 + 1);
    EXPECT_TRUE(ClaimAll(q).empty()) << "claimable before its backoff elapsed";
  }
  std::this_thread::sleep_for(700ms);
  auto jobs = ClaimAll(q);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].attempt, 3);
  ASSERT_TRUE(q.Fail(jobs[0], "boom 3", false).ok());

  Row r = Read(*id);
  EXPECT_EQ(r.state, "discarded");
  EXPECT_TRUE(r.finalized);
  EXPECT_EQ(r.attempt, 3);
  ASSERT_EQ(r.errors.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.errors[i]["attempt"], i + 1);
    EXPECT_EQ(r.errors[i]["error"], "boom " + std::to_string(i + 1));
    EXPECT_TRUE(r.errors[i]["at"].is_string());
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(ClaimAll(q).empty());
  // A second Fail of the finished claim has nothing to act on.
  EXPECT_EQ(q.Fail(jobs[0], "again", false).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(JobQueueTest, PermanentFailureIsDiscardedAtOnce) {
  JobQueue q = Queue();
  auto id = q.Enqueue(MakeJob());
  ASSERT_TRUE(id.ok()) << id.status();
  auto jobs = ClaimAll(q);
  ASSERT_EQ(jobs.size(), 1u);
  // Invalid UTF-8 and NUL must not make the error unstorable.
  std::string error = std::string("bad dataset \xff\xfe ") + '\0' + " end";
  ASSERT_TRUE(q.Fail(jobs[0], error, true).ok());
  Row r = Read(*id);
  EXPECT_EQ(r.state, "discarded");
  EXPECT_EQ(r.attempt, 1);
  EXPECT_TRUE(r.finalized);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0]["error"], "bad dataset ?? ? end");
  EXPECT_TRUE(ClaimAll(q).empty());
}

TEST_F(JobQueueTest, ExpiredLeaseIsReapedAndReclaimedWithTheNextAttempt) {
  QueueOptions o;
  o.lease = 200ms;
  JobQueue q = Queue(o);
  auto id = q.Enqueue(MakeJob());
  ASSERT_TRUE(id.ok()) << id.status();
  auto first = ClaimAll(q);
  ASSERT_EQ(first.size(), 1u);
  auto none = q.ReapExpired();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(Read(*id).state, "running");

  std::this_thread::sleep_for(300ms);
  auto reaped = q.ReapExpired();
  ASSERT_TRUE(reaped.ok()) << reaped.status();
  EXPECT_GE(*reaped, 1);
  Row r = Read(*id);
  EXPECT_EQ(r.state, "retryable");
  EXPECT_FALSE(r.leased);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0]["error"], "lease expired");
  EXPECT_EQ(r.errors[0]["attempt"], 1);

  // The first worker comes back too late: every call reports the lost claim.
  EXPECT_EQ(q.Complete(first[0]).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(q.Heartbeat(first[0]).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(q.Fail(first[0], "late", false).code(), absl::StatusCode::kFailedPrecondition);

  auto second = q.Claim(queue_, "w2", 10);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].id, *id);
  EXPECT_EQ((*second)[0].attempt, 2);
  EXPECT_EQ((*second)[0].claimed_by, "w2");
  // The old claim cannot complete the new one either.
  EXPECT_EQ(q.Complete(first[0]).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(q.Complete((*second)[0]).ok());
  EXPECT_EQ(Read(*id).state, "completed");
}

TEST_F(JobQueueTest, ReaperDiscardsJobsOutOfAttempts) {
  QueueOptions o;
  o.lease = 100ms;
  JobQueue q = Queue(o);
  NewJob nj = MakeJob();
  nj.max_attempts = 1;
  auto id = q.Enqueue(nj);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_EQ(ClaimAll(q).size(), 1u);
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(q.ReapExpired().ok());
  Row r = Read(*id);
  EXPECT_EQ(r.state, "discarded");
  EXPECT_TRUE(r.finalized);
  EXPECT_EQ(r.errors.size(), 1u);
}

TEST_F(JobQueueTest, HeartbeatKeepsTheLease) {
  QueueOptions o;
  o.lease = 1000ms;
  JobQueue q = Queue(o);
  auto id = q.Enqueue(MakeJob());
  ASSERT_TRUE(id.ok()) << id.status();
  auto jobs = ClaimAll(q);
  ASSERT_EQ(jobs.size(), 1u);
  std::this_thread::sleep_for(600ms);
  ASSERT_TRUE(q.Heartbeat(jobs[0]).ok());
  std::this_thread::sleep_for(600ms);  // past the first lease, within the extended one
  ASSERT_TRUE(q.ReapExpired().ok());
  EXPECT_EQ(Read(*id).state, "running");
  EXPECT_TRUE(q.Complete(jobs[0]).ok());
}

TEST_F(JobQueueTest, ConcurrentClaimersClaimEveryJobExactlyOnce) {
  constexpr int kJobs = 2000;
  constexpr int kThreads = 8;
  {
    pqxx::connection c(url_);
    pqxx::work tx(c);
    for (int i = 0; i < kJobs; ++i) {
      ASSERT_GT(JobQueue::EnqueueInTx(tx, MakeJob(i % 3 == 0 ? kPriorityStat : kPriorityRoutine, {{"n", i}})), 0);
    }
    tx.commit();
  }
  JobQueue q = Queue();
  std::atomic<int> claimed{0};
  std::atomic<int> errors{0};
  std::mutex mu;
  std::map<int64_t, int> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto deadline = Clock::now() + 60s;
      while (claimed.load() < kJobs && Clock::now() < deadline) {
        auto jobs = q.Claim(queue_, "w" + std::to_string(t), 7);
        if (!jobs.ok()) {
          ++errors;
          continue;
        }
        for (const Job& j : *jobs) {
          {
            std::lock_guard<std::mutex> lock(mu);
            ++seen[j.id];
          }
          if (j.attempt != 1 || !q.Complete(j).ok()) ++errors;
        }
        claimed += static_cast<int>(jobs->size());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(claimed.load(), kJobs);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kJobs));
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << "job " << id << " claimed " << n << " times";

  pqxx::connection c(url_);
  auto r = pqxx::nontransaction(c).exec_params(
      "SELECT count(*) FILTER (WHERE state = 'completed' AND attempt = 1), count(*) FROM jobs WHERE queue = $1",
      queue_);
  EXPECT_EQ(r[0][0].as<int>(), kJobs);
  EXPECT_EQ(r[0][1].as<int>(), kJobs);
}

TEST_F(JobQueueTest, NotifierWakesOnCommitOnly) {
  JobNotifier notifier(db_);
  // Nothing pending: the wait runs to its timeout.
  auto t0 = Clock::now();
  EXPECT_FALSE(notifier.Wait(queue_, 200ms));
  EXPECT_GE(Clock::now() - t0, 190ms);

  // Committed in another connection while the notifier waits.
  std::atomic<int64_t> committed_at{0};
  std::thread producer([&] {
    std::this_thread::sleep_for(300ms);
    pqxx::connection c(url_);
    pqxx::work tx(c);
    JobQueue::EnqueueInTx(tx, MakeJob());
    std::this_thread::sleep_for(200ms);  // not visible, so not notified, before the commit
    tx.commit();
    committed_at = Clock::now().time_since_epoch().count();
  });
  t0 = Clock::now();
  bool woke = notifier.Wait(queue_, 5s);
  auto woke_at = Clock::now();
  producer.join();
  EXPECT_TRUE(woke);
  auto commit = Clock::time_point(Clock::duration(committed_at.load()));
  EXPECT_GE(woke_at - t0, 450ms) << "woke before the commit";
  // A missed notification would wake at the 5 s timeout, 4.5 s after the commit.
  EXPECT_LT(woke_at - commit, 3s);

  // A rolled-back enqueue sends nothing.
  {
    pqxx::connection c(url_);
    pqxx::work tx(c);
    JobQueue::EnqueueInTx(tx, MakeJob());
    tx.abort();
  }
  EXPECT_FALSE(notifier.Wait(queue_, 700ms));

  // Another queue's job does not wake this queue's waiter, but is kept for a
  // wait on that queue.
  std::string other = queue_ + "_other";
  NewJob oj = MakeJob();
  oj.queue = other;
  JobQueue q = Queue();
  ASSERT_TRUE(q.Enqueue(oj).ok());
  EXPECT_FALSE(notifier.Wait(queue_, 500ms));
  EXPECT_TRUE(notifier.Wait(other, 2s));

  // A delayed job is found by the caller's timed wait, not by a notification.
  NewJob later = MakeJob();
  later.delay = 60s;
  ASSERT_TRUE(q.Enqueue(later).ok());
  EXPECT_FALSE(notifier.Wait(queue_, 500ms));

  // A retry scheduled now (a reaped lease) wakes waiters again.
  QueueOptions o;
  o.lease = 50ms;
  JobQueue short_lease = Queue(o);
  ASSERT_TRUE(q.Enqueue(MakeJob()).ok());
  EXPECT_TRUE(notifier.Wait(queue_, 1s));
  auto claimed = short_lease.Claim(queue_, "w", 10);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_FALSE(claimed->empty());
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(short_lease.ReapExpired().ok());
  EXPECT_TRUE(notifier.Wait(queue_, 1s));
}

TEST_F(JobQueueTest, ClaimQueryUsesTheClaimIndex) {
  pqxx::connection c(url_);
  std::string bulk = queue_ + "_bulk";
  {
    pqxx::work tx(c);
    tx.exec_params(
        "INSERT INTO jobs (queue, priority, args, max_attempts) "
        "SELECT $1, g % 2, '{}', 3 FROM generate_series(1, 5000) g",
        bulk);
    tx.commit();
  }
  pqxx::nontransaction tx(c);
  tx.exec("ANALYZE jobs");
  tx.exec(std::string("PREPARE claim AS ") + JobQueue::ClaimStatement());
  auto plan = [&](const std::string& setup) {
    tx.exec(setup);
    std::string text;
    for (const auto& row : tx.exec("EXPLAIN EXECUTE claim(" + tx.quote(bulk) + ", 'w', 10, 60000)")) {
      text += row[0].as<std::string>() + "\n";
    }
    return text;
  };
  std::string custom = plan("SET plan_cache_mode = force_custom_plan");
  EXPECT_NE(custom.find("Index Scan using jobs_claim_idx"), std::string::npos) << custom;
  // A prepared statement may switch to a generic plan, which cannot see the
  // LIMIT: it must still read the index, and find rows by primary key.
  std::string generic = plan("SET plan_cache_mode = force_generic_plan");
  EXPECT_NE(generic.find("Index Scan using jobs_claim_idx"), std::string::npos) << generic;
  EXPECT_EQ(generic.find("Seq Scan"), std::string::npos) << generic;
  tx.exec("RESET plan_cache_mode");
  tx.exec_params("DELETE FROM jobs WHERE queue = $1", bulk);
}


// Last in the file: it stops the shared test server.
TEST_F(JobQueueTest, DatabaseDownGivesUnavailableAndRecovers) {
  TestServer server;
  if (!server.Load()) GTEST_SKIP() << "SECONDREAD_TEST_PG_ENV is not set";
  db_.connect_timeout_s = 2;
  pool_ = std::make_unique<PgPool>(db_, nullptr);
  JobQueue q = Queue();
  auto id = q.Enqueue(MakeJob());
  ASSERT_TRUE(id.ok()) << id.status();
  auto jobs = ClaimAll(q);
  ASSERT_EQ(jobs.size(), 1u);
  JobNotifier notifier(db_);

  ASSERT_TRUE(server.Stop());
  struct Restart {
    TestServer* s;
    bool done = false;
    ~Restart() {
      if (!done) s->Start();
    }
  } restart{&server};

  auto unavailable = [](const absl::Status& s) { return s.code() == absl::StatusCode::kUnavailable; };
  EXPECT_TRUE(unavailable(q.Enqueue(MakeJob()).status()));
  EXPECT_TRUE(unavailable(q.Claim(queue_, "w1", 1).status()));
  EXPECT_TRUE(unavailable(q.Complete(jobs[0])));
  EXPECT_TRUE(unavailable(q.Fail(jobs[0], "x", false)));
  EXPECT_TRUE(unavailable(q.Heartbeat(jobs[0])));
  EXPECT_TRUE(unavailable(q.ReapExpired().status()));
  EXPECT_TRUE(unavailable(q.Counts().status()));
  auto t0 = Clock::now();
  EXPECT_FALSE(notifier.Wait(queue_, 300ms));
  EXPECT_GE(Clock::now() - t0, 290ms);
  t0 = Clock::now();
  EXPECT_FALSE(notifier.Wait(queue_, 300ms));
  EXPECT_GE(Clock::now() - t0, 290ms);

  ASSERT_TRUE(server.Start());
  restart.done = true;
  // Stale pooled connections are replaced by PgPool's retry.
  ASSERT_TRUE(q.Complete(jobs[0]).ok());
  auto after = q.Enqueue(MakeJob());
  ASSERT_TRUE(after.ok()) << after.status();
  // The reconnect itself is a wake-up: notifications were lost meanwhile.
  EXPECT_TRUE(notifier.Wait(queue_, 2s));
  EXPECT_FALSE(notifier.Wait(queue_, 200ms));
  ASSERT_TRUE(q.Enqueue(MakeJob()).ok());
  EXPECT_TRUE(notifier.Wait(queue_, 1s));
}

}  // namespace
}  // namespace secondread::worklist
