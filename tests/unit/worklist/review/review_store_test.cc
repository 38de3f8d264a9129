#include "worklist/review/review_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <latch>
#include <pqxx/pqxx>
#include <thread>

namespace secondread::worklist {
namespace {

using json = nlohmann::json;

std::string DatabaseUrl() {
  const char* url = std::getenv("SECONDREAD_TEST_DATABASE_URL");
  return url ? url : "";
}

// One study of the fixture, as the pipeline would have left it.
struct Spec {
  std::string model = "m";
  int64_t model_version = 1;
  std::string mode = "clinical";
  std::string modality = "CR";
  bool flagged = false;
  int priority = 1;  // 0 STAT, 1 routine
  double score = 0.5;
  double threshold = 0.3;
  std::string label = "nodule";
  std::string created_at;  // worklist entry and arrival; "" = now
  std::string done_at;     // "" = now
  bool worklist = true;
};

struct Fx {
  int64_t study = 0, instance = 0, read = 0, finding = 0, sc = 0, sr = 0;
};

const char* OrNull(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

class ReviewStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = DatabaseUrl();
    if (url_.empty()) GTEST_SKIP() << "SECONDREAD_TEST_DATABASE_URL is not set";
    DatabaseOptions db;
    db.url = url_;
    db.max_connections = 10;
    pool_ = std::make_unique<PgPool>(db, nullptr);
    store_ = std::make_unique<ReviewStore>(pool_.get());
    conn_ = std::make_unique<pqxx::connection>(url_);
    static std::atomic<int> counter{0};
    tag_ = std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "-" +
           std::to_string(getpid()) + "-" + std::to_string(counter++);
  }

  std::string Hex64() {
    static std::atomic<uint64_t> n{0};
    char buf[65];
    std::snprintf(buf, sizeof buf, "%032llx%016llx%016llx", static_cast<unsigned long long>(getpid()),
                  static_cast<unsigned long long>(std::time(nullptr)), static_cast<unsigned long long>(++n));
    return buf;
  }

  std::string Uid() {
    static std::atomic<int> n{0};
    return "2.25." + std::to_string(getpid()) + "." + std::to_string(std::time(nullptr)) + "." + std::to_string(++n);
  }

  std::string Model(const std::string& suffix = "") { return "model-" + tag_ + suffix; }

  Fx MakeStudy(const Spec& s) {
    Fx fx;
    pqxx::work tx(*conn_);
    std::string uid = Uid();
    int64_t patient = tx.exec_params1(
                            "INSERT INTO patients (patient_id, patient_name, birth_date, sex) "
                            "VALUES ($1, 'DOE^JANE', '19400522', 'F') RETURNING id",
                            "P-" + uid)[0]
                          .as<int64_t>();
    fx.study = tx.exec_params1(
                     "INSERT INTO studies (study_instance_uid, patient_ref, study_date, accession_number, "
                     "study_description, first_received_at) "
                     "VALUES ($1, $2, '20261130', $3, 'CHEST PA', COALESCE($4::timestamptz, now())) RETURNING id",
                     uid, patient, "A-" + uid, OrNull(s.created_at))[0]
                   .as<int64_t>();
    int64_t series = tx.exec_params1(
                           "INSERT INTO series (series_instance_uid, study_ref, modality, series_number) "
                           "VALUES ($1, $2, $3, 1) RETURNING id",
                           uid + ".1", fx.study, s.modality)[0]
                         .as<int64_t>();
    fx.instance = tx.exec_params1(
                        "INSERT INTO instances (sop_instance_uid, sop_class_uid, series_ref, transfer_syntax_uid, "
                        "spool_name, size_bytes) VALUES ($1, '1.2.840.10008.5.1.4.1.1.1', $2, '1.2.840.10008.1.2.1', "
                        "$3, 100) RETURNING id",
                        uid + ".1.1", series, Hex64())[0]
                      .as<int64_t>();
    fx.read = tx.exec_params1(
                    "INSERT INTO reads (read_key, study_ref, rule_name, model_name, model_version, served_version, "
                    "mode, priority, trigger, state, flagged, done_at) "
                    "VALUES ($1, $2, 'chest', $3, $4, $4, $5, $6, 'instance', 'done', $7, "
                    "COALESCE($8::timestamptz, clock_timestamp())) RETURNING id",
                    "key-" + uid, fx.study, s.model, s.model_version, s.mode, s.priority, s.flagged,
                    OrNull(s.done_at))[0]
                  .as<int64_t>();
    fx.finding = tx.exec_params1(
                       "INSERT INTO findings (read_ref, instance_ref, label, code_scheme, code_value, code_meaning, "
                       "score, threshold, above, peak_row, peak_column) "
                       "VALUES ($1, $2, $3, 'SCT', '27925004', 'Nodule', $4, $5, $6, 168, 360) RETURNING id",
                       fx.read, fx.instance, s.label, s.score, s.threshold, s.score > s.threshold)[0]
                     .as<int64_t>();
    fx.sr = tx.exec_params1(
                  "INSERT INTO result_objects (read_ref, kind, sop_class_uid, sop_instance_uid, series_instance_uid, "
                  "file_name, size_bytes) VALUES ($1, 'sr', '1.2.840.10008.5.1.4.1.1.88.22', $2, $3, $4, 10) "
                  "RETURNING id",
                  fx.read, uid + ".9.1", uid + ".9", Hex64())[0]
                .as<int64_t>();
    fx.sc = tx.exec_params1(
                  "INSERT INTO result_objects (read_ref, kind, sop_class_uid, sop_instance_uid, series_instance_uid, "
                  "source_instance_ref, file_name, size_bytes) "
                  "VALUES ($1, 'sc', '1.2.840.10008.5.1.4.1.1.7', $2, $3, $4, $5, 10) RETURNING id",
                  fx.read, uid + ".8.1", uid + ".8", fx.instance, Hex64())[0]
                .as<int64_t>();
    tx.exec_params(
        "INSERT INTO exports (read_ref, destination, state, attempts, sent_at) "
        "VALUES ($1, 'pacs', 'sent', 1, now())",
        fx.read);
    if (s.worklist) {
      tx.exec_params(
          "INSERT INTO worklist_entries (study_ref, flagged, priority, top_model, top_label, top_score, flagged_at, "
          "created_at) VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $2 THEN now() END, "
          "COALESCE($7::timestamptz, now()))",
          fx.study, s.flagged, s.priority, s.model, s.label, s.score, OrNull(s.created_at));
    }
    tx.commit();
    return fx;
  }

