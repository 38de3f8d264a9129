-- From received study to result: the intake log the study tracker consumes,
-- per-rule study candidates (completeness), reads, findings, result objects,
-- exports, routing outcomes and the radiologist worklist entries.

-- Every newly registered instance, and every association released after
-- storing, leaves one intake row in the same transaction, and a NOTIFY on
-- commit wakes the tracker. The tracker deletes the rows it has consumed.
CREATE TABLE intake (
  id               bigserial PRIMARY KEY,
  kind             text NOT NULL,
  instance_ref     bigint REFERENCES instances (id) ON DELETE CASCADE,
  association_ref  bigint REFERENCES associations (id) ON DELETE CASCADE,
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT intake_kind_check CHECK (kind IN ('instance', 'association_released')),
  CONSTRAINT intake_ref_check CHECK ((kind = 'instance') = (instance_ref IS NOT NULL))
);

CREATE FUNCTION intake_instance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO intake (kind, instance_ref, association_ref) VALUES ('instance', NEW.id, NEW.association_ref);
  PERFORM pg_notify('secondread_intake', '');
  RETURN NULL;
END $$;
CREATE TRIGGER instances_intake AFTER INSERT ON instances FOR EACH ROW EXECUTE FUNCTION intake_instance();

CREATE FUNCTION intake_association() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.outcome = 'released' AND OLD.outcome IS DISTINCT FROM 'released' AND NEW.instances_stored > 0 THEN
    INSERT INTO intake (kind, association_ref) VALUES ('association_released', NEW.id);
    PERFORM pg_notify('secondread_intake', '');
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER associations_intake AFTER UPDATE OF outcome ON associations
  FOR EACH ROW EXECUTE FUNCTION intake_association();

-- A study that matched a routing rule, collecting instances until the rule's
-- completeness condition holds (due_at), then triggered.
CREATE TABLE study_candidates (
  id              bigserial PRIMARY KEY,
  study_ref       bigint NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
  rule_name       text NOT NULL,
  state           text NOT NULL DEFAULT 'collecting',
  generation      integer NOT NULL DEFAULT 1,
  instance_count  integer NOT NULL DEFAULT 0,
  late_instances  integer NOT NULL DEFAULT 0,
  first_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
  due_at          timestamptz,
  due_reason      text,
  triggered_at    timestamptz,
  CONSTRAINT study_candidates_key UNIQUE (study_ref, rule_name),
  CONSTRAINT study_candidates_state_check CHECK (state IN ('collecting', 'triggered')),
  CONSTRAINT study_candidates_due_check CHECK (state <> 'collecting' OR due_at IS NOT NULL),
  CONSTRAINT study_candidates_reason_check
    CHECK (due_reason IS NULL OR due_reason IN ('silence', 'max_wait', 'expected_count', 'association'))
);
CREATE INDEX study_candidates_due_idx ON study_candidates (due_at) WHERE state = 'collecting';

CREATE TABLE candidate_instances (
  candidate_ref  bigint NOT NULL REFERENCES study_candidates (id) ON DELETE CASCADE,
  instance_ref   bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
  generation     integer NOT NULL,
  PRIMARY KEY (candidate_ref, instance_ref)
);
CREATE INDEX candidate_instances_instance_idx ON candidate_instances (instance_ref);

-- Why a study is, or is not, being read.
CREATE TABLE study_routing (
  study_ref   bigint PRIMARY KEY REFERENCES studies (id) ON DELETE CASCADE,
  status      text NOT NULL,
  reason      text NOT NULL DEFAULT '',
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT study_routing_status_check CHECK (status IN ('matched', 'unmatched'))
);

