-- The jobs that are waiting or running, by queue, state and age: what a
-- worker autoscaler asks every few seconds (the chart's KEDA queries count
-- them and take the oldest). Without it those queries scan every finished
-- job the queue has ever held; with it they read only the live ones, however
-- long the history grows (bench/scaler_query.sh).
CREATE INDEX jobs_pending_idx ON jobs (queue, state, created_at)
  WHERE state IN ('available', 'retryable', 'running');
