#!/usr/bin/env bash
# Memory under many short associations: secondread and Orthanc, same run, same
# loopback, same client, same traffic.
#
#   bench/association_soak.sh [RESULTS_FILE]
#
# The client (tests/assoc_soak from the build) keeps SOAK_CONCURRENCY
# associations open at once; each sends one C-ECHO or, every SOAK_STORE_EVERY-th
# one, a C-STORE of one small CT-like instance (the same SOP Instance UID every
# time, so both receivers replace it and their storage stays flat). After every
# SOAK_SAMPLE_EVERY associations it samples the receiver's VmRSS, VmSize and
# number of address-space mappings from /proc. secondread runs with dev-up's
# private PostgreSQL and no inference worker; Orthanc is Debian's package,
# started on loopback as tests/integration/lib/orthanc.sh does.
#
# Environment:
#   SOAK_ASSOCIATIONS   associations per receiver        (default 100000)
#   SOAK_ORTHANC_ASSOCIATIONS  associations for Orthanc, which is slower
#                       (default SOAK_ASSOCIATIONS)
#   SOAK_CONCURRENCY    associations open at once        (default 10)
#   SOAK_STORE_EVERY    one C-STORE per this many        (default 10)
#   SOAK_SAMPLE_EVERY   associations between samples     (default 1000)
#   SOAK_TARGETS        receivers to measure, in order   (default "secondread orthanc")
#   SOAK_BOUND_KB       allowed RSS growth after the first 1,000 (default 10240)
#   BENCH_TMPDIR        where the scratch directory goes (default $TMPDIR or /tmp)
#
# Prints a Markdown report (summary and RSS curve) to stdout and, with
# RESULTS_FILE, writes it there too; raw samples go to RESULTS_FILE.<target>.tsv.
# Exits 1 when secondread's RSS grew by more than SOAK_BOUND_KB after the first
# 1,000 associations or any association failed.
set -euo pipefail
shopt -s inherit_errexit

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=scripts/lib.sh disable=SC1091
source "$REPO_ROOT/scripts/lib.sh"
# shellcheck source=tests/integration/lib/orthanc.sh disable=SC1091
source "$REPO_ROOT/tests/integration/lib/orthanc.sh"

TOTAL=${SOAK_ASSOCIATIONS:-100000}
ORTHANC_TOTAL=${SOAK_ORTHANC_ASSOCIATIONS:-$TOTAL}
CONC=${SOAK_CONCURRENCY:-10}
STORE_EVERY=${SOAK_STORE_EVERY:-10}
SAMPLE_EVERY=${SOAK_SAMPLE_EVERY:-1000}
TARGETS=${SOAK_TARGETS:-secondread orthanc}
BOUND_KB=${SOAK_BOUND_KB:-10240}
SOAK=${ASSOC_SOAK:-$BUILD_DIR/tests/assoc_soak}
RESULTS_FILE=${1:-}
export TCP_NODELAY=1

