#!/usr/bin/env bash
# Study completeness and routing against the real node and PostgreSQL: each
# trigger (silence, association release, the sender's expected instance
# count, maximum wait, per instance), late instances ignored or re-read,
# image-count bounds, shadow mode, and studies no rule matches.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: silence
      match: {calling_aes: [SILENCE]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: silence, silence_seconds: 3, max_wait_seconds: 60, expected_count: false}
    - name: assoc
      match: {calling_aes: [ASSOC]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
    - name: count
      match: {calling_aes: [COUNT]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: silence, silence_seconds: 60, expected_count: true}
    - name: maxwait
      match: {calling_aes: [MAXW]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: silence, silence_seconds: 5, max_wait_seconds: 6, expected_count: false}
    - name: late
      match: {calling_aes: [LATE]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false, late_instances: reread}
    - name: bounds
      match: {calling_aes: [BOUNDS], min_images: 3}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60}
    - name: bounds-wide
      match: {calling_aes: [BOUNDS], min_images: 5}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60}
    - name: shadow
      match: {calling_aes: [SHADOW], series_description: "(?i)chest|pa|ap"}
      models: [{name: synthetic-nodule-demo}]
      mode: shadow
      priority: stat
      completeness: {trigger: instance}
YAML
# The export destination is a port nothing listens on, with two attempts, so
# clinical results end as dead letters.
IT_WORKER=1 node_up --routing "$WORK/routing.yaml" --pacs "NOBODY@127.0.0.1:$(free_port)" \
  --set 'dicom.allowed_callers=[STORESCU,SILENCE,ASSOC,COUNT,MAXW,LATE,BOUNDS,SHADOW]' \
  --set export.max_attempts=2 --set queue.backoff_base_ms=100 --set queue.maintenance_interval_ms=500

gen() {  # dir images
  $PY "$IT_REPO/tools/gen_study.py" "$WORK/$1" --studies 1 --images-per-study "$2" --lesion random --modality CR \
    --size 256 --seed "$RANDOM" >/dev/null
  echo "$WORK/$1/study-1"
}
uid_of() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['studies'][0]['study_uid'])" "$WORK/$1/manifest.json"; }
reads_of() {  # uid -> "trigger generation images" per read
  sql "SELECT r.trigger || ' ' || r.generation || ' ' || (SELECT count(*) FROM read_instances ri WHERE ri.read_ref = r.id)
       FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$1' ORDER BY r.id"
}

# Silence: nothing while instances may still come, a read 3 s after the last.
d=$(gen silence 2)
SEND_AET=SILENCE send "$d"/img-1.dcm >/dev/null 2>&1
SEND_AET=SILENCE send "$d"/img-2.dcm >/dev/null 2>&1
sleep 1
[ -z "$(reads_of "$(uid_of silence)")" ] || fail "silence rule triggered early"
wait_sql "SELECT count(*) FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of silence)'" 1 10
[ "$(reads_of "$(uid_of silence)")" = "silence 1 2" ] || fail "silence read: $(reads_of "$(uid_of silence)")"
pass "silence: one read of both images after the quiet period"

# Association release: at once on release, although silence is 60 s.
d=$(gen assoc 2)
SEND_AET=ASSOC send "$d"/img-1.dcm "$d"/img-2.dcm >/dev/null 2>&1
wait_sql "SELECT count(*) FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of assoc)'" 1 5
[ "$(reads_of "$(uid_of assoc)")" = "association 1 2" ] || fail "association read: $(reads_of "$(uid_of assoc)")"
pass "association release: read on release, not after the 60 s silence"

# Expected count: the third of three instances triggers, in separate associations.
d=$(gen count 3)
for f in "$d"/img-1.dcm "$d"/img-2.dcm; do SEND_AET=COUNT send "$f" >/dev/null 2>&1; done
sleep 1
[ -z "$(reads_of "$(uid_of count)")" ] || fail "count rule triggered before the last instance"
SEND_AET=COUNT send "$d"/img-3.dcm >/dev/null 2>&1
wait_sql "SELECT count(*) FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of count)'" 1 5
[ "$(reads_of "$(uid_of count)")" = "expected_count 1 3" ] || fail "count read: $(reads_of "$(uid_of count)")"
pass "expected instance count: read as soon as the sender's count arrived"

# Maximum wait: an instance every second keeps the study from going quiet.
d=$(gen maxw 8)
for k in 1 2 3 4 5 6 7 8; do SEND_AET=MAXW send "$d"/img-$k.dcm >/dev/null 2>&1; sleep 1; done
wait_sql "SELECT count(*) FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of maxw)'" 1 10
read=$(reads_of "$(uid_of maxw)" | head -n 1)
[ "${read%% *}" = max_wait ] || fail "max wait read: $read"
pass "maximum wait: read after 6 s although instances kept arriving ($read)"

