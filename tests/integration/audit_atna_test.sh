#!/usr/bin/env bash
# The IHE ATNA audit trail against a real audit record repository: Debian's
# rsyslog, run in the foreground with its own configuration, receiving syslog
# over TLS (imtcp, OpenSSL driver, x509/name with the node's certificate name
# as the permitted peer, octet-counted framing) and over UDP (imudp). The
# node (dev-up --tls --audit) with Orthanc as the PACS and a worker: every
# event is driven once (start, a study received, an unknown AE refused, a
# TLS handshake refused, an export to Orthanc, a worklist search, a study
# opened and an image viewed, a good and a bad token, a forbidden request,
# stop) and must arrive, and every message must be valid against the DICOM
# audit message schema (audit/schema/dicom-audit-message.rnc, converted by
# trang, checked by xmllint). rsyslog is then stopped while events happen
# and started again: every message recorded arrives, none twice. Last, the
# node restarts with audit.transport udp and its start arrives over UDP.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
source "$IT_REPO/scripts/lib/tls.sh"
it_setup "$@"
ARR="$WORK/arr"
mkdir -p "$ARR/work" "$NODE/tls"
it_also_on_exit 'arr_stop; [ -n "${ORTHANC_DIR:-}" ] && orthanc_stop "$ORTHANC_DIR"'

for tool in rsyslogd trang xmllint; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/bootstrap installs it)"
done

# The node's CA, made before dev-up (which keeps it), issues the repository's
# certificate too.
make_ca "$NODE/tls" ca "/O=secondread development/CN=secondread development CA"
issue_cert "$NODE/tls/ca" "$ARR/server" "/O=secondread development/CN=audit-repository" --server \
  --san "IP:127.0.0.1" 2>/dev/null
TLS_PORT=$(free_port)
UDP_PORT=$(free_port)
cat >"$ARR/rsyslog.conf" <<CONF
global(workDirectory="$ARR/work" maxMessageSize="64k"
       defaultNetstreamDriver="ossl"
       defaultNetstreamDriverCAFile="$NODE/tls/ca.pem"
       defaultNetstreamDriverCertFile="$ARR/server.pem"
       defaultNetstreamDriverKeyFile="$ARR/server.key")
module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="x509/name"
       permittedPeer=["secondread-audit"])
module(load="imudp")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="tls") { action(type="omfile" file="$ARR/tls.log" template="raw") }
ruleset(name="udp") { action(type="omfile" file="$ARR/udp.log" template="raw") }
input(type="imtcp" address="127.0.0.1" port="$TLS_PORT" ruleset="tls" supportOctetCountedFraming="on")
input(type="imudp" address="127.0.0.1" port="$UDP_PORT" ruleset="udp")
CONF
arr_start() {
  rsyslogd -n -f "$ARR/rsyslog.conf" -i "$ARR/rsyslog.pid" >>"$ARR/rsyslog.out" 2>&1 &
  ARR_PID=$!
  local deadline=$(( $(date +%s) + 20 ))
  until ss -ltn | grep -q "127.0.0.1:$TLS_PORT "; do
    kill -0 "$ARR_PID" 2>/dev/null || { cat "$ARR/rsyslog.out" >&2; fail "rsyslogd did not start"; }
    [ "$(date +%s)" -lt "$deadline" ] || fail "rsyslogd does not listen on $TLS_PORT"
    sleep 0.1
  done
}
arr_stop() {
  if [ -n "${ARR_PID:-}" ]; then
    kill -TERM "$ARR_PID" 2>/dev/null || true
    wait "$ARR_PID" 2>/dev/null || true
    ARR_PID=""
  fi
}
arr_start

