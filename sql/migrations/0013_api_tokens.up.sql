-- Bearer tokens issued through the admin API. Only each token's SHA-256 is
-- kept: the token itself is shown once, to the admin who issued it. A name
-- is never reused, so reviews and audit rows signed with it stay unambiguous
-- after the token is revoked.
CREATE TABLE api_tokens (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  role        text NOT NULL,
  sha256      text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  created_by  text NOT NULL,
  expires_at  timestamptz NOT NULL,
  revoked_at  timestamptz,
  revoked_by  text,
  CONSTRAINT api_tokens_name_check CHECK (char_length(name) BETWEEN 1 AND 64),
  CONSTRAINT api_tokens_role_check CHECK (role IN ('radiologist', 'admin')),
  CONSTRAINT api_tokens_sha256_check CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  CONSTRAINT api_tokens_expiry_check CHECK (expires_at > created_at),
  CONSTRAINT api_tokens_revoked_check CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

-- Sign-in attempts and token administration are audited. audit_log belongs
-- to secondread_audit_owner (migration 0005): a superuser changes it
-- directly, a login with CREATEROLE or a member of the owner (the DBA grants
-- it WITH ADMIN OPTION before the upgrade, as for 0005) joins or acts for
-- the owner; the migrate run leaves the owner again at its end
-- (migrations.cc), so that one run may apply several migrations that call
-- this function. Any other login leaves the actions as they are: the new
-- actions then cannot be audited, the node warns at every start, and
-- docs/configuration.md ("The audit log's owner") gives the DBA's statement.
--
-- The allowed actions are read from the constraint in place, so what other
-- migrations added is kept; later migrations add and remove theirs through
-- the same function. The constraint is NOT VALID: it checks new rows only.
-- Every row was checked when it was written, and the log is append-only, so
-- a row of an action rolled back and re-applied out of order (a purge row
-- while 0013 is applied again before 0014) must not stop the migration.
CREATE FUNCTION secondread_audit_actions(add_actions text[], remove_actions text[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  me CONSTANT name := session_user;
  owner_role name;
  actions text[];
BEGIN
  SELECT pg_get_userbyid(relowner) INTO owner_role FROM pg_class WHERE oid = 'audit_log'::regclass;
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
  actions := ARRAY(SELECT DISTINCT a FROM unnest(actions || add_actions) a
                   WHERE a <> ALL (remove_actions) ORDER BY a);
  ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
  EXECUTE format('ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN (%s)) NOT VALID',
                 (SELECT string_agg(quote_literal(a), ', ') FROM unnest(actions) a));
END $fn$;

SELECT secondread_audit_actions(ARRAY['sign_in', 'issue_token', 'revoke_token', 'view_tokens'], '{}');
