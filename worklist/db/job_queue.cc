#include "worklist/db/job_queue.h"

#include <algorithm>
#include <cmath>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

namespace secondread::worklist {
namespace {

constexpr char kChannel[] = "secondread_jobs";

// The ON CONFLICT target repeats the partial unique index's predicate, which
// is how PostgreSQL infers a partial index as the arbiter.
constexpr char kEnqueue[] = R"SQL(
INSERT INTO jobs (queue, priority, args, max_attempts, unique_key, scheduled_at)
VALUES ($1, $2, $3::jsonb, $4, NULLIF($5, ''), now() + $6::float8 * interval '1 millisecond')
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'discarded')
DO NOTHING
RETURNING id
)SQL";

// The inner SELECT has the columns, order and predicate of jobs_claim_idx,
// so it walks the index in claim order and stops after LIMIT rows; SKIP
// LOCKED lets concurrent claimers pass each other instead of queueing. The
// UPDATE matches by id = ANY(ARRAY(...)) rather than a join so that a generic
// plan, which cannot see LIMIT's value, still uses the primary key instead of
// scanning the whole table, finished jobs included.
constexpr char kClaim[] = R"SQL(
WITH next AS (
  SELECT id FROM jobs
  WHERE queue = $1 AND state IN ('available', 'retryable') AND scheduled_at <= now()
  ORDER BY priority, scheduled_at, id
  LIMIT $3
  FOR UPDATE SKIP LOCKED),
claimed AS (
  UPDATE jobs
  SET state = 'running', attempt = attempt + 1, attempted_at = now(),
      lease_expires_at = now() + $4::float8 * interval '1 millisecond', claimed_by = $2
  WHERE id = ANY (ARRAY(SELECT id FROM next))
  RETURNING id, queue, priority, args, attempt, max_attempts, claimed_by, created_at, scheduled_at)
SELECT id, queue, priority, args::text, attempt, max_attempts, claimed_by,
       (extract(epoch FROM created_at) * 1000000)::bigint
FROM claimed
ORDER BY priority, scheduled_at, id
)SQL";

// The second EXISTS reads the snapshot from before the UPDATE: it makes a
// Complete that PgPool retried after its first try committed, but whose reply
// was lost with the connection, succeed instead of reporting a lost claim.
constexpr char kComplete[] = R"SQL(
WITH done AS (
  UPDATE jobs SET state = 'completed', finalized_at = now(), lease_expires_at = NULL
  WHERE id = $1 AND attempt = $2 AND state = 'running'
  RETURNING 1)
SELECT EXISTS (SELECT 1 FROM done)
    OR EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'completed')
)SQL";

constexpr char kFail[] = R"SQL(
UPDATE jobs SET
  state = CASE WHEN $4::boolean OR attempt >= max_attempts THEN 'discarded'::job_state
               ELSE 'retryable'::job_state END,
  scheduled_at = CASE WHEN $4::boolean OR attempt >= max_attempts THEN scheduled_at
                      ELSE now() + $5::float8 * interval '1 millisecond' END,
  finalized_at = CASE WHEN $4::boolean OR attempt >= max_attempts THEN now() END,
  lease_expires_at = NULL,
  errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'error', $3::text))
WHERE id = $1 AND attempt = $2 AND state = 'running'
RETURNING state::text
)SQL";

constexpr char kHeartbeat[] = R"SQL(
UPDATE jobs SET lease_expires_at = now() + $3::float8 * interval '1 millisecond'
WHERE id = $1 AND attempt = $2 AND state = 'running'
)SQL";

// SKIP LOCKED: a row locked right now belongs to a worker that is completing,
// failing or heartbeating it, so it is not abandoned.
constexpr char kReap[] = R"SQL(
WITH expired AS (
  SELECT id FROM jobs
  WHERE state = 'running' AND lease_expires_at < now()
  FOR UPDATE SKIP LOCKED)
