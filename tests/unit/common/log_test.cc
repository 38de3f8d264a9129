#include "common/log.h"

#include <gtest/gtest.h>

namespace secondread::log {
namespace {

TEST(LogTest, RendersOneJsonObjectPerLine) {
  std::string line = Render(Level::kWarn, "store_refused", {{"reason", "too_large"}, {"bytes", 12}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["event"], "store_refused");
  EXPECT_EQ(j["level"], "warn");
  EXPECT_EQ(j["reason"], "too_large");
  EXPECT_EQ(j["bytes"], 12);
  EXPECT_TRUE(j["ts"].get<std::string>().ends_with("Z"));
}

TEST(LogTest, InvalidUtf8FromThePeerDoesNotThrow) {
  std::string bad = "AE\xff\xfe";
  std::string line;
  EXPECT_NO_THROW(line = Render(Level::kInfo, "x", {{"calling_ae", bad}}));
  EXPECT_NO_THROW(nlohmann::json::parse(line));
}

}  // namespace
}  // namespace secondread::log
