#!/usr/bin/env bash
# Time to result: from the release of the association that sent a study to
# the PACS (Orthanc) accepting its SR and Secondary Capture, with the
# reference model on CPU and per-instance triggering. Reports p50/p95 and a
# breakdown per stage for single-image CR studies sent one by one, multi-image
# studies, and a burst of studies sent at once.
#
#   bench/time_to_result.sh [RESULTS_MD] [STUDIES] [BURST]
#
# Needs a build (scripts/test or cmake --build build). Prints a Markdown
# report and writes it to RESULTS_MD when given.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT_MD=${1:-}
STUDIES=${2:-50}
BURST=${3:-20}
MULTI=${BENCH_MULTI_STUDIES:-10}
MULTI_IMAGES=${BENCH_MULTI_IMAGES:-4}
export IT_WORKER=1
source "$REPO/tests/integration/lib/common.sh"
source "$REPO/tests/integration/lib/orthanc.sh"
source "$REPO/tests/integration/lib/results.sh"
it_setup "$(mktemp -d /tmp/secondread-ttr.XXXXXX)"
trap 'rc=$?; orthanc_stop "$WORK/orthanc"; (exit $rc); it_cleanup' EXIT

# Per-instance triggering for single images; multi-image studies complete on
# the sender's expected instance count (or 2 s of silence). The baseline is
# what a silence timer gives (MONAI Deploy waits 5 s, Orthanc 60 s): the same
# single-image studies, sent as AE SILENCE5, are read after 5 s of silence.
cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: single-image
      match: {modalities: [CR], body_parts: [CHEST], calling_aes: [STORESCU]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: instance}
    - name: silence-baseline
      match: {modalities: [CR], body_parts: [CHEST], calling_aes: [SILENCE5]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: silence, silence_seconds: 5, expected_count: false}
    - name: multi-image
      match: {modalities: [DX], body_parts: [CHEST]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: silence, silence_seconds: 2, expected_count: true}
YAML
results_up --routing "$WORK/routing.yaml" --set dispatch.concurrency=2 \
  --set 'dicom.allowed_callers=[STORESCU, ORTHANC, SILENCE5]'
BASELINE=${BENCH_BASELINE_STUDIES:-10}
$PY "$REPO/tools/gen_study.py" "$WORK/single" --studies "$STUDIES" --lesion random --modality CR --seed 1 >/dev/null
$PY "$REPO/tools/gen_study.py" "$WORK/multi" --studies "$MULTI" --images-per-study "$MULTI_IMAGES" --lesion random \
  --modality DX --seed 2 >/dev/null
$PY "$REPO/tools/gen_study.py" "$WORK/baseline" --studies "$BASELINE" --lesion random --modality CR --seed 4 >/dev/null
$PY "$REPO/tools/gen_study.py" "$WORK/burst" --studies "$BURST" --lesion random --modality CR --seed 3 >/dev/null

