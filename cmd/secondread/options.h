// The node's options, parsed once from YAML plus command-line overrides.
#pragma once

#include "audit/audit_trail.h"
#include "common/config.h"
#include "common/http_server.h"
#include "common/log.h"
#include "scp/receive/dataset_limits.h"
#include "scp/receive/dicom_server.h"
#include "scp/receive/recovery.h"
#include "scp/receive/spool.h"
#include "worklist/cluster/cluster.h"
#include "worklist/db/pg_pool.h"
#include "worklist/review/api.h"
#include "worklist/pipeline/pipeline.h"
#include "worklist/retention/retention.h"

namespace secondread {

struct NodeOptions {
  scp::ScpOptions dicom;
  scp::SpoolOptions spool;
  scp::RescanOptions rescan;
  uint64_t max_instance_bytes = 2ull << 30;
  scp::DatasetLimits dataset_limits;
  worklist::DatabaseOptions database;
  bool migrate_on_start = false;
  HttpOptions http;
  log::LogOptions log;
  worklist::PipelineOptions pipeline;
  worklist::ApiOptions api;
  worklist::ClusterOptions cluster;
  audit::AuditOptions audit;
  worklist::RetentionOptions retention;
};

absl::StatusOr<NodeOptions> ParseNodeOptions(config::ConfigTree& tree);

}  // namespace secondread
