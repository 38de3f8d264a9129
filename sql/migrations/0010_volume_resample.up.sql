-- A volume rule may let an unevenly spaced series be resampled onto a
-- uniform grid instead of refused (series.resample). The read keeps what its
-- rule said when it was recorded, as it keeps the mode and priority, so a
-- retry or another node reads it the same way whatever the configuration
-- says by then.

ALTER TABLE reads ADD COLUMN resample boolean NOT NULL DEFAULT false;
ALTER TABLE reads ADD CONSTRAINT reads_resample_check CHECK (NOT resample OR input = 'volume');
