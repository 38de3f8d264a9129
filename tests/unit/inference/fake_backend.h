// A ModelBackend for tests: records each batch, can block until released,
// and fails on request. Scores are the first byte of each image, so results
// can be traced back to the image that produced them.
#pragma once

#include <condition_variable>
#include <mutex>
#include <vector>

#include "inference/backend.h"

namespace secondread::inference::testing {

class FakeBackend final : public ModelBackend {
 public:
  absl::StatusOr<std::vector<ImageOutput>> Execute(const std::vector<const ImageView*>& images) override {
    std::unique_lock lk(mu_);
    std::vector<int> ids;
    for (const auto* img : images) ids.push_back(static_cast<unsigned char>(img->data[0]));
    batches_.push_back(ids);
    ++started_;
    cv_.notify_all();
    cv_.wait(lk, [&] { return !hold_; });
    if (fail_next_) {
      fail_next_ = false;
      return absl::InternalError("model execution failed: injected");
    }
    std::vector<ImageOutput> out;
    for (int id : ids) {
      ImageOutput o;
      o.scores = {static_cast<float>(id) / 255.0f};
      out.push_back(o);
    }
    return out;
  }
  std::string Device() const override { return "cpu"; }

  void Hold() {
    std::lock_guard lk(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard lk(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  void FailNext() {
    std::lock_guard lk(mu_);
    fail_next_ = true;
  }
  // Waits until `n` batches have started.
  void WaitStarted(int n) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return started_ >= n; });
  }
  std::vector<std::vector<int>> batches() {
    std::lock_guard lk(mu_);
    return batches_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  bool fail_next_ = false;
  int started_ = 0;
  std::vector<std::vector<int>> batches_;
};

}  // namespace secondread::inference::testing
