-- Several node replicas on one database. Each replica keeps what it received
-- and what it produced in its own spool; these columns say which replica holds
-- a file, so that a replica that claims a read or an export of files held by
-- another fetches them from it (docs/architecture.md, "Several node replicas").
-- NULL: the node that wrote the row ran alone, and every node reads the file
-- from its own spool.

CREATE TABLE nodes (
  node_id       text PRIMARY KEY,
  -- Where the other replicas fetch this replica's files.
  internal_url  text NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT nodes_id_check CHECK (node_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$')
);

ALTER TABLE instances ADD COLUMN holder text;
ALTER TABLE result_objects ADD COLUMN holder text;
ALTER TABLE associations ADD COLUMN holder text;
