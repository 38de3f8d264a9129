DELETE FROM result_objects WHERE kind = 'seg';
ALTER TABLE result_objects DROP CONSTRAINT result_objects_kind_check;
ALTER TABLE result_objects ADD CONSTRAINT result_objects_kind_check CHECK (kind IN ('sr', 'sc'));
