#!/usr/bin/env bash
# Inference worker throughput on one GPU against bare LibTorch and against the
# GPU's dense bf16 matmul rate, for a host that has PyTorch with CUDA and no
# network access.
#
#   bench/inference_gpu.sh [RESULTS_FILE]
#
# Steps: check that everything the build needs is present (and say exactly
# what is not); configure a separate build tree against the PyTorch
# installation's LibTorch; build secondread-worker and inference_bench only;
# export DenseNet-121 (1x224x224, bf16, two instances on cuda:0, batches up to
# 256); measure
#
#   matmul  at::mm (what at::matmul runs for matrices) on bf16 8192x8192:
#           the FLOP ceiling;
#   bare    the model in-process through the worker's own backend code
#           (preprocessing included) at batch 64, 128 and 256, with one
#           instance and with as many instances as the worker runs;
#   worker  the same model through one secondread-worker over gRPC from many
#           concurrent clients, with the dynamic batcher forming the batches;
#   3D      the volume reference model (synthetic-lesion3d-ct, fp32) on a
#           300x512x512 CT-like volume, in-process and through the same
#           worker (InferVolume), on the device and on the CPU in the same
#           run, with the worker's resample / inference / resample-back times;
#
# and write a Markdown report. Nothing is downloaded or installed.
#
# Environment (defaults in brackets):
#   BENCH_PYTHON          Python whose torch is used             [python3]
#   BENCH_TORCH_DIR       LibTorch's CMake directory             [torch.utils.cmake_prefix_path/Torch]
#   BENCH_BUILD_DIR       build tree for this benchmark          [build-gpu]
#   BENCH_CUDA_HOME       CUDA toolkit root                      [$CUDA_HOME, or nvcc's parent, or /usr/local/cuda]
#   BENCH_DEVICE          CUDA device for matmul and bare runs   [cuda:0]
#   BENCH_PRECISION       model precision                        [bf16]
#   BENCH_INSTANCES       instance_group.count                   [2]
#   BENCH_MAX_BATCH       max_batch_size                         [256]
#   BENCH_PREFERRED       preferred batch sizes                  [64,128,256]
#   BENCH_QUEUE_DELAY_US  max_queue_delay_us                     [2000]
#   BENCH_BARE_BATCHES    bare batch sizes                       [64 128 256]
#   BENCH_GRPC_CASES      IMAGESxCLIENTS per worker run          [16x32 32x32 64x16]
#   BENCH_SECONDS         measurement time per run, seconds      [15]
#   BENCH_WARMUP          warm-up time per run, seconds          [5]
#   BENCH_MATMUL_N        matmul size                            [8192]
#   BENCH_GFLOP_PER_IMAGE model cost per image (2 FLOP per multiply-add) [5.51]
#   BENCH_TARGET_IMG_S    throughput target through the worker   [20000]
#   BENCH_TARGET_OVERHEAD overhead target vs best bare, percent   [10]
#   BENCH_VOLUME_SHAPE    D,H,W of the 3D runs                   [300,512,512]
#   BENCH_VOLUME_SPACING  its spacing in mm                      [1.0,0.7,0.7]
#   BENCH_VOLUME_REPEATS  timed 3D runs after one warm-up        [3]
#   BENCH_VOLUME_CPU      1: also run the 3D model on the CPU    [1]
#   BENCH_ALLOW_CPU       1: run the same flow on the CPU with tiny sizes and
#                         durations, to check the plumbing on a machine
#                         without a GPU (the numbers mean nothing)   [0]
#   BENCH_KEEP            1 keeps the scratch directory           [0]
#   BENCH_TMPDIR          parent of the scratch directory        [$TMPDIR or /tmp]
#
# The report goes to RESULTS_FILE (default inference-gpu-DATE.md in the
# current directory) and to stdout; progress goes to stderr.
set -euo pipefail
shopt -s inherit_errexit

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"

