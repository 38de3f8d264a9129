SELECT secondread_audit_actions('{}', ARRAY['purge_study', 'purge_results']);
DELETE FROM read_skipped_instances WHERE reason = 'purged';
ALTER TABLE read_skipped_instances DROP CONSTRAINT read_skipped_instances_reason_check;
ALTER TABLE read_skipped_instances ADD CONSTRAINT read_skipped_instances_reason_check
  CHECK (reason IN ('burned_in_annotation', 'burned_in_annotation_unknown', 'decoder_crashed', 'decoder_timeout',
                    'decoder_out_of_memory', 'decoder_forbidden_syscall', 'undecodable'));
DROP INDEX IF EXISTS jobs_live_unique_key_idx;
DROP INDEX IF EXISTS result_objects_unpurged_created_idx;
DROP INDEX IF EXISTS instances_unpurged_series_idx;
ALTER TABLE result_objects DROP COLUMN IF EXISTS purged_at;
ALTER TABLE instances DROP COLUMN IF EXISTS purged_at;
