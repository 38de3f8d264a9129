#!/usr/bin/env bash
# One study over four parallel associations: every instance arrives once, the
# study and series exist once, and the study records its last arrival.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
node_up
GEN="$WORK/gen"
$PY "$IT_REPO/tools/gen_instances.py" "$GEN" --kind ct --count 40 >/dev/null
mapfile -t files < <(ls "$GEN"/*.dcm)
pids=()
for part in 0 1 2 3; do
  chunk=()
  for ((i = part; i < ${#files[@]}; i += 4)); do chunk+=("${files[$i]}"); done
  send "${chunk[@]}" >"$WORK/send.$part.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a parallel storescu failed"; done
[ "$(sql "select count(*) from instances")" = 40 ] || fail "expected 40 instances"
[ "$(sql "select count(*) from studies")" = 1 ] || fail "expected one study"
[ "$(sql "select count(*) from series")" = 1 ] || fail "expected one series"
[ "$(sql "select count(*) from patients")" = 1 ] || fail "expected one patient"
[ "$(sql "select count(distinct association_ref) from instances")" = 4 ] || fail "expected 4 associations"
[ "$(sql "select count(*) from studies s where s.last_received_at = (select max(received_at) from instances)")" = 1 ] ||
  fail "study last_received_at is not its last instance's arrival"
[ "$(sql "select sum(instances_stored) from associations where ended_at is not null")" = 40 ] ||
  fail "association bookkeeping"
for f in "${files[@]}"; do
  name=$(sql "select spool_name from instances where sop_instance_uid = '$(dicom_uid "$f")'")
  [ "$(dataset_sha "$(spool_path "$name")")" = "$(dataset_sha "$f")" ] || fail "spool copy differs for $f"
done
pass "40 instances over 4 associations, byte-identical, one study"
finish
