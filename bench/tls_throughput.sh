#!/usr/bin/env bash
# Durable C-STORE throughput over DICOM TLS against the plain port of the same
# node, in the same run: same files (fresh SOP Instance UIDs each repeat),
# same storescu settings, the port that goes first alternating.
#
#   bench/tls_throughput.sh [RESULTS_FILE]
#
# Environment:
#   BENCH_CT_COUNT   512 KiB CT-like instances per case (default 300)
#   BENCH_REPEATS    repeats per case; median shown     (default 3)
#   BENCH_PARALLEL   associations in the parallel case  (default 4)
#   BENCH_PYTHON     Python with pydicom                (default /usr/bin/python3)
#   BENCH_TMPDIR     where the scratch directory goes   (default $TMPDIR or /tmp)
#
# TLS: a throwaway CA, RSA 2048 certificates, storescu +tls with the client
# certificate; the node's BCP 195 non-downgrading profile (TLS 1.3 here).
# Prints a Markdown report; writes it to RESULTS_FILE too when given.
set -euo pipefail
shopt -s inherit_errexit

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=scripts/lib.sh disable=SC1091
source "$REPO_ROOT/scripts/lib.sh"
# shellcheck source=scripts/lib/tls.sh disable=SC1091
source "$REPO_ROOT/scripts/lib/tls.sh"

CT_COUNT=${BENCH_CT_COUNT:-300}
REPEATS=${BENCH_REPEATS:-3}
PARALLEL=${BENCH_PARALLEL:-4}
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
RESULTS_FILE=${1:-}

die() { echo "tls_throughput: $*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }
[ -x "$SECONDREAD_BIN" ] || die "secondread binary not found at $SECONDREAD_BIN; build first"

SCRATCH=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/secondread-tls-bench.XXXXXX")
chmod 755 "$SCRATCH"
NODE_DIR="$SCRATCH/node"
cleanup() {
  local rc=$?
  set +e
  [ -d "$NODE_DIR" ] && "$REPO_ROOT/scripts/dev-down" "$NODE_DIR" >/dev/null 2>&1
  if [ -L "$NODE_DIR/pg" ]; then
    local target
    target=$(readlink -f "$NODE_DIR/pg")
    case $target in */secondread-pg.*) rm -rf "$target" ;; esac
  fi
  rm -rf "$SCRATCH"
  exit "$rc"
}
trap cleanup EXIT

TLS=$SCRATCH/tls
make_ca "$TLS" ca
issue_cert "$TLS/ca" "$TLS/server" "/O=secondread bench/CN=node" --server --san "IP:127.0.0.1"
issue_cert "$TLS/ca" "$TLS/client" "/O=secondread bench/CN=STORESCU" --client
SUBJECT=$(cert_subject "$TLS/client.pem")
TLS_PORT=$(free_port)
say "starting secondread (plain and TLS ports) and PostgreSQL"
"$REPO_ROOT/scripts/dev-up" "$NODE_DIR" --no-worker --set dicom.tls.port="$TLS_PORT" \
  --set dicom.tls.certificate="$TLS/server.pem" --set dicom.tls.private_key="$TLS/server.key" \
  --set dicom.tls.ca="$TLS/ca.pem" --set "dicom.tls.caller_subjects=[{ae_title: STORESCU, subject: \"$SUBJECT\"}]" \
  >"$SCRATCH/dev-up.log" 2>&1 || { cat "$SCRATCH/dev-up.log" >&2; die "dev-up failed"; }
# shellcheck disable=SC1091
source "$NODE_DIR/env"
rows() { psql "$SECONDREAD_DATABASE_URL" -Atc 'select count(*) from instances'; }
# "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
NEGOTIATED=$(echo | openssl s_client -connect "127.0.0.1:$TLS_PORT" -cert "$TLS/client.pem" -key "$TLS/client.key" \
  -CAfile "$TLS/ca.pem" 2>/dev/null | awk '/^New, / {sub(/,$/, "", $2); print $2, $5; exit}')

send() {  # port nassoc tls(0|1) files... ; sets SECS
  local port=$1 nassoc=$2 tls=$3
  shift 3
  local files=("$@") pids=() i j t0 t1 before after failed=0
  local -a group extra=()
  [ "$tls" = 1 ] && extra=(+tls "$TLS/client.key" "$TLS/client.pem" +cf "$TLS/ca.pem")
  before=$(rows)
  t0=$(date +%s.%N)
  for ((i = 0; i < nassoc; i++)); do
    group=()
    for ((j = i; j < ${#files[@]}; j += nassoc)); do group+=("${files[j]}"); done
    TCP_NODELAY=1 storescu "${extra[@]}" -aet STORESCU -aec SECONDREAD --max-pdu 131072 127.0.0.1 "$port" \
      "${group[@]}" >"$SCRATCH/storescu.$i.log" 2>&1 &
    pids[i]=$!
  done
  for ((i = 0; i < nassoc; i++)); do wait "${pids[i]}" || failed=1; done
  t1=$(date +%s.%N)
  [ "$failed" = 0 ] || { tail -n 20 "$SCRATCH"/storescu.*.log >&2; die "storescu failed"; }
  after=$(rows)
  [ $((after - before)) -eq ${#files[@]} ] || die "sent ${#files[@]} instances, registered $((after - before))"
  SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
}
median() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
    if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ROWS=()
seed=5000
for nassoc in 1 "$PARALLEL"; do
  plain=() tls=() bytes=0
  for ((r = 1; r <= REPEATS; r++)); do
    for side in plain tls; do
      seed=$((seed + 1))
      set_dir="$SCRATCH/set-$side-$r-$nassoc"
      "$PYTHON" "$REPO_ROOT/tools/gen_instances.py" "$set_dir" --kind ct --count "$CT_COUNT" --seed "$seed" >/dev/null
      mapfile -t files < <(find "$set_dir" -name '*.dcm' | sort)
      cat "${files[@]}" >/dev/null
      bytes=$(du -cb "${files[@]}" | awk 'END {print $1}')
      eval "set_$side=(\"\${files[@]}\")"
    done
    # The port that goes first alternates between repeats.
    order=(plain tls)
    ((r % 2 == 0)) && order=(tls plain)
    for side in "${order[@]}"; do
      if [ "$side" = plain ]; then
        send "$SECONDREAD_DICOM_PORT" "$nassoc" 0 "${set_plain[@]}"
        plain+=("$SECS")
      else
        send "$TLS_PORT" "$nassoc" 1 "${set_tls[@]}"
        tls+=("$SECS")
      fi
      say "$nassoc association(s), repeat $r, $side: $SECS s"
    done
    rm -rf "$SCRATCH"/set-*
  done
  mp=$(median "${plain[@]}")
  mt=$(median "${tls[@]}")
  ROWS+=("$(awk -v n="$nassoc" -v c="$CT_COUNT" -v b="$bytes" -v p="$mp" -v t="$mt" 'BEGIN {
    printf "| %d | %d | %.1f | %.1f | %.0f | %.0f | %.2f |", n, c, b / p / 1e6, b / t / 1e6, c / p, c / t, p / t }')")
done

report() {
  echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)),"
  echo "$("$SECONDREAD_BIN" version 2>&1 | sed -n 1p), $(openssl version), TLS: $NEGOTIATED; $REPEATS repeats, median."
  echo
  echo "| Associations | Instances (512 KiB) | Plain MB/s | TLS MB/s | Plain inst/s | TLS inst/s | TLS / plain |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
}
report
[ -n "$RESULTS_FILE" ] && report >"$RESULTS_FILE"
exit 0
