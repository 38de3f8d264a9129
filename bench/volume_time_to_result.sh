#!/usr/bin/env bash
# Volume time to result: a generated CT series (300 slices of 512 x 512 by
# default) with one lesion goes from storescu to the node; the reference
# volume model (synthetic-lesion3d-ct) reads it on a CPU worker; the node's
# SEG, TID 1500 SR and key-slice Secondary Capture land in Orthanc as the
# PACS. Prints the time from the release of the sending association to the
# PACS accepting the last object, broken down by stage, and a baseline
# measured in the same run: the same work done standalone, in-process, with
# no node, database, network or PACS (volume_bench reading the series into a
# volume, plus inference_bench running the model on a volume of the same
# shape through the worker's own ExecuteVolume).
#
#   bench/volume_time_to_result.sh [RESULTS_MD]
#
# Needs a build with secondread, secondread-worker, volume_bench and
# inference_bench (cmake --build build --target ...). Prints a Markdown
# report and writes it to RESULTS_MD when given. Settings (environment):
#   BENCH_SLICES (300), BENCH_ROWS (512), BENCH_COLS (512),
#   BENCH_PIXEL_SPACING (0.7), BENCH_SLICE_SPACING (1.0): the series;
#   BENCH_THREADS (nproc): LibTorch threads of the worker and the baseline;
#   BENCH_BASELINE (1): 0 skips the standalone baseline;
#   BENCH_KEEP (0): 1 keeps the scratch directory (logs, metrics, series).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT_MD=${1:-}
SLICES=${BENCH_SLICES:-300}
ROWS=${BENCH_ROWS:-512}
COLS=${BENCH_COLS:-512}
PIXEL=${BENCH_PIXEL_SPACING:-0.7}
SLICE_MM=${BENCH_SLICE_SPACING:-1.0}
THREADS=${BENCH_THREADS:-$(nproc)}
MODEL=synthetic-lesion3d-ct
source "$REPO/tests/integration/lib/common.sh"
source "$REPO/tests/integration/lib/orthanc.sh"
source "$REPO/tests/integration/lib/results.sh"
TEST_NAME=volume_time_to_result
it_setup "$(mktemp -d "${TMPDIR:-/tmp}/secondread-vttr.XXXXXX")"
if [ "${BENCH_KEEP:-0}" = 1 ]; then
  trap 'rc=$?; orthanc_stop "$WORK/orthanc"; rm -rf "$WORK.keep"; cp -r "$WORK" "$WORK.keep" 2>/dev/null; (exit $rc); it_cleanup' EXIT
else
  trap 'rc=$?; orthanc_stop "$WORK/orthanc"; (exit $rc); it_cleanup' EXIT
fi
VOLUME_BENCH=$BUILD_DIR/bench/volume_bench
INFERENCE_BENCH=$BUILD_DIR/bench/inference_bench
for b in "$BUILD_DIR/cmd/secondread/secondread" "$BUILD_DIR/cmd/secondread-worker/secondread-worker" \
  "$VOLUME_BENCH" "$INFERENCE_BENCH"; do
  [ -x "$b" ] || fail "$b is not built"
done
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# The series: gen_series.py's geometry (axial, one file per slice) with the
# pixels replaced by a CT-like image the reference model was trained for:
# air, an elliptic body of soft tissue (40 HU, noise of 8 HU) and one
# 15 mm sphere at 110 HU in it. The generator's own values are a gradient
# over thousands of HU, which the model's window (40 +- 125 HU) would clip.
log "generating a ${SLICES} x ${ROWS} x ${COLS} CT series"
t0=$(date +%s.%N)
$PY "$REPO/tools/gen_series.py" "$WORK/ct" --modality CT --orientation axial --slices "$SLICES" --rows "$ROWS" \
  --columns "$COLS" --pixel-spacing "$PIXEL,$PIXEL" --spacing "$SLICE_MM" --seed 11 >/dev/null
