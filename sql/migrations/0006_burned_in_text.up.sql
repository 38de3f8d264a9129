-- Images with text burned into their pixels stay on the node unless the
-- routing rule allows them: the instance keeps Burned In Annotation as
-- received, a study candidate remembers why an image will be left out, and a
-- read records every image it left out and why.

ALTER TABLE instances ADD COLUMN burned_in_annotation text;

ALTER TABLE candidate_instances ADD COLUMN skip_reason text;

CREATE TABLE read_skipped_instances (
  read_ref      bigint NOT NULL REFERENCES reads (id) ON DELETE CASCADE,
  instance_ref  bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
  reason        text NOT NULL,
  skipped_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (read_ref, instance_ref),
  CONSTRAINT read_skipped_instances_reason_check
    CHECK (reason IN ('burned_in_annotation', 'burned_in_annotation_unknown'))
);
CREATE INDEX read_skipped_instances_instance_idx ON read_skipped_instances (instance_ref);
