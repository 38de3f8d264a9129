// Threads that claim jobs of one queue and hand each to a handler: the loop
// the dispatcher and the exporter share. An idle thread sleeps on the
// queue's LISTEN channel, in short slices so Stop() is prompt.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "worklist/db/job_queue.h"

namespace secondread::worklist {

// Keeps a claimed job's lease alive while its handler works, however long
// the work takes, and tells the handler when the claim is lost (the reaper
// re-queued the job after heartbeats failed, e.g. while this process was
// stopped): from then on another holder may be doing the same work, and this
// one must write nothing more. Heartbeats run every third of the lease.
class Lease {
 public:
  Lease(JobQueue* queue, Job job);
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  const Job& job() const { return job_; }
  bool lost() const { return lost_.load(); }
  // FAILED_PRECONDITION once the claim is lost, else OK; checked between
  // the stages of a job.
  absl::Status Check() const;
  // Runs `cancel` (from the heartbeat thread) when the claim is lost, or at
  // once when it already is; an empty function removes it. Used to abandon
  // a call in flight.
  void OnLost(std::function<void()> cancel);

 private:
  void Beat();

  JobQueue* queue_;
  Job job_;
  std::atomic<bool> lost_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::function<void()> on_lost_;
  std::thread thread_;
};

struct JobRunnerOptions {
  std::string queue;
  int concurrency = 1;
  std::string node_id;  // claimed_by is node_id/queue-N
  std::chrono::milliseconds idle_wait{1000};
};

class JobRunner {
 public:
  // The lease is kept alive for as long as the handler runs.
  using Handler = std::function<void(Lease&)>;
  JobRunner(JobRunnerOptions options, DatabaseOptions db, JobQueue* queue, Handler handler);
  ~JobRunner();

  // A runner already started: what every queue's owner needs in its Start().
  static std::unique_ptr<JobRunner> Started(JobRunnerOptions options, DatabaseOptions db, JobQueue* queue,
                                            Handler handler);

  void Start();
  void Stop();

 private:
  void Loop(int index);

  JobRunnerOptions options_;
  DatabaseOptions db_;
  JobQueue* queue_;
  Handler handler_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace secondread::worklist