LESION=$($PY - "$WORK/ct" <<'PY'
import json, os, sys
import numpy as np
import pydicom
d = sys.argv[1]
g = json.load(open(os.path.join(d, "manifest.json")))
sz, sy, sx = g["spacing"]
depth, rows, cols = g["depth"], g["rows"], g["columns"]
origin, row, col, normal = (np.array(g[k], float) for k in ("origin", "row", "column", "normal"))
# The lesion: right of the centre, in the body, at mid-depth.
ci, cj, ck = cols * 0.38, rows * 0.55, (depth - 1) / 2
centre = origin + ci * sx * row + cj * sy * col + ck * sz * normal
radius, rng = 15.0, np.random.default_rng(5)
jj, ii = np.mgrid[0:rows, 0:cols].astype(np.float32)
body = ((ii - cols / 2) / (cols * 0.45)) ** 2 + ((jj - rows / 2) / (rows * 0.35)) ** 2 <= 1
for f in sorted(os.listdir(d)):
    if not f.endswith(".dcm"):
        continue
    path = os.path.join(d, f)
    ds = pydicom.dcmread(path)
    pos = np.array([float(v) for v in ds.ImagePositionPatient])
    pts = pos[None, None, :] + ii[..., None] * sx * row + jj[..., None] * sy * col
    inside = np.linalg.norm(pts - centre, axis=-1) <= radius
    hu = np.where(body, 40.0 + rng.normal(0, 8, body.shape), -1000.0)
    hu[inside] = 110.0 + rng.normal(0, 8, int(inside.sum()))
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    stored = np.round((hu - intercept) / slope)
    dtype = np.int16 if int(ds.PixelRepresentation) == 1 else np.uint16
    info = np.iinfo(dtype)
    ds.PixelData = np.clip(stored, info.min, info.max).astype(dtype).tobytes()
    ds.save_as(path)
print("%.2f,%.2f,%.2f,%g" % (tuple(centre) + (radius,)))
PY
)
GEN_S=$(echo "$(date +%s.%N) - $t0" | bc)
SERIES_MB=$(du -sm "$WORK/ct" | cut -f1)
log "series written in ${GEN_S}s (${SERIES_MB} MB); lesion centre and radius (mm): $LESION"

