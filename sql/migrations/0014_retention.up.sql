-- Retention (docs/architecture.md, "Retention"). A purged file leaves its row
-- behind as a tombstone: purged_at says when the file was removed, and every
-- reader of files treats the row as having no file. A re-sent instance
-- revives its row (purged_at back to NULL, a new file).
ALTER TABLE instances ADD COLUMN purged_at timestamptz;
ALTER TABLE result_objects ADD COLUMN purged_at timestamptz;

-- The purge looks for studies whose instances still have files.
CREATE INDEX instances_unpurged_series_idx ON instances (series_ref) WHERE purged_at IS NULL;
CREATE INDEX result_objects_unpurged_created_idx ON result_objects (created_at) WHERE purged_at IS NULL;
-- Live jobs by their unique key (read:<id>, export:<id>): a study with one is
-- not purged.
CREATE INDEX IF NOT EXISTS jobs_live_unique_key_idx ON jobs (unique_key)
  WHERE state IN ('available', 'running', 'retryable');

-- A re-read of a study some of whose images were purged records them as
-- left out.
ALTER TABLE read_skipped_instances DROP CONSTRAINT read_skipped_instances_reason_check;
ALTER TABLE read_skipped_instances ADD CONSTRAINT read_skipped_instances_reason_check
  CHECK (reason IN ('burned_in_annotation', 'burned_in_annotation_unknown', 'decoder_crashed', 'decoder_timeout',
                    'decoder_out_of_memory', 'decoder_forbidden_syscall', 'undecodable', 'purged'));

-- Each purge appends an audit_log row in its own transaction. Where this
-- login cannot act for audit_log's owner (see migration 0013's function),
-- the DBA adds the actions as the owner; until then every purge fails, and
-- is logged, rather than purge unaudited, and the node warns at start.
SELECT secondread_audit_actions(ARRAY['purge_study', 'purge_results'], '{}');
