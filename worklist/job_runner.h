// Threads that claim jobs of one queue and hand each to a handler: the loop
// the dispatcher and the exporter share. An idle thread sleeps on the
// queue's LISTEN channel, in short slices so Stop() is prompt.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "worklist/job_queue.h"

namespace secondread::worklist {

struct JobRunnerOptions {
  std::string queue;
  int concurrency = 1;
  std::string node_id;  // claimed_by is node_id/queue-N
  std::chrono::milliseconds idle_wait{1000};
};

class JobRunner {
 public:
  using Handler = std::function<void(const Job&)>;
  JobRunner(JobRunnerOptions options, DatabaseOptions db, JobQueue* queue, Handler handler);
  ~JobRunner();

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
