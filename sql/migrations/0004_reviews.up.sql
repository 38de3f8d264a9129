-- Radiologist reviews of the AI result, the worklist's optimistic-concurrency
-- version, and the append-only audit log of every access to patient data.

ALTER TABLE worklist_entries
  ADD COLUMN version integer NOT NULL DEFAULT 1,
  ADD COLUMN reviewed_at timestamptz,
  ADD COLUMN last_reviewer text,
  ADD CONSTRAINT worklist_entries_version_check CHECK (version >= 1);

-- One radiologist verdict on a study's AI result (or one finding of it). A
-- dismissal is a row too (verdict 'dismiss'), so the history shows it.
CREATE TABLE reviews (
  id                bigserial PRIMARY KEY,
  study_ref         bigint NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
  finding_ref       bigint REFERENCES findings (id) ON DELETE SET NULL,
  reviewer          text NOT NULL,
  verdict           text NOT NULL,
  comment           text NOT NULL DEFAULT '',
  -- The worklist version the radiologist saw when deciding.
  worklist_version  integer NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT reviews_verdict_check CHECK (verdict IN ('agree', 'disagree', 'uncertain', 'dismiss')),
  CONSTRAINT reviews_comment_check CHECK (char_length(comment) <= 2000)
);
CREATE INDEX reviews_study_idx ON reviews (study_ref, created_at);
CREATE INDEX reviews_finding_idx ON reviews (finding_ref) WHERE finding_ref IS NOT NULL;

-- Who saw or changed what, when and from where. study_ref has no foreign
-- key: the audit outlives the data it describes.
CREATE TABLE audit_log (
  id           bigserial PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor        text NOT NULL,
  role         text NOT NULL,
  action       text NOT NULL,
  study_ref    bigint,
  remote_addr  text NOT NULL,
  detail       jsonb NOT NULL DEFAULT '{}',
  CONSTRAINT audit_log_action_check
    CHECK (action IN ('view_study', 'view_image', 'review', 'dismiss', 'view_audit'))
);
CREATE INDEX audit_log_study_idx ON audit_log (study_ref, at);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
