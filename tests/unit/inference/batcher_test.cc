#include "inference/batcher.h"

#include <gtest/gtest.h>

#include <future>
#include <string>

#include "tests/unit/inference/fake_backend.h"

namespace secondread::inference {
namespace {

using testing::FakeBackend;

// Owns image bytes and collects results for one test.
class Harness {
 public:
  explicit Harness(BatchingConfig config) {
    auto backend = std::make_unique<FakeBackend>();
    backend_ = backend.get();
    std::vector<std::unique_ptr<ModelBackend>> instances;
    instances.push_back(std::move(backend));
    batcher_ = std::make_unique<DynamicBatcher>(config, std::move(instances));
  }

  // Enqueues a job of `images` images with ids id, id+1, ...
  absl::Status Submit(int id, int priority = 1, int images = 1,
                      Clock::time_point deadline = Clock::time_point::max()) {
    auto job = std::make_unique<InferJob>();
    for (int i = 0; i < images; ++i) {
      bytes_.push_back(std::make_unique<std::string>(1, static_cast<char>(id + i)));
      ImageView v;
      v.shape = {1, 1};
      v.data = *bytes_.back();
      job->images.push_back(v);
    }
    job->priority = priority;
    job->deadline = deadline;
    auto promise = std::make_shared<std::promise<absl::StatusOr<JobResult>>>();
    futures_[id] = promise->get_future();
    job->done = [promise](absl::StatusOr<JobResult> r) { promise->set_value(std::move(r)); };
    return batcher_->Enqueue(std::move(job));
  }

  absl::StatusOr<JobResult> Result(int id) { return futures_.at(id).get(); }
  FakeBackend& backend() { return *backend_; }
  DynamicBatcher& batcher() { return *batcher_; }

 private:
  std::vector<std::unique_ptr<std::string>> bytes_;
  std::map<int, std::future<absl::StatusOr<JobResult>>> futures_;
  FakeBackend* backend_ = nullptr;
  std::unique_ptr<DynamicBatcher> batcher_;
};

BatchingConfig Config(int max_batch, int64_t delay_us, std::vector<int> preferred = {}, int queue = 100) {
  BatchingConfig c;
  c.max_batch_size = max_batch;
  c.max_queue_delay_us = delay_us;
  c.preferred_batch_sizes = std::move(preferred);
  c.max_queue_size = queue;
  c.priority_levels = 2;
  return c;
}

TEST(DynamicBatcherTest, CombinesQueuedRequestsUpToMaxBatchInArrivalOrder) {
  Harness h(Config(4, 0));
  h.backend().Hold();
  ASSERT_TRUE(h.Submit(1).ok());
  h.backend().WaitStarted(1);  // the instance is busy with request 1
  for (int id = 2; id <= 7; ++id) ASSERT_TRUE(h.Submit(id).ok());
  h.backend().Release();
  for (int id = 1; id <= 7; ++id) {
    auto r = h.Result(id);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->outputs.size(), 1u);
    EXPECT_FLOAT_EQ(r->outputs[0].scores[0], static_cast<float>(id) / 255.0f);
  }
  auto batches = h.backend().batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0], (std::vector<int>{1}));
  EXPECT_EQ(batches[1], (std::vector<int>{2, 3, 4, 5}));
  EXPECT_EQ(batches[2], (std::vector<int>{6, 7}));
}

TEST(DynamicBatcherTest, StatRequestsOvertakeRoutineOnes) {
  Harness h(Config(2, 0));
  h.backend().Hold();
  ASSERT_TRUE(h.Submit(1).ok());
  h.backend().WaitStarted(1);
  ASSERT_TRUE(h.Submit(10, /*priority=*/1).ok());
  ASSERT_TRUE(h.Submit(11, 1).ok());
  ASSERT_TRUE(h.Submit(20, /*priority=*/0).ok());
  ASSERT_TRUE(h.Submit(21, 0).ok());
  h.backend().Release();
  for (int id : {1, 10, 11, 20, 21}) ASSERT_TRUE(h.Result(id).ok());
  auto batches = h.backend().batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[1], (std::vector<int>{20, 21}));
  EXPECT_EQ(batches[2], (std::vector<int>{10, 11}));
}

TEST(DynamicBatcherTest, WaitsForMaxQueueDelayToFillABatch) {
  Harness h(Config(8, 200'000));
  const auto start = Clock::now();
  ASSERT_TRUE(h.Submit(1).ok());
  ASSERT_TRUE(h.Submit(2).ok());
  ASSERT_TRUE(h.Result(1).ok());
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(190));
  auto batches = h.backend().batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0], (std::vector<int>{1, 2}));
}

