// The dispatcher's database writes against a real PostgreSQL: a holder whose
// lease ran out writes nothing once the reaper gave its job to another, a
// read moves only from the states it may leave, the reaper's discard fails
// the read, and a later generation never takes over an earlier one's rows.
#include "worklist/db/read_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <pqxx/pqxx>

namespace secondread::worklist {
namespace {

std::string DatabaseUrl() {
  const char* url = std::getenv("SECONDREAD_TEST_DATABASE_URL");
  return url ? url : "";
}

class ReadStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = DatabaseUrl();
    if (url_.empty()) GTEST_SKIP() << "SECONDREAD_TEST_DATABASE_URL is not set";
    db_.url = url_;
    db_.max_connections = 4;
    pool_ = std::make_unique<PgPool>(db_, nullptr);
    queue_ = std::make_unique<JobQueue>(pool_.get(), QueueOptions{});
    store_ = std::make_unique<ReadStore>(pool_.get(), queue_.get(), ReadStoreOptions{{"pacs"}, 3});
    conn_ = std::make_unique<pqxx::connection>(url_);
    static std::atomic<int> n{0};
    tag_ = std::to_string(getpid()) + "." + std::to_string(std::time(nullptr)) + "." + std::to_string(++n);
    queue_name_ = "t_read_store_" + tag_;
  }

  std::string Sql(const std::string& query) {
    pqxx::nontransaction tx(*conn_);
    auto r = tx.exec(query);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].as<std::string>();
  }

  // A study with one instance, a candidate of rule "late", and a queued
  // clinical read of generation `generation`; returns the read id.
  int64_t MakeRead(int generation = 1) {
    pqxx::work tx(*conn_);
    if (study_ == 0) {
      const std::string uid = "2.25." + tag_;
      int64_t patient = tx.exec_params1("INSERT INTO patients (patient_id, patient_name) VALUES ($1, 'DOE^J') "
                                        "RETURNING id",
                                        "P-" + uid)[0]
                            .as<int64_t>();
      study_ = tx.exec_params1("INSERT INTO studies (study_instance_uid, patient_ref) VALUES ($1, $2) RETURNING id",
                               uid, patient)[0]
                   .as<int64_t>();
      int64_t series = tx.exec_params1("INSERT INTO series (series_instance_uid, study_ref, modality) "
                                       "VALUES ($1, $2, 'CR') RETURNING id",
                                       uid + ".1", study_)[0]
                           .as<int64_t>();
      instance_ = tx.exec_params1("INSERT INTO instances (sop_instance_uid, sop_class_uid, series_ref, "
                                  "transfer_syntax_uid, spool_name, size_bytes) VALUES ($1, "
                                  "'1.2.840.10008.5.1.4.1.1.1', $2, '1.2.840.10008.1.2.1', md5($1) || md5($1), 1) "
                                  "RETURNING id",
                                  uid + ".1.1", series)[0]
                      .as<int64_t>();
      candidate_ = tx.exec_params1("INSERT INTO study_candidates (study_ref, rule_name, state, due_at) "
                                   "VALUES ($1, 'late', 'triggered', NULL) RETURNING id",
                                   study_)[0]
                       .as<int64_t>();
    }
    int64_t read = tx.exec_params1("INSERT INTO reads (read_key, study_ref, candidate_ref, rule_name, model_name, "
                                   "mode, priority, trigger, generation) "
                                   "VALUES ($1, $2, $3, 'late', 'nodule', 'clinical', 1, 'association', $4) "
                                   "RETURNING id",
                                   "k-" + tag_ + "-g" + std::to_string(generation), study_, candidate_, generation)[0]
                       .as<int64_t>();
    tx.exec_params("INSERT INTO read_instances (read_ref, instance_ref) VALUES ($1, $2)", read, instance_);
    tx.commit();
    return read;
  }

  int64_t Enqueue(int64_t read, int max_attempts) {
    NewJob j;
    j.queue = queue_name_;
    j.args = {{"read_id", read}};
    j.max_attempts = max_attempts;
    auto id = queue_->Enqueue(j);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : 0;
  }

  Job Claim() {
    auto jobs = queue_->Claim(queue_name_, "test", 1);
    EXPECT_TRUE(jobs.ok() && jobs->size() == 1);
    return jobs.ok() && !jobs->empty() ? jobs->front() : Job{};
  }

  // What the reaper does once the holder stopped heartbeating.
  void ExpireAndReap(int64_t job_id) {
    Sql("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = " + std::to_string(job_id));
    auto reaped = queue_->ReapExpired([](pqxx::transaction_base& tx, const Job& job, const std::string& reason) {
      ReadStore::DiscardInTx(tx, job, reason);
    });
    ASSERT_TRUE(reaped.ok()) << reaped.status();
  }

  ReadOutcome Outcome(double score, const std::vector<std::string>& uids) {
    ReadOutcome o;
    o.images = 1;
    o.served_version = 1;
    o.top_label = "nodule";
    o.top_score = score;
    o.flagged = score > 0.5;
    FindingRow f;
    f.instance_ref = instance_;
    f.finding.label = "nodule";
    f.finding.score = score;
    f.finding.threshold = 0.5;
    f.finding.above_threshold = score > 0.5;
    o.findings.push_back(f);
    for (size_t i = 0; i < uids.size(); ++i) {
      ObjectRow row;
      row.kind = i == 0 ? "sr" : "sc";
      row.sop_class_uid = "1.2.840.10008.5.1.4.1.1.88.34";
      row.sop_instance_uid = uids[i];
      row.series_instance_uid = "2.25.9";
      row.source_instance_ref = i == 0 ? 0 : instance_;
      row.file_name = std::string(63, 'a') + std::to_string(i % 10);
      row.size_bytes = static_cast<int64_t>(score * 1000);
      o.objects.push_back(row);
    }
    return o;
  }

  ReadRow Row(int64_t read) {
    ReadRow r;
    r.id = read;
    r.study_ref = study_;
    r.model = "nodule";
    r.mode = "clinical";
    r.rule = "late";
    return r;
  }

  std::string url_;
  DatabaseOptions db_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<JobQueue> queue_;
  std::unique_ptr<ReadStore> store_;
  std::unique_ptr<pqxx::connection> conn_;
  std::string tag_, queue_name_;
  int64_t study_ = 0, instance_ = 0, candidate_ = 0;
};

