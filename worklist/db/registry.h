// The PostgreSQL registry of received instances: the InstanceSink the DICOM
// edge writes into.
#pragma once

#include <memory>
#include <string>

#include "scp/receive/instance_sink.h"
#include "worklist/db/pg_pool.h"

namespace secondread::worklist {

class PgRegistry : public scp::InstanceSink {
 public:
  // `holder`: the replica id recorded with each instance (instances.holder);
  // empty for a node that runs alone.
  explicit PgRegistry(const DatabaseOptions& options, std::string holder = "");

  absl::Status Accept(const scp::ReceivedInstance& instance) override;
  void AssociationEnded(const scp::AssociationSummary& summary) override;
  absl::StatusOr<std::vector<std::string>> Unregistered(const std::vector<std::string>& spool_names) override;

  // Readiness: a round trip to the server.
  absl::Status Ping();

 private:
  const std::string holder_;
  PgPool pool_;
};

}  // namespace secondread::worklist
