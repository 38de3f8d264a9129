#!/usr/bin/env bash
# The real worker process serving the reference model over gRPC on loopback:
# health, model listing with broken neighbours, concurrent clients with
# batching, refusals with the documented status codes, a client killed in
# flight, metrics, and a clean shutdown.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
WORKER_PROBE=${WORKER_PROBE:-$BUILD_DIR/tests/worker_probe}
MODEL=synthetic-nodule-demo

# The reference model beside two broken ones, which must not stop it.
REPO="$WORK/models"
mkdir -p "$REPO/broken-weights/1" "$REPO/broken-manifest/1"
cp -r "$IT_REPO/tools/models/repository/$MODEL" "$REPO/"
sed "s/^name: .*/name: broken-weights/" "$REPO/$MODEL/model.yaml" > "$REPO/broken-weights/model.yaml"
head -c 4096 /dev/urandom > "$REPO/broken-weights/1/model.pt"
printf 'name: broken-manifest\ninput: [\n' > "$REPO/broken-manifest/model.yaml"
cp "$REPO/$MODEL/1/model.pt" "$REPO/broken-manifest/1/model.pt"

worker_up --repo "$REPO" --set grpc.max_message_bytes=4MiB --set cpu.threads=2
ADDR=$SECONDREAD_WORKER_ADDR

"$WORKER_PROBE" health "$ADDR" >/dev/null || fail "health check"
curl -fsS -o /dev/null "$SECONDREAD_WORKER_READY_URL" || fail "readyz"
pass "grpc.health.v1 SERVING and /readyz ok"

"$WORKER_PROBE" list "$ADDR" "$MODEL" READY >/dev/null || fail "reference model not ready"
out=$("$WORKER_PROBE" list "$ADDR" broken-weights UNAVAILABLE) || fail "broken weights not reported"
grep -q "cannot load" <<<"$out" || fail "broken weights reason missing: $out"
out=$("$WORKER_PROBE" list "$ADDR" broken-manifest UNAVAILABLE) || fail "broken manifest not reported"
grep -q "YAML" <<<"$out" || fail "broken manifest reason missing: $out"
pass "broken models are UNAVAILABLE with reasons; the reference model serves"

out=$("$WORKER_PROBE" load "$ADDR" "$MODEL" 8 6 1) || fail "concurrent load: $out"
largest=$(echo "$out" | sed -n 's/.*largest_batch=\([0-9]*\).*/\1/p')
[ "${largest:-0}" -ge 2 ] || fail "8 concurrent clients were never batched together: $out"
out=$("$WORKER_PROBE" load "$ADDR" "$MODEL" 3 3 4) || fail "multi-image requests: $out"
pass "8 concurrent clients served and batched (largest batch $largest); multi-image requests"

"$WORKER_PROBE" errors "$ADDR" "$MODEL" > "$WORK/errors.txt" || { cat "$WORK/errors.txt"; fail "refusal codes"; }
pass "NOT_FOUND, INVALID_ARGUMENT and RESOURCE_EXHAUSTED as documented"

# A client killed with requests in flight must not hurt the worker.
"$WORKER_PROBE" load "$ADDR" "$MODEL" 6 40 4 > "$WORK/killed.txt" 2>&1 &
victim=$!
sleep 1.5
kill -KILL "$victim" 2>/dev/null || true
wait "$victim" 2>/dev/null || true
kill -0 "$SECONDREAD_WORKER_PID" || fail "worker died with its client"
"$WORKER_PROBE" load "$ADDR" "$MODEL" 2 3 1 >/dev/null || fail "worker stopped serving after a client was killed"
"$WORKER_PROBE" health "$ADDR" >/dev/null || fail "health after killed client"
pass "a client killed in flight leaves the worker serving"

metrics=$(curl -fsS "$SECONDREAD_WORKER_METRICS_URL")
for m in \
  "secondread_inference_requests_total{code=\"OK\",model=\"$MODEL\",version=\"1\"}" \
  "secondread_inference_requests_total{code=\"NOT_FOUND\",model=\"_unknown\",version=\"\"}" \
  "secondread_inference_requests_total{code=\"INVALID_ARGUMENT\",model=\"$MODEL\",version=\"1\"}" \
  "secondread_inference_queue_duration_seconds_count{model=\"$MODEL\",version=\"1\"}" \
  "secondread_inference_compute_duration_seconds_count{model=\"$MODEL\",version=\"1\"}" \
  "secondread_inference_batch_size_bucket{model=\"$MODEL\",version=\"1\",le=\"2\"}" \
  "secondread_inference_pending_requests{model=\"$MODEL\",version=\"1\"}" \
  "secondread_inference_model_ready{model=\"$MODEL\",version=\"1\"} 1" \
  "secondread_inference_model_ready{model=\"broken-weights\",version=\"1\"} 0"; do
  grep -qF "$m" <<<"$metrics" || fail "metric missing: $m"
done
pass "Triton-style metrics: requests by code, queue/compute histograms, batch sizes, pending, readiness"

# Nothing we log names patient data: the worker never receives any, and its
# log carries model names, codes and reasons only.
grep -q '"infer_refused"' "$SECONDREAD_WORKER_LOG" || fail "refusals are not logged"

kill -TERM "$SECONDREAD_WORKER_PID"
for _ in $(seq 1 100); do kill -0 "$SECONDREAD_WORKER_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SECONDREAD_WORKER_PID" 2>/dev/null && fail "worker did not stop on SIGTERM"
grep -q '"worker_stopped"' "$SECONDREAD_WORKER_LOG" || fail "no clean stop logged"
pass "SIGTERM stops the worker cleanly"
finish
