// The volume dispatcher runs the volume queue: for each volume read it
// assembles the read's series into a volume with its geometry checked
// (scp/pixels/series_reader.h), streams only the voxels and their physical
// facts to a worker (InferVolume), and turns the label map that comes back
// into a DICOM Segmentation, a TID 1500 report of the lesions and a
// key-slice Secondary Capture per lesion slice, in the source study. A
// series that is not a consistent volume fails the read for good with the
// sentence a radiologist reads on the worklist; nothing is guessed.
//
// Stages, each a function in volume_dispatcher.cc with the claim checked
// between them: load (ReadStore::Start) -> describe the model -> assemble ->
// infer -> measure and build objects -> write files -> commit
// (ReadStore::Commit, fenced on the claim like the image dispatcher's).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "scp/pixels/volume.h"
#include "scp/receive/spool.h"
#include "worklist/pipeline/file_locator.h"
#include "worklist/db/job_queue.h"
#include "worklist/db/read_store.h"
#include "worklist/pipeline/inference_client.h"
#include "worklist/pipeline/job_runner.h"
#include "worklist/pipeline/pipeline_metrics.h"
#include "worklist/pipeline/result_files.h"

namespace secondread::worklist {

struct VolumeDispatcherOptions {
  // Volumes are large: one or two at a time bound the node's memory
  // (a 512 x 512 x 600 float32 volume is 630 MB).
  int concurrency = 1;
  std::string node_id;
  std::vector<std::string> destinations;
  int export_max_attempts = 12;
  std::string software_version;
  std::chrono::milliseconds idle_wait{1000};
  scp::VolumeOptions volume;
};

class VolumeDispatcher {
 public:
  VolumeDispatcher(VolumeDispatcherOptions options, DatabaseOptions db, PgPool* pool, JobQueue* queue,
                   InferenceClient* inference, const scp::Spool* spool, const ResultFiles* results, FileLocator* locator,
                   PipelineMetrics* metrics);
  ~VolumeDispatcher();

  void Start();
  void Stop();

  // Runs one claimed volume job to its end while its lease is kept alive;
  // exposed for tests.
  void Process(Lease& lease);

 private:
  VolumeDispatcherOptions options_;
  DatabaseOptions db_;
  PgPool* pool_;
  JobQueue* queue_;
  InferenceClient* inference_;
  const scp::Spool* spool_;
  FileLocator* locator_;
  const ResultFiles* results_;
  PipelineMetrics* metrics_;
  ReadStore store_;
  std::unique_ptr<JobRunner> runner_;
};

}  // namespace secondread::worklist
