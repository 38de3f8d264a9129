#include "worklist/pipeline/read_stages.h"

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

}  // namespace secondread::worklist