now_ms() { date +%s%3N; }
RELEASES="$WORK/releases.tsv"
: >"$RELEASES"
send_study() {  # dir group
  local uid
  uid=$($PY -c "import pydicom,sys; print(pydicom.dcmread(sys.argv[1], stop_before_pixels=True).StudyInstanceUID)" \
    "$(ls "$1"/*.dcm | head -n 1)")
  send "$1"/*.dcm >/dev/null 2>&1 || fail "storescu $1"
  # storescu returns after A-RELEASE-RP: this is the association's release.
  printf '%s\t%s\t%s\n' "$2" "$uid" "$(now_ms)" >>"$RELEASES"
}
wait_exported() {  # group count
  wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" "$2" 600
}

echo "single-image studies, one by one" >&2
sent=0
for d in "$WORK"/single/study-*; do
  send_study "$d" single
  sent=$((sent + 1))
  # One by one: the next study is sent once this one's results are in.
  wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" "$sent" 120
done
echo "baseline: single-image studies under a 5 s silence timer, one by one" >&2
for d in "$WORK"/baseline/study-*; do
  SEND_AET=SILENCE5 send_study "$d" baseline
  sent=$((sent + 1))
  wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" "$sent" 120
done
echo "multi-image studies, one by one" >&2
for d in "$WORK"/multi/study-*; do
  send_study "$d" multi
  sent=$((sent + 1))
  wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" "$sent" 120
done
echo "burst of $BURST studies at once" >&2
pids=()
for d in "$WORK"/burst/study-*; do send_study "$d" burst & pids+=($!); done
wait "${pids[@]}"
sent=$((sent + BURST))
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" "$sent" 600

# Join the release times with the database's timestamps.
sql "SELECT s.study_instance_uid,
            extract(epoch FROM e.sent_at) * 1000,
            extract(epoch FROM r.last_instance_at) * 1000,
            extract(epoch FROM r.triggered_at) * 1000,
            extract(epoch FROM r.started_at) * 1000,
            r.decode_ms, r.inference_ms, r.results_ms,
            extract(epoch FROM r.done_at) * 1000,
            (SELECT count(*) FROM read_instances ri WHERE ri.read_ref = r.id)
     FROM exports e JOIN reads r ON r.id = e.read_ref JOIN studies s ON s.id = r.study_ref
     WHERE e.state = 'sent'" | tr '|' '\t' >"$WORK/reads.tsv"

$PY - "$RELEASES" "$WORK/reads.tsv" "$OUT_MD" "$STUDIES" "$BURST" "$MULTI" "$MULTI_IMAGES" "$BASELINE" <<'PY'
import os, platform, statistics, subprocess, sys, time
rel_file, reads_file, out_md, n_single, n_burst, n_multi, multi_images, n_base = sys.argv[1:]
releases = {}
for line in open(rel_file):
    g, uid, t = line.rstrip("\n").split("\t")
    releases[uid] = (g, float(t))
rows = {}
for line in open(reads_file):
    f = line.rstrip("\n").split("\t")
    uid = f[0]
    sent, last, trig, start, dec, inf, res, done, n = f[1:]
    # A multi-image study has one read; single-image studies one per image.
    rows.setdefault(uid, []).append(dict(sent=float(sent), last=float(last), trig=float(trig), start=float(start),
                                         dec=float(dec), inf=float(inf), res=float(res), done=float(done), n=int(n)))
def pct(v, p):
    v = sorted(v)
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)
groups = {}
for uid, (g, t_rel) in releases.items():
    rs = rows.get(uid)
    if not rs:
        continue
    r = max(rs, key=lambda x: x["sent"])
    groups.setdefault(g, []).append(dict(total=r["sent"] - t_rel,
        wait=max(0.0, r["trig"] - t_rel) if g in ("multi", "baseline") else max(0.0, r["trig"] - r["last"]),
        queue=r["start"] - r["trig"], decode=r["dec"], inference=r["inf"], results=r["res"],
        export=r["sent"] - r["done"]))
cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
lines = []
lines.append("- date: %s; machine: %d CPUs (%s), %s; load average at end: %s" % (
    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.cpu_count(), cpu, platform.platform(),
    " ".join(open("/proc/loadavg").read().split()[:3])))
lines.append("- studies: %s single-image CR one by one (per-instance trigger); %s single-image CR one by one under a 5 s silence timer (baseline); %s DX studies of %s images one by one (expected-count trigger); a burst of %s single-image CR studies sent in parallel" % (n_single, n_base, n_multi, multi_images, n_burst))
lines.append("")
lines.append("| Group | Studies | p50 s | p95 s | max s | wait ms p50 | queue ms p50 | decode ms p50 | inference ms p50 | results ms p50 | export ms p50 |")
lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
names = {"single": "single-image, per-instance trigger", "baseline": "single-image, 5 s silence timer (baseline)",
         "multi": "4-image, expected-count trigger", "burst": "burst of single-image studies"}
for g in ("single", "baseline", "multi", "burst"):
    v = groups.get(g, [])
    if not v:
        continue
    tot = [x["total"] / 1000 for x in v]
    med = lambda k: statistics.median([x[k] for x in v])
    lines.append("| %s | %d | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |" % (
        names[g], len(v), pct(tot, 50), pct(tot, 95), max(tot), med("wait"), med("queue"), med("decode"),
        med("inference"), med("results"), med("export")))
single = [x["total"] / 1000 for x in groups.get("single", [])]
if single:
    p95 = pct(single, 95)
    lines.append("")
    lines.append("Target p95 <= 3 s for single-image studies: %s (p95 %.2f s, %.2fx the target)." % (
        "MET" if p95 <= 3 else "NOT MET", p95, p95 / 3))
    base = [x["total"] / 1000 for x in groups.get("baseline", [])]
    if base:
        lines.append("Against the 5 s silence timer measured in the same run: p50 %.2f s vs %.2f s (%.3fx), p95 %.2f s vs %.2f s (%.3fx)." % (
            pct(single, 50), pct(base, 50), pct(single, 50) / pct(base, 50), p95, pct(base, 95), p95 / pct(base, 95)))
text = "\n".join(lines) + "\n"
print(text)
if out_md:
    open(out_md, "w").write(text)
PY
