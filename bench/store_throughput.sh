#!/usr/bin/env bash
# C-STORE throughput: secondread against DCMTK's storescp, same run, same
# loopback, same files, same storescu settings.
#
#   bench/store_throughput.sh [RESULTS_FILE]
#
# Cases: 512 KiB CT-like and 10 MiB CR-like instances, each sent over one
# association and over four concurrent associations (four storescu processes,
# files split round-robin). Every repeat sends a freshly generated set (new
# SOP Instance UIDs), so secondread always takes the insert path; the same set
# goes to secondread and to storescp. The receiver that goes first alternates
# between repeats. Wall time is taken around the storescu processes only.
#
# Environment:
#   BENCH_CT_COUNT   CT-like instances per case        (default 400)
#   BENCH_CR_COUNT   CR-like instances per case        (default 30)
#   BENCH_REPEATS    repeats per case; median is shown (default 3)
#   BENCH_PARALLEL   associations in the parallel case (default 4)
#   BENCH_MAX_PDU    storescu and storescp max PDU     (default 131072)
#   BENCH_PYTHON     Python with pydicom               (default /usr/bin/python3)
#   BENCH_TMPDIR     where the scratch directory goes  (default $TMPDIR or /tmp)
#   BENCH_NODE_ARGS  extra scripts/dev-up arguments, e.g. "--no-worker --routing FILE"
#                    to measure the receiver without the results pipeline reading
#                    what it receives                  (default none: dev-up's worker
#                    and chest rule, which read the CR-like instances)
#
# Prints a Markdown report to stdout and, when RESULTS_FILE is given, writes
# it there too. Progress goes to stderr.
set -euo pipefail
shopt -s inherit_errexit

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=scripts/lib.sh disable=SC1091
source "$REPO_ROOT/scripts/lib.sh"

CT_COUNT=${BENCH_CT_COUNT:-400}
CR_COUNT=${BENCH_CR_COUNT:-30}
REPEATS=${BENCH_REPEATS:-3}
PARALLEL=${BENCH_PARALLEL:-4}
MAX_PDU=${BENCH_MAX_PDU:-131072}
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
RESULTS_FILE=${1:-}
CALLING_AE=STORESCU
CALLED_AE=SECONDREAD

die() { echo "store_throughput: $*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

for tool in storescu storescp echoscu psql; do
  command -v "$tool" >/dev/null || die "$tool not found (DCMTK and the PostgreSQL client are needed)"
done
[ -x "$SECONDREAD_BIN" ] || die "secondread binary not found at $SECONDREAD_BIN; build first"
for n in "$CT_COUNT" "$CR_COUNT" "$REPEATS" "$PARALLEL"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "counts, repeats and parallelism must be positive integers"
done

SCRATCH=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/secondread-bench.XXXXXX")
# The PostgreSQL server may run as another user and must reach the node dir.
chmod 755 "$SCRATCH"
NODE_DIR="$SCRATCH/node"
STORESCP_PID=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$STORESCP_PID" ] && kill -0 "$STORESCP_PID" 2>/dev/null; then
    kill -TERM "$STORESCP_PID" 2>/dev/null
    wait "$STORESCP_PID" 2>/dev/null
  fi
  if [ -d "$NODE_DIR" ]; then
    "$REPO_ROOT/scripts/dev-down" "$NODE_DIR" >/dev/null 2>&1
    # dev-up may have put the database outside NODE_DIR and linked it.
    if [ -L "$NODE_DIR/pg" ]; then
      local target
      target=$(readlink -f "$NODE_DIR/pg")
      case $target in */secondread-pg.*) rm -rf "$target" ;; esac
    fi
  fi
  rm -rf "$SCRATCH"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- machine and versions --------------------------------------------------
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
CPU_MODEL=${CPU_MODEL:-unknown}
NPROC=$(nproc)
MEM_GIB=$(awk '/^MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)
SCRATCH_FS=$(df -T "$SCRATCH" | awk 'NR==2 {print $2}')
KERNEL=$(uname -r)
# shellcheck disable=SC2016
DCMTK_VERSION=$(storescp --version 2>&1 | sed -n 1p | sed 's/^\$dcmtk: *//; s/ *\$$//')
SECONDREAD_VERSION=$("$SECONDREAD_BIN" version 2>&1 | sed -n 1p || true)
PG_VERSION=$("$(pg_bin)/postgres" --version 2>/dev/null | sed -n 1p || true)
GIT_REV=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo unknown)

