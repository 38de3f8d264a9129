// The node's options, parsed once from YAML plus command-line overrides.
#pragma once

#include "common/config.h"
#include "common/http_server.h"
#include "common/log.h"
#include "scp/dataset_limits.h"
#include "scp/dicom_server.h"
#include "scp/recovery.h"
#include "scp/spool.h"
#include "worklist/pg_pool.h"
#include "worklist/api.h"
#include "worklist/pipeline.h"

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
};

absl::StatusOr<NodeOptions> ParseNodeOptions(config::ConfigTree& tree);

}  // namespace secondread
