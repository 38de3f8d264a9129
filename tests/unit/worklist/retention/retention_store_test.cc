// Retention's eligibility rules and purges against a real PostgreSQL and a
// spool in a temporary directory: a finished study is purged and keeps its
// rows as tombstones with an audit row; each thing that still needs the
// files (a read or export to do, a live job, a rule still collecting, an
// unrouted instance, a recent instance, another replica's files) keeps it; a
// re-sent instance revives its row and keeps its new file; result files go
// only after delivery and their age.
#include "worklist/retention/retention.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <pqxx/pqxx>
#include <thread>

#include "worklist/db/registry.h"

namespace secondread::worklist {
namespace {

using std::chrono::seconds;

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = std::getenv("SECONDREAD_TEST_DATABASE_URL");
    if (!url || !*url) GTEST_SKIP() << "SECONDREAD_TEST_DATABASE_URL is not set";
    db_.url = url;
    db_.max_connections = 4;
    pool_ = std::make_unique<PgPool>(db_, nullptr);
    store_ = std::make_unique<RetentionStore>(pool_.get(), "");
    registry_ = std::make_unique<PgRegistry>(db_);
    conn_ = std::make_unique<pqxx::connection>(url);
    static std::atomic<int> n{0};
    tag_ = std::to_string(getpid()) + "." + std::to_string(std::time(nullptr)) + "." + std::to_string(++n);
    uid_prefix_ = "2.25.1" + std::to_string(getpid()) + "." + std::to_string(std::time(nullptr) % 100000) + "." +
                  std::to_string(n.load()) + ".";
    char dir[] = "/tmp/retention_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    auto spool = scp::Spool::Open({dir_, 0});
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_ = std::move(*spool);
    // Studies left eligible by earlier tests would be purged by RunOnce
    // here; keep each test to its own.
    Sql("UPDATE instances SET purged_at = now() WHERE purged_at IS NULL");
    Sql("UPDATE result_objects SET purged_at = now() WHERE purged_at IS NULL");
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string Sql(const std::string& query) {
    pqxx::nontransaction tx(*conn_);
    auto r = tx.exec(query);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
  }
  int64_t SqlInt(const std::string& query) { return std::stoll(Sql(query)); }

  std::string Uid(int study, int instance = 0) {
    return uid_prefix_ + std::to_string(study) + (instance ? "." + std::to_string(instance) : "");
  }

  // Registers instance `instance` of study `study` as the receiver does:
  // under its spool name's lock, the file first, then the registry.
  void Receive(int study, int instance, size_t bytes = 1000) {
    scp::ReceivedInstance in;
    auto& r = in.record;
    r.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
    r.sop_instance_uid = Uid(study, instance);
    r.study_instance_uid = Uid(study);
    r.series_instance_uid = Uid(study) + ".9";
    r.transfer_syntax_uid = "1.2.840.10008.1.2.1";
    r.patient_id = "P-" + tag_;
    r.patient_name = "DOE^JANE";
    r.modality = "CT";
    in.association = {"assoc-" + tag_, "PACS", "SECONDREAD", "127.0.0.1"};
    in.spool_name = scp::Spool::NameForSopInstanceUid(r.sop_instance_uid);
    in.size_bytes = bytes;
    scp::SpoolNameLock lock = spool_->LockName(in.spool_name);
    const std::string path = spool_->PathFor(in.spool_name);
    std::ofstream(path + ".new") << std::string(bytes, 'x');
    ASSERT_EQ(::rename((path + ".new").c_str(), path.c_str()), 0);
    ASSERT_TRUE(registry_->Accept(in).ok());
  }

  // A study of `instances` instances, routed (its intake consumed) and last
  // received an hour ago. Returns its id.
  int64_t Study(int study, int instances = 2) {
    for (int i = 1; i <= instances; ++i) Receive(study, i);
    int64_t id = StudyId(study);
    Sql("DELETE FROM intake WHERE instance_ref IN (SELECT i.id FROM instances i JOIN series se ON se.id = "
        "i.series_ref WHERE se.study_ref = " + std::to_string(id) + ")");
    Age(id);
    return id;
  }
  int64_t StudyId(int study) {
    return SqlInt("SELECT id FROM studies WHERE study_instance_uid = '" + Uid(study) + "'");
  }
  void Age(int64_t id) {
    Sql("UPDATE studies SET last_received_at = now() - interval '1 hour' WHERE id = " + std::to_string(id));
  }

