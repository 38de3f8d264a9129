#include "worklist/migrations.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace secondread::worklist
