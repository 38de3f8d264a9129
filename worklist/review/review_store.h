// The radiologist worklist in PostgreSQL: listing, one study's detail,
// reviews with deliberate conflict handling, dismissal, per-model
// performance and the append-only audit log. Answers are built as the JSON
// shapes of the HTTP API (docs/worklist-api.md), so the API layer only
// authenticates, validates and maps statuses. Every query is a prepared or
// parameterised statement: filter values never reach SQL text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "audit/audit_message.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worklist/db/pg_pool.h"

namespace secondread::worklist {

struct WorklistFilter {
  std::vector<std::string> statuses;  // validated by the caller
  std::string modality;
  std::string model;
  std::optional<bool> flagged;
  std::string from;  // YYYY-MM-DD, validated by the caller; inclusive
  std::string to;    // YYYY-MM-DD, inclusive
  int limit = 50;
  int offset = 0;
};

struct Actor {
  std::string name;  // the token's name
  std::string role;  // radiologist | admin
  std::string remote_addr;
};

struct ReviewInput {
  std::string verdict;  // agree | disagree | uncertain
  std::optional<int64_t> finding_id;
  std::string comment;
  int64_t expected_version = 0;
};

struct PerformanceQuery {
  std::string window = "week";  // day | week | month
  int windows = 8;
};

class ReviewStore {
 public:
  explicit ReviewStore(PgPool* pool);

  // {"items": [...], "total": N, "limit": L, "offset": O}. The page shows
  // patient names and IDs, so it writes a view_worklist audit row (the filter
  // and the study ids shown) in the same transaction.
  absl::StatusOr<nlohmann::json> List(const WorklistFilter& filter, const Actor& actor);

  // The study's detail; NOT_FOUND when the study has no worklist entry. A
  // radiologist's view moves a 'new' entry to 'in_review' (version + 1).
  // Writes the view_study audit row in the same transaction.
  absl::StatusOr<nlohmann::json> Study(int64_t study_id, const Actor& actor);

  // The file name (64 hex) of a Secondary Capture result of this study, for
  // the PNG preview; NOT_FOUND otherwise. Writes the view_image audit row.
  // identity, when given, receives the study and patient for the audit trail.
  absl::StatusOr<std::string> ScFileName(int64_t study_id, int64_t result_id, const Actor& actor,
                                         audit::StudyRef* identity = nullptr);

  // 201-shaped body on success. ABORTED with the 409 body (as the status
  // message, JSON text) when expected_version is stale; NOT_FOUND for an
  // unknown study or a finding of another study. Audited as 'review'.
  absl::StatusOr<nlohmann::json> Review(int64_t study_id, const ReviewInput& input, const Actor& actor);
  absl::StatusOr<nlohmann::json> Dismiss(int64_t study_id, int64_t expected_version, const std::string& comment,
                                         const Actor& actor);

  absl::StatusOr<nlohmann::json> Performance(const PerformanceQuery& query);

  // Appends one audit row.
  absl::Status Audit(const Actor& actor, const std::string& action, std::optional<int64_t> study_id,
                     const nlohmann::json& detail);
  // OK when this login can only add to and read the audit log; otherwise
  // FAILED_PRECONDITION naming what it could do instead (own the table or
  // its schema or act for their owners, update, delete, truncate, manage
  // triggers, be a superuser or create roles). See migration 0005.
  absl::Status AuditLogProtection();

  // Of `actions`, those audit_log's constraint does not admit (a login that
  // could not act for the table's owner when a migration added them).
  absl::StatusOr<std::vector<std::string>> MissingAuditActions(const std::vector<std::string>& actions);

  // Newest first; writes a view_audit row.
  absl::StatusOr<nlohmann::json> AuditLog(int limit, int offset, std::optional<int64_t> study_id, const Actor& actor);

 private:
  PgPool* pool_;
};

}  // namespace secondread::worklist