# --- secondread ---------------------------------------------------------------
say "starting secondread and PostgreSQL in $NODE_DIR"
# shellcheck disable=SC2086
"$REPO_ROOT/scripts/dev-up" "$NODE_DIR" ${BENCH_NODE_ARGS:-} >"$SCRATCH/dev-up.log" 2>&1 || { cat "$SCRATCH/dev-up.log" >&2; die "dev-up failed"; }
# shellcheck disable=SC1091
source "$NODE_DIR/env"

instance_rows() {
  psql "$SECONDREAD_DATABASE_URL" -Atc 'select count(*) from instances'
}

# --- helpers ----------------------------------------------------------------
# Sends FILES over NASSOC concurrent associations to HOST PORT AE and sets
# SEND_SECS to the wall time in seconds. Fails when any storescu exits non-zero.
# (No command substitution here or in the run_* functions: they must run in
# the main shell so that cleanup sees the processes they start.)
send() {  # label host port called_ae nassoc files...
  local label=$1 host=$2 port=$3 aec=$4 nassoc=$5; shift 5
  local files=("$@") pids=() logs=() i j t0 t1
  local -a group
  for ((i = 0; i < nassoc; i++)); do
    group=()
    for ((j = i; j < ${#files[@]}; j += nassoc)); do group+=("${files[j]}"); done
    logs[i]="$SCRATCH/storescu.$label.$i.log"
    # Start all processes first; the clock starts just before the first one.
    if [ "$i" -eq 0 ]; then t0=$(date +%s.%N); fi
    TCP_NODELAY=1 storescu -aet "$CALLING_AE" -aec "$aec" --max-pdu "$MAX_PDU" \
      "$host" "$port" "${group[@]}" >"${logs[i]}" 2>&1 &
    pids[i]=$!
  done
  local failed=0
  for ((i = 0; i < nassoc; i++)); do
    if ! wait "${pids[i]}"; then failed=1; fi
  done
  t1=$(date +%s.%N)
  if [ "$failed" -ne 0 ] || grep -qE '^(E|F):' "${logs[@]}"; then
    for ((i = 0; i < nassoc; i++)); do tail -n 20 "${logs[i]}" >&2; done
    die "$label: storescu failed"
  fi
  SEND_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
}

wait_dicom_ready() {  # port
  local port=$1 i
  for i in $(seq 1 100); do
    if echoscu -aet "$CALLING_AE" -aec "$CALLED_AE" 127.0.0.1 "$port" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

run_secondread() {  # nassoc files... ; sets RUN_SECS
  local nassoc=$1; shift
  local before after
  before=$(instance_rows)
  send secondread "$SECONDREAD_HOST" "$SECONDREAD_DICOM_PORT" "$SECONDREAD_AE" "$nassoc" "$@"
  after=$(instance_rows)
  if [ $((after - before)) -ne $# ]; then
    die "secondread: sent $# instances but the instances table grew by $((after - before)) ($before -> $after)"
  fi
  kill -0 "$SECONDREAD_PID" 2>/dev/null || die "secondread is no longer running"
  RUN_SECS=$SEND_SECS
}

run_storescp() {  # nassoc files... ; sets RUN_SECS
  local nassoc=$1; shift
  local out="$SCRATCH/storescp-out" port stored
  local -a fork=()
  [ "$nassoc" -gt 1 ] && fork=(--fork)  # without --fork storescp serves one association at a time
  rm -rf "$out"; mkdir -p "$out"
  port=$(free_port)
  TCP_NODELAY=1 storescp -aet "$CALLED_AE" --max-pdu "$MAX_PDU" -od "$out" "${fork[@]}" "$port" \
    >"$SCRATCH/storescp.log" 2>&1 &
  STORESCP_PID=$!
  wait_dicom_ready "$port" || { cat "$SCRATCH/storescp.log" >&2; die "storescp did not start"; }
  send storescp 127.0.0.1 "$port" "$CALLED_AE" "$nassoc" "$@"
  kill -TERM "$STORESCP_PID" 2>/dev/null || true
  wait "$STORESCP_PID" 2>/dev/null || true
  STORESCP_PID=""
  stored=$(find "$out" -type f | wc -l)
  [ "$stored" -eq $# ] || die "storescp: sent $# instances but $stored files were written"
  rm -rf "$out"
  RUN_SECS=$SEND_SECS
}

median() {  # values...
  printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
    if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- cases ----------------------------------------------------------------------
ROWS=()
RAW=()
seed=1000
run_case() {  # kind count nassoc
  local kind=$1 count=$2 nassoc=$3 r set bytes=0 sr_t=() sc_t=()
  local -a files
  # More associations than instances would leave a storescu without files.
  ((nassoc > count)) && nassoc=$count
  for ((r = 1; r <= REPEATS; r++)); do
    seed=$((seed + 1))
    set="$SCRATCH/set-$kind-$nassoc-$r"
    "$PYTHON" "$REPO_ROOT/tools/gen_instances.py" "$set" --kind "$kind" --count "$count" --seed "$seed" >/dev/null
    files=("$set"/*.dcm)
    [ "${#files[@]}" -eq "$count" ] || die "generated ${#files[@]} files, expected $count"
    bytes=$(cat "${files[@]}" | wc -c)  # also warms the page cache for both receivers
    if ((r % 2)); then
      run_secondread "$nassoc" "${files[@]}"; sr_t+=("$RUN_SECS")
      run_storescp "$nassoc" "${files[@]}"; sc_t+=("$RUN_SECS")
    else
      run_storescp "$nassoc" "${files[@]}"; sc_t+=("$RUN_SECS")
      run_secondread "$nassoc" "${files[@]}"; sr_t+=("$RUN_SECS")
    fi
    say "$kind x$count, $nassoc assoc, repeat $r/$REPEATS: secondread ${sr_t[-1]} s, storescp ${sc_t[-1]} s"
    rm -rf "$set"
  done
  local sr sc
  sr=$(median "${sr_t[@]}")
  sc=$(median "${sc_t[@]}")
  local label size
  if [ "$kind" = ct ]; then label="CT-like"; else label="CR-like"; fi
  size=$(awk -v b="$bytes" -v n="$count" 'BEGIN {m = b / n / 1048576; if (m < 1) printf "%.0f KiB", m * 1024; else printf "%.0f MiB", m}')
  ROWS+=("$(awk -v l="$label" -v s="$size" -v n="$count" -v a="$nassoc" -v b="$bytes" -v x="$sr" -v y="$sc" 'BEGIN {
    printf "| %s (%s) | %d | %d | %.3f | %.1f | %.1f | %.3f | %.1f | %.1f | %.2f |",
      l, s, n, a, x, n / x, b / 1e6 / x, y, n / y, b / 1e6 / y, y / x }')")
  RAW+=("| $label | $nassoc | ${sr_t[*]} | ${sc_t[*]} |")
}

for nassoc in 1 "$PARALLEL"; do run_case ct "$CT_COUNT" "$nassoc"; done
for nassoc in 1 "$PARALLEL"; do run_case cr "$CR_COUNT" "$nassoc"; done

# --- report -------------------------------------------------------------------------
report() {
  echo "## C-STORE throughput: secondread vs storescp"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); revision: $GIT_REV"
  echo "- machine: $NPROC CPUs ($CPU_MODEL), ${MEM_GIB} GiB RAM, kernel $KERNEL; scratch filesystem: $SCRATCH_FS"
  echo "- versions: ${SECONDREAD_VERSION:-secondread unknown}; ${PG_VERSION:-PostgreSQL unknown}; DCMTK $DCMTK_VERSION"
  echo "- settings: TCP_NODELAY=1, --max-pdu $MAX_PDU on both sides, loopback; repeats: $REPEATS (median shown)"
  echo "- storescp: default options (writes into a scratch directory, no fsync), without --fork for 1 association"
  echo "  (it then serves one association at a time), with --fork for $PARALLEL concurrent associations"
  echo "- secondread: default dev-up configuration; every instance is fdatasync'ed into the spool and its row"
  echo "  committed in PostgreSQL (synchronous_commit off, the default) before the C-STORE response"
  echo
  echo "| Case | Instances | Assocs | secondread s | secondread inst/s | secondread MB/s | storescp s | storescp inst/s | storescp MB/s | secondread/storescp |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "MB = 10^6 bytes of DICOM files sent. The ratio is secondread throughput divided by storescp throughput (above 1: secondread faster)."
  echo
  echo "Wall times of every repeat (seconds):"
  echo
  echo "| Case | Assocs | secondread | storescp |"
  echo "|---|---:|---|---|"
  printf '%s\n' "${RAW[@]}"
}

if [ -n "$RESULTS_FILE" ]; then
  report | tee "$RESULTS_FILE"
else
  report
fi
