// retention.* as ParseNodeOptions reads it: off by default with the
// documented defaults, hours and days for operators, the *_seconds forms
// winning for tests, out-of-range values refused, and a replica's node id as
// the holder it purges.
#include "cmd/secondread/options.h"

#include <gtest/gtest.h>

namespace secondread {
namespace {

using std::chrono::hours;
using std::chrono::seconds;

absl::StatusOr<NodeOptions> Parse(const std::string& yaml) {
  auto tree = config::ConfigTree::FromString(
      "database: {url: 'postgresql://test@127.0.0.1/test'}\nstorage: {spool_dir: /tmp/spool}\n" + yaml);
  if (!tree.ok()) return tree.status();
  return ParseNodeOptions(*tree);
}

TEST(RetentionOptionsTest, OffByDefault) {
  auto o = Parse("");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->retention.enabled);
  EXPECT_EQ(o->retention.source_grace, hours(72));
  EXPECT_EQ(o->retention.result_age, hours(24 * 30));
  EXPECT_EQ(o->retention.interval, hours(1));
  EXPECT_EQ(o->retention.node_id, "");
}

TEST(RetentionOptionsTest, HoursDaysAndSeconds) {
  auto o = Parse("retention: {enabled: true, source_grace_hours: 24, result_days: 0, interval_seconds: 600}\n");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->retention.enabled);
  EXPECT_EQ(o->retention.source_grace, hours(24));
  EXPECT_EQ(o->retention.result_age, seconds(0)) << "0 keeps result files";
  EXPECT_EQ(o->retention.interval, seconds(600));
  o = Parse("retention: {enabled: true, source_grace_hours: 24, source_grace_seconds: 3, result_days: 9, "
            "result_seconds: 6}\n");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->retention.source_grace, seconds(3));
  EXPECT_EQ(o->retention.result_age, seconds(6));
}

TEST(RetentionOptionsTest, RefusesWhatMakesNoSense) {
  EXPECT_FALSE(Parse("retention: {source_grace_hours: -1}\n").ok());
  EXPECT_FALSE(Parse("retention: {result_days: -2}\n").ok());
  EXPECT_FALSE(Parse("retention: {interval_seconds: 0}\n").ok());
  EXPECT_FALSE(Parse("retention: {enabled: maybe}\n").ok());
  EXPECT_FALSE(Parse("retention: {grace_hours: 3}\n").ok()) << "unknown key";
}

}  // namespace
}  // namespace secondread