# A worker on the committed model repository with every CPU; the node with
# a volume rule, exporting to Orthanc. dev-up's own worker is not started.
worker_up --set "cpu.threads=$THREADS"
cat >"$WORK/routing.yaml" <<YAML
routing:
  rules:
    - name: ct-volume
      input: volume
      match: {modalities: [CT]}
      series: {min_slices: 10}
      models: [{name: $MODEL}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
YAML
ORTHANC_DIR="$WORK/orthanc"
ORTHANC_DICOM=1
ORTHANC_DICOM_PORT=$(free_port)
export ORTHANC_DICOM ORTHANC_DICOM_PORT
IT_WORKER=0 node_up --pacs "ORTHANC@127.0.0.1:$ORTHANC_DICOM_PORT" --routing "$WORK/routing.yaml" \
  --set "inference.endpoints=[$SECONDREAD_WORKER_ADDR]" --set "inference.volume_call_timeout_ms=3600000"
orthanc_start "$ORTHANC_DIR" secondread SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" || fail "Orthanc did not start"

# One volume of the same shape through the worker first, discarded: the
# baseline's first run is a warm-up too (TorchScript profiles its first
# calls at new shapes, and the worker has run only one window at load), so
# that the read is timed on a worker as warm as the baseline's model.
log "warming the worker up with one ${SLICES} x ${ROWS} x ${COLS} volume"
"$INFERENCE_BENCH" volume --target "$SECONDREAD_WORKER_ADDR" --model "$MODEL" --repeats 0 \
  --shape "$SLICES,$ROWS,$COLS" --spacing "$SLICE_MM,$PIXEL,$PIXEL" >"$WORK/worker-warmup.json" \
  2>"$WORK/worker-warmup.log" || fail "warming the worker up: $(tail -n 3 "$WORK/worker-warmup.log")"
curl -fsS "$SECONDREAD_WORKER_METRICS_URL" >"$WORK/worker-metrics-before.txt"

log "sending the series"
t_send=$(date +%s%3N)
send "$WORK"/ct/*.dcm >/dev/null 2>&1 || fail "storescu"
# storescu returns after A-RELEASE-RP: the association's release.
t_release=$(date +%s%3N)
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 1 3600
[ "$(sql "SELECT state FROM reads WHERE input = 'volume'")" = done ] ||
  fail "the volume read did not finish: $(sql "SELECT state, error FROM reads WHERE input = 'volume'")"
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" 1 600
KINDS=$(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects")
log "read done, exported ($KINDS)"
# Orthanc must hold every object the node wrote.
while read -r kind uid; do
  n=$(curl -fsS -X POST "$ORTHANC_URL/tools/lookup" -d "$uid" |
    $PY -c 'import json,sys; print(sum(1 for x in json.load(sys.stdin) if x["Type"] == "Instance"))')
  [ "$n" = 1 ] || fail "Orthanc does not hold the $kind"
done < <(sql "SELECT kind || ' ' || sop_instance_uid FROM result_objects")

curl -fsS "$SECONDREAD_METRICS_URL" >"$WORK/node-metrics.txt"
curl -fsS "$SECONDREAD_WORKER_METRICS_URL" >"$WORK/worker-metrics.txt"
sql "SELECT extract(epoch FROM r.last_instance_at) * 1000, extract(epoch FROM r.triggered_at) * 1000,
            extract(epoch FROM r.started_at) * 1000, extract(epoch FROM r.done_at) * 1000,
            extract(epoch FROM e.sent_at) * 1000, r.flagged,
            (SELECT count(*) FROM read_instances ri WHERE ri.read_ref = r.id)
     FROM reads r JOIN exports e ON e.read_ref = r.id
     WHERE r.input = 'volume' AND e.state = 'sent'" | tr '|' '\t' >"$WORK/read.tsv"
grep '"read_finished"' "$NODE/log/secondread.log" | tail -n 1 >"$WORK/read_finished.json" || true

# The baseline, with the node and the worker idle: the same work standalone.
: >"$WORK/volume_bench.json"
: >"$WORK/bare.json"
if [ "${BENCH_BASELINE:-1}" = 1 ]; then
  log "baseline: the series read into a volume in-process (volume_bench)"
  "$VOLUME_BENCH" "$WORK/ct" 1 >"$WORK/volume_bench.json"
  log "baseline: the model on a ${SLICES} x ${ROWS} x ${COLS} volume in-process (inference_bench volume)"
  "$INFERENCE_BENCH" volume --model-dir "$REPO/tools/models/repository/$MODEL" --device cpu --threads "$THREADS" \
    --repeats 1 --shape "$SLICES,$ROWS,$COLS" --spacing "$SLICE_MM,$PIXEL,$PIXEL" \
    >"$WORK/bare.json" 2>"$WORK/bare.log" || fail "inference_bench volume: $(tail -n 3 "$WORK/bare.log")"
fi

$PY - "$WORK" "$t_send" "$t_release" "$OUT_MD" "$SLICES" "$ROWS" "$COLS" "$PIXEL" "$SLICE_MM" "$THREADS" \
  "$SERIES_MB" "$KINDS" <<'PY'
import json, os, platform, re, sys, time
work, t_send, t_release, out_md, slices, rows, cols, pixel, slice_mm, threads, series_mb, kinds = sys.argv[1:]
t_send, t_release = float(t_send), float(t_release)

def metrics(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out

node = metrics(os.path.join(work, "node-metrics.txt"))
worker = metrics(os.path.join(work, "worker-metrics.txt"))
# The warm-up volume is in the worker's sums too; only the read's part counts.
for k, v in metrics(os.path.join(work, "worker-metrics-before.txt")).items():
    if k in worker:
        worker[k] -= v
stage = lambda s: node.get('secondread_volume_stage_duration_seconds_sum{stage="%s"}' % s, 0.0)
step = lambda s: sum(v for k, v in worker.items()
                     if k.startswith("secondread_inference_volume_step_duration_seconds_sum{") and 'step="%s"' % s in k)
sent_b = node.get('secondread_volume_transfer_bytes_total{direction="sent"}', 0.0)
recv_b = node.get('secondread_volume_transfer_bytes_total{direction="received"}', 0.0)
last, trig, start, done, sent, flagged, n = open(os.path.join(work, "read.tsv")).read().split("\t")
last, trig, start, done, sent = map(float, (last, trig, start, done, sent))
fin = {}
try:
    fin = json.loads(open(os.path.join(work, "read_finished.json")).read() or "{}")
except ValueError:
    pass
total = (sent - t_release) / 1000
transfer = stage("transfer")
rows_ = [
    ("C-STORE of the series (storescu, before the release; not in the total)", (t_release - t_send) / 1000, ""),
    ("completeness and queue (release -> read claimed)", (start - t_release) / 1000, ""),
    ("decode (pixel data, in the decoder process)", stage("decode"), ""),
    ("assembly (headers, geometry checks, placing values)", stage("assemble"), ""),
    ("transfer (voxels to the worker, maps back)", transfer,
     "%.0f MB sent + %.0f MB received, %.0f MB/s" % (sent_b / 1e6, recv_b / 1e6,
                                                     (sent_b + recv_b) / 1e6 / transfer if transfer else 0)),
    ("worker: resample to 2 mm and back", stage("resample"),
     "to the model grid %.2f s, back to the source grid %.2f s" % (step("resample"), step("resample_back"))),
    ("worker: inference (sliding window)", stage("inference"), ""),
    ("SEG / SR / SC writing (lesions, objects, durable files)", stage("results"), ""),
    ("commit and export (read done -> PACS accepted the last object)", (sent - done) / 1000, ""),
]
parts = sum(v for name, v, _ in rows_[1:])
rows_.append(("other (InferVolume call overhead, claims, commits)", total - parts,
              "call other %.2f s" % (fin.get("call_other_ms", 0) / 1000)))
cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
vb = open(os.path.join(work, "volume_bench.json")).read().strip()
bare = open(os.path.join(work, "bare.json")).read().strip()
lines = []
lines.append("- date: %s; machine: %d CPUs (%s), %s; load average at end: %s" % (
    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.cpu_count(), cpu, platform.platform(),
    " ".join(open("/proc/loadavg").read().split()[:3])))
lines.append("- series: CT, %s slices of %s x %s, %s mm pixels, %s mm slices, %s MB on disk; one 15 mm lesion at 110 HU in 40 HU soft tissue" % (
    slices, rows, cols, pixel, slice_mm, series_mb))
lines.append("- model: synthetic-lesion3d-ct on CPU, %s LibTorch threads; objects exported: %s; read flagged: %s" % (
    threads, kinds, "yes" if flagged == "t" else "no"))
lines.append("")
lines.append("| Stage | Seconds | Notes |")
lines.append("|---|---:|---|")
for name, v, note in rows_:
    lines.append("| %s | %.2f | %s |" % (name, v, note))
lines.append("| **time to result (release -> PACS accepted the last object)** | **%.2f** | |" % total)
if vb and bare:
    vb, bare = json.loads(vb), json.loads(bare)
    read_s = vb["volume_s"]
    floor = read_s + bare["wall_s"]
    lines.append("")
    lines.append("Baseline (same run, node and worker idle): the same work standalone and in-process, "
                 "the series read into a volume by volume_bench (%.2f s) plus the model on a volume of the same "
                 "shape through the worker's ExecuteVolume in inference_bench (%.2f s: resample %.2f, inference "
                 "%.2f, resample back %.2f) = %.2f s. Time to result / baseline = **%.2fx**." % (
                     read_s, bare["wall_s"], bare["resample_s"], bare["inference_s"], bare["resample_back_s"],
                     floor, total / floor))
    lines.append("")
    lines.append("volume_bench: `%s`" % json.dumps(vb))
lines.append("")
lines.append("read_finished: `%s`" % json.dumps({k: round(v, 1) for k, v in fin.items() if k.endswith("_ms") or k.endswith("_bytes")}))
text = "\n".join(lines) + "\n"
print(text)
if out_md:
    open(out_md, "w").write(text)
PY