TEST_F(ReadStoreTest, HolderPastItsLeaseWritesNothingAfterTheLiveOneCommitted) {
  const int64_t read = MakeRead();
  const std::string r = std::to_string(read);
  const int64_t job_id = Enqueue(read, 3);
  const Job stale = Claim();
  auto started = store_->Start(stale, read);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->fence, Fence::kApplied);
  EXPECT_EQ(Sql("SELECT state FROM reads WHERE id = " + r), "running");

  ExpireAndReap(job_id);
  const Job live = Claim();
  ASSERT_EQ(live.attempt, 2);
  ASSERT_TRUE(store_->Start(live, read).ok());
  auto committed = store_->Commit(live, Row(read), Outcome(0.9, {"2.25.101", "2.25.102"}));
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(*committed, Fence::kApplied);
  const std::string version = Sql("SELECT version FROM worklist_entries WHERE study_ref = " + std::to_string(study_));

  // The stale holder finishes later, with other results, then fails.
  auto stale_commit = store_->Commit(stale, Row(read), Outcome(0.1, {"2.25.201", "2.25.202"}));
  ASSERT_TRUE(stale_commit.ok()) << stale_commit.status();
  EXPECT_EQ(*stale_commit, Fence::kClaimLost);
  bool discarded = false;
  auto stale_fail = store_->Fail(stale, read, "inference cancelled", false, &discarded);
  ASSERT_TRUE(stale_fail.ok()) << stale_fail.status();
  EXPECT_EQ(*stale_fail, Fence::kClaimLost);
  auto stale_start = store_->Start(stale, read);
  ASSERT_TRUE(stale_start.ok());
  EXPECT_EQ(stale_start->fence, Fence::kClaimLost);

  EXPECT_EQ(Sql("SELECT state FROM reads WHERE id = " + r), "done");
  EXPECT_EQ(Sql("SELECT string_agg(score::text, ',') FROM findings WHERE read_ref = " + r), "0.9");
  EXPECT_EQ(Sql("SELECT string_agg(sop_instance_uid, ',' ORDER BY id) FROM result_objects WHERE read_ref = " + r),
            "2.25.101,2.25.102");
  EXPECT_EQ(Sql("SELECT count(*) || ' ' || min(state) FROM exports WHERE read_ref = " + r), "1 pending");
  EXPECT_EQ(Sql("SELECT count(*) FROM jobs WHERE queue = 'export' AND args->>'export_id' = "
                "(SELECT id::text FROM exports WHERE read_ref = " + r + ")"),
            "1");
  EXPECT_EQ(Sql("SELECT version FROM worklist_entries WHERE study_ref = " + std::to_string(study_)), version);
  EXPECT_EQ(Sql("SELECT state::text || ' ' || attempt FROM jobs WHERE id = " + std::to_string(job_id)),
            "completed 2");
}

