#!/usr/bin/env bash
# One node replica against two, on this machine, in the same run: both
# replicas run on the same host and share its cores, so this measures what a
# second replica costs and gives when CPU is not added with it.
#
#   bench/replicas.sh [RESULTS_MD]
#
# Ingest: BENCH_SERIES series of BENCH_SLICES MR slices (BENCH_SIZE square,
# 16-bit) sent by one storescu per series at once, all to replica A (one
# replica; B is not running) or half of the senders to each replica (two).
# No routing rule matches, so only the receiver works. Each repeat sends
# freshly generated instances. Wall time is taken around the senders.
#
# Time to result: one CT series (BENCH_TTR_SLICES slices of BENCH_TTR_SIZE
# square, a sphere in it) read as a volume by the threshold model on one CPU
# worker, results exported to DCMTK's storescp as the PACS. One replica
# receives the whole series over two associations at once, or each replica
# receives half (alternate slices); the second case adds the fetch of half
# the series from the other replica. Measured from the release of the last
# association to the export's `sent_at`.
#
# Environment: BENCH_SERIES (4), BENCH_SLICES (150), BENCH_SIZE (256),
# BENCH_REPEATS (3; median shown), BENCH_TTR_SLICES (200), BENCH_TTR_SIZE
# (256), BENCH_TTR_REPEATS (2). Needs a build with secondread and
# secondread-worker.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT_MD=${1:-}
SERIES=${BENCH_SERIES:-4}
SLICES=${BENCH_SLICES:-150}
SIZE=${BENCH_SIZE:-256}
REPEATS=${BENCH_REPEATS:-3}
TTR_SLICES=${BENCH_TTR_SLICES:-200}
TTR_SIZE=${BENCH_TTR_SIZE:-256}
TTR_REPEATS=${BENCH_TTR_REPEATS:-2}
source "$REPO/tests/integration/lib/common.sh"
source "$REPO/tests/integration/lib/results.sh"
source "$REPO/tests/integration/lib/cluster.sh"
TEST_NAME=replicas_bench
it_setup "$(mktemp -d "${TMPDIR:-/tmp}/secondread-replicas.XXXXXX")"
it_also_on_exit '[ -f "$WORK/nodeb/secondread.pid" ] && kill -TERM "$(cat "$WORK/nodeb/secondread.pid")" 2>/dev/null;
  [ -n "${SCP_PID:-}" ] && kill "$SCP_PID" 2>/dev/null; true'
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

REPO_MODELS="$WORK/models"
threshold_volume_model "$REPO_MODELS"
worker_up --repo "$REPO_MODELS"

# The PACS: DCMTK's storescp, keeping nothing.
PACS_PORT=$(free_port)
mkdir -p "$WORK/pacs"
storescp --fork -aet PACS -od "$WORK/pacs" --ignore "$PACS_PORT" >"$WORK/storescp.log" 2>&1 &
SCP_PID=$!

cluster_secrets "$WORK/cluster-tls"
cluster_routing ct-only >"$WORK/routing.yaml"
PORT_A=$(free_port)
# shellcheck disable=SC2046
node_up --no-worker --pacs "PACS@127.0.0.1:$PACS_PORT" --routing "$WORK/routing.yaml" \
  --set "inference.endpoints=[$SECONDREAD_WORKER_ADDR]" --set dicom.max_associations=32 \
  $(cluster_sets node-a "$PORT_A")
DICOM_A=$SECONDREAD_DICOM_PORT
replica_b_ports
start_b() { start_replica_b --set dicom.max_associations=32; }

