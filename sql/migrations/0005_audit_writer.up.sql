-- The worklist listing shows patient names and IDs, so it is audited too.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check
  CHECK (action IN ('view_study', 'view_image', 'review', 'dismiss', 'view_audit', 'view_worklist'));

-- The append-only triggers only hold against a login that cannot disable,
-- drop or replace them, which a table's owner can. So audit_log and its
-- trigger function move to secondread_audit_owner, a role that cannot log
-- in, and the node's login keeps INSERT and SELECT (the admin audit view).
--
-- Moving them needs the role to exist and this login to act for it. A
-- superuser, or a login with CREATEROLE, does it all here. Otherwise the DBA
-- prepares it once (docs/configuration.md, "The audit log's owner"):
--   CREATE ROLE secondread_audit_owner NOLOGIN;
--   GRANT CREATE ON SCHEMA public TO secondread_audit_owner;
--   GRANT secondread_audit_owner TO <node login> WITH ADMIN OPTION;
-- and this migration ends the membership when it is done. Without that,
-- the table stays as it was and the node warns at every start.
DO $$
DECLARE
  owner_role CONSTANT name := 'secondread_audit_owner';
  me CONSTANT name := session_user;
  is_super boolean;
  can_create_roles boolean;
BEGIN
  SELECT rolsuper, rolcreaterole INTO is_super, can_create_roles FROM pg_roles WHERE rolname = me;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = owner_role) THEN
    IF NOT (is_super OR can_create_roles) THEN
      RAISE NOTICE 'role % does not exist and % cannot create it; audit_log keeps its owner', owner_role, me;
      RETURN;
    END IF;
    EXECUTE format('CREATE ROLE %I NOLOGIN', owner_role);
  END IF;
  IF NOT is_super AND NOT pg_has_role(me, owner_role, 'MEMBER') THEN
    IF NOT can_create_roles THEN
      RAISE NOTICE '% is not a member of %; audit_log keeps its owner', me, owner_role;
      RETURN;
    END IF;
    EXECUTE format('GRANT %I TO %I', owner_role, me);
  END IF;
  -- A new owner needs CREATE on the schema; the DBA may have granted it.
  BEGIN
    EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', current_schema(), owner_role);
  EXCEPTION WHEN insufficient_privilege THEN
    NULL;
  END;
  EXECUTE format('ALTER TABLE audit_log OWNER TO %I', owner_role);
  EXECUTE format('ALTER FUNCTION audit_log_append_only() OWNER TO %I', owner_role);
  -- Granted by a member of the owner, so recorded as granted by the owner.
  EXECUTE format('GRANT SELECT, INSERT ON audit_log TO %I', me);
  EXECUTE format('GRANT USAGE ON SEQUENCE audit_log_id_seq TO %I', me);
  IF NOT is_super THEN
    BEGIN
      EXECUTE format('REVOKE %I FROM %I', owner_role, me);
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
      RAISE NOTICE '% cannot leave %; the DBA must revoke the membership', me, owner_role;
    END;
  END IF;
END $$;
