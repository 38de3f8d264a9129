-- Gives audit_log back to the node's login; only a superuser or a member of
-- secondread_audit_owner can. The role itself is left in place: roles are
-- shared by every database of the cluster.
DO $$
BEGIN
  IF (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_log'::regclass) <> session_user THEN
    EXECUTE format('ALTER TABLE audit_log OWNER TO %I', session_user);
    EXECUTE format('ALTER FUNCTION audit_log_append_only() OWNER TO %I', session_user);
  END IF;
END $$;

-- Rows of the removed action stay (the log is append-only): NOT VALID
-- checks only new rows.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check
  CHECK (action IN ('view_study', 'view_image', 'review', 'dismiss', 'view_audit')) NOT VALID;