# One line per message as the repository wrote it: the syslog header, the
# BOM, the XML. These list "EventID [EventTypeCode] action outcome" per line.
events() {  # file
  $PY - "$1" <<'PY'
import re, sys
import xml.etree.ElementTree as ET
for line in open(sys.argv[1], encoding="utf-8", errors="strict"):
    line = line.rstrip("\n")
    if not line:
        continue
    xml = line.split("\ufeff", 1)[1]
    e = ET.fromstring(xml).find("EventIdentification")
    types = [t.get("csd-code") for t in e.findall("EventTypeCode")]
    print(e.find("EventID").get("csd-code"), ",".join(types) or "-", e.get("EventActionCode"),
          e.get("EventOutcomeIndicator"))
PY
}
wait_event() {  # file pattern(grep -E on the events() line) timeout_s what
  local deadline=$(( $(date +%s) + $3 ))
  until [ -f "$1" ] && events "$1" | grep -Eq "$2"; do
    [ "$(date +%s)" -lt "$deadline" ] || { events "$1" >&2 || true; fail "no audit message for $4"; }
    sleep 0.3
  done
}
TLS_LOG="$ARR/tls.log"

# Only chest radiographs are read, so the CT study below is received and
# nothing more.
cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: chest-radiographs
      match: {modalities: [CR, DX], body_parts: [CHEST]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: instance}
YAML
results_up --routing "$WORK/routing.yaml" --tls --audit "127.0.0.1:$TLS_PORT"
grep -q '^SECONDREAD_AUDIT_CLIENT_NAME=secondread-audit$' "$NODE/env" || fail "dev-up --audit wrote no audit client"
wait_event "$TLS_LOG" '^110100 110120 E 0$' 20 "application start"
head -c 200 "$TLS_LOG" | grep -q '^<85>1 [0-9T:.-]*Z [^ ]* secondread [0-9]* IHE+RFC-3881 - ' ||
  fail "not an RFC 5424 header with MSGID IHE+RFC-3881: $(head -c 120 "$TLS_LOG")"
pass "application start arrived over syslog-TLS with the IHE header (rsyslog checked the node's certificate name)"

# A study from a sender, with storescu: one Instances Transferred message
# for the association and study, naming the sender, the node, the study, its
# SOP class with the count, and the patient.
$PY "$IT_REPO/tools/gen_instances.py" "$WORK/ct" --kind ct --count 3 --seed 5 >/dev/null
send "$WORK"/ct/*.dcm >/dev/null 2>&1 || fail "storescu"
CT_STUDY=$(dcmdump -q +P 0020,000d "$(ls "$WORK"/ct/*.dcm | head -n 1)" | sed -n 's/.*\[\(.*\)\].*/\1/p')
CT_PATIENT=$(dcmdump -q +P 0010,0020 "$(ls "$WORK"/ct/*.dcm | head -n 1)" | sed -n 's/.*\[\(.*\)\].*/\1/p')
wait_event "$TLS_LOG" '^110104 - C 0$' 20 "the received study"
$PY - "$TLS_LOG" "$CT_STUDY" "$CT_PATIENT" <<'PY' || fail "the received study's message"
import sys
import xml.etree.ElementTree as ET
log, study, patient = sys.argv[1:]
msgs = [ET.fromstring(l.split("\ufeff", 1)[1]) for l in open(log, encoding="utf-8") if "\ufeff" in l]
got = [m for m in msgs if m.find("EventIdentification/EventID").get("csd-code") == "110104"
       and m.find("EventIdentification").get("EventActionCode") == "C"]