TEST(DynamicBatcherTest, PreferredSizeRunsWithoutWaitingForTheDelay) {
  Harness h(Config(8, 10'000'000, {2, 4}));
  const auto start = Clock::now();
  ASSERT_TRUE(h.Submit(1).ok());
  ASSERT_TRUE(h.Submit(2).ok());
  ASSERT_TRUE(h.Result(1).ok());
  ASSERT_TRUE(h.Result(2).ok());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(h.backend().batches().at(0), (std::vector<int>{1, 2}));
}

TEST(DynamicBatcherTest, ExpiredRequestsAreDroppedBeforeCompute) {
  Harness h(Config(4, 0));
  h.backend().Hold();
  ASSERT_TRUE(h.Submit(1).ok());
  h.backend().WaitStarted(1);
  ASSERT_TRUE(h.Submit(2, 1, 1, Clock::now() + std::chrono::milliseconds(20)).ok());
  ASSERT_TRUE(h.Submit(3).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  h.backend().Release();
  ASSERT_TRUE(h.Result(1).ok());
  auto expired = h.Result(2);
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(h.Result(3).ok());
  for (const auto& b : h.backend().batches()) {
    for (int id : b) EXPECT_NE(id, 2) << "an expired request reached the model";
  }
}

TEST(DynamicBatcherTest, FullQueueAnswersResourceExhausted) {
  Harness h(Config(1, 0, {}, /*queue=*/2));
  h.backend().Hold();
  ASSERT_TRUE(h.Submit(1).ok());
  h.backend().WaitStarted(1);
  ASSERT_TRUE(h.Submit(2).ok());
  ASSERT_TRUE(h.Submit(3).ok());
  absl::Status full = h.Submit(4);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(h.batcher().pending(), 2);
  h.backend().Release();
  for (int id : {1, 2, 3}) EXPECT_TRUE(h.Result(id).ok());
}

TEST(DynamicBatcherTest, OversizedRequestIsRefused) {
  Harness h(Config(2, 0));
  EXPECT_EQ(h.Submit(1, 1, 3).code(), absl::StatusCode::kInvalidArgument);
}

TEST(DynamicBatcherTest, MultiImageRequestsKeepTheirImagesTogether) {
  Harness h(Config(4, 0));
  h.backend().Hold();
  ASSERT_TRUE(h.Submit(100).ok());
  h.backend().WaitStarted(1);
  ASSERT_TRUE(h.Submit(1, 1, 3).ok());   // images 1, 2, 3
  ASSERT_TRUE(h.Submit(10, 1, 2).ok());  // images 10, 11: does not fit beside 1-3
  h.backend().Release();
  auto r = h.Result(1);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->outputs.size(), 3u);
  EXPECT_FLOAT_EQ(r->outputs[2].scores[0], 3.0f / 255.0f);
  ASSERT_TRUE(h.Result(10).ok());
  auto batches = h.backend().batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[1], (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(batches[2], (std::vector<int>{10, 11}));
}

TEST(DynamicBatcherTest, BackendFailureFailsOnlyThatBatch) {
  Harness h(Config(1, 0));
  h.backend().FailNext();
  ASSERT_TRUE(h.Submit(1).ok());
  auto failed = h.Result(1);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(h.Submit(2).ok());
  EXPECT_TRUE(h.Result(2).ok());
}

TEST(DynamicBatcherTest, StopFinishesQueuedWorkAndRefusesNewWork) {
  Harness h(Config(1, 0));
  h.backend().Hold();
  ASSERT_TRUE(h.Submit(1).ok());
  h.backend().WaitStarted(1);
  ASSERT_TRUE(h.Submit(2).ok());
  std::thread stopper([&] { h.batcher().Stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(h.Submit(3).code(), absl::StatusCode::kUnavailable);
  h.backend().Release();
  stopper.join();
  EXPECT_TRUE(h.Result(1).ok());
  EXPECT_TRUE(h.Result(2).ok());
}

TEST(DynamicBatcherTest, CancelledRequestsAreDropped) {
  Harness h(Config(1, 0));
  h.backend().Hold();
  ASSERT_TRUE(h.Submit(1).ok());
  h.backend().WaitStarted(1);
  // A job whose caller is gone.
  auto job = std::make_unique<InferJob>();
  std::string byte(1, static_cast<char>(9));
  ImageView v;
  v.shape = {1, 1};
  v.data = byte;
  job->images.push_back(v);
  job->cancelled = [] { return true; };
  std::promise<absl::Status> p;
  job->done = [&p](absl::StatusOr<JobResult> r) { p.set_value(r.status()); };
  ASSERT_TRUE(h.batcher().Enqueue(std::move(job)).ok());
  h.backend().Release();
  EXPECT_EQ(p.get_future().get().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(h.Result(1).ok());
  EXPECT_EQ(h.backend().batches().size(), 1u);
}

}  // namespace
}  // namespace secondread::inference