  int64_t Read(int64_t study, const std::string& state) {
    static std::atomic<int> k{0};
    return SqlInt("INSERT INTO reads (read_key, study_ref, rule_name, model_name, mode, priority, trigger, state) "
                  "VALUES ('ret-" + tag_ + "-" + std::to_string(++k) + "', " + std::to_string(study) +
                  ", 'r', 'm', 'clinical', 1, 'association', '" + state + "') RETURNING id");
  }
  int64_t Export(int64_t read, const std::string& state) {
    return SqlInt("INSERT INTO exports (read_ref, destination, state, sent_at) VALUES (" + std::to_string(read) +
                  ", 'pacs', '" + state + "', " + (state == "sent" ? "now()" : "NULL") + ") RETURNING id");
  }
  int64_t Job(const std::string& unique_key, const std::string& state) {
    const bool running = state == "running";
    return SqlInt("INSERT INTO jobs (queue, priority, args, max_attempts, unique_key, state, attempt, "
                  "lease_expires_at) VALUES ('t_retention', 1, '{}', 3, '" + unique_key + "', '" + state + "', " +
                  (running ? "1, now() + interval '1 minute'" : "0, NULL") + ") RETURNING id");
  }

  bool Eligible(int64_t study) {
    auto studies = store_->EligibleStudies(seconds(60), 100000);
    EXPECT_TRUE(studies.ok()) << studies.status();
    return studies.ok() && std::find(studies->begin(), studies->end(), study) != studies->end();
  }
  int64_t Purged(int64_t study) {
    return SqlInt("SELECT count(*) FROM instances i JOIN series se ON se.id = i.series_ref WHERE se.study_ref = " +
                  std::to_string(study) + " AND i.purged_at IS NOT NULL");
  }
  bool FileExists(int study, int instance) {
    return ::access(spool_->PathFor(scp::Spool::NameForSopInstanceUid(Uid(study, instance))).c_str(), F_OK) == 0;
  }

  RetentionOptions Options(seconds grace = seconds(60), seconds result_age = seconds(0)) {
    RetentionOptions o;
    o.enabled = true;
    o.source_grace = grace;
    o.result_age = result_age;
    return o;
  }

  DatabaseOptions db_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<RetentionStore> store_;
  std::unique_ptr<PgRegistry> registry_;
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<scp::Spool> spool_;
  std::string tag_, dir_;
  std::string uid_prefix_;
};

TEST_F(RetentionTest, FinishedStudyIsPurgedAndKeepsTombstones) {
  int64_t study = Study(1);
  Export(Read(study, "done"), "sent");
  Export(Read(study, "failed"), "dead");
  Read(study, "not_applicable");
  EXPECT_TRUE(Eligible(study));
  metrics::MetricsRegistry metrics;
  Retention retention(Options(), db_, spool_.get(), &metrics, nullptr);
  auto run = retention.RunOnce();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->studies, 1);
  EXPECT_EQ(run->instances, 2);
  EXPECT_EQ(run->instance_bytes, 2000u);
  EXPECT_FALSE(FileExists(1, 1));
  EXPECT_FALSE(FileExists(1, 2));
  // The rows stay, marked.
  EXPECT_EQ(Purged(study), 2);
  EXPECT_EQ(Sql("SELECT detail->>'instances' FROM audit_log WHERE action = 'purge_study' AND study_ref = " +
                std::to_string(study)),
            "2");
  EXPECT_EQ(Sql("SELECT actor || '/' || role FROM audit_log WHERE action = 'purge_study' AND study_ref = " +
                std::to_string(study)),
            "secondread/system");
  EXPECT_NE(metrics.Serialize().find("secondread_retention_purged_bytes_total{kind=\"instance\"} 2000"),
            std::string::npos)
      << metrics.Serialize();
  // Nothing left to purge: a second run does nothing and writes no audit row.
  EXPECT_FALSE(Eligible(study));
  run = retention.RunOnce();
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->studies, 0);
  EXPECT_EQ(SqlInt("SELECT count(*) FROM audit_log WHERE action = 'purge_study' AND study_ref = " +
                   std::to_string(study)),
            1);
}

