// Tokens issued through the admin API, in PostgreSQL's api_tokens table
// (migration 0013): only each token's SHA-256 is stored. Issuing and
// revoking are audited in the same transaction as the change.
#pragma once

#include "worklist/db/pg_pool.h"
#include "worklist/review/sign_in.h"

namespace secondread::worklist {

class PgTokenStore : public TokenStore {
 public:
  explicit PgTokenStore(PgPool* pool) : pool_(pool) {}

  absl::StatusOr<std::optional<IssuedToken>> FindByHash(const std::string& sha256_hex) override;
  absl::StatusOr<nlohmann::json> Issue(const std::string& name, const std::string& role, const std::string& sha256_hex,
                                       int64_t lifetime_s, const Actor& by) override;
  absl::StatusOr<nlohmann::json> List(const Actor& by) override;
  absl::StatusOr<nlohmann::json> Revoke(int64_t id, const Actor& by) override;

 private:
  PgPool* pool_;
};

}  // namespace secondread::worklist
