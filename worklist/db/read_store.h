// The database side of one read run by the dispatcher: loading it, and every
// write it makes. Each write is fenced on the claim (job id, attempt, still
// running) in the transaction that makes it, and moves the read only from
// the states it may leave, so a holder whose lease ran out (the reaper gave
// the job to another) writes nothing: not results, not exports, not a state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "scp/objects/result_objects.h"
#include "worklist/db/job_queue.h"
#include "worklist/db/pg_pool.h"

namespace pqxx {
class transaction_base;
}

namespace secondread::worklist {

// What became of a fenced write.
enum class Fence {
  kApplied,    // written, and the job completed or failed with it
  kClaimLost,  // the job is no longer running under this claim; nothing written
  kFinished,   // the read was finished before (an earlier attempt committed); the job completed
};

struct ReadRow {
  int64_t id = 0;
  std::string state;
  int64_t study_ref = 0;
  std::string study_uid;
  std::string rule;
  std::string model;
  int64_t version = 0;  // as the rule asks; 0: the latest
  std::string mode;
  int priority = 1;
  double triggered_at = 0;
  std::string trigger;
  int generation = 1;
  // A volume read whose rule lets an unevenly spaced series be resampled
  // (series.resample), fixed when the read was recorded.
  bool resample = false;
};

struct SourceRow {
  int64_t instance_id = 0;
  std::string sop_instance_uid;
  std::string sop_class_uid;
  std::string series_uid;
  std::string spool_name;
  std::string holder;  // the replica that holds the file; empty: a node that ran alone
  std::string path;    // where this node reads it: set by the dispatcher's locate stage
  std::string modality;
  std::string body_part;
  int64_t frames = 1;
  int64_t arrival = 1;  // the instance's place in its study's arrival order, from 1
};

// A result object of an earlier generation of the same study read (same
// candidate, rule, model and version), newest generation first.
struct PriorObject {
  int generation = 0;
  std::string kind;  // sr or sc
  scp::ObjectReference object;
};

struct LoadedRead {
  Fence fence = Fence::kApplied;
  bool found = false;
  ReadRow read;
  std::vector<SourceRow> sources;
  std::vector<PriorObject> prior;
};

struct FindingRow {
  int64_t instance_ref = 0;
  int frame = 0;
  scp::Finding finding;
};

struct ObjectRow {
  std::string kind;  // sr or sc
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  int64_t source_instance_ref = 0;  // 0 for the SR
  std::string file_name;
  int64_t size_bytes = 0;
};

// An image the read left out because its pixel data did not decode, and why
// (scp::DecodeFailureReason).
struct SkippedImage {
  int64_t instance_ref = 0;
  std::string reason;
};

struct ReadOutcome {
  bool flagged = false;
  int64_t served_version = 0;
  int images = 0;
  double decode_ms = 0;
  double inference_ms = 0;
  double results_ms = 0;
  std::vector<FindingRow> findings;
  // Only objects this read is the first to write; empty when it replaces
  // nothing an earlier generation sent (then no export is queued).
  std::vector<ObjectRow> objects;
  std::string top_label;
  double top_score = -1;
  std::vector<SkippedImage> skipped;
};

struct ReadStoreOptions {
  std::vector<std::string> destinations;  // export destinations of clinical reads
  int export_max_attempts = 12;
  // The reads this store loads and moves: "image" (the image dispatcher)
  // or "volume" (the volume dispatcher).
  std::string input = "image";
  // The replica id recorded with the result files this node writes
  // (result_objects.holder); empty for a node that runs alone.
  std::string holder;
};

class ReadStore {
 public:
  ReadStore(PgPool* pool, JobQueue* queue, ReadStoreOptions options);

  // Loads the read, its sources and its earlier generations' objects, and
  // moves it from queued (or running, after a crash) to running. A read
  // already finished completes the job (kFinished).
  absl::StatusOr<LoadedRead> Start(const Job& job, int64_t read_id);

  // Stores the findings and objects, marks the read done, queues its exports
  // and updates the worklist (clinical reads), and completes the job: all in
  // one transaction, or nothing when the claim is lost or the read is no
  // longer running.
  absl::StatusOr<Fence> Commit(const Job& job, const ReadRow& read, const ReadOutcome& outcome);

  // Ends a read with no results (not_applicable) and completes the job.
  absl::StatusOr<Fence> FinishEmpty(const Job& job, int64_t read_id, const std::string& state,
                                    int64_t served_version);

  // Fails the job (retry or discard) and moves the read back to queued, or
  // to failed with the error when the job is discarded, recording then the
  // images it left out. *discarded says which.
  absl::StatusOr<Fence> Fail(const Job& job, int64_t read_id, const std::string& error, bool permanent,
                             bool* discarded, const std::vector<SkippedImage>& skipped = {});

  // For the reaper: a dispatch or volume job discarded when its lease expired on the
  // last attempt leaves its read failed with the reason.
  static void DiscardInTx(pqxx::transaction_base& tx, const Job& job, const std::string& reason);

 private:
  PgPool* pool_;
  JobQueue* queue_;
  ReadStoreOptions options_;
};

}  // namespace secondread::worklist