TEST_F(RetentionTest, StudyWithoutReadsIsPurgedAfterTheGrace) {
  int64_t study = Study(2, 1);
  EXPECT_TRUE(Eligible(study));
  Sql("UPDATE studies SET last_received_at = now() WHERE id = " + std::to_string(study));
  EXPECT_FALSE(Eligible(study)) << "received within the grace";
  EXPECT_TRUE(store_->EligibleStudies(seconds(0), 100000).ok());
  Age(study);
  EXPECT_TRUE(Eligible(study));
}

TEST_F(RetentionTest, AnythingStillToDoKeepsTheStudy) {
  int n = 10;
  auto check = [&](const std::string& what, const std::function<void(int64_t)>& block,
                   const std::function<void(int64_t)>& unblock) {
    SCOPED_TRACE(what);
    int64_t study = Study(++n, 1);
    EXPECT_TRUE(Eligible(study));
    block(study);
    EXPECT_FALSE(Eligible(study));
    auto purged = store_->PurgeStudy(study, seconds(60));
    ASSERT_TRUE(purged.ok()) << purged.status();
    EXPECT_FALSE(purged->has_value());
    EXPECT_EQ(Purged(study), 0);
    unblock(study);
    EXPECT_TRUE(Eligible(study));
  };
  auto none = [](int64_t) {};
  for (const char* state : {"queued", "running"}) {
    int64_t read = 0;
    check(std::string("read ") + state, [&](int64_t s) { read = Read(s, state); },
          [&](int64_t) { Sql("UPDATE reads SET state = 'done' WHERE id = " + std::to_string(read)); });
  }
  int64_t exp = 0;
  check("export pending", [&](int64_t s) { exp = Export(Read(s, "done"), "pending"); },
        [&](int64_t) { Sql("UPDATE exports SET state = 'dead' WHERE id = " + std::to_string(exp)); });
  check("candidate collecting",
        [&](int64_t s) {
          Sql("INSERT INTO study_candidates (study_ref, rule_name, state, due_at) VALUES (" + std::to_string(s) +
              ", 'r', 'collecting', now())");
        },
        [&](int64_t s) {
          Sql("UPDATE study_candidates SET state = 'triggered', due_at = NULL WHERE study_ref = " +
              std::to_string(s));
        });
  for (const char* state : {"available", "running", "retryable"}) {
    int64_t job = 0;
    check(std::string("read job ") + state,
          [&](int64_t s) { job = Job("read:" + std::to_string(Read(s, "done")), state); },
          [&](int64_t) { Sql("UPDATE jobs SET state = 'completed', finalized_at = now() WHERE id = " + std::to_string(job)); });
    check(std::string("export job ") + state,
          [&](int64_t s) { job = Job("export:" + std::to_string(Export(Read(s, "done"), "sent")), state); },
          [&](int64_t) { Sql("UPDATE jobs SET state = 'discarded', finalized_at = now() WHERE id = " + std::to_string(job)); });
  }
  check("instance not routed yet",
        [&](int64_t s) {
          Sql("INSERT INTO intake (kind, instance_ref) SELECT 'instance', i.id FROM instances i JOIN series se ON "
              "se.id = i.series_ref WHERE se.study_ref = " + std::to_string(s));
        },
        [&](int64_t s) {
          Sql("DELETE FROM intake WHERE instance_ref IN (SELECT i.id FROM instances i JOIN series se ON se.id = "
              "i.series_ref WHERE se.study_ref = " + std::to_string(s) + ")");
        });
  check("another replica's files",
        [&](int64_t s) {
          Sql("UPDATE instances SET holder = 'node-b' FROM series se WHERE se.id = instances.series_ref AND "
              "se.study_ref = " + std::to_string(s));
        },
        [&](int64_t s) {
          Sql("UPDATE instances SET holder = NULL FROM series se WHERE se.id = instances.series_ref AND "
              "se.study_ref = " + std::to_string(s));
        });
  (void)none;
}

TEST_F(RetentionTest, EachReplicaPurgesOnlyWhatItHolds) {
  int64_t study = Study(30, 2);
  Sql("UPDATE instances SET holder = 'node-b' WHERE sop_instance_uid = '" + Uid(30, 2) + "'");
  Sql("UPDATE instances SET holder = 'node-a' WHERE sop_instance_uid = '" + Uid(30, 1) + "'");
  RetentionStore a(pool_.get(), "node-a");
  auto purged = a.PurgeStudy(study, seconds(60));
  ASSERT_TRUE(purged.ok() && purged->has_value());
  ASSERT_EQ((*purged)->files.size(), 1u);
  EXPECT_EQ((*purged)->files[0].name, scp::Spool::NameForSopInstanceUid(Uid(30, 1)));
  EXPECT_EQ(Sql("SELECT actor FROM audit_log WHERE action = 'purge_study' AND study_ref = " + std::to_string(study)),
            "secondread:node-a");
  EXPECT_EQ(Purged(study), 1);
}