assert len(got) == 1, len(got)
m = got[0]
parts = {p.find("RoleIDCode").get("csd-code"): p for p in m.findall("ActiveParticipant")}
assert parts["110153"].get("UserID") == "STORESCU" and parts["110153"].get("NetworkAccessPointID") == "127.0.0.1"
assert parts["110153"].get("UserIsRequestor") == "true"
assert parts["110152"].get("UserID") == "SECONDREAD" and parts["110152"].get("UserIsRequestor") == "false"
objs = m.findall("ParticipantObjectIdentification")
st = [o for o in objs if o.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"]
assert len(st) == 1 and st[0].get("ParticipantObjectID") == study, [o.attrib for o in objs]
sop = st[0].findall("ParticipantObjectDescription/SOPClass")
assert [(s.get("UID"), s.get("NumberOfInstances")) for s in sop] == [("1.2.840.10008.5.1.4.1.1.2", "3")], \
    [s.attrib for s in sop]
pt = [o for o in objs if o.get("ParticipantObjectTypeCodeRole") == "1"]
assert len(pt) == 1 and pt[0].get("ParticipantObjectID") == patient and pt[0].get("ParticipantObjectTypeCode") == "1"
assert pt[0].find("ParticipantObjectIDTypeCode").get("csd-code") == "2"
PY
pass "a received study: one 110104 (C) with sender, node, study UID, CT x 3 and the patient"

# Security alerts: an AE not on the allow-list, and a TLS client without a
# certificate.
echoscu -to 5 -aet INTRUDER -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" >/dev/null 2>&1 &&
  fail "INTRUDER was accepted"
wait_event "$TLS_LOG" '^110113 110126 E 4$' 20 "the refused association"
grep -q 'INTRUDER' "$TLS_LOG" || fail "the alert does not name the refused AE"
N_ALERTS=$(events "$TLS_LOG" | grep -c '^110113 110126 ')
echoscu -to 5 -aet STORESCU -aec SECONDREAD +tls "$SECONDREAD_TLS_CLIENT_KEY" "$SECONDREAD_TLS_CLIENT_CERT" \
  +cf "$ARR/server.pem" 127.0.0.1 "$SECONDREAD_TLS_PORT" >/dev/null 2>&1 || true
timeout 10 openssl s_client -connect "127.0.0.1:$SECONDREAD_TLS_PORT" -CAfile "$NODE/tls/ca.pem" </dev/null \
  >/dev/null 2>&1 || true
deadline=$(( $(date +%s) + 20 ))
until [ "$(events "$TLS_LOG" | grep -c '^110113 110126 ')" -gt "$N_ALERTS" ] && grep -q 'tls_handshake_failed' "$TLS_LOG"; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "no security alert for the TLS handshake without a certificate"
  sleep 0.3
done
pass "security alerts (110113/110126) for the refused AE title and the failed TLS handshake"

# An export: Orthanc sends a chest radiograph, the worker reads it, the
# node exports SR and SC to Orthanc.
$PY "$IT_REPO/tools/gen_study.py" "$WORK/cr" --studies 1 --lesion yes --modality CR --seed 11 >/dev/null
CR_UID=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['studies'][0]['study_uid'])" "$WORK/cr/manifest.json")
CR_ID=$(orthanc_upload "$WORK"/cr/study-*/*.dcm)
orthanc_send_study "$CR_ID"
wait_results_in_orthanc "$CR_ID" 1 1 120
wait_event "$TLS_LOG" '^110102 - E 0$' 20 "the export's begin"
wait_event "$TLS_LOG" '^110104 - R 0$' 20 "the export"
$PY - "$TLS_LOG" "$CR_UID" "$ORTHANC_DICOM_PORT" <<'PY' || fail "the export's message"
import sys
import xml.etree.ElementTree as ET
log, study, port = sys.argv[1:]
msgs = [ET.fromstring(l.split("\ufeff", 1)[1]) for l in open(log, encoding="utf-8") if "\ufeff" in l]
got = [m for m in msgs if m.find("EventIdentification/EventID").get("csd-code") == "110104"
       and m.find("EventIdentification").get("EventActionCode") == "R"]
assert len(got) == 1, len(got)
m = got[0]
parts = {p.find("RoleIDCode").get("csd-code"): p for p in m.findall("ActiveParticipant")}
assert parts["110153"].get("UserID") == "SECONDREAD" and parts["110153"].get("UserIsRequestor") == "true"
assert parts["110152"].get("UserID") == "ORTHANC" and parts["110152"].get("NetworkAccessPointID") == "127.0.0.1"
st = [o for o in m.findall("ParticipantObjectIdentification") if o.get("ParticipantObjectID") == study]
assert len(st) == 1
sop = {s.get("UID"): s.get("NumberOfInstances") for s in st[0].findall("ParticipantObjectDescription/SOPClass")}
assert sop == {"1.2.840.10008.5.1.4.1.1.88.34": "1", "1.2.840.10008.5.1.4.1.1.7": "1"}, sop
PY
pass "the export to Orthanc: 110102 (begin) and 110104 (R) naming ORTHANC, the study, SR x 1 and SC x 1"

# The worklist: a search, the study opened, its image viewed; a good token
# (one login per token and address), a bad one, a forbidden request.
BASE=${SECONDREAD_WORKLIST_URL%/}
api() { curl -fsS -H "Authorization: Bearer $SECONDREAD_TOKEN" "$BASE$1"; }
api "/api/v1/worklist?modality=CR" >"$WORK/list.json" || fail "worklist search"
STUDY_ID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["items"][0]["study_id"])' "$WORK/list.json")
api "/api/v1/studies/$STUDY_ID" >"$WORK/study.json" || fail "open study"
IMAGE=$($PY -c '
import json, sys
s = json.load(open(sys.argv[1]))
print([r["image_url"] for rd in s["reads"] for r in rd["results"] if r["kind"] == "sc"][0])' "$WORK/study.json")
api "$IMAGE" >/dev/null || fail "view image"
wait_event "$TLS_LOG" '^110112 - E 0$' 20 "the worklist search"
wait_event "$TLS_LOG" '^110110 - R 0$' 20 "the patient record opened"
[ "$(events "$TLS_LOG" | grep -c '^110103 - R 0$')" -eq 2 ] || wait_event "$TLS_LOG" '^110103 - R 0$' 5 "the study and image"
deadline=$(( $(date +%s) + 10 ))
until [ "$(events "$TLS_LOG" | grep -c '^110103 - R 0$')" -ge 2 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "not two 110103 (study opened, image viewed)"
  sleep 0.3
done
grep -q "$($PY -c 'import base64; print(base64.b64encode(b"/api/v1/worklist?modality=CR").decode())')" "$TLS_LOG" ||
  fail "the query is not in ParticipantObjectQuery"
[ "$(events "$TLS_LOG" | grep -c '^110114 110122 E 0$')" -eq 1 ] ||
  fail "three requests with one token from one address are not one login: $(events "$TLS_LOG" | grep -c '^110114')"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer not-a-token" "$BASE/api/v1/worklist")
[ "$code" = 401 ] || fail "bad token got $code"
wait_event "$TLS_LOG" '^110114 110122 E 4$' 20 "the failed login"
wait_event "$TLS_LOG" '^110113 110132 E 4$' 20 "the refused token's alert"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SECONDREAD_TOKEN" "$BASE/api/v1/audit")
[ "$code" = 403 ] || fail "a radiologist reading the audit log got $code"
deadline=$(( $(date +%s) + 20 ))
until [ "$(events "$TLS_LOG" | grep -c '^110113 110132 E 4$')" -ge 2 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "no security alert for the 403"
  sleep 0.3
done
[ "$(sql "SELECT count(*) FROM audit_log WHERE action IN ('view_worklist', 'view_study', 'view_image')")" -ge 3 ] ||
  fail "the audit_log rows are gone: $(sql "SELECT action, count(*) FROM audit_log GROUP BY 1")"
pass "worklist: 110112 query (base64), 110103 x 2 and 110110, one 110114 login, 110114 failure and 110113/110132 for 401 and 403; audit_log rows kept"

# The repository goes away: events are spooled and retried, and all arrive
# once it is back, none twice.
arr_stop
for i in 1 2 3 4 5; do api "/api/v1/worklist?modality=LOST$i" >/dev/null || fail "search $i"; done
echoscu -to 5 -aet INTRUDER2 -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" >/dev/null 2>&1 || true
deadline=$(( $(date +%s) + 20 ))
until [ "$(metric secondread_audit_send_failures_total)" != 0 ] && [ "$(metric secondread_audit_spool_bytes)" != 0 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "no send failure or spooled bytes while the repository is down"
  sleep 0.3
done
sleep 3
ls "$NODE/spool/audit" | grep -q '\.msg$' || fail "nothing in the audit spool while the repository is down"
pass "repository down: sends fail ($(metric secondread_audit_send_failures_total) failures), $(metric secondread_audit_spool_bytes) bytes spooled"
arr_start
deadline=$(( $(date +%s) + 30 ))
until [ "$(metric secondread_audit_spool_bytes)" = 0 ] && grep -q INTRUDER2 "$TLS_LOG"; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the spool did not drain after the repository came back"
  sleep 0.3
done
for i in 1 2 3 4 5; do
  q=$($PY -c 'import base64,sys; print(base64.b64encode(b"/api/v1/worklist?modality=LOST" + sys.argv[1].encode()).decode())' "$i")
  [ "$(grep -c "$q" "$TLS_LOG")" -eq 1 ] || fail "search LOST$i arrived $(grep -c "$q" "$TLS_LOG") times"
done
recorded=$(curl -fsS "$SECONDREAD_METRICS_URL" | awk '$1 ~ /^secondread_audit_messages_total\{/ { n += $2 } END { print n + 0 }')
received=$(grep -c . "$TLS_LOG")
[ "$recorded" = "$received" ] || fail "recorded $recorded audit messages, the repository holds $received"
pass "repository back: all $received messages recorded arrived, each once"

# Stop, and the UDP transport: the node restarts sending over UDP.
# It restarts with retention on, a 2 s grace: the finished studies' instances
# are purged, each with a DICOM Study Deleted (110105, D) message.
node_restart --set audit.transport=udp --set "audit.repository=127.0.0.1:$UDP_PORT" \
  --set retention.enabled=true --set retention.source_grace_seconds=2 --set retention.interval_seconds=1
wait_event "$TLS_LOG" '^110100 110121 E 0$' 20 "application stop"
wait_event "$ARR/udp.log" '^110100 110120 E 0$' 20 "application start over UDP"
pass "application stop over TLS; after the restart, application start over UDP (RFC 5426)"
wait_event "$ARR/udp.log" '^110105 - D 0$' 60 "the study deleted by retention"
$PY - "$ARR/udp.log" "$(sql "SELECT study_instance_uid FROM studies st WHERE EXISTS (SELECT 1 FROM series se JOIN instances i ON i.series_ref = se.id WHERE se.study_ref = st.id AND i.purged_at IS NOT NULL) LIMIT 1")" <<'PY' || fail "the 110105 message does not name the purged study and its patient"
import sys, xml.etree.ElementTree as ET
msgs = [ET.fromstring(l.split("\ufeff", 1)[1]) for l in open(sys.argv[1], encoding="utf-8") if "\ufeff" in l]
got = [m for m in msgs if m.find("EventIdentification/EventID").get("csd-code") == "110105"]
assert got, "no 110105"
ids = {o.get("ParticipantObjectID") for m in got for o in m.findall("ParticipantObjectIdentification")}
assert sys.argv[2] in ids, (sys.argv[2], ids)
assert any(o.get("ParticipantObjectTypeCodeRole") == "1" for m in got for o in m.findall("ParticipantObjectIdentification"))
PY
pass "retention: a DICOM Study Deleted (110105, D) per purged study, naming the study and its patient, at the repository"

# Every message against the DICOM audit message schema.
trang "$IT_REPO/audit/schema/dicom-audit-message.rnc" "$WORK/audit.rng"
$PY - "$TLS_LOG" "$ARR/udp.log" "$WORK/xml" <<'PY'
import os, sys
out = sys.argv[3]
os.makedirs(out, exist_ok=True)
n = 0
for log in sys.argv[1:3]:
    for line in open(log, encoding="utf-8"):
        if "\ufeff" in line:
            n += 1
            open(os.path.join(out, "%04d.xml" % n), "w", encoding="utf-8").write(line.rstrip("\n").split("\ufeff", 1)[1])
PY
count=$(ls "$WORK/xml" | wc -l)
xmllint --noout --relaxng "$WORK/audit.rng" "$WORK"/xml/*.xml 2>"$WORK/xmllint.out" ||
  { grep -v ' validates$' "$WORK/xmllint.out" | head -n 20 >&2; fail "audit messages do not validate"; }
codes=$(events "$TLS_LOG" | awk '{ print $1 }' | sort -u | tr '\n' ' ')
codes="$codes $(events "$ARR/udp.log" | awk '{ print $1 }' | sort -u | tr '\n' ' ')"
for code in 110100 110102 110103 110104 110105 110110 110112 110113 110114; do
  grep -qw "$code" <<<"$codes" || fail "no $code message at all (saw: $codes)"
done
pass "all $count messages validate against the DICOM audit message schema (events: $codes)"
finish
