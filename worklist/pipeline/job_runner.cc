#include "worklist/pipeline/job_runner.h"

#include <algorithm>

namespace secondread::worklist {

Lease::Lease(JobQueue* queue, Job job) : queue_(queue), job_(std::move(job)) {
  thread_ = std::thread([this] { Beat(); });
}

Lease::~Lease() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status Lease::Check() const {
  if (!lost()) return absl::OkStatus();
  return absl::FailedPreconditionError("job " + std::to_string(job_.id) + " attempt " + std::to_string(job_.attempt) +
                                       " lost its claim");
}

void Lease::OnLost(std::function<void()> cancel) {
  // Under the lock, so that once this returns with an empty function no
  // earlier one is still running against an object its owner is about to
  // destroy.
  std::lock_guard<std::mutex> lock(mu_);
  if (lost() && cancel) {
    cancel();
    return;
  }
  on_lost_ = std::move(cancel);
}

void Lease::Beat() {
  const auto interval = std::max(std::chrono::milliseconds(100), queue_->options().lease / 3);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (cv_.wait_for(lock, interval, [this] { return stop_; })) break;
    lock.unlock();
    absl::Status st = queue_->Heartbeat(job_);
    lock.lock();
    // Only a definite answer ends the claim; a heartbeat that could not
    // reach the database is tried again, and the final commit's fence
    // decides if the lease ran out meanwhile.
    if (st.code() == absl::StatusCode::kFailedPrecondition) {
      lost_ = true;
      if (on_lost_) on_lost_();
      on_lost_ = nullptr;
      break;
    }
  }
}

JobRunner::JobRunner(JobRunnerOptions options, DatabaseOptions db, JobQueue* queue, Handler handler)
    : options_(std::move(options)), db_(std::move(db)), queue_(queue), handler_(std::move(handler)) {}

JobRunner::~JobRunner() { Stop(); }

std::unique_ptr<JobRunner> JobRunner::Started(JobRunnerOptions options, DatabaseOptions db, JobQueue* queue,
                                              Handler handler) {
  auto runner = std::make_unique<JobRunner>(std::move(options), std::move(db), queue, std::move(handler));
  runner->Start();
  return runner;
}

void JobRunner::Start() {
  for (int i = 0; i < options_.concurrency; ++i) threads_.emplace_back([this, i] { Loop(i); });
}

void JobRunner::Stop() {
  stop_ = true;
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void JobRunner::Loop(int index) {
  JobNotifier notifier(db_);
  const std::string me = options_.node_id + "/" + options_.queue + "-" + std::to_string(index);
  while (!stop_) {
    auto jobs = queue_->Claim(options_.queue, me, 1);
    if (!jobs.ok() || jobs->empty()) {
      // Jobs due later (backoff, delays) send no notification: the timed
      // wait finds them.
      notifier.Wait(options_.queue, std::min(options_.idle_wait, std::chrono::milliseconds(250)));
      continue;
    }
    Lease lease(queue_, jobs->front());
    handler_(lease);
  }
}

}  // namespace secondread::worklist
