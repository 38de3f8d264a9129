#!/usr/bin/env bash
# How fast the worker ScaledObject's queries answer under a loaded queue.
#
#   bench/scaler_query.sh [QUEUED] [HISTORY] [SECONDS]   (defaults 20000, 1000000, 10)
#
# KEDA's postgresql trigger runs the chart's queries (taken here from
# helm/secondread/templates/worker-scaling.yaml, so the figures are for what
# the chart ships) every pollingInterval. A private, migrated PostgreSQL gets
# HISTORY finished jobs (completed or discarded, as months of reads leave
# behind) and QUEUED waiting or running ones across the dispatch, volume and
# export queues; then pgbench runs each query on one connection for SECONDS
# and prints its mean latency and the plan. Baseline, in the same run: the
# round trip of `SELECT 1` on the same server, the floor any query pays.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
QUEUED=${1:-20000}
HISTORY=${2:-1000000}
SECONDS_EACH=${3:-10}
D=$(mktemp -d /tmp/scaler-bench.XXXXXX)
source "$REPO/scripts/lib.sh"
trap 'private_db_down "$D"' EXIT
private_db_up "$D"
URL=$SECONDREAD_DATABASE_URL

mapfile -t QUERIES < <(sed -n 's/^ *query: "\(.*\)"$/\1/p' "$REPO/helm/secondread/templates/worker-scaling.yaml")
[ "${#QUERIES[@]}" -ge 1 ] || { echo "no query found in the chart" >&2; exit 1; }

psql "$URL" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
-- Rows as the queue leaves them; the notify trigger is off so that loading
-- does not flood listeners.
ALTER TABLE jobs DISABLE TRIGGER USER;
INSERT INTO jobs (queue, state, priority, args, attempt, max_attempts, created_at, scheduled_at, attempted_at, finalized_at)
SELECT (ARRAY['dispatch', 'volume', 'export'])[1 + g % 3],
       (CASE WHEN g % 50 = 0 THEN 'discarded' ELSE 'completed' END)::job_state, 1,
       jsonb_build_object('read_id', g), 1, 5,
       now() - interval '90 days' + g * interval '7 seconds', now() - interval '90 days' + g * interval '7 seconds',
       now() - interval '90 days' + g * interval '7 seconds', now() - interval '90 days' + g * interval '7 seconds'
FROM generate_series(1, $HISTORY) g;
INSERT INTO jobs (queue, state, priority, args, attempt, max_attempts, created_at, scheduled_at, lease_expires_at)
SELECT (ARRAY['dispatch', 'volume', 'export'])[1 + g % 3],
       (CASE WHEN g % 10 = 0 THEN 'running' WHEN g % 10 = 1 THEN 'retryable' ELSE 'available' END)::job_state,
       g % 2, jsonb_build_object('read_id', g), CASE WHEN g % 10 IN (0, 1) THEN 1 ELSE 0 END, 5,
       now() - g * interval '10 milliseconds', now(),
       CASE WHEN g % 10 = 0 THEN now() + interval '1 minute' END
FROM generate_series(1, $QUEUED) g;
ALTER TABLE jobs ENABLE TRIGGER USER;
VACUUM ANALYZE jobs;
SQL

server=$(psql "$URL" -qAt -c "SHOW server_version")
echo "PostgreSQL $server; jobs: $HISTORY finished, $QUEUED waiting or running; $(nproc) CPU(s): $(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -n 1)"
latency() {  # sql -> mean latency in ms
  printf '%s;\n' "$1" >"$D/q.sql"
  pgbench -n -c 1 -T "$SECONDS_EACH" -f "$D/q.sql" "$URL" 2>/dev/null | sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p'
}
base=$(latency "SELECT 1")
run_triggers() {  # label
  local n=0 q ms answer
  for q in "${QUERIES[@]}"; do
    n=$((n + 1))
    ms=$(latency "$q")
    answer=$(psql "$URL" -qAt -c "$q")
    printf '%-28s %10s %10s  %s\n' "trigger $n, $1" "$ms" "$(awk -v a="$ms" -v b="$base" 'BEGIN { printf "%.1f", a / b }')" "$answer"
    psql "$URL" -qAt -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) $q" | sed 's/^/    /'
  done
}
for q in "${QUERIES[@]}"; do echo "trigger: $q"; done
printf '%-28s %10s %10s  %s\n' "query" "mean ms" "x SELECT 1" "answer"
printf '%-28s %10s %10s\n' "SELECT 1" "$base" "1.0"
run_triggers "as migrated"
# The same queries without the index that serves them (migration 0011), as
# the schema was before it.
psql "$URL" -qAt -c "DROP INDEX jobs_pending_idx"
run_triggers "no jobs_pending_idx"
