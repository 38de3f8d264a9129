-- Rows of the removed actions stay (the log is append-only): NOT VALID
-- checks only new rows. Takes the same rights over audit_log as the up
-- migration; without them the actions stay as they are.
DO $$
DECLARE
  me CONSTANT name := session_user;
  owner_role name;
  is_super boolean;
  actions text[];
BEGIN
  SELECT pg_get_userbyid(relowner) INTO owner_role FROM pg_class WHERE oid = 'audit_log'::regclass;
  SELECT rolsuper INTO is_super FROM pg_roles WHERE rolname = me;
  IF NOT pg_has_role(me, owner_role, 'USAGE') THEN
    IF NOT (SELECT rolcreaterole FROM pg_roles WHERE rolname = me) THEN
      RAISE NOTICE 'audit_log belongs to % and % cannot act for it; its actions stay as they are (the node warns)',
        owner_role, me;
      RETURN;
    END IF;
    EXECUTE format('GRANT %I TO %I', owner_role, me);
  END IF;
  SELECT array_agg(DISTINCT m[1] ORDER BY m[1]) INTO actions
  FROM pg_constraint c, regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS m
  WHERE c.conrelid = 'audit_log'::regclass AND c.conname = 'audit_log_action_check';
  actions := ARRAY(SELECT a FROM unnest(actions) a
                   WHERE a <> ALL (ARRAY['sign_in', 'issue_token', 'revoke_token', 'view_tokens']) ORDER BY a);
  ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
  EXECUTE format('ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN (%s)) NOT VALID',
                 (SELECT string_agg(quote_literal(a), ', ') FROM unnest(actions) a));
  -- As in 0005, the login does not stay a member of the owner.
  IF NOT is_super AND owner_role <> me THEN
    BEGIN
      EXECUTE format('REVOKE %I FROM %I', owner_role, me);
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
      RAISE NOTICE '% cannot leave %; the DBA must revoke the membership', me, owner_role;
    END;
  END IF;
END $$;

DROP TABLE IF EXISTS api_tokens;
