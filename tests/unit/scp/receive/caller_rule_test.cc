#include <gtest/gtest.h>

#include "scp/receive/dicom_server.h"

namespace secondread::scp {
namespace {

TEST(CallerRuleTest, ParsesAeAndOptionalHost) {
  auto a = ParseCallerRule("STORESCU");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->ae_title, "STORESCU");
  EXPECT_EQ(a->host, "");
  auto b = ParseCallerRule("PACS@10.1.2.3");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ae_title, "PACS");
  EXPECT_EQ(b->host, "10.1.2.3");
  EXPECT_FALSE(ParseCallerRule("").ok());
  EXPECT_FALSE(ParseCallerRule("X@").ok());
  EXPECT_FALSE(ParseCallerRule("AN_AE_TITLE_THAT_IS_TOO_LONG").ok());
}

TEST(CallerRuleTest, AllowListHonoursHostBinding) {
  std::vector<CallerRule> rules = {{"STORESCU", ""}, {"PACS", "10.1.2.3"}};
  EXPECT_TRUE(CallerAllowed(rules, "STORESCU", "192.168.0.9"));
  EXPECT_TRUE(CallerAllowed(rules, "PACS", "10.1.2.3"));
  EXPECT_FALSE(CallerAllowed(rules, "PACS", "10.1.2.4"));
  EXPECT_FALSE(CallerAllowed(rules, "EVIL", "10.1.2.3"));
  EXPECT_FALSE(CallerAllowed({}, "STORESCU", "127.0.0.1"));
}

TEST(CallerRuleTest, TlsSubjectBindingIsExactAndPerAeTitle) {
  std::vector<CallerSubject> b = {{"PACS", "CN=pacs.example.org,O=Hospital"},
                                  {"PACS", "CN=pacs2.example.org,O=Hospital"},
                                  {"CT1", "CN=ct1,O=Hospital"}};
  EXPECT_TRUE(SubjectBound(b, "PACS", "CN=pacs.example.org,O=Hospital"));
  EXPECT_TRUE(SubjectBound(b, "PACS", "CN=pacs2.example.org,O=Hospital"));
  EXPECT_FALSE(SubjectBound(b, "PACS", "CN=ct1,O=Hospital")) << "another AE's certificate";
  EXPECT_FALSE(SubjectBound(b, "CT1", "CN=pacs.example.org,O=Hospital"));
  EXPECT_FALSE(SubjectBound(b, "PACS", "CN=pacs.example.org,O=Hospital,OU=x")) << "subjects compare exactly";
  EXPECT_FALSE(SubjectBound(b, "PACS", "cn=pacs.example.org,o=Hospital"));
  EXPECT_FALSE(SubjectBound(b, "PACS", "")) << "no certificate";
  EXPECT_FALSE(SubjectBound({}, "PACS", "CN=pacs.example.org,O=Hospital"));
}

}  // namespace
}  // namespace secondread::scp