TEST_F(RetentionTest, ReceivedAgainAfterThePurgeRevivesTheRow) {
  int64_t study = Study(40, 2);
  auto purged = store_->PurgeStudy(study, seconds(60));
  ASSERT_TRUE(purged.ok() && purged->has_value());
  const std::string name = scp::Spool::NameForSopInstanceUid(Uid(40, 1));
  // Committed, files not yet removed: the rescan counts a tombstone's file as
  // unregistered, so a crash here loses nothing.
  auto unregistered = registry_->Unregistered({name});
  ASSERT_TRUE(unregistered.ok());
  EXPECT_EQ(unregistered->size(), 1u);
  // The sender sends instance 1 again before the unlink: a new file, the row revived.
  Receive(40, 1, 1500);
  EXPECT_EQ(Sql("SELECT purged_at IS NULL FROM instances WHERE sop_instance_uid = '" + Uid(40, 1) + "'"), "t");
  auto still = store_->StillPurged({name, scp::Spool::NameForSopInstanceUid(Uid(40, 2))});
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(still->size(), 1u);
  EXPECT_EQ(still->count(name), 0u);
  unregistered = registry_->Unregistered({name});
  ASSERT_TRUE(unregistered.ok());
  EXPECT_TRUE(unregistered->empty());
  // The revived study was received just now, so a run does not purge it
  // again yet.
  Sql("DELETE FROM intake");
  Retention retention(Options(), db_, spool_.get(), nullptr, nullptr);
  auto run = retention.RunOnce();
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->studies, 0);
  EXPECT_TRUE(FileExists(40, 1));
  // Once old enough it goes again.
  Age(study);
  run = retention.RunOnce();
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->studies, 1);
  EXPECT_EQ(run->instances, 1);
  EXPECT_FALSE(FileExists(40, 1));
  // Instance 2's file was left by the purge this test interrupted after its
  // commit (a crash there): the rescan registers it again, as checked above.
  unregistered = registry_->Unregistered({scp::Spool::NameForSopInstanceUid(Uid(40, 2))});
  ASSERT_TRUE(unregistered.ok());
  EXPECT_EQ(unregistered->size(), 1u);
}

