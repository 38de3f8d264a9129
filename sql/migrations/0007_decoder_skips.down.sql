DELETE FROM read_skipped_instances
WHERE reason NOT IN ('burned_in_annotation', 'burned_in_annotation_unknown');
ALTER TABLE read_skipped_instances DROP CONSTRAINT read_skipped_instances_reason_check;
ALTER TABLE read_skipped_instances ADD CONSTRAINT read_skipped_instances_reason_check
  CHECK (reason IN ('burned_in_annotation', 'burned_in_annotation_unknown'));
