#include "inference/batcher.h"

#include <algorithm>

namespace secondread::inference {

DynamicBatcher::DynamicBatcher(const BatchingConfig& config, std::vector<std::unique_ptr<ModelBackend>> instances,
                               BatcherHooks hooks)
    : config_(config), instances_(std::move(instances)), hooks_(std::move(hooks)) {
  queues_.resize(static_cast<size_t>(std::max(1, config_.priority_levels)));
  for (auto& backend : instances_) threads_.emplace_back([this, b = backend.get()] { InstanceLoop(b); });
}

DynamicBatcher::~DynamicBatcher() { Stop(); }

void DynamicBatcher::Stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

int64_t DynamicBatcher::pending() const {
  std::lock_guard lk(mu_);
  return pending_requests_;
}

absl::Status DynamicBatcher::Enqueue(std::unique_ptr<InferJob> job) {
  const int64_t n = static_cast<int64_t>(job->images.size());
  if (n == 0) return absl::InvalidArgumentError("a request needs at least one image");
  if (n > config_.max_batch_size) {
    return absl::InvalidArgumentError("request has " + std::to_string(n) + " images; this model takes at most " +
                                      std::to_string(config_.max_batch_size) + " per request");
  }
  const size_t level = static_cast<size_t>(std::clamp(job->priority, 0, static_cast<int>(queues_.size()) - 1));
  int64_t pending_now = 0;
  {
    std::lock_guard lk(mu_);
    if (stopping_ || instances_.empty()) return absl::UnavailableError("model is unloading");
    if (pending_requests_ >= config_.max_queue_size) {
      return absl::ResourceExhaustedError("queue is full (" + std::to_string(config_.max_queue_size) +
                                          " pending requests); retry later");
    }
    job->enqueued = Clock::now();
    queues_[level].push_back(std::move(job));
    pending_requests_ += 1;
    pending_images_ += n;
    pending_now = pending_requests_;
  }
  if (hooks_.on_pending) hooks_.on_pending(pending_now);
  cv_.notify_one();
  return absl::OkStatus();
}

int DynamicBatcher::BatchTarget() const {
  if (pending_images_ >= config_.max_batch_size) return config_.max_batch_size;
  // The largest preferred size that the pending images can fill.
  int target = 0;
  for (int p : config_.preferred_batch_sizes) {
    if (p <= pending_images_) target = p;
  }
  return target;
}

bool DynamicBatcher::FormBatch(Clock::time_point now, std::vector<JobPtr>& batch,
                               std::vector<std::pair<JobPtr, absl::Status>>& dropped, Clock::time_point& wake) {
  // Drop what can no longer be useful before it occupies a batch slot.
  for (auto& q : queues_) {
    for (auto it = q.begin(); it != q.end();) {
      InferJob& j = **it;
      absl::Status why;
      if (j.deadline <= now) {
        why = absl::DeadlineExceededError("deadline passed while queued");
      } else if (j.cancelled && j.cancelled()) {
        why = absl::CancelledError("caller cancelled while queued");
      }
      if (!why.ok()) {
        pending_requests_ -= 1;
        pending_images_ -= static_cast<int64_t>(j.images.size());
        dropped.emplace_back(std::move(*it), why);
        it = q.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (pending_requests_ == 0) {
    wake = Clock::time_point::max();
    return false;
  }

  Clock::time_point oldest = Clock::time_point::max();
  for (auto& q : queues_) {
    if (!q.empty()) oldest = std::min(oldest, q.front()->enqueued);
  }
  const auto delay = std::chrono::microseconds(config_.max_queue_delay_us);
  int target = BatchTarget();
  if (target == 0) {
    if (stopping_ || now - oldest >= delay) {
      target = config_.max_batch_size;
    } else {
      wake = oldest + delay;
      return false;
    }
  }

  // Highest priority first, FIFO within a level; stop at the first request
  // that does not fit so that nothing overtakes an earlier request.
  int64_t images = 0;
  for (auto& q : queues_) {
    while (!q.empty()) {
      const int64_t n = static_cast<int64_t>(q.front()->images.size());
      if (images + n > target && images > 0) goto done;
      images += n;
      pending_requests_ -= 1;
      pending_images_ -= n;
      batch.push_back(std::move(q.front()));
      q.pop_front();
      if (images >= target) goto done;
    }
  }
done:
  return true;
}

void DynamicBatcher::InstanceLoop(ModelBackend* backend) {
  for (;;) {
    std::vector<JobPtr> batch;
    std::vector<std::pair<JobPtr, absl::Status>> dropped;
    bool more_pending = false;
    int64_t pending_now = 0;
    {
      std::unique_lock lk(mu_);
      for (;;) {
        Clock::time_point wake;
        if (FormBatch(Clock::now(), batch, dropped, wake)) break;
        if (!dropped.empty()) break;  // answer drops without waiting
        if (stopping_ && pending_requests_ == 0) return;
        if (wake == Clock::time_point::max()) {
          cv_.wait(lk);
        } else {
          cv_.wait_until(lk, wake);
        }
      }
      more_pending = pending_requests_ > 0;
      pending_now = pending_requests_;
    }
    if (more_pending) cv_.notify_one();
    if (hooks_.on_pending) hooks_.on_pending(pending_now);
    for (auto& [job, why] : dropped) job->done(why);
    if (batch.empty()) continue;

    const auto start = Clock::now();
    std::vector<const ImageView*> images;
    for (auto& job : batch) {
      for (const auto& img : job->images) images.push_back(&img);
      if (hooks_.on_dequeue) hooks_.on_dequeue(std::chrono::duration<double>(start - job->enqueued).count());
    }
    auto outputs = backend->Execute(images);
    const auto end = Clock::now();
    const int64_t compute_us = std::chrono::duration_cast<std::chrono::microseconds>(end - start).count();
    if (hooks_.on_batch) hooks_.on_batch(static_cast<int>(images.size()), std::chrono::duration<double>(end - start).count());

    if (outputs.ok() && outputs->size() != images.size()) {
      outputs = absl::InternalError("model returned " + std::to_string(outputs->size()) + " results for " +
                                    std::to_string(images.size()) + " images");
    }
    size_t offset = 0;
    for (auto& job : batch) {
      if (!outputs.ok()) {
        job->done(outputs.status());
        continue;
      }
      JobResult r;
      r.queue_us = std::chrono::duration_cast<std::chrono::microseconds>(start - job->enqueued).count();
      r.compute_us = compute_us;
      r.batch_size = static_cast<int>(images.size());
      for (size_t i = 0; i < job->images.size(); ++i) r.outputs.push_back(std::move((*outputs)[offset + i]));
      offset += job->images.size();
      job->done(std::move(r));
    }
  }
}

}  // namespace secondread::inference