UPDATE jobs SET
  state = CASE WHEN attempt >= max_attempts THEN 'discarded'::job_state ELSE 'retryable'::job_state END,
  scheduled_at = CASE WHEN attempt >= max_attempts THEN scheduled_at ELSE now() END,
  finalized_at = CASE WHEN attempt >= max_attempts THEN now() END,
  lease_expires_at = NULL,
  errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'error', 'lease expired'))
WHERE id = ANY (ARRAY(SELECT id FROM expired))
RETURNING id, queue, priority, args::text, attempt, max_attempts, COALESCE(claimed_by, ''), state::text
)SQL";

constexpr char kHold[] = R"SQL(
SELECT 1 FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'running' FOR UPDATE
)SQL";

constexpr char kCompleteRunning[] = R"SQL(
UPDATE jobs SET state = 'completed', finalized_at = now(), lease_expires_at = NULL
WHERE id = $1 AND attempt = $2 AND state = 'running'
)SQL";

constexpr char kCounts[] = R"SQL(
SELECT queue, state::text, count(*) FROM jobs GROUP BY queue, state ORDER BY queue, state
)SQL";

// The pool is shared with other modules, so statements are declared on each
// use; libpqxx ignores a repeated identical declaration and sends the
// PREPARE once per connection, on first execution.
pqxx::result ExecPrepared(pqxx::transaction_base& tx, const char* name, const char* sql, auto&&... args) {
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<decltype(args)>(args)...);
}

double Millis(std::chrono::milliseconds d) { return static_cast<double>(d.count()); }

// Error texts become jsonb strings: they must be valid UTF-8 without NUL, and
// are bounded so that a job failing many times keeps a small row.
std::string SanitizeError(const std::string& in) {
  constexpr size_t kMaxBytes = 2000;
  std::string out;
  out.reserve(std::min(in.size(), kMaxBytes));
  size_t i = 0;
  while (i < in.size()) {
    auto c = static_cast<unsigned char>(in[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool valid = len > 0 && i + len <= in.size();
    for (size_t k = 1; valid && k < len; ++k) valid = (static_cast<unsigned char>(in[i + k]) & 0xc0) == 0x80;
    if (c == 0) valid = false;
    size_t take = valid ? len : 1;
    if (out.size() + take > kMaxBytes) break;
    if (valid) {
      out.append(in, i, len);
    } else {
      out += '?';
    }
    i += take;
  }
  return out;
}

std::chrono::milliseconds Backoff(const QueueOptions& o, int attempt) {
  double ms = Millis(o.backoff_base) * std::pow(2.0, std::max(0, attempt - 1));
  ms = std::min(ms, Millis(o.backoff_max));
  // Jitter spreads out jobs that failed together (a peer that was down), so
  // they do not all retry in the same instant.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  ms *= std::uniform_real_distribution<double>(0.9, 1.1)(rng);
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

absl::Status LostClaim(const Job& job) {
  return absl::FailedPreconditionError("job " + std::to_string(job.id) + " attempt " + std::to_string(job.attempt) +
                                       " is no longer running under this claim");
}

absl::Status ValidateNewJob(const NewJob& job) {
  if (job.queue.empty() || job.queue.size() > 128) {
    return absl::InvalidArgumentError("queue name must have 1 to 128 characters");
  }
  if (job.priority != kPriorityStat && job.priority != kPriorityRoutine) {
    return absl::InvalidArgumentError("priority must be kPriorityStat or kPriorityRoutine");
  }
  if (!job.args.is_object()) return absl::InvalidArgumentError("job args must be a JSON object");
  if (job.max_attempts < 1) return absl::InvalidArgumentError("max_attempts must be at least 1");
  if (job.unique_key.size() > 512) return absl::InvalidArgumentError("unique_key is longer than 512 bytes");
  if (job.delay.count() < 0) return absl::InvalidArgumentError("delay must not be negative");
  return absl::OkStatus();
}

int64_t InsertJob(pqxx::transaction_base& tx, const NewJob& job, bool prepared) {
  std::string args = job.args.dump();
  double delay = Millis(job.delay);
  pqxx::result r = prepared ? ExecPrepared(tx, "jq_enqueue", kEnqueue, job.queue, job.priority, args,
                                           job.max_attempts, job.unique_key, delay)
                            : tx.exec_params(kEnqueue, job.queue, job.priority, args, job.max_attempts,
                                             job.unique_key, delay);
  return r.empty() ? 0 : r[0][0].as<int64_t>();
}

}  // namespace

JobQueue::JobQueue(PgPool* pool, QueueOptions options) : pool_(pool), options_(options) {}

const char* JobQueue::ClaimStatement() { return kClaim; }

int64_t JobQueue::EnqueueInTx(pqxx::transaction_base& tx, const NewJob& job) {
  // Prepared statements belong to a connection, and the caller's may be one
  // this module never prepared on.
  return InsertJob(tx, job, /*prepared=*/false);
}

absl::StatusOr<int64_t> JobQueue::Enqueue(const NewJob& job) {
  RETURN_IF_ERROR(ValidateNewJob(job));
  int64_t id = 0;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    id = InsertJob(tx, job, /*prepared=*/true);
  }));
  return id;
}

