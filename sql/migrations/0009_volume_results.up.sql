-- Volume reads write a DICOM Segmentation besides their SR and key-slice
-- Secondary Captures.
ALTER TABLE result_objects DROP CONSTRAINT result_objects_kind_check;
ALTER TABLE result_objects ADD CONSTRAINT result_objects_kind_check CHECK (kind IN ('sr', 'sc', 'seg'));
