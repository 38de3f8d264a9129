-- Rows of the removed actions stay (the log is append-only): the
-- constraint checks only new rows. Takes the same rights over audit_log as
-- the up migration; without them the actions stay as they are.
SELECT secondread_audit_actions('{}', ARRAY['sign_in', 'issue_token', 'revoke_token', 'view_tokens']);
DROP FUNCTION IF EXISTS secondread_audit_actions(text[], text[]);

DROP TABLE IF EXISTS api_tokens;