# A fresh seed per series (new UIDs: every instance takes the insert path);
# gen runs in command substitutions, so no counter would survive.
gen() {  # dir slices size modality
  $PY "$REPO/tools/gen_series.py" "$1" --modality "$4" --slices "$2" --rows "$3" --columns "$3" \
    --seed "$($PY -c 'import secrets; print(secrets.randbelow(10**9))')" >/dev/null
}
send_to() {  # port files...
  local port=$1; shift
  storescu --max-pdu 131072 -aet STORESCU -aec SECONDREAD 127.0.0.1 "$port" "$@"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# ---- Ingest
ingest_round() {  # replicas -> "seconds MB"
  local n=$1 dir="$WORK/ingest" pids=() i t0 t1 bytes
  rm -rf "$dir"
  for i in $(seq 1 "$SERIES"); do gen "$dir/s$i" "$SLICES" "$SIZE" MR; done
  bytes=$(du -cb "$dir"/s*/*.dcm | tail -1 | cut -f1)
  t0=$(date +%s.%N)
  for i in $(seq 1 "$SERIES"); do
    if [ "$n" -eq 2 ] && [ $((i % 2)) -eq 0 ]; then port=$DICOM_B; else port=$DICOM_A; fi
    send_to "$port" "$dir/s$i"/*.dcm &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || fail "a sender failed"; done
  t1=$(date +%s.%N)
  echo "$(echo "$t1 - $t0" | bc -l) $(echo "$bytes / 1048576" | bc -l)"
}
declare -A ING_S ING_MB
run_ingest() {  # replicas
  local r out secs=()
  for r in $(seq 1 "$REPEATS"); do
    out=$(ingest_round "$1")
    secs+=("${out%% *}")
    ING_MB[$1]=${out##* }
    log "ingest, $1 replica(s), repeat $r: ${out%% *} s for ${out##* } MB"
  done
  ING_S[$1]=$(printf '%s\n' "${secs[@]}" | median)
}

# ---- Time to result
ttr_round() {  # replicas -> seconds
  local n=$1 dir="$WORK/ttr" files=() a=() b=() i before pa pb
  rm -rf "$dir"
  gen "$dir" "$TTR_SLICES" "$TTR_SIZE" CT
  files=("$dir"/*.dcm)
  for i in "${!files[@]}"; do if [ $((i % 2)) -eq 0 ]; then a+=("${files[$i]}"); else b+=("${files[$i]}"); fi; done
  before=$(sql "SELECT count(*) FROM exports WHERE state = 'sent'")
  send_to "$DICOM_A" "${a[@]}" >/dev/null 2>&1 &
  pa=$!
  if [ "$n" -eq 2 ]; then send_to "$DICOM_B" "${b[@]}" >/dev/null 2>&1 & else send_to "$DICOM_A" "${b[@]}" >/dev/null 2>&1 & fi
  pb=$!
  wait "$pa" && wait "$pb" || fail "a sender failed"
  wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" "$((before + 1))" 600
  sql "SELECT extract(epoch FROM e.sent_at - (SELECT max(ended_at) FROM associations))
       FROM exports e WHERE e.state = 'sent' ORDER BY e.sent_at DESC LIMIT 1"
}
declare -A TTR_S FETCHED
run_ttr() {  # replicas
  local r s secs=()
  for r in $(seq 1 "$TTR_REPEATS"); do
    s=$(ttr_round "$1")
    secs+=("$s")
    log "time to result, $1 replica(s), repeat $r: $s s"
  done
  TTR_S[$1]=$(printf '%s\n' "${secs[@]}" | median)
}

log "one replica"
run_ingest 1
run_ttr 1
start_b
log "two replicas"
run_ingest 2
run_ttr 2
FETCHED_TOTAL=$(( $(fetched_at "http://127.0.0.1:$HTTP_B/metrics") + $(fetched_at "$SECONDREAD_METRICS_URL") ))

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
REPORT=$(cat <<MD
### Several node replicas (\`bench/replicas.sh\`)

Machine: $(nproc) vCPUs ($CPU), $(free -g | awk '/^Mem:/ {print $2}') GiB; both replicas, the worker,
PostgreSQL and the senders share those cores. $(date -u +%Y-%m-%d).

| Case | One replica (baseline) | Two replicas | Ratio two / one |
|---|---|---|---|
| Ingest: $SERIES storescu senders x $SLICES MR slices of ${SIZE}², $(printf '%.0f' "${ING_MB[1]}") MB, median of $REPEATS | $(printf '%.2f' "${ING_S[1]}") s, $(printf '%.1f' "$(echo "${ING_MB[1]} / ${ING_S[1]}" | bc -l)") MB/s | $(printf '%.2f' "${ING_S[2]}") s, $(printf '%.1f' "$(echo "${ING_MB[2]} / ${ING_S[2]}" | bc -l)") MB/s | $(printf '%.2f' "$(echo "${ING_S[1]} / ${ING_S[2]}" | bc -l)")x throughput |
| Time to result: $TTR_SLICES-slice ${TTR_SIZE}² CT volume read, two associations at once, median of $TTR_REPEATS | $(printf '%.2f' "${TTR_S[1]}") s | $(printf '%.2f' "${TTR_S[2]}") s (half the series fetched from the other replica) | $(printf '%.2f' "$(echo "${TTR_S[2]} / ${TTR_S[1]}" | bc -l)")x time |

Instances fetched between the replicas during the two-replica reads: $FETCHED_TOTAL.
MD
)
echo "$REPORT"
[ -n "$OUT_MD" ] && echo "$REPORT" >"$OUT_MD"
exit 0
