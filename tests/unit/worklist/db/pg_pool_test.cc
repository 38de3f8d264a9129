// PgPool's classification of SQL errors against a real server: what a sender
// should retry later must come back UNAVAILABLE (answered A700), what a retry
// cannot fix INTERNAL (answered 0110).
#include "worklist/db/pg_pool.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <thread>

#include "tests/unit/support/pg_test_server.h"

namespace secondread::worklist {
namespace {

using Clock = std::chrono::steady_clock;

bool InDoubt(const absl::Status& st) { return PgPool::OutcomeUnknown(st); }


class PgPoolErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = std::getenv("SECONDREAD_TEST_DATABASE_URL");
    ASSERT_NE(url, nullptr) << "run under tests/integration/lib/with_postgres.sh";
    db_.url = url;
    db_.statement_timeout_ms = 300;
    pqxx::connection c(db_.url);
    pqxx::work tx(c);
    tx.exec("CREATE TABLE IF NOT EXISTS pg_pool_test (id integer PRIMARY KEY)");
    tx.exec("INSERT INTO pg_pool_test VALUES (1) ON CONFLICT DO NOTHING");
    tx.commit();
  }
  DatabaseOptions db_;
};

TEST_F(PgPoolErrorsTest, StatementTimeoutIsTransientAndNotRepeated) {
  PgPool pool(db_, nullptr);
  int calls = 0;
  auto start = Clock::now();
  absl::Status st = pool.Run([&](pqxx::connection_base& c) {
    ++calls;
    pqxx::nontransaction tx(c);
    tx.exec("SELECT pg_sleep(5)");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(st.message().find("57014"), std::string::npos) << st;
  EXPECT_FALSE(InDoubt(st)) << "a cancelled statement did not commit";
  // Waiting out the timeout a second time would only hold the sender longer.
  EXPECT_EQ(calls, 1);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(4));
}

TEST_F(PgPoolErrorsTest, RowLockedElsewhereIsTransient) {
  pqxx::connection holder(db_.url);
  pqxx::work hold(holder);
  hold.exec("SELECT * FROM pg_pool_test WHERE id = 1 FOR UPDATE");

  PgPool pool(db_, nullptr);
  // Waiting on the lock ends in the statement timeout (57014) ...
  absl::Status waited = pool.Run([](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    tx.exec("UPDATE pg_pool_test SET id = id WHERE id = 1");
  });
  EXPECT_EQ(waited.code(), absl::StatusCode::kUnavailable) << waited;
  // ... and not waiting at all in lock-not-available (55P03).
  absl::Status nowait = pool.Run([](pqxx::connection_base& c) {
    pqxx::work tx(c);
    tx.exec("SELECT * FROM pg_pool_test WHERE id = 1 FOR UPDATE NOWAIT");
  });
  EXPECT_EQ(nowait.code(), absl::StatusCode::kUnavailable) << nowait;
  EXPECT_NE(nowait.message().find("55P03"), std::string::npos) << nowait;
  hold.abort();

  // The pool's connections still work once the lock is gone.
  absl::Status after = pool.Run([](pqxx::connection_base& c) {
    pqxx::nontransaction tx(c);
    tx.exec("UPDATE pg_pool_test SET id = id WHERE id = 1");
  });
  EXPECT_TRUE(after.ok()) << after;
}

TEST_F(PgPoolErrorsTest, BadDataIsNotTransient) {
  PgPool pool(db_, nullptr);
  int calls = 0;
  absl::Status st = pool.Run([&](pqxx::connection_base& c) {
    ++calls;
    pqxx::nontransaction tx(c);
    tx.exec("SELECT 'not a number'::integer");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  EXPECT_NE(st.message().find("22P02"), std::string::npos) << st;
  EXPECT_EQ(calls, 1);
}

TEST_F(PgPoolErrorsTest, ServerStartTimeIsStableWhileTheServerRuns) {
  PgPool pool(db_, nullptr);
  auto first = pool.ServerStartTime();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->empty());
  auto second = pool.ServerStartTime();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*first, *second);

  DatabaseOptions nowhere = db_;
  nowhere.url = "postgresql://postgres@127.0.0.1:1/secondread";
  nowhere.connect_timeout_s = 2;
  PgPool unreachable(nowhere, nullptr);
  EXPECT_EQ(unreachable.ServerStartTime().status().code(), absl::StatusCode::kUnavailable);
}

// The session ends while the statement runs: whether it committed is unknown,
// and the status must say so even when the retry fails for another reason.
TEST_F(PgPoolErrorsTest, ConnectionCutMidCallIsInDoubt) {
  DatabaseOptions o = db_;
  o.statement_timeout_ms = 10000;
  PgPool pool(o, nullptr);
  std::atomic<int> pid{0};
  std::thread killer([&] {
    for (int i = 0; i < 500 && pid == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    pqxx::connection c(db_.url);
    pqxx::nontransaction tx(c);
    tx.exec("SELECT pg_terminate_backend(" + std::to_string(pid.load()) + ")");
  });
  int calls = 0;
  absl::Status st = pool.Run([&](pqxx::connection_base& c) {
    ++calls;
    pqxx::nontransaction tx(c);
    if (calls == 1) {
      pid = tx.exec("SELECT pg_backend_pid()")[0][0].as<int>();
      tx.exec("SELECT pg_sleep(5)");
    } else {
      tx.exec("SELECT 'not a number'::integer");
    }
  });
  killer.join();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  EXPECT_TRUE(InDoubt(st)) << st;
}

TEST_F(PgPoolErrorsTest, UnreachableServerIsNotInDoubt) {
  DatabaseOptions nowhere = db_;
  nowhere.url = "postgresql://postgres@127.0.0.1:1/secondread";
  nowhere.connect_timeout_s = 2;
  PgPool pool(nowhere, nullptr);
  int calls = 0;
  absl::Status st = pool.Run([&](pqxx::connection_base&) { ++calls; });
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(InDoubt(st)) << st;
  EXPECT_EQ(calls, 0);
}

// Last in the file: it stops the shared test server. Pooled connections the
// stopped server closed are noticed before use: the call then fails without
// having sent anything (not in doubt), and after the restart it runs once.
TEST_F(PgPoolErrorsTest, StaleConnectionsAreNotInDoubt) {
  TestServer server;
  ASSERT_TRUE(server.Load()) << "SECONDREAD_TEST_PG_ENV is not set";
  DatabaseOptions o = db_;
  o.connect_timeout_s = 2;
  PgPool pool(o, nullptr);
  int calls = 0;
  auto fn = [&](pqxx::connection_base& c) {
    ++calls;
    pqxx::nontransaction tx(c);
    tx.exec("SELECT 1");
  };
  ASSERT_TRUE(pool.Run(fn).ok());
  ASSERT_TRUE(server.Stop());
  struct Restart {
    TestServer* s;
    bool done = false;
    ~Restart() {
      if (!done) s->Start();
    }
  } restart{&server};
  calls = 0;
  absl::Status down = pool.Run(fn);
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;
  EXPECT_FALSE(InDoubt(down)) << down;
  EXPECT_EQ(calls, 0) << "a statement was sent on a connection the server had closed";

  ASSERT_TRUE(pool.Run(fn).code() == absl::StatusCode::kUnavailable);
  ASSERT_TRUE(server.Start());
  restart.done = true;
  calls = 0;
  EXPECT_TRUE(pool.Run(fn).ok());
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace secondread::worklist
