#include "worklist/pipeline/read_stages.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <random>

namespace secondread::worklist {

namespace pb = ::secondread::inference::v1;

bool TransientCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kNotFound:  // a model not (yet) deployed on the workers
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

std::string RandomToken() {
  std::random_device rd;
  std::string token(16, '\0');
  for (auto& c : token) c = static_cast<char>(rd() & 0xff);
  return token;
}

std::string LocalNow(const char* fmt) {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

double Milliseconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

absl::StatusOr<pb::ModelDescription> DescribeModel(InferenceClient& inference, const ReadRow& read) {
  auto described = inference.Describe(read.model, read.version);
  if (!described.ok()) return described.status();
  if (described->state() != pb::MODEL_STATE_READY) {
    return absl::UnavailableError("model " + read.model + " is not ready: " + described->reason());
  }
  return *described;
}

scp::AlgorithmInfo AlgorithmFor(const pb::ModelDescription& model, const std::string& software_version) {
  scp::AlgorithmInfo algorithm;
  algorithm.model_name = model.name();
  algorithm.model_version = std::to_string(model.version());
  algorithm.software_version = software_version;
  for (const auto& l : model.labels()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4g", l.threshold());
    algorithm.parameters += (algorithm.parameters.empty() ? "" : "; ") + ("threshold " + l.name() + "=" + buf);
  }
  return algorithm;
}

absl::StatusOr<std::vector<ObjectRow>> WriteObjects(const ResultFiles& results, const Job& job,
                                                    const std::vector<BuiltResult>& built) {
  std::vector<ObjectRow> rows;
  for (const auto& b : built) {
    auto name = results.Write(
        b.object.sop_instance_uid + "|job " + std::to_string(job.id) + "|attempt " + std::to_string(job.attempt),
        b.object.part10);
    if (!name.ok()) {
      for (const auto& r : rows) results.Remove(r.file_name);
      return name.status();
    }
    rows.push_back({b.kind, b.object.sop_class_uid, b.object.sop_instance_uid, b.object.series_instance_uid,
                    b.source_instance, *name, static_cast<int64_t>(b.object.part10.size())});
  }
  return rows;
}

VolumeStageTimes SplitVolumeStages(double assemble_ms, const scp::SeriesReadStats& read, double call_ms,
                                   const VolumeAnswer& answer, double results_ms) {
  VolumeStageTimes t;
  t.decode = read.decode_ms;
  t.assemble = std::max(0.0, assemble_ms - read.decode_ms);
  t.transfer = answer.send_ms + answer.receive_ms;
  const auto& steps = answer.header.volume_timings();
  t.resample = static_cast<double>(steps.resample_us() + steps.resample_back_us()) / 1000;
  t.inference = static_cast<double>(steps.inference_us()) / 1000;
  // A worker that does not report its steps leaves all of compute in the
  // inference stage rather than in no stage.
  const double compute = static_cast<double>(answer.header.timing().compute_us()) / 1000;
  if (t.resample == 0 && t.inference == 0) t.inference = compute;
  t.call_other = std::max(0.0, call_ms - t.transfer - std::max(compute, t.resample + t.inference));
  t.results = results_ms;
  t.sent_bytes = answer.sent_bytes;
  t.received_bytes = answer.received_bytes;
  return t;
}

void ObserveVolumeStages(PipelineMetrics& metrics, const VolumeStageTimes& t) {
  metrics.VolumeStage("decode").Observe(t.decode / 1000);
  metrics.VolumeStage("assemble").Observe(t.assemble / 1000);
  metrics.VolumeStage("transfer").Observe(t.transfer / 1000);
  metrics.VolumeStage("resample").Observe(t.resample / 1000);
  metrics.VolumeStage("inference").Observe(t.inference / 1000);
  metrics.VolumeStage("results").Observe(t.results / 1000);
  metrics.VolumeTransferBytes("sent").Increment(static_cast<double>(t.sent_bytes));
  metrics.VolumeTransferBytes("received").Increment(static_cast<double>(t.received_bytes));
}

absl::Status LocateSources(const scp::Spool& spool, FileLocator* locator, StagingDir& staging,
                           std::vector<SourceRow>& sources, const std::vector<size_t>* only,
                           const std::function<bool()>& keep_going) {
  auto locate = [&](SourceRow& s) -> absl::Status {
    if (!locator || s.holder.empty() || s.holder == locator->self()) {
      s.path = spool.PathFor(s.spool_name);
      return absl::OkStatus();
    }
    if (keep_going && !keep_going()) return absl::CancelledError("the claim was lost");
    ASSIGN_OR_RETURN(std::string dir, staging.Path());
    ASSIGN_OR_RETURN(s.path, locator->Locate(HeldKind::kInstance, s.spool_name, s.holder, dir));
    return absl::OkStatus();
  };
  if (only) {
    for (size_t i : *only) RETURN_IF_ERROR(locate(sources[i]));
  } else {
    for (auto& s : sources) RETURN_IF_ERROR(locate(s));
  }
  return absl::OkStatus();
}

}  // namespace secondread::worklist