  json ListOf(WorklistFilter f) {
    auto r = store_->List(f, Radiologist());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : json::object();
  }

  static std::vector<int64_t> Ids(const json& list) {
    std::vector<int64_t> ids;
    for (const auto& it : list["items"]) ids.push_back(it["study_id"].get<int64_t>());
    return ids;
  }

  int64_t Count(const std::string& sql, int64_t arg) {
    pqxx::nontransaction tx(*conn_);
    return tx.exec_params1(sql, arg)[0].as<int64_t>();
  }

  std::pair<std::string, int64_t> Entry(int64_t study) {
    pqxx::nontransaction tx(*conn_);
    auto r = tx.exec_params1("SELECT status, version FROM worklist_entries WHERE study_ref = $1", study);
    return {r[0].as<std::string>(), r[1].as<int64_t>()};
  }

  Actor Radiologist(const std::string& name = "dr-lee") { return Actor{name, "radiologist", "127.0.0.1"}; }
  Actor Admin() { return Actor{"ops", "admin", "10.0.0.9"}; }

  std::string url_;
  std::string tag_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<ReviewStore> store_;
  std::unique_ptr<pqxx::connection> conn_;
};

TEST_F(ReviewStoreTest, ListOrdersFlaggedThenPriorityThenArrival) {
  Spec s;
  s.model = Model();
  auto mk = [&](bool flagged, int priority, const std::string& at) {
    Spec x = s;
    x.flagged = flagged;
    x.priority = priority;
    x.created_at = at;
    return MakeStudy(x).study;
  };
  int64_t routine_old = mk(false, 1, "2002-01-01 00:01+00");
  int64_t flagged_routine_new = mk(true, 1, "2002-01-01 00:05+00");
  int64_t stat_new = mk(false, 0, "2002-01-01 00:06+00");
  int64_t flagged_routine_old = mk(true, 1, "2002-01-01 00:02+00");
  int64_t flagged_stat = mk(true, 0, "2002-01-01 00:09+00");

  WorklistFilter f;
  f.model = s.model;
  json list = ListOf(f);
  EXPECT_EQ(Ids(list), (std::vector<int64_t>{flagged_stat, flagged_routine_old, flagged_routine_new, stat_new,
                                             routine_old}));
  EXPECT_EQ(list["total"], 5);
  EXPECT_EQ(list["limit"], 50);
  EXPECT_EQ(list["offset"], 0);

  const json& first = list["items"][0];
  EXPECT_EQ(first["priority"], "STAT");
  EXPECT_EQ(first["flagged"], true);
  EXPECT_EQ(first["status"], "new");
  EXPECT_EQ(first["arrived_at"], "2002-01-01T00:09:00.000Z");
  EXPECT_GT(first["age_seconds"].get<int64_t>(), 0);
  EXPECT_TRUE(first["flagged_at"].is_string());
  EXPECT_EQ(first["modality"], "CR");
  EXPECT_EQ(first["model"], s.model);
  EXPECT_EQ(first["model_version"], 1);
  EXPECT_EQ(first["top_label"], "nodule");
  EXPECT_DOUBLE_EQ(first["top_score"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(first["threshold"].get<double>(), 0.3);
  EXPECT_EQ(first["patient_name"], "DOE^JANE");
  EXPECT_EQ(first["study_description"], "CHEST PA");
  EXPECT_TRUE(first["accession_number"].get<std::string>().starts_with("A-"));
  EXPECT_TRUE(first["patient_id"].get<std::string>().starts_with("P-"));
  EXPECT_EQ(first["version"], 1);
  EXPECT_EQ(list["items"][4]["priority"], "routine");
  EXPECT_TRUE(list["items"][4]["flagged_at"].is_null());
}

TEST_F(ReviewStoreTest, ListFilters) {
  Spec s;
  s.model = Model();
  s.modality = "XA" + tag_;
  Spec a = s;
  a.flagged = true;
  a.created_at = "2001-03-01 10:00+00";
  int64_t sa = MakeStudy(a).study;
  Spec b = s;
  b.created_at = "2001-03-02 23:30+00";
  int64_t sb = MakeStudy(b).study;
  Spec c = s;
  c.modality = "DX" + tag_;
  c.created_at = "2001-03-03 00:30+00";
  int64_t sc = MakeStudy(c).study;
  // Another model's clinical read of study b also makes it match that model.
  Spec other = s;
  other.model = Model("-other");
  other.worklist = false;
  int64_t sd = MakeStudy(other).study;
  {
    pqxx::work tx(*conn_);
    tx.exec_params(
        "INSERT INTO reads (read_key, study_ref, rule_name, model_name, mode, priority, trigger, state) "
        "VALUES ($1, $2, 'chest', $3, 'clinical', 1, 'instance', 'done')",
        "extra-" + tag_, sb, other.model);
    tx.commit();
  }
  ASSERT_GT(sd, 0);
  ASSERT_EQ(Entry(sb).first, "new");
  {
    pqxx::work tx(*conn_);
    tx.exec_params("UPDATE worklist_entries SET status = 'agreed' WHERE study_ref = $1", sc);
    tx.commit();
  }

  WorklistFilter f;
  f.model = s.model;
  EXPECT_EQ(ListOf(f)["total"], 3);

  WorklistFilter by_status = f;
  by_status.statuses = {"agreed", "dismissed"};
  EXPECT_EQ(Ids(ListOf(by_status)), std::vector<int64_t>{sc});
  by_status.statuses = {"new"};
  EXPECT_EQ(Ids(ListOf(by_status)), (std::vector<int64_t>{sa, sb}));

  WorklistFilter by_modality;
  by_modality.modality = "DX" + tag_;
  EXPECT_EQ(Ids(ListOf(by_modality)), std::vector<int64_t>{sc});

  WorklistFilter by_other_model;
  by_other_model.model = other.model;
  EXPECT_EQ(Ids(ListOf(by_other_model)), std::vector<int64_t>{sb});

  WorklistFilter by_flag = f;
  by_flag.flagged = true;
  EXPECT_EQ(Ids(ListOf(by_flag)), std::vector<int64_t>{sa});
  by_flag.flagged = false;
  EXPECT_EQ(Ids(ListOf(by_flag)), (std::vector<int64_t>{sb, sc}));

  WorklistFilter by_date = f;
  by_date.from = "2001-03-02";
  by_date.to = "2001-03-02";
  EXPECT_EQ(Ids(ListOf(by_date)), std::vector<int64_t>{sb});
  by_date.to = "";
  EXPECT_EQ(Ids(ListOf(by_date)), (std::vector<int64_t>{sb, sc}));
  by_date.from = "";
  by_date.to = "2001-03-01";
  EXPECT_EQ(Ids(ListOf(by_date)), std::vector<int64_t>{sa});
}

TEST_F(ReviewStoreTest, ListPaginatesWithTotal) {
  Spec s;
  s.model = Model();
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    s.created_at = "2003-01-01 00:0" + std::to_string(i) + "+00";
    ids.push_back(MakeStudy(s).study);
  }
  WorklistFilter f;
  f.model = s.model;
  f.limit = 2;
  f.offset = 0;
  json p1 = ListOf(f);
  EXPECT_EQ(Ids(p1), (std::vector<int64_t>{ids[0], ids[1]}));
  EXPECT_EQ(p1["total"], 5);
  EXPECT_EQ(p1["limit"], 2);
  f.offset = 4;
  json p3 = ListOf(f);
  EXPECT_EQ(Ids(p3), std::vector<int64_t>{ids[4]});
  EXPECT_EQ(p3["offset"], 4);
  f.offset = 10;
  json past = ListOf(f);
  EXPECT_TRUE(past["items"].empty());
  EXPECT_EQ(past["total"], 5);

  f.limit = 0;
  EXPECT_EQ(store_->List(f, Radiologist()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ReviewStoreTest, ListIsAuditedWithTheFilterAndTheStudiesShown) {
  Spec s;
  s.model = Model("-audited");
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    s.created_at = "2004-01-01 00:0" + std::to_string(i) + "+00";
    ids.push_back(MakeStudy(s).study);
  }
  WorklistFilter f;
  f.model = s.model;
  f.statuses = {"new"};
  f.limit = 2;
  Actor actor{"dr-audit-" + tag_, "radiologist", "10.1.2.3"};
  auto r = store_->List(f, actor);
  ASSERT_TRUE(r.ok()) << r.status();
  pqxx::nontransaction tx(*conn_);
  auto rows = tx.exec_params("SELECT role, remote_addr, study_ref IS NULL, detail::text FROM audit_log "
                             "WHERE actor = $1 AND action = 'view_worklist'",
                             actor.name);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0].as<std::string>(), "radiologist");
  EXPECT_EQ(rows[0][1].as<std::string>(), "10.1.2.3");
  EXPECT_TRUE(rows[0][2].as<bool>());
  json detail = json::parse(rows[0][3].as<std::string>());
  EXPECT_EQ(detail["study_ids"], json(std::vector<int64_t>{ids[0], ids[1]}));
  EXPECT_EQ(detail["filter"]["model"], s.model);
  EXPECT_EQ(detail["filter"]["status"], json::array({"new"}));
  EXPECT_EQ(detail["filter"]["limit"], 2);
  EXPECT_EQ(detail["filter"]["offset"], 0);
  EXPECT_FALSE(detail["filter"].contains("modality"));
}

TEST_F(ReviewStoreTest, InjectionShapedFilterValuesMatchNothing) {
  Spec s;
  s.model = Model();
  int64_t study = MakeStudy(s).study;
  WorklistFilter f;
  f.modality = "CR' OR '1'='1";
  EXPECT_EQ(ListOf(f)["total"], 0);
  f = {};
  f.model = "x'; DROP TABLE reviews; --";
  EXPECT_EQ(ListOf(f)["total"], 0);
  f = {};
  f.statuses = {"new' OR 'a'='a", "a\"b}", "x\\"};
  EXPECT_EQ(ListOf(f)["total"], 0);
  f = {};
  f.model = s.model;
  f.modality = "CR\") OR true --";
  EXPECT_EQ(ListOf(f)["total"], 0);

  // Nothing was harmed.
  EXPECT_EQ(Count("SELECT count(*) FROM worklist_entries WHERE study_ref = $1", study), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM reviews WHERE study_ref = $1", study), 0);
  WorklistFilter ok;
  ok.model = s.model;
  EXPECT_EQ(ListOf(ok)["total"], 1);
}

TEST_F(ReviewStoreTest, StudyOpensNewEntryOnceAndAudits) {
  Spec s;
  s.model = Model();
  s.flagged = true;
  s.score = 0.98;
  s.threshold = 0.277;
  Fx fx = MakeStudy(s);

  // An admin's view does not move the entry.
  auto admin_view = store_->Study(fx.study, Admin());
  ASSERT_TRUE(admin_view.ok()) << admin_view.status();
  EXPECT_EQ((*admin_view)["worklist"]["status"], "new");
  EXPECT_EQ((*admin_view)["worklist"]["version"], 1);

  auto view = store_->Study(fx.study, Radiologist());
  ASSERT_TRUE(view.ok()) << view.status();
  const json& d = *view;
  EXPECT_EQ(d["study_id"], fx.study);
  EXPECT_EQ(d["worklist"]["status"], "in_review");
  EXPECT_EQ(d["worklist"]["version"], 2);
  EXPECT_EQ(d["worklist"]["flagged"], true);
  EXPECT_EQ(d["worklist"]["priority"], "routine");
  EXPECT_EQ(d["worklist"]["top_label"], "nodule");
  EXPECT_EQ(d["study_date"], "20261130");
  EXPECT_EQ(d["patient"]["name"], "DOE^JANE");
  EXPECT_EQ(d["patient"]["birth_date"], "19400522");
  EXPECT_EQ(d["patient"]["sex"], "F");
  EXPECT_EQ(d["disclaimer"], "AI result for radiologist review. Not a diagnosis.");
  ASSERT_EQ(d["reads"].size(), 1u);
  const json& rd = d["reads"][0];
  EXPECT_EQ(rd["read_id"], fx.read);
  EXPECT_EQ(rd["model"], s.model);
  EXPECT_EQ(rd["mode"], "clinical");
  EXPECT_EQ(rd["state"], "done");
  EXPECT_TRUE(rd["done_at"].get<std::string>().ends_with("Z"));
  ASSERT_EQ(rd["findings"].size(), 1u);
  const json& f = rd["findings"][0];
  EXPECT_EQ(f["finding_id"], fx.finding);
  EXPECT_EQ(f["code"]["value"], "27925004");
  EXPECT_DOUBLE_EQ(f["score"].get<double>(), 0.98);
  EXPECT_EQ(f["above"], true);
  EXPECT_EQ(f["instance_id"], fx.instance);
  EXPECT_DOUBLE_EQ(f["peak"]["row"].get<double>(), 168.0);
  ASSERT_EQ(rd["results"].size(), 2u);
  for (const auto& r : rd["results"]) {
    if (r["kind"] == "sc") {
      EXPECT_EQ(r["result_id"], fx.sc);
      EXPECT_EQ(r["image_url"],
                "/api/v1/studies/" + std::to_string(fx.study) + "/images/" + std::to_string(fx.sc) + ".png");
    } else {
      EXPECT_EQ(r["result_id"], fx.sr);
      EXPECT_FALSE(r.contains("image_url"));
    }
  }
  ASSERT_EQ(rd["exports"].size(), 1u);
  EXPECT_EQ(rd["exports"][0]["state"], "sent");
  EXPECT_TRUE(rd["exports"][0]["last_error"].is_null());
  EXPECT_TRUE(d["reviews"].empty());

  // Once only.
  auto again = store_->Study(fx.study, Radiologist("dr-kim"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)["worklist"]["version"], 2);
  EXPECT_EQ(Entry(fx.study), (std::pair<std::string, int64_t>{"in_review", 2}));

  EXPECT_EQ(Count("SELECT count(*) FROM audit_log WHERE study_ref = $1 AND action = 'view_study'", fx.study), 3);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_log WHERE study_ref = $1 AND actor = 'dr-lee' "
                  "AND role = 'radiologist' AND remote_addr = '127.0.0.1'",
                  fx.study),
            1);