TEST_F(ReadStoreTest, ACommitRetriedAfterItWentThroughIsFinished) {
  const int64_t read = MakeRead();
  Enqueue(read, 3);
  const Job job = Claim();
  ASSERT_TRUE(store_->Start(job, read).ok());
  auto first = store_->Commit(job, Row(read), Outcome(0.9, {"2.25.301"}));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, Fence::kApplied);
  auto again = store_->Commit(job, Row(read), Outcome(0.9, {"2.25.301"}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, Fence::kFinished);
  EXPECT_EQ(Sql("SELECT count(*) FROM exports WHERE read_ref = " + std::to_string(read)), "1");
}

TEST_F(ReadStoreTest, ReaperDiscardOnTheLastAttemptFailsTheReadWithTheReason) {
  const int64_t read = MakeRead();
  const int64_t job_id = Enqueue(read, 1);
  const Job job = Claim();
  ASSERT_TRUE(store_->Start(job, read).ok());
  ExpireAndReap(job_id);
  EXPECT_EQ(Sql("SELECT state::text FROM jobs WHERE id = " + std::to_string(job_id)), "discarded");
  EXPECT_EQ(Sql("SELECT state || ': ' || error FROM reads WHERE id = " + std::to_string(read)),
            "failed: lease expired on attempt 1 of 1");
  // The holder that outlived the lease cannot bring it back.
  auto late = store_->Commit(job, Row(read), Outcome(0.9, {"2.25.401"}));
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(*late, Fence::kClaimLost);
  EXPECT_EQ(Sql("SELECT state FROM reads WHERE id = " + std::to_string(read)), "failed");
  EXPECT_EQ(Sql("SELECT count(*) FROM result_objects WHERE read_ref = " + std::to_string(read)), "0");
}

// Volume reads wait for the volume dispatcher: a dispatch job that names one
// finds no read, and neither its failure nor the reaper's discard changes it.
TEST_F(ReadStoreTest, TheTwoDimensionalPathNeverTakesAVolumeRead) {
  const int64_t read = MakeRead();
  const std::string id = std::to_string(read);
  Sql("UPDATE reads SET input = 'volume', series_ref = (SELECT series_ref FROM instances WHERE id = " +
      std::to_string(instance_) + ") WHERE id = " + id);
  int64_t job_id = Enqueue(read, 1);
  Job job = Claim();
  auto loaded = store_->Start(job, read);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->found);
  EXPECT_TRUE(loaded->sources.empty());
  bool discarded = false;
  auto failed = store_->Fail(job, read, "read does not exist", true, &discarded);
  ASSERT_TRUE(failed.ok());
  EXPECT_TRUE(discarded);
  EXPECT_EQ(Sql("SELECT state::text FROM jobs WHERE id = " + std::to_string(job_id)), "discarded");
  job_id = Enqueue(read, 1);
  job = Claim();
  ASSERT_TRUE(store_->Start(job, read).ok());
  ExpireAndReap(job_id);
  EXPECT_EQ(Sql("SELECT state::text FROM jobs WHERE id = " + std::to_string(job_id)), "discarded");
  EXPECT_EQ(Sql("SELECT state || ' ' || COALESCE(error, '-') || ' ' || (started_at IS NULL) FROM reads WHERE id = " + id),
            "queued - true");
}

