#pragma once

#include "common/status.h"
#include "scp/instance_sink.h"
#include "scp/spool.h"

namespace secondread::scp {

struct RecoveryReport {
  int temp_files_removed = 0;
  int objects_scanned = 0;
  int registered = 0;
  int unreadable = 0;
};

// Run before the listener starts. Removes temp files of interrupted receives
// and registers every spool object that has no registry row: the spool file is
// the journal, so an instance answered with Success is never lost even when its
// row's commit had not reached disk.
absl::StatusOr<RecoveryReport> RecoverSpool(Spool& spool, InstanceSink& sink);

}  // namespace secondread::scp
