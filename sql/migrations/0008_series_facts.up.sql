-- Routing rules that ask for a volume match on series facts. Each instance
-- keeps the plane of its Image Orientation (Patient) and its Slice Thickness
-- (for enhanced objects, from the functional groups); NULL when absent or
-- malformed. A read is of images (the 2D path) or of one series as a volume;
-- a volume read names its series and is never queued for the 2D dispatcher.

ALTER TABLE instances ADD COLUMN orientation text;
ALTER TABLE instances ADD COLUMN slice_thickness_mm double precision;
ALTER TABLE instances ADD CONSTRAINT instances_orientation_check
  CHECK (orientation IN ('axial', 'coronal', 'sagittal', 'oblique'));
ALTER TABLE instances ADD CONSTRAINT instances_slice_thickness_check
  CHECK (slice_thickness_mm > 0);

ALTER TABLE reads ADD COLUMN input text NOT NULL DEFAULT 'image';
ALTER TABLE reads ADD COLUMN series_ref bigint REFERENCES series (id) ON DELETE CASCADE;
ALTER TABLE reads ADD CONSTRAINT reads_input_check CHECK (input IN ('image', 'volume'));
ALTER TABLE reads ADD CONSTRAINT reads_volume_series_check CHECK ((input = 'volume') = (series_ref IS NOT NULL));
CREATE INDEX reads_series_ref_idx ON reads (series_ref) WHERE series_ref IS NOT NULL;