die() { echo "association_soak: $*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

[ -x "$SOAK" ] || die "$SOAK not found; build the assoc_soak target first"
[ -x "$SECONDREAD_BIN" ] || die "secondread binary not found at $SECONDREAD_BIN; build first"
for n in "$TOTAL" "$ORTHANC_TOTAL" "$CONC" "$STORE_EVERY" "$SAMPLE_EVERY"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "counts must be positive integers"
done
if [ "$TOTAL" -le 1000 ] || [ "$ORTHANC_TOTAL" -le 1000 ]; then
  die "association counts must exceed 1000: growth is measured from the 1,000th"
fi

SCRATCH=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/secondread-soak.XXXXXX")
chmod 755 "$SCRATCH"  # the PostgreSQL server may run as another user
NODE_DIR="$SCRATCH/node"

cleanup() {
  set +e
  orthanc_stop "$SCRATCH/orthanc"
  if [ -d "$NODE_DIR" ]; then
    "$REPO_ROOT/scripts/dev-down" "$NODE_DIR" >/dev/null 2>&1
    if [ -L "$NODE_DIR/pg" ]; then
      local target
      target=$(readlink -f "$NODE_DIR/pg")
      case $target in */secondread-pg.*) rm -rf "$target" ;; esac
    fi
  fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

/usr/bin/python3 "$REPO_ROOT/tools/gen_instances.py" "$SCRATCH/gen" --kind ct --count 1 >/dev/null
FILE=$(ls "$SCRATCH"/gen/*.dcm)
# Sample every SAMPLE_EVERY, and also at 1,000 exactly: the growth baseline.
EVERY=$SAMPLE_EVERY
[ $((1000 % EVERY)) -eq 0 ] || EVERY=1000

soak() {  # target port called_ae pid total
  local out="$SCRATCH/$1.tsv" start end
  say "$1: $5 associations, $CONC at a time"
  start=$(date +%s)
  "$SOAK" 127.0.0.1 "$2" "$3" "$5" "$CONC" --pid "$4" --sample-every "$EVERY" \
    --store "$FILE" --store-every "$STORE_EVERY" >"$out" 2>"$SCRATCH/$1.err" ||
    { cat "$SCRATCH/$1.err" >&2; FAILED=1; }
  end=$(date +%s)
  echo $((end - start)) >"$SCRATCH/$1.secs"
  [ -n "$RESULTS_FILE" ] && cp "$out" "$RESULTS_FILE.$1.tsv"
  return 0
}

FAILED=0
for target in $TARGETS; do
  case $target in
    secondread)
      "$REPO_ROOT/scripts/dev-up" "$NODE_DIR" --no-worker --set dicom.max_associations=$((CONC * 4 + 24)) >/dev/null
      # shellcheck disable=SC1091
      source "$NODE_DIR/env"
      soak secondread "$SECONDREAD_DICOM_PORT" SECONDREAD "$(cat "$NODE_DIR/secondread.pid")" "$TOTAL"
      "$REPO_ROOT/scripts/dev-down" "$NODE_DIR" >/dev/null 2>&1 || true
      ;;
    orthanc)
      ORTHANC_DICOM=1 orthanc_start "$SCRATCH/orthanc" peer PEER 127.0.0.1 1 >/dev/null ||
        die "Orthanc did not start"
      soak orthanc "$ORTHANC_DICOM_PORT" ORTHANC "$ORTHANC_PID" "$ORTHANC_TOTAL"
      orthanc_stop "$SCRATCH/orthanc"
      ;;
    *) die "unknown target $target" ;;
  esac
done

report() {
  echo "# Association soak, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Associations per receiver in brackets, $CONC at a time, one C-STORE (small CT) in $STORE_EVERY, the rest C-ECHO."
  echo
  echo "| Receiver | Seconds | RSS at 1,000 (MB) | RSS at end (MB) | Growth after 1,000 (MB) | VmSize at end (MB) | Mappings at 1,000 / end |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for target in $TARGETS; do
    local f="$SCRATCH/$target.tsv"
    [ -s "$f" ] || continue
    awk -v t="$target" -v s="$(cat "$SCRATCH/$target.secs")" '
      $1 == 1000 { r0 = $2; m0 = $4 }
      { n = $1; r = $2; v = $3; m = $4 }
      END { printf "| %s (%d) | %d | %.1f | %.1f | %+.1f | %.0f | %d / %d |\n", t, n, s, r0/1024, r/1024, (r-r0)/1024, v/1024, m0, m }' "$f"
  done
  echo
  echo "RSS (MB) by associations completed:"
  echo
  local header="| Associations |" rule="|---:|"
  for target in $TARGETS; do header="$header $target |"; rule="$rule---:|"; done
  echo "$header"
  echo "$rule"
  local step=$((TOTAL / 20)) files=()
  [ "$step" -ge "$EVERY" ] || step=$EVERY
  for target in $TARGETS; do files+=("$SCRATCH/$target.tsv"); done
  awk -v step="$step" -v ntargets="${#files[@]}" -v total="$TOTAL" '
    FNR == 1 { fi++ }
    { rss[fi, $1] = $2; seen[$1] = 1 }
    END {
      for (n = 0; n <= total; n++) {
        if (!(n in seen) || (n != 0 && n != 1000 && n % step != 0 && n != total)) continue
        line = "| " n " |"
        for (i = 1; i <= ntargets; i++) line = line sprintf(" %s |", ((i, n) in rss) ? sprintf("%.1f", rss[i, n]/1024) : "-")
        print line
      }
    }' "${files[@]}"
}

REPORT=$(report)
echo "$REPORT"
[ -n "$RESULTS_FILE" ] && echo "$REPORT" >"$RESULTS_FILE"
[ "$FAILED" = 0 ] || die "some associations failed"
if [[ " $TARGETS " == *" secondread "* ]]; then
  growth=$(awk '$1 == 1000 { r0 = $2 } { r = $2 } END { print r - r0 }' "$SCRATCH/secondread.tsv")
  [ "$growth" -le "$BOUND_KB" ] || die "secondread RSS grew by $growth kB after the first 1,000 associations"
fi
