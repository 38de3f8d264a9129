#!/usr/bin/env bash
# Two associations store one instance while a PostgreSQL session holds the
# patient's row: the first association's registration times out and it is
# refused with A700; the re-send, which arrived while the first was waiting,
# is answered Success. Its spool file must still be there, byte for byte.
#
# Timeline (seconds from the lock): statement timeout 6; A at ~0 times out at
# ~6; the lock goes at 9; B at ~4 waits (on A, or before the fix on the row)
# and commits before its own timeout. A may start up to 3 s late.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
node_up --set database.statement_timeout_ms=6000
GEN="$WORK/gen"
$PY "$IT_REPO/tools/gen_instances.py" "$GEN" --kind ct --count 2 >/dev/null
Y="$GEN/ct_00000.dcm"
X="$GEN/ct_00001.dcm"
send "$Y" >"$WORK/y.log" 2>&1 || { cat "$WORK/y.log"; fail "storing Y failed"; }
[ "$(sql "select count(*) from patients")" = 1 ] || fail "expected one patient row"

# A session holds P's row for 9 s.
PGAPPNAME=row_holder psql "$SECONDREAD_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 >"$WORK/holder.log" 2>&1 <<'SQL' &
BEGIN;
SELECT id FROM patients FOR UPDATE;
SELECT pg_sleep(9);
COMMIT;
SQL
holder=$!
it_also_on_exit "kill $holder 2>/dev/null"
for _ in $(seq 100); do
  [ "$(sql "select count(*) from pg_stat_activity where application_name = 'row_holder' and query like '%pg_sleep%' and state = 'active'")" = 1 ] && break
  sleep 0.05
done
[ "$(sql "select count(*) from pg_stat_activity where application_name = 'row_holder' and state = 'active'")" = 1 ] ||
  fail "the lock holder did not start"

SEND_OPTS=-v send "$X" >"$WORK/a.log" 2>&1 &
pa=$!
sleep 4
SEND_OPTS=-v send "$X" >"$WORK/b.log" 2>&1 &
pb=$!
wait "$pa" || true
wait "$pb" || true
wait "$holder" || fail "the lock holder failed: $(cat "$WORK/holder.log")"

grep -q "Received Store Response (Success)" "$WORK/a.log" &&
  fail "A was answered Success: its registration never waited on the locked row"
grep -q "Received Store Response (Success)" "$WORK/b.log" || { cat "$WORK/b.log"; fail "B was not answered Success"; }
uid=$(dicom_uid "$X")
name=$(sql "select spool_name from instances where sop_instance_uid = '$uid'")
[ -n "$name" ] || fail "X has no row"
[ -f "$(spool_path "$name")" ] || fail "B was answered Success and X has its row, but its spool file is gone"
[ "$(dataset_sha "$(spool_path "$name")")" = "$(dataset_sha "$X")" ] || fail "the spool copy of X differs from what was sent"
pass "a re-send during a pending registration keeps its file: row and spool file both there"

grep -q "Refused: OutOfResources" "$WORK/a.log" || { grep "Store Response" "$WORK/a.log"; fail "A's statement timeout was not answered A700"; }
[ "$(metric 'secondread_scp_instances_refused_total{reason="database"}')" -ge 1 ] || fail "the timeout was not counted as a database refusal"
pass "a statement timeout is answered A700, so the sender retries"
finish