# Late instances: the 'late' rule re-reads, the 'assoc' rule only counts them.
d=$(gen late 3)
SEND_AET=LATE send "$d"/img-1.dcm "$d"/img-2.dcm >/dev/null 2>&1
wait_sql "SELECT count(*) FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of late)'" 1 5
SEND_AET=LATE send "$d"/img-3.dcm >/dev/null 2>&1
wait_sql "SELECT count(*) FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of late)'" 2 5
[ "$(reads_of "$(uid_of late)" | tail -n 1)" = "association 2 3" ] || fail "re-read: $(reads_of "$(uid_of late)")"
$PY "$IT_REPO/tools/gen_study.py" "$WORK/assoc3" --studies 1 --images-per-study 3 --modality CR --size 256 --seed 7 >/dev/null
SEND_AET=ASSOC send "$WORK"/assoc3/study-1/img-1.dcm "$WORK"/assoc3/study-1/img-2.dcm >/dev/null 2>&1
wait_sql "SELECT count(*) FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of assoc3)'" 1 5
SEND_AET=ASSOC send "$WORK"/assoc3/study-1/img-3.dcm >/dev/null 2>&1
wait_sql "SELECT late_instances FROM study_candidates c JOIN studies s ON s.id = c.study_ref WHERE s.study_instance_uid = '$(uid_of assoc3)'" 1 5
[ "$(reads_of "$(uid_of assoc3)" | wc -l)" = 1 ] || fail "a late instance started a read under an 'ignore' rule"
pass "late instances: a new read (generation 2, all 3 images) where the rule says so, none otherwise"

# Image-count bounds: two images where one rule wants at least three and
# another at least five; the study is counted as unmatched once.
unmatched_before=$(metric secondread_pipeline_unmatched_studies_total)
d=$(gen bounds 2)
SEND_AET=BOUNDS send "$d"/img-1.dcm "$d"/img-2.dcm >/dev/null 2>&1
wait_sql "SELECT status FROM study_routing r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of bounds)'" unmatched 5
[ -z "$(reads_of "$(uid_of bounds)")" ] || fail "a study outside the image-count bounds was read"
pass "image-count bounds: recorded as unmatched with the reason, not read"

# No rule at all.
d=$(gen nomatch 1)
send "$d"/img-1.dcm >/dev/null 2>&1
wait_sql "SELECT reason FROM study_routing r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of nomatch)'" "no routing rule matches" 5
# The counter moves at the end of the tracker's transaction.
for _ in $(seq 1 60); do
  [ "$(metric secondread_pipeline_unmatched_studies_total)" -ge $((unmatched_before + 2)) ] && break
  sleep 0.5
done
sleep 1  # a double count would land in the same or the next cycle
[ "$(metric secondread_pipeline_unmatched_studies_total)" = $((unmatched_before + 2)) ] ||
  fail "unmatched counter moved by $(( $(metric secondread_pipeline_unmatched_studies_total) - unmatched_before )), want 2"
pass "a study no rule matches is recorded as unmatched; each unmatched study counted once"

# Shadow mode, STAT: read and kept, not put on the worklist, nothing exported.
d=$(gen shadow 1)
SEND_AET=SHADOW send "$d"/img-1.dcm >/dev/null 2>&1
wait_sql "SELECT r.state FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of shadow)'" done 60
[ "$(sql "SELECT r.priority || ' ' || r.mode FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of shadow)'")" = "0 shadow" ] ||
  fail "shadow read priority/mode"
[ "$(sql "SELECT count(*) FROM findings f JOIN reads r ON r.id = f.read_ref JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(uid_of shadow)'")" -ge 1 ] ||
  fail "shadow findings not kept"
[ "$(sql "SELECT count(*) FROM worklist_entries w JOIN studies s ON s.id = w.study_ref WHERE s.study_instance_uid = '$(uid_of shadow)'")" = 0 ] ||
  fail "a shadow read reached the worklist"
[ "$(sql "SELECT count(*) FROM exports e JOIN reads r ON r.id = e.read_ref WHERE r.mode = 'shadow'")" = 0 ] || fail "a shadow read was exported"
pass "shadow mode: findings kept, nothing on the worklist, nothing exported"

# A destination that never answers: each clinical export ends as a dead letter
# after its attempts, visible in the database and the metrics.
wait_sql "SELECT count(*) FROM reads WHERE state NOT IN ('done', 'not_applicable', 'failed')" 0 60
wait_sql "SELECT count(*) > 0 AND bool_and(state = 'dead' AND attempts = 2) FROM exports" t 60
dead=$(sql "SELECT count(*) FROM exports")
[ "$(sql "SELECT count(*) FROM jobs WHERE queue = 'export' AND state = 'discarded'")" = "$dead" ] || fail "export jobs not discarded"
for _ in $(seq 1 60); do [ "$(metric secondread_export_dead_letters)" = "$dead" ] && break; sleep 0.5; done
[ "$(metric secondread_export_dead_letters)" = "$dead" ] || fail "dead-letter gauge $(metric secondread_export_dead_letters), expected $dead"
[ "$(metric 'secondread_export_attempts_total{result="dead"}')" = "$dead" ] || fail "dead export attempts metric"
pass "an unreachable PACS: $dead exports became dead letters after 2 attempts, in the database and the metrics"
finish
