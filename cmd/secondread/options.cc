#include "cmd/secondread/options.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace secondread {

absl::StatusOr<NodeOptions> ParseNodeOptions(config::ConfigTree& t) {
  NodeOptions o;
  ASSIGN_OR_RETURN(o.dicom.ae_title, t.String("dicom.ae_title", o.dicom.ae_title));
  ASSIGN_OR_RETURN(int64_t port, t.Int("dicom.port", o.dicom.port, 1, 65535));
  o.dicom.port = static_cast<uint16_t>(port);
  ASSIGN_OR_RETURN(std::vector<std::string> callers, t.StringList("dicom.allowed_callers", {}));
  for (const auto& c : callers) {
    ASSIGN_OR_RETURN(scp::CallerRule rule, scp::ParseCallerRule(c));
    o.dicom.allowed_callers.push_back(rule);
  }
  ASSIGN_OR_RETURN(o.dicom.check_called_ae, t.Bool("dicom.check_called_ae", o.dicom.check_called_ae));
  ASSIGN_OR_RETURN(int64_t max_assoc, t.Int("dicom.max_associations", o.dicom.max_associations, 1, 1000));
  o.dicom.max_associations = static_cast<int>(max_assoc);
  ASSIGN_OR_RETURN(int64_t idle, t.Int("dicom.idle_timeout_seconds", o.dicom.idle_timeout_s, 1, 86400));
  o.dicom.idle_timeout_s = static_cast<int>(idle);
  ASSIGN_OR_RETURN(uint64_t pdu, t.Bytes("dicom.max_pdu_bytes", o.dicom.max_pdu_bytes));
  if (pdu < 4096 || pdu > (1u << 24)) return absl::InvalidArgumentError("dicom.max_pdu_bytes must be 4KiB..16MiB");
  o.dicom.max_pdu_bytes = static_cast<uint32_t>(pdu);

  ASSIGN_OR_RETURN(o.spool.dir, t.String("storage.spool_dir", ""));
  ASSIGN_OR_RETURN(o.spool.min_free_bytes, t.Bytes("storage.min_free_bytes", o.spool.min_free_bytes));
  ASSIGN_OR_RETURN(o.max_instance_bytes, t.Bytes("storage.max_instance_bytes", o.max_instance_bytes));

  ASSIGN_OR_RETURN(o.database.url, t.String("database.url", ""));
  ASSIGN_OR_RETURN(std::string url_file, t.String("database.url_file", ""));
  if (o.database.url.empty() && !url_file.empty()) {
    std::ifstream in(url_file);
    if (!in) return absl::InvalidArgumentError("database.url_file: cannot read " + url_file);
    std::getline(in, o.database.url);
  }
  if (o.database.url.empty()) {
    if (const char* env = std::getenv("SECONDREAD_DATABASE_URL")) o.database.url = env;
  }
  if (o.database.url.empty()) {
    return absl::InvalidArgumentError(
        "no database: set database.url, database.url_file or SECONDREAD_DATABASE_URL");
  }
  ASSIGN_OR_RETURN(int64_t conns, t.Int("database.max_connections", o.database.max_connections, 1, 256));
  o.database.max_connections = static_cast<int>(conns);
  ASSIGN_OR_RETURN(o.database.synchronous_commit, t.Bool("database.synchronous_commit", o.database.synchronous_commit));
  ASSIGN_OR_RETURN(int64_t cto, t.Int("database.connect_timeout_seconds", o.database.connect_timeout_s, 1, 300));
  o.database.connect_timeout_s = static_cast<int>(cto);
  ASSIGN_OR_RETURN(int64_t sto, t.Int("database.statement_timeout_ms", o.database.statement_timeout_ms, 100, 3600000));
  o.database.statement_timeout_ms = static_cast<int>(sto);
  ASSIGN_OR_RETURN(o.migrate_on_start, t.Bool("database.migrate_on_start", o.migrate_on_start));

  ASSIGN_OR_RETURN(o.http.bind, t.String("http.bind", o.http.bind));
  ASSIGN_OR_RETURN(int64_t hport, t.Int("http.port", o.http.port, 0, 65535));
  o.http.port = static_cast<uint16_t>(hport);

  ASSIGN_OR_RETURN(o.log.level, t.String("log.level", o.log.level));
  ASSIGN_OR_RETURN(o.log.file, t.String("log.file", o.log.file));

  RETURN_IF_ERROR(t.CheckNoUnknownKeys());
  return o;
}

}  // namespace secondread
