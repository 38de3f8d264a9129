// The seam every audited module calls: one Record per event. The node
// passes an AuditTrail when audit.* is configured and a NullAuditSink
// otherwise; modules built without the node (tests) pass nothing.
#pragma once

#include "audit/audit_message.h"

namespace secondread::audit {

class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Never blocks on the network; must not fail the caller's operation.
  virtual void Record(const AuditMessage& message) = 0;
  virtual const NodeIdentity& node() const = 0;
};

class NullAuditSink : public AuditSink {
 public:
  void Record(const AuditMessage&) override {}
  const NodeIdentity& node() const override { return node_; }

 private:
  NodeIdentity node_;
};

}  // namespace secondread::audit
