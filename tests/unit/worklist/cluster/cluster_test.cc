// The cluster's options and paths: a node id must be safe as one path
// component and as a registry key; a replica that fetches needs a URL and a
// token; held files map to the spool's layout.
#include <gtest/gtest.h>

#include "worklist/cluster/cluster.h"

namespace secondread::worklist {
namespace {

ClusterOptions Valid() {
  ClusterOptions o;
  o.enabled = true;
  o.node_id = "secondread-node-0";
  o.advertise_url = "https://secondread-node-0.secondread-node-headless.imaging.svc:8443";
  o.token_file = "/etc/secondread/cluster/token";
  return o;
}

TEST(ClusterOptionsTest, AValidClusterIsAccepted) {
  EXPECT_TRUE(ValidateClusterOptions(Valid()).ok());
  ClusterOptions off;
  off.node_id = "../anything";  // not used when off
  EXPECT_TRUE(ValidateClusterOptions(off).ok());
}

TEST(ClusterOptionsTest, NodeIdsThatAreNotOnePathComponentAreRefused) {
  for (const char* id : {"", "..", "../etc", "a/b", ".hidden", "-x", "node 0", "n\x01",
                         "a234567890123456789012345678901234567890123456789012345678901234"}) {
    ClusterOptions o = Valid();
    o.node_id = id;
    EXPECT_FALSE(ValidateClusterOptions(o).ok()) << id;
  }
}

TEST(ClusterOptionsTest, FetchingNeedsAUrlAndAToken) {
  ClusterOptions o = Valid();
  o.advertise_url = "secondread-node-0:8443";
  EXPECT_FALSE(ValidateClusterOptions(o).ok());
  o = Valid();
  o.token_file.clear();
  EXPECT_FALSE(ValidateClusterOptions(o).ok());
  // A shared spool needs neither.
  o.advertise_url.clear();
  o.shared_spool_root = "/var/lib/secondread/shared";
  EXPECT_TRUE(ValidateClusterOptions(o).ok());
  o = Valid();
  o.tls_cert_file = "/etc/secondread/cluster/tls.crt";
  EXPECT_FALSE(ValidateClusterOptions(o).ok()) << "a certificate without its key";
}

TEST(ClusterOptionsTest, HeldFilesFollowTheSpoolLayout) {
  const std::string name(64, 'a');
  EXPECT_EQ(HeldPath("/spool", HeldKind::kInstance, name), "/spool/objects/aa/" + name + ".dcm");
  EXPECT_EQ(HeldPath("/spool", HeldKind::kResult, name), "/spool/results/" + name + ".dcm");
}

}  // namespace
}  // namespace secondread::worklist
