-- The registry of received objects: patients, studies, series, instances and
-- the associations that delivered them.

CREATE TABLE patients (
  id                    bigserial PRIMARY KEY,
  patient_id            text NOT NULL,
  issuer_of_patient_id  text NOT NULL DEFAULT '',
  patient_name          text NOT NULL DEFAULT '',
  birth_date            text NOT NULL DEFAULT '',
  sex                   text NOT NULL DEFAULT '',
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT patients_identity_key UNIQUE (patient_id, issuer_of_patient_id)
);

CREATE TABLE associations (
  id                 bigserial PRIMARY KEY,
  association_uid    text NOT NULL,
  calling_ae         text NOT NULL,
  called_ae          text NOT NULL,
  peer_host          text NOT NULL,
  started_at         timestamptz NOT NULL DEFAULT now(),
  ended_at           timestamptz,
  outcome            text,
  instances_stored   bigint NOT NULL DEFAULT 0,
  instances_refused  bigint NOT NULL DEFAULT 0,
  bytes_received     bigint NOT NULL DEFAULT 0,
  CONSTRAINT associations_uid_key UNIQUE (association_uid),
  CONSTRAINT associations_outcome_check
    CHECK (outcome IS NULL OR outcome IN ('released', 'aborted', 'timeout', 'error'))
);

CREATE TABLE studies (
  id                        bigserial PRIMARY KEY,
  study_instance_uid        text NOT NULL,
  patient_ref               bigint NOT NULL REFERENCES patients (id),
  study_date                text NOT NULL DEFAULT '',
  study_time                text NOT NULL DEFAULT '',
  study_id                  text NOT NULL DEFAULT '',
  accession_number          text NOT NULL DEFAULT '',
  study_description         text NOT NULL DEFAULT '',
  referring_physician_name  text NOT NULL DEFAULT '',
  -- Number of Study Related Instances (0020,1208) when the sender supplies it.
  expected_instances        integer,
  first_received_at         timestamptz NOT NULL DEFAULT now(),
  last_received_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT studies_uid_key UNIQUE (study_instance_uid)
);
CREATE INDEX studies_last_received_at_idx ON studies (last_received_at);
CREATE INDEX studies_patient_ref_idx ON studies (patient_ref);

CREATE TABLE series (
  id                   bigserial PRIMARY KEY,
  series_instance_uid  text NOT NULL,
  study_ref            bigint NOT NULL REFERENCES studies (id),
  modality             text NOT NULL DEFAULT '',
  body_part_examined   text NOT NULL DEFAULT '',
  series_description   text NOT NULL DEFAULT '',
  protocol_name        text NOT NULL DEFAULT '',
  series_number        integer,
  first_received_at    timestamptz NOT NULL DEFAULT now(),
  last_received_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT series_uid_key UNIQUE (series_instance_uid)
);
CREATE INDEX series_study_ref_idx ON series (study_ref);

CREATE TABLE instances (
  id                          bigserial PRIMARY KEY,
  sop_instance_uid            text NOT NULL,
  sop_class_uid               text NOT NULL,
  series_ref                  bigint NOT NULL REFERENCES series (id),
  association_ref             bigint REFERENCES associations (id),
  transfer_syntax_uid         text NOT NULL,
  instance_number             integer,
  image_type                  text NOT NULL DEFAULT '',
  photometric_interpretation  text NOT NULL DEFAULT '',
  rows                        integer,
  columns                     integer,
  number_of_frames            integer,
  bits_allocated              integer,
  bits_stored                 integer,
  samples_per_pixel           integer,
  pixel_representation        integer,
  spool_name                  text NOT NULL,
  size_bytes                  bigint NOT NULL,
  received_at                 timestamptz NOT NULL DEFAULT now(),
  receive_count               integer NOT NULL DEFAULT 1,
  CONSTRAINT instances_uid_key UNIQUE (sop_instance_uid),
  CONSTRAINT instances_spool_name_key UNIQUE (spool_name),
  CONSTRAINT instances_spool_name_check CHECK (spool_name ~ '^[0-9a-f]{64}$'),
  CONSTRAINT instances_size_check CHECK (size_bytes >= 0)
);
CREATE INDEX instances_series_ref_idx ON instances (series_ref);
CREATE INDEX instances_association_ref_idx ON instances (association_ref);