ALLOW_CPU=${BENCH_ALLOW_CPU:-0}
PYTHON=${BENCH_PYTHON:-python3}
BUILD=${BENCH_BUILD_DIR:-$REPO_ROOT/build-gpu}
RESULTS_FILE=${1:-inference-gpu-$(date +%Y%m%d-%H%M%S).md}
if [ "$ALLOW_CPU" = 1 ]; then
  # Same steps, sizes small enough for a laptop: proves the script, not the GPU.
  DEVICE=cpu KIND=cpu
  PRECISION=${BENCH_PRECISION:-fp32}
  INSTANCES=${BENCH_INSTANCES:-1}
  MAX_BATCH=${BENCH_MAX_BATCH:-8}
  PREFERRED=${BENCH_PREFERRED:-4,8}
  BARE_BATCHES=${BENCH_BARE_BATCHES:-4 8}
  GRPC_CASES=${BENCH_GRPC_CASES:-2x4 4x2}
  MEASURE=${BENCH_SECONDS:-1}
  WARMUP=${BENCH_WARMUP:-0.5}
  MATMUL_N=${BENCH_MATMUL_N:-256}
  MATMUL_DTYPE=fp32
  VOLUME_SHAPE=${BENCH_VOLUME_SHAPE:-64,128,128}
  VOLUME_REPEATS=${BENCH_VOLUME_REPEATS:-1}
else
  DEVICE=${BENCH_DEVICE:-cuda:0} KIND=cuda
  PRECISION=${BENCH_PRECISION:-bf16}
  INSTANCES=${BENCH_INSTANCES:-2}
  MAX_BATCH=${BENCH_MAX_BATCH:-256}
  PREFERRED=${BENCH_PREFERRED:-64,128,256}
  BARE_BATCHES=${BENCH_BARE_BATCHES:-64 128 256}
  GRPC_CASES=${BENCH_GRPC_CASES:-16x32 32x32 64x16}
  MEASURE=${BENCH_SECONDS:-15}
  WARMUP=${BENCH_WARMUP:-5}
  MATMUL_N=${BENCH_MATMUL_N:-8192}
  MATMUL_DTYPE=$PRECISION
  VOLUME_SHAPE=${BENCH_VOLUME_SHAPE:-300,512,512}
  VOLUME_REPEATS=${BENCH_VOLUME_REPEATS:-3}
fi
QUEUE_DELAY_US=${BENCH_QUEUE_DELAY_US:-2000}
# The exported model's convolutions and classifier: 2.754 G multiply-adds
# per 1x224x224 image, 2 FLOP each. (The 5.7 GFLOP often quoted for
# DenseNet-121 is the 3-channel ImageNet model; the 1-channel stem is
# 0.08 G multiply-adds cheaper.) Batch norm, ReLU, pooling and
# concatenation are memory-bound and not counted.
GFLOP_PER_IMAGE=${BENCH_GFLOP_PER_IMAGE:-5.51}
TARGET_IMG_S=${BENCH_TARGET_IMG_S:-20000}
TARGET_OVERHEAD=${BENCH_TARGET_OVERHEAD:-10}
VOLUME_SPACING=${BENCH_VOLUME_SPACING:-1.0,0.7,0.7}
VOLUME_CPU=${BENCH_VOLUME_CPU:-1}
MODEL=densenet121-bench
VOLUME_MODEL=synthetic-lesion3d-ct

