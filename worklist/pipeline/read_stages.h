// What the image and the volume dispatchers share between their stages: how
// a stage's failure is classed, the model description, result objects and
// their durable files. Internal to worklist/pipeline.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "scp/objects/result_objects.h"
#include "worklist/db/job_queue.h"
#include "worklist/db/read_store.h"
#include "scp/pixels/series_reader.h"
#include "scp/receive/spool.h"
#include "worklist/pipeline/file_locator.h"
#include "worklist/pipeline/inference_client.h"
#include "worklist/pipeline/pipeline_metrics.h"
#include "worklist/pipeline/result_files.h"

namespace secondread::worklist {

// A stage's failure: whether a retry could help decides between retrying
// the job and failing the read for good.
struct StageError {
  absl::Status status;
  bool permanent = false;
};
inline StageError Transiently(absl::Status st) { return {std::move(st), false}; }
inline StageError Permanently(absl::Status st) { return {std::move(st), true}; }
// Worker and network codes a retry may cure are transient; the rest
// (INVALID_ARGUMENT, FAILED_PRECONDITION, ...) are the read's own fault.
bool TransientCode(absl::StatusCode code);
inline StageError ByCode(absl::Status st) {
  const bool permanent = !TransientCode(st.code());
  return {std::move(st), permanent};
}

// 16 random bytes: the opaque job token a worker echoes, never derived from
// patient data.
std::string RandomToken();

// Stage: where this node reads each source (SourceRow::path): its own spool,
// or, for an instance another node replica holds, a copy fetched into
// `staging`. `only`: the sources to locate (all when null). `keep_going` is
// polled between files. An unreachable holder is transient: the job retries.
absl::Status LocateSources(const scp::Spool& spool, FileLocator* locator, StagingDir& staging,
                           std::vector<SourceRow>& sources, const std::vector<size_t>* only,
                           const std::function<bool()>& keep_going);

// Local date or time in strftime format, for Content Date and Time.
std::string LocalNow(const char* fmt);

double Milliseconds(std::chrono::steady_clock::duration d);

// Stage: what the worker serves for the read's model.
absl::StatusOr<inference::v1::ModelDescription> DescribeModel(InferenceClient& inference, const ReadRow& read);

// The algorithm identification (TID 4019) of every object a read writes:
// the model, its served version, its operating points and the node.
scp::AlgorithmInfo AlgorithmFor(const inference::v1::ModelDescription& model, const std::string& software_version);

// A result object built in memory, before it is written.
struct BuiltResult {
  std::string kind;  // sr, sc or seg
  scp::BuiltObject object;
  int64_t source_instance = 0;
};

// Stage: the objects written durably, under names unique to this attempt,
// so a holder that outlived its lease cannot overwrite a file the live one
// committed. On failure the files written so far are removed.
absl::StatusOr<std::vector<ObjectRow>> WriteObjects(const ResultFiles& results, const Job& job,
                                                    const std::vector<BuiltResult>& built);

// A volume read's time by stage (PipelineMetrics::VolumeStage), from the
// node's clocks and the worker's VolumeTimings, in milliseconds.
struct VolumeStageTimes {
  double decode = 0;    // pixel data decoded (SeriesReadStats)
  double assemble = 0;  // the rest of reading the series into a volume
  double transfer = 0;  // voxels sent plus maps received
  double resample = 0;  // on the worker: to the model's grid and back
  double inference = 0;  // on the worker: the sliding window
  double results = 0;   // lesions, SEG, SR, captures and their files
  // The rest of the InferVolume call: the worker's queue for a volume slot,
  // the last of the data still in flight when sending returned, the result
  // header's own trip. Logged, not a stage.
  double call_other = 0;
  uint64_t sent_bytes = 0;
  uint64_t received_bytes = 0;
};

// `assemble_ms` is the whole assembly stage (decoding included), `call_ms`
// the whole InferVolume call. Parts that clocks on two machines or two
// steps made overlap are clamped at zero.
VolumeStageTimes SplitVolumeStages(double assemble_ms, const scp::SeriesReadStats& read, double call_ms,
                                   const VolumeAnswer& answer, double results_ms);

void ObserveVolumeStages(PipelineMetrics& metrics, const VolumeStageTimes& t);

}  // namespace secondread::worklist
