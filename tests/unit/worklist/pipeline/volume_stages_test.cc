#include <gtest/gtest.h>

#include "common/metrics.h"
#include "worklist/pipeline/pipeline_metrics.h"
#include "worklist/pipeline/read_stages.h"

namespace secondread::worklist {
namespace {

VolumeAnswer Answer() {
  VolumeAnswer a;
  a.send_ms = 900;
  a.receive_ms = 100;
  a.sent_bytes = 314572800;
  a.received_bytes = 157286400;
  a.header.mutable_timing()->set_queue_us(850000);
  a.header.mutable_timing()->set_compute_us(20000000);
  a.header.mutable_volume_timings()->set_resample_us(1500000);
  a.header.mutable_volume_timings()->set_inference_us(18000000);
  a.header.mutable_volume_timings()->set_resample_back_us(500000);
  return a;
}

TEST(VolumeStagesTest, SplitsNodeAndWorkerTimes) {
  scp::SeriesReadStats read;
  read.decode_ms = 3000;
  const VolumeStageTimes t = SplitVolumeStages(4200, read, 21500, Answer(), 800);
  EXPECT_DOUBLE_EQ(t.decode, 3000);
  EXPECT_DOUBLE_EQ(t.assemble, 1200);
  EXPECT_DOUBLE_EQ(t.transfer, 1000);
  EXPECT_DOUBLE_EQ(t.resample, 2000);  // to the model's grid and back
  EXPECT_DOUBLE_EQ(t.inference, 18000);
  EXPECT_DOUBLE_EQ(t.call_other, 500);  // 21500 - 1000 transfer - 20000 compute
  EXPECT_DOUBLE_EQ(t.results, 800);
  EXPECT_EQ(t.sent_bytes, 314572800u);
  EXPECT_EQ(t.received_bytes, 157286400u);
}

TEST(VolumeStagesTest, WorkerWithoutStepsKeepsComputeAsInference) {
  VolumeAnswer a = Answer();
  a.header.clear_volume_timings();  // a worker from before VolumeTimings
  const VolumeStageTimes t = SplitVolumeStages(100, {}, 21500, a, 0);
  EXPECT_DOUBLE_EQ(t.resample, 0);
  EXPECT_DOUBLE_EQ(t.inference, 20000);
  EXPECT_DOUBLE_EQ(t.call_other, 500);
}

TEST(VolumeStagesTest, OverlapsClampAtZero) {
  scp::SeriesReadStats read;
  read.decode_ms = 120;  // measured inside the stage, may round past it
  const VolumeStageTimes t = SplitVolumeStages(100, read, 15000, Answer(), 0);
  EXPECT_DOUBLE_EQ(t.assemble, 0);
  EXPECT_DOUBLE_EQ(t.call_other, 0);
}

TEST(VolumeStagesTest, ObservedOnTheNodesMetrics) {
  metrics::MetricsRegistry registry;
  PipelineMetrics m(registry);
  scp::SeriesReadStats read;
  read.decode_ms = 3000;
  ObserveVolumeStages(m, SplitVolumeStages(4200, read, 21500, Answer(), 800));
  const std::string text = registry.Serialize();
  EXPECT_NE(text.find("secondread_volume_stage_duration_seconds_sum{stage=\"decode\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("secondread_volume_stage_duration_seconds_sum{stage=\"assemble\"} 1.2"), std::string::npos);
  EXPECT_NE(text.find("secondread_volume_stage_duration_seconds_sum{stage=\"transfer\"} 1"), std::string::npos);
  EXPECT_NE(text.find("secondread_volume_stage_duration_seconds_sum{stage=\"resample\"} 2"), std::string::npos);
  EXPECT_NE(text.find("secondread_volume_stage_duration_seconds_sum{stage=\"inference\"} 18"), std::string::npos);
  EXPECT_NE(text.find("secondread_volume_stage_duration_seconds_sum{stage=\"results\"} 0.8"), std::string::npos);
  EXPECT_NE(text.find("secondread_volume_transfer_bytes_total{direction=\"sent\"} 314572800"), std::string::npos);
  EXPECT_NE(text.find("secondread_volume_transfer_bytes_total{direction=\"received\"} 157286400"), std::string::npos);
  // A stage longer than LatencyBuckets' 30 s still lands in a finite bucket.
  EXPECT_NE(text.find("secondread_volume_stage_duration_seconds_bucket{stage=\"inference\",le=\"30\"} 1"),
            std::string::npos);
}

}  // namespace
}  // namespace secondread::worklist
