#include "scp/recovery.h"

#include <sys/stat.h>

#include "common/log.h"
#include "scp/dataset_reader.h"

namespace secondread::scp {

absl::StatusOr<RecoveryReport> RecoverSpool(Spool& spool, InstanceSink& sink) {
  RecoveryReport report;
  report.temp_files_removed = spool.CleanTemp();
  ASSIGN_OR_RETURN(std::vector<std::string> names, spool.ListObjects());
  report.objects_scanned = static_cast<int>(names.size());
  ASSIGN_OR_RETURN(std::vector<std::string> missing, sink.Unregistered(names));
  for (const auto& name : missing) {
    std::string path = spool.PathFor(name);
    auto record = ReadInstanceRecord(path);
    if (!record.ok() || Spool::NameForSopInstanceUid(record->sop_instance_uid) != name) {
      ++report.unreadable;
      log::Error("recovery_unreadable_object", {{"spool_name", name}});
      continue;
    }
    ReceivedInstance instance;
    instance.record = std::move(*record);
    instance.spool_name = name;
    instance.association.id = "recovery";
    instance.association.calling_ae = "";
    instance.association.called_ae = "";
    instance.association.peer_host = "";
    struct stat st;
    instance.size_bytes = ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    RETURN_IF_ERROR(sink.Accept(instance));
    ++report.registered;
  }
  log::Info("spool_recovered", {{"temp_removed", report.temp_files_removed},
                                {"scanned", report.objects_scanned},
                                {"registered", report.registered},
                                {"unreadable", report.unreadable}});
  return report;
}

}  // namespace secondread::scp
