// A durable PostgreSQL job queue in the style of River: a job_state enum with
// named constraints, a claim with FOR UPDATE SKIP LOCKED on an index shaped
// like the claim query, leases with expiry and a reaper, attempts with
// exponential backoff and a dead letter (state 'discarded'), and
// LISTEN/NOTIFY wake-ups. Claim, commit, then work outside the transaction:
// SKIP LOCKED prevents double claims, not double effects, so every job's
// effect must be idempotent, and written under the claim (HoldInTx) so that
// a holder whose lease ran out cannot add its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worklist/db/pg_pool.h"
#include "worklist/db/queues.h"

namespace pqxx {
class transaction_base;
}

namespace secondread::worklist {


// Lower runs first: 0 = STAT, 1 = routine.
inline constexpr int kPriorityStat = 0;
inline constexpr int kPriorityRoutine = 1;

struct NewJob {
  std::string queue;
  int priority = kPriorityRoutine;
  nlohmann::json args = nlohmann::json::object();
  int max_attempts = 10;
  // Jobs with the same non-empty key are not inserted twice while one of them
  // is not yet completed or discarded (a partial unique index).
  std::string unique_key;
  std::chrono::milliseconds delay{0};
};

struct Job {
  int64_t id = 0;
  std::string queue;
  int priority = kPriorityRoutine;
  nlohmann::json args;
  int attempt = 0;  // 1 on the first claim
  int max_attempts = 0;
  std::string claimed_by;
  std::chrono::system_clock::time_point created_at;
};

struct QueueOptions {
  std::chrono::milliseconds lease{60000};
  std::chrono::milliseconds backoff_base{1000};  // attempt n waits base * 2^(n-1), jittered +-10 %
  std::chrono::milliseconds backoff_max{300000};
};

struct QueueCounts {  // per queue and state, for metrics
  std::string queue;
  std::string state;
  int64_t count = 0;
};

class JobQueue {
 public:
  JobQueue(PgPool* pool, QueueOptions options);

  // Inserts inside the caller's transaction, so a job exists exactly when the
  // work that created it committed. Returns the id, or 0 when unique_key
  // matched a live job. The NOTIFY is sent on commit. Throws libpqxx
  // exceptions like any other statement on tx; the arguments are not
  // validated here (the table's CHECK constraints reject bad values).
  static int64_t EnqueueInTx(pqxx::transaction_base& tx, const NewJob& job);
  absl::StatusOr<int64_t> Enqueue(const NewJob& job);

  // Claims up to max ready jobs of the queue (state available or retryable,
  // scheduled_at <= now), ordered by priority, scheduled_at, id, and marks
  // them running with a lease that expires after options.lease.
  absl::StatusOr<std::vector<Job>> Claim(const std::string& queue, const std::string& worker_id, int max);

  // Each call below acts only when the job is still running under this
  // claim (same id and attempt); otherwise it returns FAILED_PRECONDITION,
  // because the reaper gave the job to someone else.
  absl::Status Complete(const Job& job);
  // Retryable (with backoff) while attempts remain, else discarded. A
  // permanent failure is discarded at once.
  absl::Status Fail(const Job& job, const std::string& error, bool permanent);
  // Extends the lease of a long-running job.
  absl::Status Heartbeat(const Job& job);

  // The same fences inside a caller's transaction, so that a job's effects
  // and its end commit together or not at all. HoldInTx locks the job row
  // and says whether it is still running under this claim; the reaper skips
  // a locked row, so the claim cannot be lost until tx ends. CompleteInTx and
  // FailInTx return false (and change nothing) when the claim is lost;
  // FailInTx sets *discarded when the job will not run again.
  static bool HoldInTx(pqxx::transaction_base& tx, const Job& job);
  static bool CompleteInTx(pqxx::transaction_base& tx, const Job& job);
  bool FailInTx(pqxx::transaction_base& tx, const Job& job, const std::string& error, bool permanent,
                bool* discarded) const;

  // Called in the reaper's transaction for each job it discards (a lease
  // that expired on the last attempt), so the work the job stood for can be
  // marked failed with it.
  using DiscardHook = std::function<void(pqxx::transaction_base& tx, const Job& job, const std::string& reason)>;

  // Running jobs whose lease has expired become retryable (or discarded when
  // out of attempts). Returns how many were reaped.
  absl::StatusOr<int64_t> ReapExpired(const DiscardHook& on_discard = nullptr);

  const QueueOptions& options() const { return options_; }

  absl::StatusOr<std::vector<QueueCounts>> Counts();

  // The claim statement's SQL, with parameters $1 queue, $2 worker id, $3
  // max, $4 lease in milliseconds: tests EXPLAIN it to prove it uses
  // jobs_claim_idx.
  static const char* ClaimStatement();

 private:
  PgPool* pool_;
  QueueOptions options_;
};

// A dedicated connection that LISTENs on the queue's channel. Wait returns
// when a job was made ready (or at the timeout), so idle dispatchers sleep
// instead of polling. Reconnects by itself after a lost connection.
class JobNotifier {
 public:
  explicit JobNotifier(DatabaseOptions options);
  ~JobNotifier();
  // true when a notification for the queue arrived, false on timeout or
  // while the database is unreachable (then it sleeps for the timeout).
  // Also true right after a reconnect, since notifications sent while the
  // connection was down are lost. Jobs scheduled in the future (a delay or a
  // retry backoff) send no notification: the caller finds them by bounding
  // the timeout. Not thread-safe: one notifier per waiting thread.
  bool Wait(const std::string& queue, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace secondread::worklist
