#!/usr/bin/env bash
# PostgreSQL crashes (pg_ctl stop -m immediate) while storescu streams and
# comes back; the node keeps running. With synchronous_commit off the crash
# loses the newest rows of instances that were answered Success. Every
# acknowledged instance must get its row and its read again, without a node
# restart.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: every-ct
      match: {modalities: [CT]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: instance}
YAML
node_up --routing "$WORK/routing.yaml"
node_pid=$SECONDREAD_PID
# The WAL writer writes each completed WAL page at once, so a crash loses
# only the commits in the last, partial page: usually a row or two, sometimes
# none. Crash rounds go on until one lost an acknowledged row (at most 6).
sql "ALTER SYSTEM SET wal_writer_delay = '10s'" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null

pg_crash() { as_pg "$SECONDREAD_PG_BIN/pg_ctl" -D "$SECONDREAD_PGDATA" -m immediate -w stop >/dev/null; }
pg_start() {
  as_pg "$SECONDREAD_PG_BIN/pg_ctl" -D "$SECONDREAD_PGDATA" -l "$SECONDREAD_PGDATA/../postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $SECONDREAD_PG_PORT -c unix_socket_directories='' -c max_connections=200" \
    start >/dev/null
}
restored() {  # rows the node put back from the spool while running
  grep -a '"event":"spool_rescanned"' "$SECONDREAD_LOG" | $PY -c '
import json, sys
print(sum(json.loads(l)["registered"] for l in sys.stdin))'
}

all_acked=0
for round in 1 2 3 4 5 6; do
  GEN="$WORK/gen$round"
  $PY "$IT_REPO/tools/gen_instances.py" "$GEN" --kind ct --count 40 --seed "$round" >/dev/null
  mapfile -t files < <(ls "$GEN"/*.dcm)
  SEND_OPTS="-v --no-halt" send "${files[@]}" >"$WORK/stream$round.log" 2>&1 &
  spid=$!
  # Crash once part of the stream has been acknowledged.
  for _ in $(seq 300); do
    [ "$(grep -c "Received Store Response (Success)" "$WORK/stream$round.log")" -ge $((RANDOM % 10 + 8)) ] && break
    sleep 0.05
  done
  pg_crash
  sleep 0.5
  pg_start
  wait "$spid" || true  # with --no-halt storescu exits 0 despite failures
  mapfile -t acked < <(awk '/Sending file:/ { f = $NF } /Received Store Response \(Success\)/ { print f }' \
    "$WORK/stream$round.log")
  [ "${#acked[@]}" -ge 8 ] || { tail "$WORK/stream$round.log"; fail "round $round: only ${#acked[@]} acknowledged"; }
  all_acked=$((all_acked + ${#acked[@]}))
  values=""
  for f in "${acked[@]}"; do values+="${values:+,}('$(dicom_uid "$f")')"; done

  # Every acknowledged instance: a row and a read, soon.
  check="SELECT count(*) FROM (VALUES $values) AS a(uid)
         JOIN instances i ON i.sop_instance_uid = a.uid
         WHERE EXISTS (SELECT 1 FROM read_instances ri WHERE ri.instance_ref = i.id)"
  deadline=$(( $(date +%s) + 60 ))
  until [ "$(sql "$check" 2>/dev/null)" = "${#acked[@]}" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      missing=$(sql "SELECT count(*) FROM (VALUES $values) AS a(uid)
                     WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.sop_instance_uid = a.uid)")
      fail "round $round: $missing of ${#acked[@]} acknowledged instances have no row; $(sql "$check") have a row and a read"
    fi
    sleep 0.5
  done
  while IFS= read -r name; do
    [ -f "$(spool_path "$name")" ] || fail "round $round: acknowledged instance $name has no spool file"
  done < <(sql "SELECT i.spool_name FROM (VALUES $values) AS a(uid) JOIN instances i ON i.sop_instance_uid = a.uid")
  [ "$(restored)" -ge 1 ] && break
done
kill -0 "$node_pid" 2>/dev/null || fail "the node is not running"
[ "$(grep -ac '"event":"node_started"' "$SECONDREAD_LOG")" = 1 ] || fail "the node restarted"
pass "$all_acked acknowledged instances in $round crash rounds each have a row, a spool file and a read, without a node restart"

# A crash did lose rows, and the node put them back from the spool.
[ "$(restored)" -ge 1 ] || fail "no crash lost a row in $round rounds, so this run proves nothing"
[ -z "$(sql "SELECT sop_instance_uid FROM instances GROUP BY sop_instance_uid HAVING count(*) > 1")" ] || fail "duplicate rows"
pass "crashes lost rows of acknowledged instances; $(restored) were re-registered from the spool while the node ran"
finish
