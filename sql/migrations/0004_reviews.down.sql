DROP TABLE IF EXISTS audit_log;
DROP FUNCTION IF EXISTS audit_log_append_only();
DROP TABLE IF EXISTS reviews;
ALTER TABLE worklist_entries
  DROP CONSTRAINT IF EXISTS worklist_entries_version_check,
  DROP COLUMN IF EXISTS last_reviewer,
  DROP COLUMN IF EXISTS reviewed_at,
  DROP COLUMN IF EXISTS version;