absl::StatusOr<std::vector<Job>> JobQueue::Claim(const std::string& queue, const std::string& worker_id, int max) {
  std::vector<Job> jobs;
  if (max <= 0) return jobs;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    jobs.clear();
    pqxx::nontransaction tx(c);
    pqxx::result r = ExecPrepared(tx, "jq_claim", kClaim, queue, worker_id, max, Millis(options_.lease));
    jobs.reserve(r.size());
    for (const auto& row : r) {
      Job j;
      j.id = row[0].as<int64_t>();
      j.queue = row[1].as<std::string>();
      j.priority = row[2].as<int>();
      j.args = nlohmann::json::parse(row[3].as<std::string>());
      j.attempt = row[4].as<int>();
      j.max_attempts = row[5].as<int>();
      j.claimed_by = row[6].as<std::string>();
      j.created_at = std::chrono::system_clock::time_point(std::chrono::microseconds(row[7].as<int64_t>()));
      jobs.push_back(std::move(j));
    }
  }));
  return jobs;
}

absl::Status JobQueue::Complete(const Job& job) {
  bool done = false;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    done = ExecPrepared(tx, "jq_complete", kComplete, job.id, job.attempt)[0][0].as<bool>();
  }));
  if (!done) return LostClaim(job);
  return absl::OkStatus();
}

absl::Status JobQueue::Fail(const Job& job, const std::string& error, bool permanent) {
  std::string text = SanitizeError(error);
  double backoff = Millis(Backoff(options_, job.attempt));
  bool updated = false;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    updated = !ExecPrepared(tx, "jq_fail", kFail, job.id, job.attempt, text, permanent, backoff).empty();
  }));
  if (!updated) return LostClaim(job);
  return absl::OkStatus();
}

absl::Status JobQueue::Heartbeat(const Job& job) {
  bool updated = false;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    auto r = ExecPrepared(tx, "jq_heartbeat", kHeartbeat, job.id, job.attempt, Millis(options_.lease));
    updated = r.affected_rows() == 1;
  }));
  if (!updated) return LostClaim(job);
  return absl::OkStatus();
}

bool JobQueue::HoldInTx(pqxx::transaction_base& tx, const Job& job) {
  return !tx.exec_params(kHold, job.id, job.attempt).empty();
}

bool JobQueue::CompleteInTx(pqxx::transaction_base& tx, const Job& job) {
  return tx.exec_params(kCompleteRunning, job.id, job.attempt).affected_rows() == 1;
}

bool JobQueue::FailInTx(pqxx::transaction_base& tx, const Job& job, const std::string& error, bool permanent,
                        bool* discarded) const {
  auto r = tx.exec_params(kFail, job.id, job.attempt, SanitizeError(error), permanent,
                          Millis(Backoff(options_, job.attempt)));
  if (r.empty()) return false;
  if (discarded) *discarded = r[0][0].as<std::string>() == "discarded";
  return true;
}

