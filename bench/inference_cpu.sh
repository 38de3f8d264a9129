#!/usr/bin/env bash
# Inference worker throughput on the CPU against bare LibTorch, same machine,
# same model files, same images, same statistics (bench/inference_bench).
#
#   bench/inference_cpu.sh [RESULTS_FILE]
#
# Models: the reference model (tools/models/repository/synthetic-nodule-demo,
# 1x256x256) and a random-weight DenseNet-121 (1x224x224, fp32) exported into a
# scratch repository next to a copy of the reference model. One worker serves
# both. For each model and batch size B:
#
#   bare    inference_bench loads the model with the worker's own backend code
#           (model.yaml parsing, TorchBackendFactory, ModelBackend::Execute,
#           preprocessing included) and runs batches of B back to back;
#   worker  BENCH_CLIENTS clients (default 4), one gRPC channel each, send
#           B-image requests back to back. model.yaml is rewritten to
#           max_batch_size B with no queue delay and the model reloaded through
#           ModelAdmin.LoadModel, so every server batch is exactly one request
#           of B images and the worker is never idle.
#
# The two never run at the same time: the worker is idle while a bare run
# executes. Which of the two goes first alternates between repeats; medians
# are reported. A second, smaller table sends 1-image requests from many
# clients to the reference model, so that the dynamic batcher forms the
# batches, against bare runs at batch max_batch_size.
#
# Environment:
#   BENCH_SECONDS            measurement time per run, seconds      (default 6)
#   BENCH_WARMUP             warm-up time per run, seconds          (default 2)
#   BENCH_REPEATS            repeats; medians are reported          (default 3)
#   BENCH_CLIENTS            concurrent gRPC clients                (default 4)
#   BENCH_THREADS            LibTorch intra-op threads, both sides  (default nproc)
#   BENCH_REF_BATCHES        reference model batch sizes            (default "1 4 8 16 32")
#   BENCH_DENSENET_BATCHES   DenseNet-121 batch sizes               (default "1 4 8 16")
#   BENCH_DYNAMIC_BATCHES    max_batch_size for the 1-image table   (default "8 32"; empty skips it)
#   BENCH_DYNAMIC_CLIENTS    clients for the 1-image table          (default 32)
#   BENCH_DYNAMIC_DELAY_US   max_queue_delay_us for that table      (default 2000)
#   BENCH_REFERENCE_MODEL    reference model directory              (default tools/models/repository/synthetic-nodule-demo)
#   BENCH_PYTHON             Python with torch, for the export      (default /usr/bin/python3)
#   BENCH_TMPDIR             parent of the scratch directory        (default $TMPDIR or /tmp)
#   BENCH_KEEP               1 keeps the scratch directory          (default 0)
#   SECONDREAD_BUILD_DIR     configured build tree                  (default build)
#
# Prints a Markdown report to stdout and, when RESULTS_FILE is given, writes
# it there too. Progress goes to stderr.
set -euo pipefail
shopt -s inherit_errexit

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=scripts/lib.sh disable=SC1091
source "$REPO_ROOT/scripts/lib.sh"

MEASURE=${BENCH_SECONDS:-6}
WARMUP=${BENCH_WARMUP:-2}
REPEATS=${BENCH_REPEATS:-3}
CLIENTS=${BENCH_CLIENTS:-4}
THREADS=${BENCH_THREADS:-$(nproc)}
REF_BATCHES=${BENCH_REF_BATCHES-1 4 8 16 32}
DN_BATCHES=${BENCH_DENSENET_BATCHES-1 4 8 16}
DYN_BATCHES=${BENCH_DYNAMIC_BATCHES-8 32}
DYN_CLIENTS=${BENCH_DYNAMIC_CLIENTS:-32}
DYN_DELAY_US=${BENCH_DYNAMIC_DELAY_US:-2000}
REF_MODEL_DIR=${BENCH_REFERENCE_MODEL:-$REPO_ROOT/tools/models/repository/synthetic-nodule-demo}
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
RESULTS_FILE=${1:-}
REF=synthetic-nodule-demo
DN=densenet121-bench

