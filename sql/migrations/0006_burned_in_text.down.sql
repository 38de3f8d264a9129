DROP TABLE IF EXISTS read_skipped_instances;
ALTER TABLE candidate_instances DROP COLUMN IF EXISTS skip_reason;
ALTER TABLE instances DROP COLUMN IF EXISTS burned_in_annotation;