absl::StatusOr<int64_t> JobQueue::ReapExpired(const DiscardHook& on_discard) {
  int64_t reaped = 0;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    pqxx::work tx(c);
    auto rows = ExecPrepared(tx, "jq_reap", kReap);
    reaped = static_cast<int64_t>(rows.size());
    for (const auto& row : rows) {
      if (!on_discard || row[7].as<std::string>() != "discarded") continue;
      Job j;
      j.id = row[0].as<int64_t>();
      j.queue = row[1].as<std::string>();
      j.priority = row[2].as<int>();
      j.args = nlohmann::json::parse(row[3].as<std::string>());
      j.attempt = row[4].as<int>();
      j.max_attempts = row[5].as<int>();
      j.claimed_by = row[6].as<std::string>();
      on_discard(tx, j, "lease expired on attempt " + std::to_string(j.attempt) + " of " +
                            std::to_string(j.max_attempts));
    }
    tx.commit();
  }));
  return reaped;
}

absl::StatusOr<std::vector<QueueCounts>> JobQueue::Counts() {
  std::vector<QueueCounts> out;
  RETURN_IF_ERROR(pool_->Run([&](pqxx::connection_base& c) {
    out.clear();
    pqxx::nontransaction tx(c);
    for (const auto& row : ExecPrepared(tx, "jq_counts", kCounts)) {
      out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int64_t>()});
    }
  }));
  return out;
}

struct JobNotifier::Impl {
  class Receiver : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, std::set<std::string>* pending)
        : pqxx::notification_receiver(c, kChannel), pending_(pending) {}
    void operator()(const std::string& payload, int /*backend_pid*/) override { pending_->insert(payload); }

   private:
    std::set<std::string>* pending_;
  };

  explicit Impl(DatabaseOptions o) : options(std::move(o)) {}
  ~Impl() { Drop(); }

  bool Connect() {
    try {
      conn = std::make_unique<pqxx::connection>(PgPool::ConnectionString(options));
      // libpqxx swallows a LISTEN that failed on a broken connection; only an
      // open connection proves the LISTEN is in place.
      receiver = std::make_unique<Receiver>(*conn, &pending);
      if (conn->is_open()) return true;
    } catch (...) {
    }
    Drop();
    return false;
  }

  void Drop() noexcept {
    // Disconnecting first keeps the receiver's destructor from reconnecting
    // (libpqxx reactivates connections) just to send UNLISTEN.
    if (conn) conn->disconnect();
    receiver.reset();
    conn.reset();
  }

  DatabaseOptions options;
  // Queues notified but not yet consumed by a Wait for that queue.
  std::set<std::string> pending;
  std::unique_ptr<pqxx::connection> conn;
  std::unique_ptr<Receiver> receiver;
};

JobNotifier::JobNotifier(DatabaseOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->Connect();
}

JobNotifier::~JobNotifier() = default;

bool JobNotifier::Wait(const std::string& queue, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  Impl& s = *impl_;
  if (!s.conn) {
    // Notifications sent while no LISTEN was in place are lost, so a fresh
    // connection reports a wake-up and the caller looks for ready jobs.
    if (s.Connect()) return true;
    std::this_thread::sleep_until(deadline);
    return false;
  }
  for (;;) {
    if (s.pending.erase(queue) > 0) return true;
    auto now = Clock::now();
    if (now >= deadline) return false;
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now).count();
    try {
      s.conn->await_notification(static_cast<long>(left / 1000000), static_cast<long>(left % 1000000));
      // A closed socket makes the wait return at once with no notification;
      // without this check the loop would spin until the deadline.
      if (!s.conn->is_open()) throw pqxx::broken_connection("notification connection closed");
    } catch (...) {
      s.Drop();
      if (s.Connect()) return true;
      std::this_thread::sleep_until(deadline);
      return false;
    }
  }
}

}  // namespace secondread::worklist