-- One model reading a set of a study's images. read_key makes the trigger
-- idempotent: the same study, rule, model, version and generation (or
-- instance, for per-instance triggering) never gives two reads.
CREATE TABLE reads (
  id                 bigserial PRIMARY KEY,
  read_key           text NOT NULL,
  study_ref          bigint NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
  candidate_ref      bigint REFERENCES study_candidates (id) ON DELETE SET NULL,
  rule_name          text NOT NULL,
  model_name         text NOT NULL,
  model_version      bigint NOT NULL DEFAULT 0,
  served_version     bigint,
  mode               text NOT NULL,
  priority           smallint NOT NULL,
  trigger            text NOT NULL,
  generation         integer NOT NULL DEFAULT 1,
  state              text NOT NULL DEFAULT 'queued',
  flagged            boolean,
  error              text,
  images_read        integer,
  last_instance_at   timestamptz,
  triggered_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  started_at         timestamptz,
  decode_ms          double precision,
  inference_ms       double precision,
  results_ms         double precision,
  done_at            timestamptz,
  CONSTRAINT reads_key UNIQUE (read_key),
  CONSTRAINT reads_mode_check CHECK (mode IN ('clinical', 'shadow')),
  CONSTRAINT reads_priority_check CHECK (priority IN (0, 1)),
  CONSTRAINT reads_trigger_check
    CHECK (trigger IN ('instance', 'silence', 'max_wait', 'expected_count', 'association')),
  CONSTRAINT reads_state_check CHECK (state IN ('queued', 'running', 'done', 'failed', 'not_applicable'))
);
CREATE INDEX reads_study_ref_idx ON reads (study_ref);

CREATE TABLE read_instances (
  read_ref      bigint NOT NULL REFERENCES reads (id) ON DELETE CASCADE,
  instance_ref  bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
  PRIMARY KEY (read_ref, instance_ref)
);

CREATE TABLE findings (
  id            bigserial PRIMARY KEY,
  read_ref      bigint NOT NULL REFERENCES reads (id) ON DELETE CASCADE,
  instance_ref  bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
  frame         integer NOT NULL DEFAULT 0,
  label         text NOT NULL,
  code_scheme   text NOT NULL DEFAULT '',
  code_value    text NOT NULL DEFAULT '',
  code_meaning  text NOT NULL DEFAULT '',
  score         double precision NOT NULL,
  threshold     double precision NOT NULL,
  above         boolean NOT NULL,
  peak_row      double precision,
  peak_column   double precision,
  CONSTRAINT findings_key UNIQUE (read_ref, instance_ref, frame, label)
);

-- DICOM objects the node created. The file lives in <spool>/results/ under
-- the SHA-256 of its SOP Instance UID; the UID is derived from the study,
-- model, version and object, so a re-read replaces the same row and file.
CREATE TABLE result_objects (
  id                   bigserial PRIMARY KEY,
  read_ref             bigint NOT NULL REFERENCES reads (id) ON DELETE CASCADE,
  kind                 text NOT NULL,
  sop_class_uid        text NOT NULL,
  sop_instance_uid     text NOT NULL,
  series_instance_uid  text NOT NULL,
  source_instance_ref  bigint REFERENCES instances (id) ON DELETE SET NULL,
  file_name            text NOT NULL,
  size_bytes           bigint NOT NULL,
  created_at           timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT result_objects_uid_key UNIQUE (sop_instance_uid),
  CONSTRAINT result_objects_kind_check CHECK (kind IN ('sr', 'sc')),
  CONSTRAINT result_objects_file_check CHECK (file_name ~ '^[0-9a-f]{64}$')
);
CREATE INDEX result_objects_read_ref_idx ON result_objects (read_ref);

-- Delivery of one read's result objects to one destination; the export job
-- (jobs.queue = 'export') carries the retries, this row the outcome.
CREATE TABLE exports (
  id           bigserial PRIMARY KEY,
  read_ref     bigint NOT NULL REFERENCES reads (id) ON DELETE CASCADE,
  destination  text NOT NULL,
  state        text NOT NULL DEFAULT 'pending',
  attempts     integer NOT NULL DEFAULT 0,
  last_error   text,
  queued_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  sent_at      timestamptz,
  CONSTRAINT exports_key UNIQUE (read_ref, destination),
  CONSTRAINT exports_state_check CHECK (state IN ('pending', 'sent', 'dead')),
  CONSTRAINT exports_sent_check CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX exports_state_idx ON exports (state) WHERE state <> 'sent';

-- The radiologist worklist: one entry per study with a clinical read.
CREATE TABLE worklist_entries (
  study_ref    bigint PRIMARY KEY REFERENCES studies (id) ON DELETE CASCADE,
  flagged      boolean NOT NULL,
  priority     smallint NOT NULL,
  status       text NOT NULL DEFAULT 'new',
  top_model    text,
  top_label    text,
  top_score    double precision,
  flagged_at   timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT worklist_entries_status_check
    CHECK (status IN ('new', 'in_review', 'agreed', 'disagreed', 'dismissed')),
  CONSTRAINT worklist_entries_priority_check CHECK (priority IN (0, 1))
);
CREATE INDEX worklist_entries_order_idx ON worklist_entries (flagged DESC, priority, created_at);
