#include "worklist/db/migrations.h"

#include <gtest/gtest.h>

#include <string_view>

#include "scp/receive/instance_sink.h"
#include "worklist/db/pg_pool.h"

namespace secondread::worklist {
namespace {

TEST(MigrationsTest, EmbeddedMigrationsArePairedAndOrdered) {
  auto m = EmbeddedMigrations();
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_FALSE(m->empty());
  for (size_t i = 0; i < m->size(); ++i) {
    EXPECT_EQ((*m)[i].version, static_cast<int>(i) + 1);
    EXPECT_FALSE((*m)[i].up_sql.empty());
    EXPECT_FALSE((*m)[i].down_sql.empty());
  }
  EXPECT_EQ((*m)[0].name, "registry");
  EXPECT_NE((*m)[0].up_sql.find("CREATE TABLE instances"), std::string::npos);
}

TEST(PgPoolTest, ConnectionStringCarriesTimeoutsAndCommitMode) {
  DatabaseOptions o;
  o.url = "postgresql://u@127.0.0.1:5432/db";
  std::string uri = PgPool::ConnectionString(o);
  EXPECT_NE(uri.find("?connect_timeout=5"), std::string::npos);
  EXPECT_NE(uri.find("synchronous_commit%3Doff"), std::string::npos);
  o.url = "host=127.0.0.1 dbname=db";
  o.synchronous_commit = true;
  std::string kw = PgPool::ConnectionString(o);
  EXPECT_NE(kw.find(" connect_timeout=5"), std::string::npos);
  EXPECT_NE(kw.find("synchronous_commit=on"), std::string::npos);
}

TEST(PgPoolTest, SqlStatesThatMayClearAreNotPermanent) {
  for (const char* retry : {"08006", "08001", "57P01", "57P02", "57P03", "40001", "40P01", "25006"}) {
    EXPECT_EQ(ClassifySqlState(retry), SqlErrorKind::kRetryNow) << retry;
  }
  for (const char* transient : {"57014", "55P03", "55006", "53000", "53100", "53200", "53300", "53400", "58030"}) {
    EXPECT_EQ(ClassifySqlState(transient), SqlErrorKind::kTransient) << transient;
  }
  for (const char* permanent : {"22P02", "22021", "23505", "42P01", "42501", "XX000", "57P04", "0A000", ""}) {
    EXPECT_EQ(ClassifySqlState(permanent), SqlErrorKind::kPermanent) << permanent;
  }
}

// The registry hands PgPool's statuses to the DICOM edge unchanged, so the
// pool's mark of an unknown outcome must be the sink's mark of a registration
// in doubt.
static_assert(std::string_view(PgPool::kOutcomeUnknownPayload) ==
              std::string_view(scp::kRegistrationInDoubtPayload));

}  // namespace
}  // namespace secondread::worklist