die() { echo "inference_gpu: $*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

for b in $BARE_BATCHES "$INSTANCES" "$MAX_BATCH"; do
  [[ $b =~ ^[1-9][0-9]*$ ]] || die "batch sizes and instance counts must be positive integers, got '$b'"
done
for c in $GRPC_CASES; do
  [[ $c =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || die "BENCH_GRPC_CASES entries are IMAGESxCLIENTS, got '$c'"
  ((${c%x*} <= MAX_BATCH)) || die "$c: a request cannot carry more than max_batch_size ($MAX_BATCH) images"
done

# --- preflight: report everything missing at once ------------------------------------
MISSING=()
missing() { MISSING+=("$1"); }
have_cmd() { command -v "$1" >/dev/null 2>&1; }
# CMake package configurations are looked up where find_package looks by
# default, plus CMAKE_PREFIX_PATH.
have_cmake_config() {  # name
  local lower prefixes=(/usr /usr/local /opt) p
  lower=$(echo "$1" | tr '[:upper:]' '[:lower:]')
  IFS=: read -r -a extra <<<"${CMAKE_PREFIX_PATH:-}"
  for p in "${extra[@]}" "${prefixes[@]}"; do
    [ -d "$p" ] || continue
    if find "$p"/lib*/ "$p"/share/ -maxdepth 4 \( -name "$1Config.cmake" -o -name "$lower-config.cmake" \) \
      -print -quit 2>/dev/null | grep -q .; then
      return 0
    fi
  done
  return 1
}
have_header() {  # relative path
  local d
  IFS=: read -r -a extra <<<"${CPATH:-}"
  for d in "${extra[@]}" /usr/include /usr/local/include; do
    [ -n "$d" ] && [ -f "$d/$1" ] && return 0
  done
  return 1
}

have_cmd cmake || missing "cmake (>= 3.25): package cmake"
have_cmd c++ || have_cmd g++ || missing "a C++20 compiler: package g++ (12 or newer)"
have_cmd pkg-config || missing "pkg-config: package pkg-config"
have_cmd "$PYTHON" || missing "$PYTHON (PyTorch's interpreter; set BENCH_PYTHON)"
have_cmd protoc || missing "protoc: package protobuf-compiler"
have_cmd grpc_cpp_plugin || missing "grpc_cpp_plugin: package protobuf-compiler-grpc"
if have_cmd cmake; then
  cmake_version=$(cmake --version | awk 'NR==1 {print $3}')
  printf '%s\n3.25\n' "$cmake_version" | sort -V -C 2>/dev/null && [ "$cmake_version" != 3.25 ] &&
    missing "cmake >= 3.25 (found $cmake_version)"
fi
if have_cmd pkg-config; then
  while read -r module pkg; do
    pkg-config --exists "$module" 2>/dev/null || missing "$module (pkg-config): package $pkg"
  done <<'EOF'
grpc++ libgrpc++-dev
protobuf libprotobuf-dev
absl_status libabsl-dev
yaml-cpp libyaml-cpp-dev
spdlog libspdlog-dev
libpqxx libpqxx-dev
cpp-httplib libcpp-httplib-dev
openssl libssl-dev
gtest libgtest-dev
gmock libgmock-dev
re2 libre2-dev
zlib zlib1g-dev
EOF
fi
while read -r config pkg; do
  have_cmake_config "$config" || missing "$config CMake configuration: package $pkg"
done <<'EOF'
gRPC libgrpc++-dev
absl libabsl-dev
DCMTK libdcmtk-dev
prometheus-cpp prometheus-cpp-dev
nlohmann_json nlohmann-json3-dev
EOF
have_header CLI/CLI.hpp || missing "CLI11 headers (CLI/CLI.hpp): package libcli11-dev"
have_header nlohmann/json.hpp || missing "nlohmann/json.hpp: package nlohmann-json3-dev"

TORCH_INFO=""
if have_cmd "$PYTHON"; then
  # One line of facts about the Python torch: version, CUDA version (or
  # None), C++ ABI, CUDA availability, cuDNN version, CMake prefix.
  TORCH_INFO=$("$PYTHON" - <<'PY' 2>/dev/null || true
import torch
cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
print(torch.__version__, torch.version.cuda, int(torch._C._GLIBCXX_USE_CXX11_ABI),
      int(torch.cuda.is_available()), cudnn, torch.utils.cmake_prefix_path, sep="|")
PY
)
  [ -n "$TORCH_INFO" ] || missing "PyTorch importable from $PYTHON"
fi
TORCH_VERSION="" TORCH_CUDA="" TORCH_ABI="" TORCH_HAS_CUDA="" TORCH_CUDNN="" TORCH_PREFIX=""
if [ -n "$TORCH_INFO" ]; then
  IFS='|' read -r TORCH_VERSION TORCH_CUDA TORCH_ABI TORCH_HAS_CUDA TORCH_CUDNN TORCH_PREFIX <<<"$TORCH_INFO"
  # System gRPC, protobuf and abseil use the C++11 std::string ABI; a
  # LibTorch built with the old one cannot be linked with them.
  [ "$TORCH_ABI" = 1 ] || missing "a PyTorch built with the C++11 ABI (torch._C._GLIBCXX_USE_CXX11_ABI is False for torch $TORCH_VERSION; older pip wheels use the pre-C++11 ABI)"
  if [ "$ALLOW_CPU" != 1 ]; then
    [ "$TORCH_CUDA" != None ] || missing "a CUDA build of PyTorch (torch $TORCH_VERSION has no CUDA)"
    [ "$TORCH_HAS_CUDA" = 1 ] || missing "a usable GPU: torch.cuda.is_available() is False (driver, device visibility?)"
  fi
fi
TORCH_DIR=${BENCH_TORCH_DIR:-${TORCH_PREFIX:+$TORCH_PREFIX/Torch}}
if [ -z "$TORCH_DIR" ] || [ ! -f "$TORCH_DIR/TorchConfig.cmake" ]; then
  missing "LibTorch's CMake configuration (TorchConfig.cmake under '${TORCH_DIR:-?}'; set BENCH_TORCH_DIR)"
fi

CUDA_HOME_DIR=""
if [ "$ALLOW_CPU" != 1 ] || [ "${TORCH_CUDA:-None}" != None ]; then
  # A CUDA LibTorch's CMake files look for the toolkit (nvcc, headers,
  # libraries), even though nothing here is compiled with nvcc.
  nvcc_path=""
  for candidate in "${BENCH_CUDA_HOME:-}" "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$candidate" ] && [ -x "$candidate/bin/nvcc" ]; then nvcc_path="$candidate/bin/nvcc"; break; fi
  done
  [ -n "$nvcc_path" ] || nvcc_path=$(command -v nvcc || true)
  if [ -z "$nvcc_path" ]; then
    missing "the CUDA toolkit (nvcc, headers, libraries) matching torch's CUDA ${TORCH_CUDA:-?}: set BENCH_CUDA_HOME"
  else
    CUDA_HOME_DIR=$(cd "$(dirname "$nvcc_path")/.." && pwd)
    nvcc_version=$("$nvcc_path" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
    if [ -n "${TORCH_CUDA:-}" ] && [ "$TORCH_CUDA" != None ] && [ "${nvcc_version%%.*}" != "${TORCH_CUDA%%.*}" ]; then
      missing "a CUDA toolkit with the same major version as torch's CUDA $TORCH_CUDA (nvcc at $nvcc_path is $nvcc_version)"
    fi
  fi
fi

if [ "${#MISSING[@]}" -gt 0 ]; then
  {
    echo "inference_gpu: this host lacks what the build or the run needs:"
    printf '  - %s\n' "${MISSING[@]}"
    echo "Package names are Debian/Ubuntu's. Nothing was built or changed."
  } >&2
  exit 1
fi

SCRATCH=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/secondread-gpu-bench.XXXXXX")
MODELS="$SCRATCH/repository"
RESULTS_JSONL="$SCRATCH/results.jsonl"
COMMANDS="$SCRATCH/commands.txt"
WORKER_PID=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
    kill -TERM "$WORKER_PID" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$WORKER_PID" 2>/dev/null
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    # Kept on failure: the build and worker logs are what explains it.
    echo "inference_gpu: scratch directory kept: $SCRATCH" >&2
  else
    rm -rf "$SCRATCH"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
GENERATOR=()
have_cmd ninja && GENERATOR=(-G Ninja)
CMAKE_ARGS=(-S "$REPO_ROOT" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release "-DTorch_DIR=$TORCH_DIR")
if [ -n "$CUDA_HOME_DIR" ]; then
  CMAKE_ARGS+=("-DCUDA_TOOLKIT_ROOT_DIR=$CUDA_HOME_DIR" "-DCUDAToolkit_ROOT=$CUDA_HOME_DIR"
    "-DCMAKE_CUDA_COMPILER=$CUDA_HOME_DIR/bin/nvcc")
fi
say "configuring $BUILD against $TORCH_DIR"
run_logged cmake "${CMAKE_ARGS[@]}" >"$SCRATCH/configure.log" 2>&1 ||
  { tail -n 40 "$SCRATCH/configure.log" >&2; die "configuration failed (full log: $SCRATCH/configure.log)"; }
say "building secondread-worker and inference_bench"
run_logged cmake --build "$BUILD" --parallel "$(nproc)" --target secondread-worker inference_bench \
  >"$SCRATCH/build.log" 2>&1 || { tail -n 40 "$SCRATCH/build.log" >&2; die "build failed (full log: $SCRATCH/build.log)"; }
BENCH="$BUILD/bench/inference_bench"
WORKER_BIN="$BUILD/cmd/secondread-worker/secondread-worker"
if [ "$KIND" = cuda ]; then
  # A LibTorch linked without its CUDA library (linker --as-needed) loads
  # but sees no GPU; catch that before anything is measured.
  "$BENCH" matmul --device "$DEVICE" --n 256 --seconds 0.1 >/dev/null 2>"$SCRATCH/cuda-check.log" ||
    { cat "$SCRATCH/cuda-check.log" >&2; ldd "$BENCH" | grep -i -E 'torch|cuda' >&2 || true
      die "the built inference_bench cannot use $DEVICE"; }
fi

# --- model ------------------------------------------------------------------------
mkdir -p "$MODELS"
say "exporting DenseNet-121 ($KIND, $PRECISION, $INSTANCES instance(s), max batch $MAX_BATCH)"
run_logged "$PYTHON" "$REPO_ROOT/tools/models/export_densenet.py" --out "$MODELS" --kind "$KIND" \
  --precision "$PRECISION" --count "$INSTANCES" --max-batch-size "$MAX_BATCH" --preferred "$PREFERRED" \
  --queue-delay-us "$QUEUE_DELAY_US" >"$SCRATCH/export.log" 2>&1 ||
  { cat "$SCRATCH/export.log" >&2; die "DenseNet-121 export failed"; }
# The volume reference model twice: as committed (CPU) and on the device.
# Both are served by the same worker as DenseNet-121.
VOLUME_ENTRIES="$VOLUME_MODEL-cpu"
cp -r "$REPO_ROOT/tools/models/repository/$VOLUME_MODEL" "$MODELS/$VOLUME_MODEL-cpu"
sed -i "s/^name: .*/name: $VOLUME_MODEL-cpu/" "$MODELS/$VOLUME_MODEL-cpu/model.yaml"
if [ "$KIND" = cuda ]; then
  VOLUME_ENTRIES="$VOLUME_MODEL-cuda $VOLUME_ENTRIES"
  cp -r "$REPO_ROOT/tools/models/repository/$VOLUME_MODEL" "$MODELS/$VOLUME_MODEL-cuda"
  sed -i -e "s/^name: .*/name: $VOLUME_MODEL-cuda/" -e "s/^  kind: cpu$/  kind: cuda/" \
    "$MODELS/$VOLUME_MODEL-cuda/model.yaml"
  grep -q "^  kind: cuda$" "$MODELS/$VOLUME_MODEL-cuda/model.yaml" || die "could not place $VOLUME_MODEL on CUDA"
fi
[ "$VOLUME_CPU" = 1 ] || [ "$KIND" != cuda ] || VOLUME_ENTRIES="$VOLUME_MODEL-cuda"

record() {  # kind json
  printf '{"kind":"%s","result":%s}\n' "$1" "$2" >>"$RESULTS_JSONL"
}
field() {  # json key
  "$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# --- matmul ceiling ---------------------------------------------------------------
say "matmul ceiling ($MATMUL_DTYPE, n=$MATMUL_N)"
out=$(run_logged "$BENCH" matmul --device "$DEVICE" --dtype "$MATMUL_DTYPE" --n "$MATMUL_N" --seconds 5 2>>"$SCRATCH/bench.err") ||
  { tail -n 5 "$SCRATCH/bench.err" >&2; die "matmul failed"; }
record matmul "$out"
say "  $(field "$out" tflops) TFLOP/s"

# --- bare -------------------------------------------------------------------------
BARE_INSTANCES=$(printf '%s\n' 1 "$INSTANCES" | sort -nu | tr '\n' ' ')
for inst in $BARE_INSTANCES; do
  for b in $BARE_BATCHES; do
    say "bare batch $b, $inst instance(s)"
    out=$(run_logged "$BENCH" bare --model-dir "$MODELS/$MODEL" --batch "$b" --instances "$inst" \
      --device "$DEVICE" --seconds "$MEASURE" --warmup "$WARMUP" 2>>"$SCRATCH/bench.err") ||
      { tail -n 5 "$SCRATCH/bench.err" >&2; die "bare run failed (batch $b, $inst instances)"; }
    record bare "$out"
    say "  $(field "$out" images_per_s) img/s"
  done
done

# --- 3D in-process -------------------------------------------------------------
for entry in $VOLUME_ENTRIES; do
  dev=$DEVICE
  case "$entry" in *-cpu) dev=cpu ;; esac
  say "3D bare: $VOLUME_MODEL on $dev, volume $VOLUME_SHAPE"
  out=$(run_logged "$BENCH" volume --model-dir "$MODELS/$entry" --device "$dev" --threads "$(nproc)" \
    --shape "$VOLUME_SHAPE" --spacing "$VOLUME_SPACING" --repeats "$VOLUME_REPEATS" 2>>"$SCRATCH/bench.err") ||
    { tail -n 5 "$SCRATCH/bench.err" >&2; die "3D bare run failed ($entry)"; }
  record volume_bare "$out"
  say "  $(field "$out" wall_s) s per volume (inference $(field "$out" inference_s) s)"
done

# --- worker -----------------------------------------------------------------------
free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
WORKER_DIR="$SCRATCH/worker"
mkdir -p "$WORKER_DIR/log"
GRPC_PORT=$(free_port)
HTTP_PORT=$(free_port)
cat >"$WORKER_DIR/worker.yaml" <<YAML
grpc:
  listen: 127.0.0.1:$GRPC_PORT
models:
  repository: $MODELS
http:
  bind: 127.0.0.1
  port: $HTTP_PORT
log:
  file: $WORKER_DIR/log/worker.log
YAML
say "starting the worker"
echo "$(printf '%q ' "$WORKER_BIN" --config "$WORKER_DIR/worker.yaml" | sed "s#$SCRATCH#\$SCRATCH#g; s#$REPO_ROOT#.#g")&" >>"$COMMANDS"
"$WORKER_BIN" --config "$WORKER_DIR/worker.yaml" >>"$WORKER_DIR/log/worker.out" 2>&1 &
WORKER_PID=$!
# Loading warms every instance up at max_batch_size, which on a cold GPU
# (cuDNN and cuBLAS initialisation) can take a while; scripts/worker-up's
# one-minute limit is too tight for that.
ready=0
for _ in $(seq 1 3000); do
  if grep -q '"worker_started"' "$WORKER_DIR/log/worker.log" 2>/dev/null; then ready=1; break; fi
  kill -0 "$WORKER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  tail -n 20 "$WORKER_DIR/log/worker.out" "$WORKER_DIR/log/worker.log" >&2 || true
  die "the worker did not start"
fi
grep -q '"model_loaded"' "$WORKER_DIR/log/worker.log" ||
  { tail -n 20 "$WORKER_DIR/log/worker.log" >&2; die "the worker started but did not load $MODEL"; }
WORKER_RUNTIME=$(grep -o '"runtime":"[^"]*"' "$WORKER_DIR/log/worker.log" | head -n 1 | cut -d'"' -f4 || true)

for c in $GRPC_CASES; do
  images=${c%x*} clients=${c#*x}
  say "worker: $clients clients x $images-image requests"
  out=$(run_logged "$BENCH" grpc --target "127.0.0.1:$GRPC_PORT" --model "$MODEL" --batch "$images" \
    --clients "$clients" --seconds "$MEASURE" --warmup "$WARMUP" 2>>"$SCRATCH/bench.err") ||
    { tail -n 5 "$SCRATCH/bench.err" >&2; die "worker run failed ($c)"; }
  record grpc "$out"
  say "  $(field "$out" images_per_s) img/s, mean server batch $(field "$out" mean_server_batch)"
done

for entry in $VOLUME_ENTRIES; do
  say "3D worker: $entry, volume $VOLUME_SHAPE"
  out=$(run_logged "$BENCH" volume --target "127.0.0.1:$GRPC_PORT" --model "$entry" --shape "$VOLUME_SHAPE" \
    --spacing "$VOLUME_SPACING" --repeats "$VOLUME_REPEATS" 2>>"$SCRATCH/bench.err") ||
    { tail -n 5 "$SCRATCH/bench.err" >&2; die "3D worker run failed ($entry)"; }
  record volume_grpc "$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); d["device"]=sys.argv[1]; print(json.dumps(d))' \
    "$([ "${entry##*-}" = cpu ] && echo cpu || echo "$DEVICE")")"
  say "  $(field "$out" wall_s) s per volume (compute $(field "$out" compute_s) s)"
done

# --- report -----------------------------------------------------------------------
GPU_INFO=""
if have_cmd nvidia-smi; then
  GPU_INFO=$(nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm --format=csv,noheader 2>/dev/null | head -n 1 || true)
fi
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
GIT_REV=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo unknown)
export RESULTS_JSONL COMMANDS GPU_INFO CPU_MODEL GIT_REV WORKER_RUNTIME ALLOW_CPU GFLOP_PER_IMAGE TARGET_IMG_S \
  TARGET_OVERHEAD TORCH_VERSION TORCH_CUDA TORCH_CUDNN PRECISION INSTANCES MAX_BATCH PREFERRED QUEUE_DELAY_US \
  MEASURE WARMUP VOLUME_SHAPE VOLUME_SPACING VOLUME_REPEATS
NPROC=$(nproc)
export NPROC

"$PYTHON" - >"$SCRATCH/report.md" <<'PY'
import json, os

env = os.environ
rows = [json.loads(l) for l in open(env["RESULTS_JSONL"])]
gflop = float(env["GFLOP_PER_IMAGE"])
mm = next(r["result"] for r in rows if r["kind"] == "matmul")
ceiling = mm["tflops"]
bare = [r["result"] for r in rows if r["kind"] == "bare"]
grpc = [r["result"] for r in rows if r["kind"] == "grpc"]

def tflops(img_s):
    return img_s * gflop / 1e3

def g(x):
    """Three significant digits, without exponents for the sizes seen here."""
    return "%.0f" % x if abs(x) >= 100 else "%.3g" % x

cpu = env["ALLOW_CPU"] == "1"
print("## Inference worker vs bare LibTorch (%s)" % ("CPU plumbing check; not a GPU result" if cpu else "GPU"))
print()
print("- revision: %s" % env["GIT_REV"])
print("- GPU: %s" % (env["GPU_INFO"] or "none"))
print("- host: %s CPUs (%s)" % (env["NPROC"], env["CPU_MODEL"]))
print("- PyTorch/LibTorch %s, CUDA %s, cuDNN %s; worker: %s" % (env["TORCH_VERSION"], env["TORCH_CUDA"], env["TORCH_CUDNN"], env["WORKER_RUNTIME"] or "?"))
print("- model: DenseNet-121, 1x224x224 uint8 input, 14 outputs, random weights; %s, instance_group.count %s,"
      % (env["PRECISION"], env["INSTANCES"]))
print("  max_batch_size %s, preferred_batch_sizes [%s], max_queue_delay_us %s" % (env["MAX_BATCH"], env["PREFERRED"], env["QUEUE_DELAY_US"]))
print("- cost: %.2f GFLOP per image, counting a multiply-add as 2 FLOP (convolutions and the classifier;" % gflop)
print("  batch norm, ReLU, pooling and concatenation not counted)")
print("- %s s measured after >= %s s warm-up per run" % (env["MEASURE"], env["WARMUP"]))
print()
print("FLOP ceiling: at::mm (what at::matmul runs for matrices), %s, n = %d: **%s TFLOP/s** (2n^3 FLOP per matmul)." % (mm["dtype"], mm["n"], g(ceiling)))
print()
print("Bare LibTorch (the worker's backend code in-process, preprocessing included; one loop per instance):")
print()
print("| Batch | Instances | img/s | Batch ms p50 / p99 | TFLOP/s | Of ceiling |")
print("|---:|---:|---:|---:|---:|---:|")
for d in sorted(bare, key=lambda d: (d["instances"], d["batch"])):
    print("| %d | %d | %s | %.1f / %.1f | %s | %.1f %% |" % (d["batch"], d["instances"], g(d["images_per_s"]),
          d["batch_latency_ms_p50"], d["batch_latency_ms_p99"], g(tflops(d["images_per_s"])), 100 * tflops(d["images_per_s"]) / ceiling))
best = max(bare, key=lambda d: d["images_per_s"])
print()
print("Through the worker over gRPC (one channel per client; the dynamic batcher forms the batches):")
print()
print("| Images/request | Clients | img/s | Request ms p50 / p99 | Server batch | Queue ms | Compute ms | Instances busy | TFLOP/s | Of ceiling | Worker / best bare | Overhead |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for d in grpc:
    ratio = d["images_per_s"] / best["images_per_s"]
    print("| %d | %d | %s | %.1f / %.1f | %.1f | %.1f | %.1f | %.0f %% | %s | %.1f %% | %.2f | %.0f %% |" % (
        d["batch"], d["clients"], g(d["images_per_s"]), d["request_latency_ms_p50"], d["request_latency_ms_p99"],
        d["mean_server_batch"], d["mean_queue_ms"], d["mean_compute_ms"], 100 * d["server_busy"], g(tflops(d["images_per_s"])),
        100 * tflops(d["images_per_s"]) / ceiling, ratio, 100 * (1 - ratio)))
top = max(grpc, key=lambda d: d["images_per_s"])
overhead = 100 * (1 - top["images_per_s"] / best["images_per_s"])
print()
print("Best bare: %s img/s (batch %d, %d instance(s)). Best through the worker: %s img/s (%d clients x %d images)."
      % (g(best["images_per_s"]), best["batch"], best["instances"], g(top["images_per_s"]), top["clients"], top["batch"]))
print("Overhead = 1 - worker / best bare. Instances busy: the share of time the model instances spent in a batch's")
print("preprocessing and forward pass (from the responses' timing); well under 100 % means the worker, not the GPU,")
print("limits throughput (too few requests in flight, or time lost between batches).")
print()
if not cpu:
    t_img, t_ovh = float(env["TARGET_IMG_S"]), float(env["TARGET_OVERHEAD"])
    print("| Target | Result | Met |")
    print("|---|---:|---|")
    print("| >= %.0f img/s through the worker | %.0f img/s | %s |" % (t_img, top["images_per_s"], "yes" if top["images_per_s"] >= t_img else "**no**"))
    print("| <= %.0f %% overhead vs bare | %.1f %% | %s |" % (t_ovh, overhead, "yes" if overhead <= t_ovh else "**no**"))
    print()
vbare = [r["result"] for r in rows if r["kind"] == "volume_bare"]
vgrpc = [r["result"] for r in rows if r["kind"] == "volume_grpc"]
if vbare or vgrpc:
    print("### 3D: synthetic-lesion3d-ct (fp32) on a %s volume (%s mm)" % (
        " x ".join(env["VOLUME_SHAPE"].split(",")), " x ".join(env["VOLUME_SPACING"].split(","))))
    print()
    print("A CT-like volume in HU (air, an elliptic body of soft tissue, one 15 mm lesion), resampled to 2 mm,")
    print("48^3 sliding window (overlap 0.25, batch 2), probabilities resampled back to the source grid. Seconds per")
    print("volume, median of %s runs after one warm-up. In-process: the worker's ExecuteVolume; through the worker:" % env["VOLUME_REPEATS"])
    print("InferVolume over loopback gRPC (float32 voxels in 4 MiB chunks, label map and probability map back).")
    if not any(d["device"].startswith("cuda") for d in vbare):
        print()
        print("**No CUDA device in this run: every 3D figure below is CPU.**")
    print()
    print("| Path | Device | Wall s | Resample s | Inference s | Resample back s | Send MB/s | Receive MB/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for d in vbare:
        print("| in-process | %s | %.2f | %.2f | %.2f | %.2f | | |" % (d["device"], d["wall_s"], d["resample_s"],
              d["inference_s"], d["resample_back_s"]))
    for d in vgrpc:
        print("| worker | %s | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f |" % (d["device"], d["wall_s"], d["resample_s"],
              d["inference_s"], d["resample_back_s"], d["send_mb_per_s"], d["receive_mb_per_s"]))
    by = lambda rows, dev: next((d for d in rows if d["device"].startswith(dev)), None)
    for name, group in (("in-process", vbare), ("worker", vgrpc)):
        gpu, cpu_row = by(group, "cuda"), by(group, "cpu")
        if gpu and cpu_row:
            print()
            print("%s: CUDA / CPU wall time %.3f (%.1fx faster); sliding window alone %.1fx." % (
                name, gpu["wall_s"] / cpu_row["wall_s"], cpu_row["wall_s"] / gpu["wall_s"],
                cpu_row["inference_s"] / max(gpu["inference_s"], 1e-9)))
    print()
print("<details><summary>Commands</summary>")
print()
print("`$SCRATCH` is the run's scratch directory.")
print()
print("```sh")
print(open(env["COMMANDS"]).read().rstrip())
print("```")
print()
print("</details>")
print()
print("<details><summary>Raw results (JSON)</summary>")
print()
print("```json")
for r in rows:
    print(json.dumps(r))
print("```")
print()
print("</details>")
PY
cp "$SCRATCH/report.md" "$RESULTS_FILE"
cat "$SCRATCH/report.md"
say "report written to $RESULTS_FILE"