die() { echo "inference_cpu: $*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

for n in "$REPEATS" "$CLIENTS" "$THREADS" "$DYN_CLIENTS"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "repeats, clients and threads must be positive integers"
done
for b in $REF_BATCHES $DN_BATCHES $DYN_BATCHES; do
  [[ $b =~ ^[1-9][0-9]*$ ]] || die "batch sizes must be positive integers, got '$b'"
done
[ -f "$REF_MODEL_DIR/model.yaml" ] || die "reference model not found at $REF_MODEL_DIR (tools/models/train_reference.py makes it)"
[ "$(basename "$REF_MODEL_DIR")" = "$REF" ] || die "the reference model directory must be named $REF"
[ -f "$BUILD_DIR/CMakeCache.txt" ] || die "no configured build in $BUILD_DIR; run cmake -S . -B build -G Ninja first"

SCRATCH=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/secondread-inference-bench.XXXXXX")
MODELS="$SCRATCH/repository"
WORKER_DIR="$SCRATCH/worker"
RESULTS_JSONL="$SCRATCH/results.jsonl"
COMMANDS="$SCRATCH/commands.txt"
NOTES="$SCRATCH/notes.txt"
WORKER_PID=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
    kill -TERM "$WORKER_PID" 2>/dev/null
    # The worker drains its queues and stops within a few seconds.
    for _ in $(seq 1 100); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$WORKER_PID" 2>/dev/null
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    # Kept on failure: the logs and partial results explain it.
    echo "inference_cpu: scratch directory kept: $SCRATCH" >&2
  else
    rm -rf "$SCRATCH"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Logs a command for the report (scratch paths abbreviated) and runs it.
run_logged() {
  local line
  line=$(printf '%q ' "$@")
  # shellcheck disable=SC2016  # a literal $SCRATCH, as the report explains
  line=${line//"$SCRATCH"/'$SCRATCH'}
  line=${line//"$REPO_ROOT"/.}
  echo "${line% }" >>"$COMMANDS"
  "$@"
}

# --- build ------------------------------------------------------------------------
say "building inference_bench and secondread-worker in $BUILD_DIR"
run_logged cmake --build "$BUILD_DIR" --target inference_bench secondread-worker >"$SCRATCH/build.log" 2>&1 ||
  { tail -n 40 "$SCRATCH/build.log" >&2; die "build failed"; }
BENCH="$BUILD_DIR/bench/inference_bench"
WORKER_BIN="$BUILD_DIR/cmd/secondread-worker/secondread-worker"
[ -x "$BENCH" ] || die "$BENCH was not built"
[ -x "$WORKER_BIN" ] || die "$WORKER_BIN was not built"

# --- models -----------------------------------------------------------------------
mkdir -p "$MODELS"
# A copy, not a link: model.yaml is rewritten for each batch size.
cp -r "$REF_MODEL_DIR" "$MODELS/$REF"
say "exporting DenseNet-121 (cpu, fp32)"
run_logged "$PYTHON" "$REPO_ROOT/tools/models/export_densenet.py" --out "$MODELS" --kind cpu --precision fp32 \
  --count 1 --max-batch-size 16 --preferred 16 --queue-delay-us 0 >"$SCRATCH/export.log" 2>&1 ||
  { cat "$SCRATCH/export.log" >&2; die "DenseNet-121 export failed"; }

# Sets a model's batching so that the worker forms batches of exactly B when
# clients send B-image requests (no queue delay, nothing larger allowed).
set_batching() {  # model max_batch delay_us
  local yaml="$MODELS/$1/model.yaml"
  sed -i -E "s/^max_batch_size: .*/max_batch_size: $2/; s/^(  max_queue_delay_us:) .*/\\1 $3/; s/^(  preferred_batch_sizes:) .*/\\1 [$2]/" "$yaml"
  if ! grep -qx "max_batch_size: $2" "$yaml" || ! grep -qx "  max_queue_delay_us: $3" "$yaml" ||
    ! grep -qx "  preferred_batch_sizes: \\[$2\\]" "$yaml"; then
    die "could not set the batching of $1 in model.yaml"
  fi
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# Appends one result line, tagged with what it belongs to:
# {"case":C,"model":M,"b":B,"repeat":R,"side":S,"load1":L,"result":{...}}.
record() {  # case model b repeat side load json
  printf '{"case":"%s","model":"%s","b":%s,"repeat":%s,"side":"%s","load1":%s,"result":%s}\n' \
    "$1" "$2" "$3" "$4" "$5" "$6" "$7" >>"$RESULTS_JSONL"
}

bare_run() {  # case model batch repeat
  local load out
  load=$(load1)
  out=$(run_logged timeout 900 "$BENCH" bare --model-dir "$MODELS/$2" --batch "$3" --seconds "$MEASURE" \
    --warmup "$WARMUP" --threads "$THREADS" 2>>"$SCRATCH/bench.err") ||
    { tail -n 5 "$SCRATCH/bench.err" >&2; die "bare run failed ($2, batch $3)"; }
  record "$1" "$2" "$3" "$4" bare "$load" "$out"
  say "  bare   $2 batch $3: $(echo "$out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])') img/s (load $load)"
}

worker_run() {  # case model b images_per_request clients repeat
  local load out rc attempt
  for attempt in 1 2; do
    load=$(load1)
    kill -0 "$WORKER_PID" 2>/dev/null || die "the worker is no longer running; see $WORKER_DIR/log"
    rc=0
    out=$(run_logged timeout 900 "$BENCH" grpc --target "$SECONDREAD_WORKER_ADDR" --model "$2" --batch "$4" \
      --clients "$5" --seconds "$MEASURE" --warmup "$WARMUP" 2>>"$SCRATCH/bench.err") || rc=$?
    [ "$rc" -eq 0 ] && break
    # Exit 3 means some requests failed; the JSON on stdout names the first
    # error. One failed run is retried and noted in the report, so that a
    # transient failure does not discard the whole benchmark.
    {
      echo "inference_cpu: worker run failed with exit $rc ($2, $4-image requests, $5 clients): ${out:-no output}"
      tail -n 5 "$SCRATCH/bench.err"
      echo "last worker log lines:"
      tail -n 5 "$WORKER_DIR/log/worker.log"
    } >&2
    echo "- $2, $4-image requests x $5 clients, repeat $6: exit $rc; ${out:-no output}" >>"$NOTES"
    [ "$attempt" -eq 2 ] && die "worker run failed twice ($2, $4-image requests, $5 clients)"
  done
  record "$1" "$2" "$3" "$6" worker "$load" "$out"
  say "  worker $2 $4-image requests x $5 clients: $(echo "$out" | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d["images_per_s"], "img/s, server batch", d["mean_server_batch"])') (load $load)"
}

reload() {  # model
  run_logged "$BENCH" load --target "$SECONDREAD_WORKER_ADDR" --model "$1" >>"$SCRATCH/load.log" 2>&1 ||
    { tail -n 5 "$SCRATCH/load.log" >&2; die "reloading $1 failed"; }
}

# --- machine ----------------------------------------------------------------------
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
CPU_MODEL=${CPU_MODEL:-unknown}
NPROC=$(nproc)
MEM_GIB=$(awk '/^MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)
KERNEL=$(uname -r)
# shellcheck disable=SC1091
OS_NAME=$( (. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}") || true)
GIT_REV=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo unknown)
GRPC_VERSION=$(pkg-config --modversion grpc++ 2>/dev/null || echo unknown)
TORCH_PACKAGE=$(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || true)
LOAD_START=$(cat /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
export CPU_MODEL NPROC MEM_GIB KERNEL OS_NAME GIT_REV GRPC_VERSION TORCH_PACKAGE LOAD_START STARTED
T_START=$(date +%s)

# --- runs -------------------------------------------------------------------------
set_batching "$REF" 32 0
set_batching "$DN" 16 0
say "starting the worker (cpu.threads=$THREADS)"
run_logged "$REPO_ROOT/scripts/worker-up" "$WORKER_DIR" --repo "$MODELS" --set "cpu.threads=$THREADS" >&2 ||
  die "worker-up failed"
WORKER_PID=$(cat "$WORKER_DIR/worker.pid")
# shellcheck disable=SC1091
source "$WORKER_DIR/worker.env"
WORKER_RUNTIME=$(grep -o '"runtime":"[^"]*"' "$WORKER_DIR/log/worker.log" | head -n 1 | cut -d'"' -f4 || true)
export WORKER_RUNTIME

# Runs bare and worker REPEATS times each, alternating which goes first, so
# that each repeat's pair shares the machine's background load as far as
# possible; the report's ratio is the median of the per-pair ratios.
paired_runs() {  # case model b images_per_request clients
  local r
  for ((r = 1; r <= REPEATS; r++)); do
    if ((r % 2)); then
      bare_run "$1" "$2" "$3" "$r"; worker_run "$1" "$2" "$3" "$4" "$5" "$r"
    else
      worker_run "$1" "$2" "$3" "$4" "$5" "$r"; bare_run "$1" "$2" "$3" "$r"
    fi
  done
}

measure_model() {  # model batches...
  local model=$1 b; shift
  for b in "$@"; do
    set_batching "$model" "$b" 0
    reload "$model"
    paired_runs main "$model" "$b" "$b" "$CLIENTS"
  done
}

say "$REF: batches $REF_BATCHES"
# shellcheck disable=SC2086
measure_model "$REF" $REF_BATCHES
say "$DN: batches $DN_BATCHES"
# shellcheck disable=SC2086
measure_model "$DN" $DN_BATCHES

if [ -n "$DYN_BATCHES" ]; then
  say "$REF: 1-image requests from $DYN_CLIENTS clients"
  for b in $DYN_BATCHES; do
    set_batching "$REF" "$b" "$DYN_DELAY_US"
    reload "$REF"
    paired_runs dynamic "$REF" "$b" 1 "$DYN_CLIENTS"
  done
fi

LOAD_END=$(cat /proc/loadavg)
ELAPSED=$(($(date +%s) - T_START))
export LOAD_END ELAPSED MEASURE WARMUP REPEATS CLIENTS THREADS DYN_CLIENTS DYN_DELAY_US DYN_BATCHES REF DN
touch "$NOTES"
export RESULTS_JSONL COMMANDS NOTES

# --- report -----------------------------------------------------------------------
report() {
  "$PYTHON" - <<'PY'
import json, os, statistics

env = os.environ
rows = [json.loads(l) for l in open(env["RESULTS_JSONL"])]

def med(xs):
    return statistics.median(xs) if xs else float("nan")

def f(x, digits=1):
    return ("%%.%df" % digits) % x

def group(case, model, b):
    """Bare and worker results of one case, paired by repeat."""
    sel = [r for r in rows if r["case"] == case and r["model"] == model and r["b"] == b]
    bare = {r["repeat"]: r for r in sel if r["side"] == "bare"}
    work = {r["repeat"]: r for r in sel if r["side"] == "worker"}
    pairs = [(bare[k], work[k]) for k in sorted(bare) if k in work]
    return [r["result"] for r in bare.values()], [r["result"] for r in work.values()], pairs

def ratio_text(pairs):
    ratios = [w["result"]["images_per_s"] / b["result"]["images_per_s"] for b, w in pairs]
    m = med(ratios)
    return m, "%.2f (%.2f-%.2f)" % (m, min(ratios), max(ratios))

runtime = next((r["result"]["runtime"] for r in rows if r["side"] == "bare"), "unknown")
print("## Inference worker vs bare LibTorch (CPU)")
print()
print("- date: %s; revision: %s; run time: %s s" % (env["STARTED"], env["GIT_REV"], env["ELAPSED"]))
print("- machine: %s CPUs (%s), %s GiB RAM, %s, kernel %s" % (env["NPROC"], env["CPU_MODEL"], env["MEM_GIB"], env["OS_NAME"] or "unknown OS", env["KERNEL"]))
pkg = (" (package %s)" % env["TORCH_PACKAGE"]) if env.get("TORCH_PACKAGE") else ""
print("- LibTorch: %s%s; gRPC %s; worker: %s" % (runtime, pkg, env["GRPC_VERSION"], env.get("WORKER_RUNTIME") or "unknown"))
loads = [float(r["load1"]) for r in rows]
print("- load average (1, 5, 15 min) at start: %s; at end: %s; 1-minute load before the runs: %.2f-%.2f (median %.2f)" % (
    " ".join(env["LOAD_START"].split()[:3]), " ".join(env["LOAD_END"].split()[:3]), min(loads), max(loads), med(loads)))
print("- settings: %s s measured after >= %s s warm-up per run, %s repeats (medians shown), %s intra-op threads on both sides, %s gRPC clients"
      % (env["MEASURE"], env["WARMUP"], env["REPEATS"], env["THREADS"], env["CLIENTS"]))
print("- images: random uint8 at the model's input size (no resize), MONOCHROME2")
print("- worker side: each client sends B-image requests back to back; model.yaml has max_batch_size B and")
print("  max_queue_delay_us 0, so each server batch is one request of B images")
print()
print("| Model | Batch | Bare img/s | Worker img/s | Worker/bare (range) | Overhead | Bare batch ms p50 / p99 | Worker request ms p50 / p99 | Server batch | Worker compute ms/batch | Worker busy |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
raw = []
def add_raw(label, b, bare, work, pairs):
    for pb, pw in pairs:
        raw.append("| %s | %d | %d | %s | %s | %s / %s | %.2f |" % (label, b, pb["repeat"], f(pb["result"]["images_per_s"]),
                   f(pw["result"]["images_per_s"]), pb["load1"], pw["load1"],
                   pw["result"]["images_per_s"] / pb["result"]["images_per_s"]))
for model in (env["REF"], env["DN"]):
    for b in sorted({r["b"] for r in rows if r["case"] == "main" and r["model"] == model}):
        bare, work, pairs = group("main", model, b)
        if not pairs:
            continue
        ratio, text = ratio_text(pairs)
        print("| %s | %d | %s | %s | %s | %+.0f %% | %s / %s | %s / %s | %s | %s | %s %% |" % (
            model, b, f(med([d["images_per_s"] for d in bare])), f(med([d["images_per_s"] for d in work])), text, (1 - ratio) * 100,
            f(med([d["batch_latency_ms_p50"] for d in bare])), f(med([d["batch_latency_ms_p99"] for d in bare])),
            f(med([d["request_latency_ms_p50"] for d in work])), f(med([d["request_latency_ms_p99"] for d in work])),
            f(med([d["mean_server_batch"] for d in work])), f(med([d["mean_compute_ms"] for d in work])),
            f(100 * med([d["server_busy"] for d in work]))))
        add_raw(model, b, bare, work, pairs)
print()
print("Worker/bare is the median of the per-repeat ratios (each repeat runs bare and worker back to back), with")
print("the smallest and largest in brackets. Overhead = 1 - worker/bare: the share of bare LibTorch throughput the")
print("worker does not deliver (negative: the worker was faster, within noise). Request latency includes queueing")
print("behind the other clients' requests; worker compute is the server's own time per batch (preprocessing and")
print("forward pass), comparable with the bare batch time. Worker busy is the share of the measured time the model")
print("instance spent in that compute; as requests are always queued, the rest is the worker's own time between")
print("batches (taking the next request off the queue, answering the previous one).")
dyn = sorted({r["b"] for r in rows if r["case"] == "dynamic"})
if dyn:
    print()
    print("1-image requests from %s clients to %s with max_queue_delay_us %s, so that the dynamic batcher forms the" % (env["DYN_CLIENTS"], env["REF"], env["DYN_DELAY_US"]))
    print("batches, against bare LibTorch at batch max_batch_size:")
    print()
    print("| max_batch_size | Bare img/s | Worker img/s | Worker/bare (range) | Overhead | Request ms p50 / p99 | Server batch | Queue ms | Compute ms/batch | Worker busy |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in dyn:
        bare, work, pairs = group("dynamic", env["REF"], b)
        if not pairs:
            continue
        ratio, text = ratio_text(pairs)
        print("| %d | %s | %s | %s | %+.0f %% | %s / %s | %s | %s | %s | %s %% |" % (
            b, f(med([d["images_per_s"] for d in bare])), f(med([d["images_per_s"] for d in work])), text, (1 - ratio) * 100,
            f(med([d["request_latency_ms_p50"] for d in work])), f(med([d["request_latency_ms_p99"] for d in work])),
            f(med([d["mean_server_batch"] for d in work])), f(med([d["mean_queue_ms"] for d in work])),
            f(med([d["mean_compute_ms"] for d in work])), f(100 * med([d["server_busy"] for d in work]))))
        add_raw("%s, 1-image requests x %s clients" % (env["REF"], env["DYN_CLIENTS"]), b, bare, work, pairs)
print()
print("Every repeat (img/s, and the 1-minute load average just before each run):")
print()
print("| Model | Batch | Repeat | Bare img/s | Worker img/s | Load bare / worker | Worker/bare |")
print("|---|---:|---:|---:|---:|---:|---:|")
print("\n".join(raw))
print()
notes = open(env["NOTES"]).read().strip()
if notes:
    print("Worker runs that failed and were repeated (the failed attempt is not in the tables):")
    print()
    print(notes)
    print()
print("<details><summary>Commands</summary>")
print()
print("`$SCRATCH` is the run's scratch directory; the worker address is the one `scripts/worker-up` picked.")
print()
print("```sh")
print(open(env["COMMANDS"]).read().rstrip())
print("```")
print()
print("</details>")
PY
}

report >"$SCRATCH/report.md"
cat "$SCRATCH/report.md"
if [ -n "$RESULTS_FILE" ]; then cp "$SCRATCH/report.md" "$RESULTS_FILE"; fi
say "done in ${ELAPSED} s"
