DROP TRIGGER IF EXISTS jobs_notify_trigger ON jobs;
DROP FUNCTION IF EXISTS jobs_notify();
DROP TABLE IF EXISTS jobs;
DROP TYPE IF EXISTS job_state;