// A volume read keeps its rule's series.resample (migration 0010): the volume
// dispatcher reads it from the row, and only a volume read may carry it.
TEST_F(ReadStoreTest, AVolumeReadCarriesItsResampleFlag) {
  const int64_t read = MakeRead();
  const std::string id = std::to_string(read);
  EXPECT_THROW(Sql("UPDATE reads SET resample = true WHERE id = " + id), pqxx::check_violation);
  Sql("UPDATE reads SET input = 'volume', series_ref = (SELECT series_ref FROM instances WHERE id = " +
      std::to_string(instance_) + ") WHERE id = " + id);
  ReadStore volumes(pool_.get(), queue_.get(), ReadStoreOptions{{"pacs"}, 3, "volume"});
  Enqueue(read, 3);
  Job job = Claim();
  auto loaded = volumes.Start(job, read);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->found);
  EXPECT_FALSE(loaded->read.resample);
  Sql("UPDATE reads SET resample = true WHERE id = " + id);
  loaded = volumes.Start(job, read);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->read.resample);
}

TEST_F(ReadStoreTest, RetryAndLastFailureMoveTheReadOnlyFromRunning) {
  const int64_t read = MakeRead();
  Enqueue(read, 2);
  Job job = Claim();
  ASSERT_TRUE(store_->Start(job, read).ok());
  bool discarded = true;
  auto failed = store_->Fail(job, read, "worker unavailable", false, &discarded);
  ASSERT_TRUE(failed.ok());
  EXPECT_FALSE(discarded);
  EXPECT_EQ(Sql("SELECT state FROM reads WHERE id = " + std::to_string(read)), "queued");
  Sql("UPDATE jobs SET scheduled_at = now() WHERE queue = '" + queue_name_ + "'");
  job = Claim();
  ASSERT_TRUE(store_->Start(job, read).ok());
  failed = store_->Fail(job, read, "worker unavailable again", false, &discarded);
  ASSERT_TRUE(failed.ok());
  EXPECT_TRUE(discarded);
  EXPECT_EQ(Sql("SELECT state || ': ' || error FROM reads WHERE id = " + std::to_string(read)),
            "failed: worker unavailable again");
}

TEST_F(ReadStoreTest, LaterGenerationKeepsOffTheEarlierOnesRowsAndSeesThem) {
  const int64_t first = MakeRead(1);
  Enqueue(first, 3);
  Job job = Claim();
  ASSERT_TRUE(store_->Start(job, first).ok());
  ASSERT_TRUE(store_->Commit(job, Row(first), Outcome(0.9, {"2.25.501", "2.25.502"})).ok());

  const int64_t second = MakeRead(2);
  Enqueue(second, 3);
  job = Claim();
  auto loaded = store_->Start(job, second);
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->prior.size(), 2u);
  EXPECT_EQ(loaded->prior[0].kind, "sc");
  EXPECT_EQ(loaded->prior[1].kind, "sr");
  EXPECT_EQ(loaded->prior[1].object.sop_instance_uid, "2.25.501");
  EXPECT_EQ(loaded->prior[1].generation, 1);
  // Even an object under an earlier generation's UID stays that read's.
  ASSERT_TRUE(store_->Commit(job, Row(second), Outcome(0.8, {"2.25.601", "2.25.502"})).ok());
  EXPECT_EQ(Sql("SELECT string_agg(sop_instance_uid, ',' ORDER BY id) FROM result_objects WHERE read_ref = " +
                std::to_string(first)),
            "2.25.501,2.25.502");
  EXPECT_EQ(Sql("SELECT string_agg(sop_instance_uid, ',' ORDER BY id) FROM result_objects WHERE read_ref = " +
                std::to_string(second)),
            "2.25.601");
}

}  // namespace
}  // namespace secondread::worklist
