#include "worklist/job_runner.h"

#include <algorithm>

namespace secondread::worklist {

JobRunner::JobRunner(JobRunnerOptions options, DatabaseOptions db, JobQueue* queue, Handler handler)
    : options_(std::move(options)), db_(std::move(db)), queue_(queue), handler_(std::move(handler)) {}

JobRunner::~JobRunner() { Stop(); }

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
    handler_(jobs->front());
  }
}

}  // namespace secondread::worklist