  EXPECT_EQ(store_->Study(-1, Radiologist()).status().code(), absl::StatusCode::kNotFound);
  Spec no_entry = s;
  no_entry.worklist = false;
  EXPECT_EQ(store_->Study(MakeStudy(no_entry).study, Radiologist()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ReviewStoreTest, ScFileNameOnlyForThisStudysSecondaryCapture) {
  Spec s;
  s.model = Model();
  Fx a = MakeStudy(s);
  Fx b = MakeStudy(s);
  auto name = store_->ScFileName(a.study, a.sc, Radiologist());
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(name->size(), 64u);
  EXPECT_EQ(store_->ScFileName(a.study, a.sr, Radiologist()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ScFileName(a.study, b.sc, Radiologist()).status().code(), absl::StatusCode::kNotFound);
  pqxx::nontransaction tx(*conn_);
  EXPECT_EQ(tx.exec_params1("SELECT count(*) FROM audit_log WHERE study_ref = $1 AND action = 'view_image' "
                            "AND detail = jsonb_build_object('result_id', $2::bigint)",
                            a.study, a.sc)[0]
                .as<int>(),
            1);
}

TEST_F(ReviewStoreTest, ReviewStoresMovesAndAudits) {
  Spec s;
  s.model = Model();
  Fx fx = MakeStudy(s);
  ReviewInput in;
  in.verdict = "agree";
  in.finding_id = fx.finding;
  in.comment = "nodule RUL";
  in.expected_version = 1;
  auto r = store_->Review(fx.study, in, Radiologist());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT((*r)["review_id"].get<int64_t>(), 0);
  EXPECT_EQ((*r)["worklist"], (json{{"status", "agreed"}, {"version", 2}}));

  in.verdict = "uncertain";
  in.finding_id.reset();
  in.comment = "";
  in.expected_version = 2;
  auto r2 = store_->Review(fx.study, in, Radiologist());
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ((*r2)["worklist"], (json{{"status", "in_review"}, {"version", 3}}));
  in.verdict = "disagree";
  in.expected_version = 3;
  auto r3 = store_->Review(fx.study, in, Radiologist());
  ASSERT_TRUE(r3.ok()) << r3.status();
  EXPECT_EQ((*r3)["worklist"], (json{{"status", "disagreed"}, {"version", 4}}));

  {
    pqxx::nontransaction tx(*conn_);
    auto row = tx.exec_params1(
        "SELECT reviewed_at IS NOT NULL, last_reviewer FROM worklist_entries WHERE study_ref = $1", fx.study);
    EXPECT_TRUE(row[0].as<bool>());
    EXPECT_EQ(row[1].as<std::string>(), "dr-lee");
    auto rv = tx.exec_params1(
        "SELECT finding_ref, verdict, comment, worklist_version FROM reviews WHERE id = $1",
        (*r)["review_id"].get<int64_t>());
    EXPECT_EQ(rv[0].as<int64_t>(), fx.finding);
    EXPECT_EQ(rv[1].as<std::string>(), "agree");
    EXPECT_EQ(rv[2].as<std::string>(), "nodule RUL");
    EXPECT_EQ(rv[3].as<int>(), 1);
    auto audit = tx.exec_params1(
        "SELECT detail::text FROM audit_log WHERE study_ref = $1 AND action = 'review' ORDER BY id LIMIT 1",
        fx.study);
    EXPECT_EQ(json::parse(audit[0].as<std::string>()),
              (json{{"verdict", "agree"}, {"review_id", (*r)["review_id"]}, {"finding_id", fx.finding}}));
  }

  auto detail = store_->Study(fx.study, Radiologist());
  ASSERT_TRUE(detail.ok());
  ASSERT_EQ((*detail)["reviews"].size(), 3u);
  EXPECT_EQ((*detail)["reviews"][0]["verdict"], "disagree");
  EXPECT_EQ((*detail)["reviews"][2]["verdict"], "agree");
  EXPECT_EQ((*detail)["reviews"][2]["finding_id"], fx.finding);
  EXPECT_EQ((*detail)["reviews"][2]["reviewer"], "dr-lee");
  EXPECT_TRUE((*detail)["reviews"][0]["finding_id"].is_null());

  in.comment = std::string(2001, 'x');
  in.expected_version = 4;
  EXPECT_EQ(store_->Review(fx.study, in, Radiologist()).status().code(), absl::StatusCode::kInvalidArgument);
  in.comment = "";
  in.verdict = "dismiss";
  EXPECT_EQ(store_->Review(fx.study, in, Radiologist()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ReviewStoreTest, StaleVersionIsAConflictWithTheOtherReview) {
  Spec s;
  s.model = Model();
  Fx fx = MakeStudy(s);
  ReviewInput in;
  in.verdict = "disagree";
  in.comment = "no nodule";
  in.expected_version = 1;
  ASSERT_TRUE(store_->Review(fx.study, in, Radiologist("dr-kim")).ok());

  in.verdict = "agree";
  auto r = store_->Review(fx.study, in, Radiologist("dr-lee"));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  json body = json::parse(std::string(r.status().message()));
  EXPECT_EQ(body["error"], "conflict");
  EXPECT_EQ(body["message"], "the study was reviewed by dr-kim meanwhile");
  EXPECT_EQ(body["worklist"], (json{{"status", "disagreed"}, {"version", 2}}));
  EXPECT_EQ(body["last_review"]["reviewer"], "dr-kim");
  EXPECT_EQ(body["last_review"]["verdict"], "disagree");
  EXPECT_EQ(body["last_review"]["comment"], "no nodule");
  EXPECT_TRUE(body["last_review"]["created_at"].is_string());
  EXPECT_EQ(Count("SELECT count(*) FROM reviews WHERE study_ref = $1", fx.study), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_log WHERE study_ref = $1 AND action = 'review'", fx.study), 1);

  // A version moved by a view, not a review: "changed meanwhile".
  Fx other = MakeStudy(s);
  ASSERT_TRUE(store_->Study(other.study, Radiologist("dr-kim")).ok());
  in.expected_version = 1;
  auto r2 = store_->Review(other.study, in, Radiologist("dr-lee"));
  ASSERT_EQ(r2.status().code(), absl::StatusCode::kAborted);
  json body2 = json::parse(std::string(r2.status().message()));
  EXPECT_EQ(body2["message"], "the study changed meanwhile");
  EXPECT_EQ(body2["worklist"], (json{{"status", "in_review"}, {"version", 2}}));
  EXPECT_TRUE(body2["last_review"].is_null());
}

TEST_F(ReviewStoreTest, ConcurrentReviewsOfOneVersionExactlyOneWins) {
  Spec s;
  s.model = Model();
  for (int round = 0; round < 3; ++round) {
    Fx fx = MakeStudy(s);
    constexpr int kThreads = 4;
    std::latch start(kThreads);
    std::vector<absl::StatusCode> codes(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        ReviewInput in;
        in.verdict = i % 2 ? "agree" : "disagree";
        in.expected_version = 1;
        start.arrive_and_wait();
        codes[i] = store_->Review(fx.study, in, Radiologist("dr-" + std::to_string(i))).status().code();
      });
    }
    for (auto& t : threads) t.join();
    int ok = 0, aborted = 0;
    for (auto c : codes) {
      ok += c == absl::StatusCode::kOk;
      aborted += c == absl::StatusCode::kAborted;
    }
    EXPECT_EQ(ok, 1);
    EXPECT_EQ(aborted, kThreads - 1);
    EXPECT_EQ(Count("SELECT count(*) FROM reviews WHERE study_ref = $1", fx.study), 1);
    EXPECT_EQ(Entry(fx.study).second, 2);
  }
}

TEST_F(ReviewStoreTest, FindingOfAnotherStudyOrUnknownStudyIsNotFound) {
  Spec s;
  s.model = Model();
  Fx a = MakeStudy(s);
  Fx b = MakeStudy(s);
  ReviewInput in;
  in.verdict = "agree";
  in.finding_id = b.finding;
  in.expected_version = 1;
  EXPECT_EQ(store_->Review(a.study, in, Radiologist()).status().code(), absl::StatusCode::kNotFound);
  in.finding_id = -5;
  EXPECT_EQ(store_->Review(a.study, in, Radiologist()).status().code(), absl::StatusCode::kNotFound);
  in.finding_id.reset();
  EXPECT_EQ(store_->Review(-1, in, Radiologist()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Dismiss(-1, 1, "", Radiologist()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Entry(a.study), (std::pair<std::string, int64_t>{"new", 1}));
  EXPECT_EQ(Count("SELECT count(*) FROM reviews WHERE study_ref = $1", a.study), 0);
}

TEST_F(ReviewStoreTest, DismissIsARecordedDecision) {
  Spec s;
  s.model = Model();
  Fx fx = MakeStudy(s);
  auto r = store_->Dismiss(fx.study, 1, "duplicate study", Radiologist("dr-kim"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["worklist"], (json{{"status", "dismissed"}, {"version", 2}}));
  {
    pqxx::nontransaction tx(*conn_);
    auto rv = tx.exec_params1("SELECT verdict, comment, reviewer FROM reviews WHERE id = $1",
                              (*r)["review_id"].get<int64_t>());
    EXPECT_EQ(rv[0].as<std::string>(), "dismiss");
    EXPECT_EQ(rv[1].as<std::string>(), "duplicate study");
    EXPECT_EQ(rv[2].as<std::string>(), "dr-kim");
  }
  EXPECT_EQ(Count("SELECT count(*) FROM audit_log WHERE study_ref = $1 AND action = 'dismiss'", fx.study), 1);

  auto stale = store_->Dismiss(fx.study, 1, "", Radiologist("dr-lee"));
  ASSERT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  json body = json::parse(std::string(stale.status().message()));
  EXPECT_EQ(body["message"], "the study was dismissed by dr-kim meanwhile");
  EXPECT_EQ(body["last_review"]["verdict"], "dismiss");

  WorklistFilter f;
  f.model = s.model;
  f.statuses = {"dismissed"};
  EXPECT_EQ(Ids(ListOf(f)), std::vector<int64_t>{fx.study});
}

TEST_F(ReviewStoreTest, AuditLogIsAppendOnly) {
  ASSERT_TRUE(store_->Audit(Admin(), "view_audit", std::nullopt, json{{"probe", tag_}}).ok());
  for (const char* sql : {"UPDATE audit_log SET actor = 'someone-else' WHERE detail->>'probe' = $1",
                          "DELETE FROM audit_log WHERE detail->>'probe' = $1"}) {
    pqxx::work tx(*conn_);
    try {
      tx.exec_params(sql, tag_);
      ADD_FAILURE() << "not refused: " << sql;
    } catch (const pqxx::sql_error& e) {
      EXPECT_NE(std::string(e.what()).find("audit_log is append-only"), std::string::npos) << e.what();
    }
  }
  {
    pqxx::work tx(*conn_);
    EXPECT_THROW(tx.exec("TRUNCATE audit_log"), pqxx::sql_error);
  }
  pqxx::nontransaction tx(*conn_);
  EXPECT_EQ(tx.exec_params1("SELECT count(*) FROM audit_log WHERE detail->>'probe' = $1 AND actor = 'ops'", tag_)[0]
                .as<int>(),
            1);
  EXPECT_FALSE(store_->Audit(Admin(), "rewrite_history", std::nullopt, json::object()).ok());
}

TEST_F(ReviewStoreTest, AuditLogProtectionNamesWhatTheLoginCouldDo) {
  // The test database's login is a superuser: it could do anything.
  absl::Status super = store_->AuditLogProtection();
  EXPECT_EQ(super.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(super.message()).find("superuser"), std::string::npos) << super;

  // A login as a DBA would set it up: INSERT and SELECT, owning nothing.
  const std::string login = "sr_probe_" + std::to_string(getpid());
  {
    pqxx::nontransaction tx(*conn_);
    tx.exec("CREATE ROLE " + tx.quote_name(login) + " LOGIN");
    tx.exec("GRANT SELECT, INSERT ON audit_log TO " + tx.quote_name(login));
  }
  size_t at = url_.find("postgres@");
  ASSERT_NE(at, std::string::npos) << url_;
  DatabaseOptions db;
  db.url = url_.substr(0, at) + login + url_.substr(at + std::string("postgres").size());
  db.max_connections = 1;
  PgPool pool(db, nullptr);
  ReviewStore store(&pool);
  EXPECT_TRUE(store.AuditLogProtection().ok()) << store.AuditLogProtection();

  // One more right is enough to be named.
  {
    pqxx::nontransaction tx(*conn_);
    tx.exec("GRANT DELETE ON audit_log TO " + tx.quote_name(login));
  }
  absl::Status st = store.AuditLogProtection();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(st.message()), "delete");
  pqxx::nontransaction tx(*conn_);
  tx.exec("REVOKE ALL ON audit_log FROM " + tx.quote_name(login));
}

TEST_F(ReviewStoreTest, AuditLogNewestFirstWithItsOwnRow) {
  Spec s;
  s.model = Model();
  Fx fx = MakeStudy(s);
  ASSERT_TRUE(store_->Study(fx.study, Radiologist()).ok());
  ASSERT_TRUE(store_->ScFileName(fx.study, fx.sc, Radiologist()).ok());
  ReviewInput in;
  in.verdict = "agree";
  in.expected_version = 2;
  ASSERT_TRUE(store_->Review(fx.study, in, Radiologist()).ok());

  auto log = store_->AuditLog(100, 0, std::nullopt, Admin());
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)["limit"], 100);
  EXPECT_EQ((*log)["offset"], 0);
  const json& own = (*log)["items"][0];
  EXPECT_EQ(own["action"], "view_audit");
  EXPECT_EQ(own["actor"], "ops");
  EXPECT_EQ(own["role"], "admin");
  EXPECT_EQ(own["remote_addr"], "10.0.0.9");
  EXPECT_TRUE(own["study_id"].is_null());
  EXPECT_TRUE(own["at"].get<std::string>().ends_with("Z"));
  EXPECT_EQ((*log)["items"][1]["action"], "review");
  EXPECT_EQ((*log)["items"][1]["study_id"], fx.study);
  EXPECT_EQ((*log)["items"][1]["detail"]["verdict"], "agree");

  auto per_study = store_->AuditLog(2, 0, fx.study, Admin());
  ASSERT_TRUE(per_study.ok());
  ASSERT_EQ((*per_study)["items"].size(), 2u);
  EXPECT_EQ((*per_study)["items"][0]["action"], "review");
  EXPECT_EQ((*per_study)["items"][1]["action"], "view_image");
  auto next = store_->AuditLog(2, 2, fx.study, Admin());
  ASSERT_TRUE(next.ok());
  ASSERT_EQ((*next)["items"].size(), 1u);
  EXPECT_EQ((*next)["items"][0]["action"], "view_study");
  EXPECT_GT((*per_study)["items"][0]["id"].get<int64_t>(), (*next)["items"][0]["id"].get<int64_t>());
  // Every read of the log left its own row.
  pqxx::nontransaction tx(*conn_);
  EXPECT_EQ(tx.exec_params1("SELECT count(*) FROM audit_log WHERE action = 'view_audit' AND detail->>'study_id' = $1",
                            std::to_string(fx.study))[0]
                .as<int>(),
            2);
  EXPECT_EQ(store_->AuditLog(0, 0, std::nullopt, Admin()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ReviewStoreTest, PerformanceOverTwoWeeks) {
  std::string prev_at, cur_at;
  {
    pqxx::nontransaction tx(*conn_);
    auto r = tx.exec1(
        "SELECT (date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '3 days')::text, "
        "(date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 minute')::text");
    prev_at = r[0].as<std::string>();
    cur_at = r[1].as<std::string>();
  }
  Spec s;
  s.model = Model();
  s.model_version = 7;
  s.worklist = false;
  // Previous week: 20 studies, 4 flagged (score 0.9), 16 not (0.1): rate 0.2, mean 0.26.
  for (int i = 0; i < 20; ++i) {
    Spec x = s;
    x.flagged = i < 4;
    x.score = x.flagged ? 0.9 : 0.1;
    x.done_at = prev_at;
    MakeStudy(x);
  }
  // This week: 20 studies, 10 flagged: rate 0.5, mean 0.5.
  std::vector<int64_t> cur;
  for (int i = 0; i < 20; ++i) {
    Spec x = s;
    x.flagged = i < 10;
    x.score = x.flagged ? 0.9 : 0.1;
    x.done_at = cur_at;
    cur.push_back(MakeStudy(x).study);
  }
  // Neither a shadow read nor a read of another version counts here.
  Spec shadow = s;
  shadow.mode = "shadow";
  shadow.flagged = true;
  shadow.done_at = cur_at;
  MakeStudy(shadow);
  Spec v8 = s;
  v8.model_version = 8;
  v8.done_at = cur_at;
  v8.flagged = true;
  v8.score = 0.8;
  MakeStudy(v8);

  auto review = [&](int64_t study, const std::string& verdict, int seconds) {
    pqxx::work tx(*conn_);
    tx.exec_params(
        "INSERT INTO reviews (study_ref, reviewer, verdict, worklist_version, created_at) "
        "VALUES ($1, 'dr-lee', $2, 1, now() + make_interval(secs => $3))",
        study, verdict, seconds);
    tx.commit();
  };
  // Flagged: agree, agree, agree, disagree, agree then disagree (the latest counts).
  review(cur[0], "agree", 0);
  review(cur[1], "agree", 0);
  review(cur[2], "agree", 0);
  review(cur[3], "disagree", 0);
  review(cur[4], "agree", 0);
  review(cur[4], "disagree", 5);
  // Not flagged: disagree, uncertain, and a dismissal that is no verdict.
  review(cur[10], "disagree", 0);
  review(cur[11], "uncertain", 0);
  review(cur[12], "dismiss", 0);

  PerformanceQuery q;
  q.window = "week";
  q.windows = 2;
  auto perf = store_->Performance(q);
  ASSERT_TRUE(perf.ok()) << perf.status();
  EXPECT_EQ((*perf)["window"], "week");
  const json* m7 = nullptr;
  const json* m8 = nullptr;
  for (const auto& m : (*perf)["models"]) {
    if (m["model"] == s.model && m["version"] == 7) m7 = &m;
    if (m["model"] == s.model && m["version"] == 8) m8 = &m;
  }
  ASSERT_NE(m7, nullptr);
  ASSERT_NE(m8, nullptr);
  ASSERT_EQ((*m7)["windows"].size(), 2u);
  const json& w0 = (*m7)["windows"][0];
  const json& w1 = (*m7)["windows"][1];
  EXPECT_EQ(w0["end"], w1["start"]);
  EXPECT_TRUE(w0["start"].get<std::string>().ends_with("T00:00:00Z"));
  EXPECT_LT(w0["start"].get<std::string>(), w1["start"].get<std::string>());

  EXPECT_EQ(w0["studies_read"], 20);
  EXPECT_EQ(w0["flagged"], 4);
  EXPECT_NEAR(w0["flagged_rate"].get<double>(), 0.2, 1e-9);
  EXPECT_EQ(w0["reviewed"], 0);
  EXPECT_TRUE(w0["agreement_rate"].is_null());
  EXPECT_TRUE(w0["ppv"].is_null());
  EXPECT_NEAR(w0["mean_score"].get<double>(), 0.26, 1e-9);
  EXPECT_TRUE(w0["drift"]["flagged_rate_delta"].is_null());
  EXPECT_TRUE(w0["drift"]["mean_score_delta"].is_null());
  EXPECT_EQ(w0["drift"]["alert"], false);

  EXPECT_EQ(w1["studies_read"], 20);
  EXPECT_EQ(w1["flagged"], 10);
  EXPECT_NEAR(w1["flagged_rate"].get<double>(), 0.5, 1e-9);
  EXPECT_EQ(w1["reviewed"], 7);
  EXPECT_EQ(w1["agreed"], 3);
  EXPECT_EQ(w1["disagreed"], 3);
  EXPECT_EQ(w1["uncertain"], 1);
  EXPECT_NEAR(w1["agreement_rate"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(w1["ppv"].get<double>(), 0.6, 1e-9);
  EXPECT_NEAR(w1["mean_score"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(w1["drift"]["flagged_rate_delta"].get<double>(), 0.3, 1e-9);
  EXPECT_NEAR(w1["drift"]["mean_score_delta"].get<double>(), 0.24, 1e-9);
  EXPECT_EQ(w1["drift"]["alert"], true);

  // Version 8: one study this week, none before: no alert below 20 studies.
  const json& v8w0 = (*m8)["windows"][0];
  const json& v8w1 = (*m8)["windows"][1];
  EXPECT_EQ(v8w0["studies_read"], 0);
  EXPECT_TRUE(v8w0["mean_score"].is_null());
  EXPECT_EQ(v8w1["studies_read"], 1);
  EXPECT_EQ(v8w1["flagged"], 1);
  EXPECT_EQ(v8w1["drift"]["alert"], false);

  q.window = "fortnight";
  EXPECT_EQ(store_->Performance(q).status().code(), absl::StatusCode::kInvalidArgument);
  q.window = "month";
  q.windows = 53;
  EXPECT_EQ(store_->Performance(q).status().code(), absl::StatusCode::kInvalidArgument);
  q.windows = 3;
  auto months = store_->Performance(q);
  ASSERT_TRUE(months.ok()) << months.status();
  for (const auto& m : (*months)["models"]) {
    ASSERT_EQ(m["windows"].size(), 3u);
    EXPECT_TRUE(m["windows"][0]["start"].get<std::string>().ends_with("-01T00:00:00Z"));
  }
}

}  // namespace
}  // namespace secondread::worklist
