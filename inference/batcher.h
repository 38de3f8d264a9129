// The dynamic batcher, on Triton's lines: requests queue per priority level,
// and each model instance has one thread that forms a batch when a preferred
// (or the maximum) batch size is pending, or when the oldest request has
// waited max_queue_delay. Expired and cancelled requests are dropped before
// compute. A full queue answers RESOURCE_EXHAUSTED at once, so a client learns
// about overload instead of timing out.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"
#include "inference/backend.h"
#include "inference/model_config.h"

namespace secondread::inference {

using Clock = std::chrono::steady_clock;

struct JobResult {
  std::vector<ImageOutput> outputs;  // one per job image
  int64_t queue_us = 0;
  int64_t compute_us = 0;
  int batch_size = 0;
};

struct InferJob {
  std::vector<ImageView> images;
  int priority = 0;  // 0 is the highest (STAT)
  Clock::time_point deadline = Clock::time_point::max();
  // Lets the batcher skip work whose caller has gone away.
  std::function<bool()> cancelled;
  // Called exactly once, from a batcher thread or from Enqueue's caller when
  // the batcher shuts down.
  std::function<void(absl::StatusOr<JobResult>)> done;
  Clock::time_point enqueued{};
};

// Observations for metrics; every member may be empty.
struct BatcherHooks {
  std::function<void(int batch_size, double compute_seconds)> on_batch;
  std::function<void(double queue_seconds)> on_dequeue;
  std::function<void(int64_t pending)> on_pending;
};

class DynamicBatcher {
 public:
  DynamicBatcher(const BatchingConfig& config, std::vector<std::unique_ptr<ModelBackend>> instances,
                 BatcherHooks hooks = {});
  // Finishes what is queued, then stops the instance threads.
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // INVALID_ARGUMENT when the job has more images than max_batch_size,
  // RESOURCE_EXHAUSTED when max_queue_size requests are pending, UNAVAILABLE
  // after Stop(). On error `done` is not called.
  absl::Status Enqueue(std::unique_ptr<InferJob> job);

  // Refuses new work, lets queued work finish and joins the threads.
  void Stop();

  int64_t pending() const;

 private:
  using JobPtr = std::unique_ptr<InferJob>;
  void InstanceLoop(ModelBackend* backend);
  // Called with mu_ held. Fills `batch` when a batch should run now, moves
  // dropped jobs to `dropped`, and otherwise says how long to wait.
  bool FormBatch(Clock::time_point now, std::vector<JobPtr>& batch, std::vector<std::pair<JobPtr, absl::Status>>& dropped,
                 Clock::time_point& wake);
  int BatchTarget() const;

  const BatchingConfig config_;
  std::vector<std::unique_ptr<ModelBackend>> instances_;
  BatcherHooks hooks_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::deque<JobPtr>> queues_;  // one per priority level
  int64_t pending_requests_ = 0;
  int64_t pending_images_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace secondread::inference