TEST_F(RetentionTest, ACopyReceivedBetweenTheCommitAndTheUnlinkIsKept) {
  int64_t study = Study(45, 2);
  Retention retention(Options(), db_, spool_.get(), nullptr, nullptr);
  int hooked = 0;
  retention.SetAfterCommitForTest([&](const PurgedStudy& p) {
    if (p.study_ref != study) return;
    ++hooked;
    EXPECT_EQ(Purged(study), 2);
    Receive(45, 1, 1500);  // the sender re-sends instance 1 now
  });
  auto run = retention.RunOnce();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(hooked, 1);
  EXPECT_EQ(run->instances, 1);
  EXPECT_EQ(run->instances_kept, 1);
  EXPECT_TRUE(FileExists(45, 1));
  EXPECT_FALSE(FileExists(45, 2));
  struct stat st {};
  ASSERT_EQ(::stat(spool_->PathFor(scp::Spool::NameForSopInstanceUid(Uid(45, 1))).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1500) << "the new copy, not the purged one";
  EXPECT_EQ(Sql("SELECT purged_at IS NULL FROM instances WHERE sop_instance_uid = '" + Uid(45, 1) + "'"), "t");
}

// A purge and a sender racing on one study, many times: whatever the
// order, every row without purged_at has its file, and every file removed
// belongs to a row that is still a tombstone.
TEST_F(RetentionTest, PurgeRacingLateAndResentInstancesLosesNothing) {
  Retention retention(Options(), db_, spool_.get(), nullptr, nullptr);
  int purged_first = 0, received_first = 0;
  for (int round = 0; round < 40; ++round) {
    const int s = 100 + round;
    int64_t study = Study(s, 1);
    std::atomic<bool> go{false};
    std::thread sender([&] {
      while (!go.load()) std::this_thread::yield();
      if (round % 4) usleep(static_cast<useconds_t>((round % 7) * 700));
      Receive(s, 2);        // a late instance
      Receive(s, 1, 1200);  // and the first one again
    });
    go = true;
    auto run = retention.RunOnce();
    sender.join();
    ASSERT_TRUE(run.ok()) << run.status();
    if (run->studies > 0) ++purged_first; else ++received_first;
    pqxx::nontransaction tx(*conn_);
    for (const auto& row : tx.exec("SELECT i.spool_name, i.purged_at IS NOT NULL, i.sop_instance_uid FROM instances i "
                                   "JOIN series se ON se.id = i.series_ref WHERE se.study_ref = " +
                                   std::to_string(study))) {
      const bool present = ::access(spool_->PathFor(row[0].as<std::string>()).c_str(), F_OK) == 0;
      EXPECT_EQ(present, !row[1].as<bool>()) << "round " << round << " " << row[2].as<std::string>();
    }
  }
  std::cout << "purge before the sender's instances in " << purged_first << " rounds, after in " << received_first
            << "\n";
  EXPECT_GT(purged_first + received_first, 0);
}

TEST_F(RetentionTest, ResultFilesGoOnlyAfterDeliveryAndTheirAge) {
  int64_t study = Study(50, 1);
  // A read still exporting keeps the study's sources as well.
  int64_t read = Read(study, "done");
  int64_t exp = Export(read, "pending");
  auto results = ResultFiles::Open(dir_);
  ASSERT_TRUE(results.ok());
  auto name = results->Write("sr-" + tag_, std::string(700, 'r'));
  ASSERT_TRUE(name.ok());
  Sql("INSERT INTO result_objects (read_ref, kind, sop_class_uid, sop_instance_uid, series_instance_uid, file_name, "
      "size_bytes, created_at) VALUES (" + std::to_string(read) + ", 'sr', '1.2.840.10008.5.1.4.1.1.88.34', '" +
      Uid(50, 99) + "', '" + Uid(50, 98) + "', '" + *name + "', 700, now() - interval '2 days')");
  auto young = Sql("INSERT INTO result_objects (read_ref, kind, sop_class_uid, sop_instance_uid, series_instance_uid, "
                   "file_name, size_bytes) VALUES (" + std::to_string(read) +
                   ", 'sc', '1.2.840.10008.5.1.4.1.1.7', '" + Uid(50, 97) + "', '" + Uid(50, 98) +
                   "', md5('x') || md5('y'), 1) RETURNING id");
  Retention retention(Options(seconds(60), seconds(86400)), db_, spool_.get(), nullptr, nullptr);
  auto run = retention.RunOnce();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->studies, 0);
  EXPECT_EQ(run->results, 0);
  EXPECT_EQ(::access(results->PathFor(*name).c_str(), F_OK), 0) << "not delivered yet";
  // Delivered: the day-old file goes, the new one stays.
  Sql("UPDATE exports SET state = 'sent', sent_at = now() WHERE id = " + std::to_string(exp));
  run = retention.RunOnce();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->results, 1);
  EXPECT_EQ(run->result_bytes, 700u);
  EXPECT_EQ(run->studies, 1);
  EXPECT_NE(::access(results->PathFor(*name).c_str(), F_OK), 0);
  EXPECT_EQ(Sql("SELECT count(*) FROM result_objects WHERE read_ref = " + std::to_string(read) +
                " AND purged_at IS NOT NULL"),
            "1");
  EXPECT_EQ(Sql("SELECT purged_at IS NULL FROM result_objects WHERE id = " + young), "t");
  EXPECT_EQ(Sql("SELECT detail->>'objects' FROM audit_log WHERE action = 'purge_results' AND study_ref = " +
                std::to_string(study)),
            "1");
}

TEST_F(RetentionTest, APurgeChecksAgainUnderTheLock) {
  int64_t study = Study(60, 1);
  EXPECT_TRUE(Eligible(study));
  // Listed, then a read is queued before the purge's transaction.
  Read(study, "queued");
  auto purged = store_->PurgeStudy(study, seconds(60));
  ASSERT_TRUE(purged.ok());
  EXPECT_FALSE(purged->has_value());
  EXPECT_EQ(Purged(study), 0);
  EXPECT_EQ(SqlInt("SELECT count(*) FROM audit_log WHERE study_ref = " + std::to_string(study)), 0);
}

}  // namespace
}  // namespace secondread::worklist
