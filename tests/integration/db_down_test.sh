#!/usr/bin/env bash
# PostgreSQL stops while storescu sends: the sender gets failure statuses,
# never a Success without a registry row; after the restart, resending works.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
node_up
GEN="$WORK/gen"
$PY "$IT_REPO/tools/gen_instances.py" "$GEN" --kind ct --count 150 >/dev/null
mapfile -t files < <(ls "$GEN"/*.dcm)

pg_stop() { as_pg "$SECONDREAD_PG_BIN/pg_ctl" -D "$SECONDREAD_PGDATA" -m fast -w stop >/dev/null; }
pg_start() {
  as_pg "$SECONDREAD_PG_BIN/pg_ctl" -D "$SECONDREAD_PGDATA" -l "$SECONDREAD_PGDATA/../postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $SECONDREAD_PG_PORT -c unix_socket_directories='' -c max_connections=200" \
    start >/dev/null
}

# Stream with --no-halt and stop the database part-way through.
SEND_OPTS="-v --no-halt" send "${files[@]}" >"$WORK/stream.log" 2>&1 &
spid=$!
sleep 0.15
pg_stop
wait "$spid" || true  # with --no-halt storescu exits 0 despite failures
grep -q "Store Response (Refused: OutOfResources)" "$WORK/stream.log" || { tail "$WORK/stream.log"; fail "no A700"; }
[ "$(metric 'secondread_scp_instances_refused_total{reason="database"}')" -ge 1 ] || fail "database refusals not counted"
code=$(curl -s -o /dev/null -w '%{http_code}' "${SECONDREAD_METRICS_URL%/metrics}/readyz")
[ "$code" = 503 ] || fail "readyz answered $code with the database down"
grep -q '"event":"registry_failed"' "$SECONDREAD_LOG" || fail "no log line for the database failure"
pass "database down: A700, counted, logged, not ready"

# While it is down, a single store fails too, and leaves no spool object.
before=$(find "$SECONDREAD_SPOOL/objects" -type f | wc -l)
SEND_OPTS=-v send "${files[-1]}" >"$WORK/one.log" 2>&1 && fail "stored with the database down"
[ "$(find "$SECONDREAD_SPOOL/objects" -type f | wc -l)" = "$before" ] || fail "a refused store left a spool object"
pass "refused store leaves no spool object"

pg_start
# Every Success the sender saw has its row.
mapfile -t acked < <(awk '/Sending file:/ { f = $NF } /Received Store Response \(Success\)/ { print f }' "$WORK/stream.log")
for f in "${acked[@]}"; do
  [ "$(sql "select count(*) from instances where sop_instance_uid = '$(dicom_uid "$f")'")" = 1 ] ||
    fail "acknowledged instance $f has no row"
done
pass "${#acked[@]} acknowledged instances all registered"

# Resending everything now works (the pool replaces its dead connections).
send "${files[@]}" >"$WORK/resend.log" 2>&1 || { tail "$WORK/resend.log"; fail "resend after restart failed"; }
[ "$(sql "select count(*) from instances")" = "${#files[@]}" ] || fail "not all instances after resend"
curl -fsS "${SECONDREAD_METRICS_URL%/metrics}/readyz" >/dev/null || fail "not ready after the restart"
pass "after restart all ${#files[@]} instances stored"
finish
