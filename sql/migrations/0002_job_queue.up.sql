-- The durable job queue (worklist/job_queue.h). Workers claim with
-- FOR UPDATE SKIP LOCKED, hold a lease while they work, and finish with
-- completed, retryable (backoff in scheduled_at) or discarded (dead letter).

CREATE TYPE job_state AS ENUM ('available', 'running', 'retryable', 'completed', 'discarded');

CREATE TABLE jobs (
  id                bigserial PRIMARY KEY,
  queue             text NOT NULL,
  state             job_state NOT NULL DEFAULT 'available',
  -- 0 = STAT, 1 = routine; lower is claimed first.
  priority          smallint NOT NULL,
  args              jsonb NOT NULL,
  -- Incremented by each claim, so a claim is identified by (id, attempt).
  attempt           integer NOT NULL DEFAULT 0,
  max_attempts      integer NOT NULL,
  unique_key        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  scheduled_at      timestamptz NOT NULL DEFAULT now(),
  attempted_at      timestamptz,
  lease_expires_at  timestamptz,
  finalized_at      timestamptz,
  claimed_by        text,
  -- One {attempt, at, error} object per failed attempt, oldest first.
  errors            jsonb NOT NULL DEFAULT '[]',
  CONSTRAINT jobs_queue_check CHECK (char_length(queue) BETWEEN 1 AND 128),
  CONSTRAINT jobs_priority_check CHECK (priority BETWEEN 0 AND 1),
  CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
  CONSTRAINT jobs_attempt_check CHECK (attempt >= 0 AND attempt <= max_attempts),
  CONSTRAINT jobs_args_check CHECK (jsonb_typeof(args) = 'object'),
  CONSTRAINT jobs_errors_check CHECK (jsonb_typeof(errors) = 'array'),
  CONSTRAINT jobs_unique_key_check CHECK (unique_key IS NULL OR char_length(unique_key) BETWEEN 1 AND 512),
  CONSTRAINT jobs_finalized_check
    CHECK ((finalized_at IS NOT NULL) = (state IN ('completed', 'discarded'))),
  CONSTRAINT jobs_running_lease_check CHECK (state <> 'running' OR lease_expires_at IS NOT NULL)
);

-- Same columns, order and predicate as the claim query, so a claim reads the
-- ready jobs of one queue in claim order and stops after LIMIT rows.
CREATE INDEX jobs_claim_idx ON jobs (queue, priority, scheduled_at, id)
  WHERE state IN ('available', 'retryable');

-- Deduplication only among live jobs: once a job is completed or discarded
-- the same key may be enqueued again.
CREATE UNIQUE INDEX jobs_unique_key_idx ON jobs (unique_key)
  WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'discarded');

-- The reaper looks only at running jobs, ordered by lease expiry.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';

-- Wakes LISTENing dispatchers. NOTIFY is delivered at commit and dropped on
-- rollback, so a job enqueued inside a larger transaction wakes dispatchers
-- exactly when it becomes visible. Jobs scheduled in the future (a delay or a
-- retry backoff) send nothing: dispatchers find them with their timed wait.
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('secondread_jobs', NEW.queue);
  RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_trigger
  AFTER INSERT OR UPDATE OF state, scheduled_at ON jobs
  FOR EACH ROW
  WHEN (NEW.state IN ('available', 'retryable') AND NEW.scheduled_at <= now())
  EXECUTE FUNCTION jobs_notify();
