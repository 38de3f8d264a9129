#!/usr/bin/env bash
# Orthanc 1.10 as a PACS that takes DICOM only over TLS and only from clients
# holding a certificate from its CA. The node exports a read's SR and
# Secondary Capture to it over TLS with its client certificate; a destination
# that trusts another CA, and one without a client certificate, are refused in
# the handshake and their exports stay pending, retried, with the TLS reason.
#
#   tests/integration/orthanc_tls_test.sh [WORK_DIR]
#
# The other direction: Orthanc sends the study to the node's own TLS port
# (dicom.tls.*) with a certificate bound to its AE title.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
source "$IT_REPO/scripts/lib/tls.sh"
it_setup "$@"
it_also_on_exit 'orthanc_stop "$WORK/orthanc"'

# The hospital's CA issues Orthanc's certificate (it names 127.0.0.1) and the
# node's client certificate; another CA stands for a wrongly configured trust.
PKI="$WORK/pki"
make_ca "$PKI" hospital "/O=Hospital/CN=Hospital CA"
make_ca "$PKI" other "/O=Elsewhere/CN=Other CA"
issue_cert "$PKI/hospital" "$PKI/orthanc" "/O=Hospital/CN=ORTHANC" --san "IP:127.0.0.1,DNS:localhost"
issue_cert "$PKI/hospital" "$PKI/secondread" "/O=Hospital/CN=SECONDREAD" --client
pass "a hospital CA, another CA, Orthanc's and the node's certificates"

ORTHANC_DIR="$WORK/orthanc"
ORTHANC_DICOM=1
ORTHANC_DICOM_PORT=$(free_port)
export ORTHANC_DICOM ORTHANC_DICOM_PORT
PACS="ORTHANC@127.0.0.1:$ORTHANC_DICOM_PORT"
client="tls_certificate: '$PKI/secondread.pem', tls_private_key: '$PKI/secondread.key'"
DESTINATIONS="[
  {name: pacs, address: '$PACS', connect_timeout_seconds: 5, tls: true, tls_ca: '$PKI/hospital.pem', $client},
  {name: pacs-other-ca, address: '$PACS', connect_timeout_seconds: 5, tls: true, tls_ca: '$PKI/other.pem', $client},
  {name: pacs-no-client-cert, address: '$PACS', connect_timeout_seconds: 5, tls: true, tls_ca: '$PKI/hospital.pem'}]"

NODE_ARGS=(--set "export.destinations=$DESTINATIONS" --set export.max_attempts=50)
# The node's TLS port with the hospital's CA (dev-up keeps a CA it finds in
# DIR/tls), and Orthanc's certificate bound to its calling AE title.
mkdir -p "$NODE/tls"
cp "$PKI/hospital.pem" "$NODE/tls/ca.pem"
cp "$PKI/hospital.key" "$NODE/tls/ca.key"
NODE_ARGS+=(--tls --tls-caller "ORTHANC=$(cert_subject "$PKI/orthanc.pem")")

# A destination whose TLS files cannot be used stops the node at start.
out=$("$SECONDREAD_BIN" serve --set database.url=postgresql://127.0.0.1:1/none \
      --set "export.destinations=[{name: broken, address: '$PACS', tls: true, tls_ca: '$PKI/missing.pem'}]" 2>&1) &&
  fail "the node started with a missing CA file"
grep -q "export destination broken: cannot load CA certificates from $PKI/missing.pem" <<<"$out" ||
  fail "no start-up error naming the missing CA file: $out"
out=$("$SECONDREAD_BIN" serve --set database.url=postgresql://127.0.0.1:1/none \
      --set "export.destinations=[{name: clear, address: '$PACS', tls_ca: '$PKI/hospital.pem'}]" 2>&1) &&
  fail "the node started with TLS files but without tls: true"
grep -q "tls is not true" <<<"$out" || fail "no error for TLS files without tls: true: $out"
refused_config() {  # destination-yaml expected-message
  local out
  out=$("$SECONDREAD_BIN" migrate --set database.url=postgresql://127.0.0.1:1/none \
        --set "export.destinations=[$1]" 2>&1) && fail "the configuration [$1] was taken"
  grep -qF "$2" <<<"$out" || fail "the configuration [$1] was refused without [$2]: $out"
}
refused_config "{name: a, address: '$PACS', tls: true}" "tls_ca (the destination's CA) must be set with tls: true"
refused_config "{name: a, address: '$PACS', tls: true, tls_ca: '$PKI/hospital.pem', tls_certificate: '$PKI/secondread.pem'}" \
  "tls_certificate and export.destinations.0.tls_private_key go together"
out=$("$SECONDREAD_BIN" serve --set database.url=postgresql://127.0.0.1:1/none \
      --set "export.destinations=[{name: mismatched, address: '$PACS', tls: true, tls_ca: '$PKI/hospital.pem', tls_certificate: '$PKI/secondread.pem', tls_private_key: '$PKI/orthanc.key'}]" 2>&1) &&
  fail "the node started with a key that is not its certificate's"
grep -q "export destination mismatched: cannot load the TLS private key $PKI/orthanc.key: .*key values mismatch" <<<"$out" ||
  fail "no start-up error for a key that does not match its certificate: $out"
pass "TLS settings that cannot work stop the node at start with the reason: a missing CA file, TLS files without tls: true, tls without a CA, a certificate without its key, a key of another certificate"

IT_WORKER=1 node_up "${NODE_ARGS[@]}"
pass "the node is up with three TLS export destinations"

# Orthanc's DICOM port speaks only TLS and requires a client certificate
# chained to the hospital CA. Its modality "secondread" is the node's TLS port.
SECONDREAD_PORT_FOR_ORTHANC=$SECONDREAD_TLS_PORT
USE_TLS=true
cat >"$WORK/orthanc-tls.json" <<JSON
{
  "DicomTlsEnabled": true,
  "DicomTlsCertificate": "$PKI/orthanc.pem",
  "DicomTlsPrivateKey": "$PKI/orthanc.key",
  "DicomTlsTrustedCertificates": "$PKI/hospital.pem",
  "DicomTlsRemoteCertificateRequired": true,
  "DicomModalities": {
    "secondread": {"AET": "SECONDREAD", "Host": "127.0.0.1", "Port": $SECONDREAD_PORT_FOR_ORTHANC,
                   "UseDicomTls": $USE_TLS}
  }
}
JSON
ORTHANC_EXTRA_CONFIG="$WORK/orthanc-tls.json" orthanc_start "$ORTHANC_DIR" secondread SECONDREAD 127.0.0.1 \
  "$SECONDREAD_PORT_FOR_ORTHANC" || fail "Orthanc did not start"
echoscu -to 5 -aec ORTHANC 127.0.0.1 "$ORTHANC_DICOM_PORT" >/dev/null 2>&1 &&
  fail "Orthanc's DICOM port answered a C-ECHO without TLS"
echoscu -to 5 -aec ORTHANC +tls "$PKI/secondread.key" "$PKI/secondread.pem" +cf "$PKI/hospital.pem" \
  127.0.0.1 "$ORTHANC_DICOM_PORT" >/dev/null 2>&1 || fail "Orthanc's DICOM port refused echoscu over TLS"
pass "Orthanc listens for DICOM over TLS only, with client certificates from the hospital CA"

$PY "$IT_REPO/tools/gen_study.py" "$WORK/study" --studies 1 --lesion yes --modality CR --seed 21 >/dev/null
manifest() { $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['studies'][0][sys.argv[2]])" "$1" "$2"; }
STUDY_ID=$(orthanc_upload "$WORK"/study/study-*/*.dcm)
orthanc_send_study "$STUDY_ID"
pass "Orthanc sent the study to the node's TLS port"

# The good destination: the results arrive in Orthanc over TLS, once.
wait_results_in_orthanc "$STUDY_ID" 1 1 90
wait_sql "SELECT state || ' ' || attempts FROM exports WHERE destination = 'pacs'" "sent 1" 30
list=$(orthanc_instances "$STUDY_ID")
[ "$(grep -c '^SR ' <<<"$list")" -eq 1 ] || fail "Orthanc holds $(grep -c '^SR ' <<<"$list") SRs"
[ "$(grep -c '^OT ' <<<"$list")" -eq 1 ] || fail "Orthanc holds $(grep -c '^OT ' <<<"$list") Secondary Captures"
grep -F '"event":"export_sent"' "$SECONDREAD_LOG" | grep >/dev/null -F '"destination":"pacs"' || fail "no export_sent for pacs in the log"
pass "the SR and Secondary Capture reached Orthanc over TLS with the node's client certificate, on the first attempt"

# The refused destinations: pending, retried, each with its TLS reason in the
# registry and in a log line that names the destination.
wait_refused() {  # destination reason-pattern
  # Retries go on (export.max_attempts is 50), so the row is polled until it
  # shows a retried, pending export with the reason; the ceiling is generous.
  local deadline=$(( $(date +%s) + 90 )) row="" state attempts reason
  while :; do
    row=$(sql "SELECT state || '|' || attempts || '|' || coalesce(last_error, '') FROM exports WHERE destination = '$1'")
    state=${row%%|*}
    attempts=$(cut -d'|' -f2 <<<"$row")
    reason=${row#*|*|}
    if [ "$state" = pending ] && [ "${attempts:-0}" -ge 2 ] && grep -qE "$2" <<<"$reason"; then break; fi
    [ "$state" = sent ] && fail "export to $1 was sent: $row"
    [ "$(date +%s)" -lt "$deadline" ] || fail "export to $1 is not pending and retried with [$2]: $row"
    sleep 0.5
  done
  grep -F '"event":"export_retry"' "$SECONDREAD_LOG" | grep -F "\"destination\":\"$1\"" | grep >/dev/null -E "$2" ||
    fail "no export_retry log line for $1 with the TLS reason"
  echo "    $1 (attempt $attempts): $reason"
}
wait_refused pacs-other-ca "over TLS.*certificate verify failed.*(self-signed certificate in certificate chain|unable to get local issuer certificate)"
# Orthanc checks the client's certificate after the TLS 1.3 handshake; its
# alert is read with the association's answer, or the connection is reset
# while the request is being written.
wait_refused pacs-no-client-cert "over TLS: .*(tlsv13 alert certificate required|Connection reset by peer)"
[ "$(sql "SELECT count(*) FROM exports WHERE state = 'dead'")" = 0 ] || fail "a refused export became a dead letter"
list=$(orthanc_instances "$STUDY_ID")
[ "$(grep -c '^SR ' <<<"$list")" -eq 1 ] || fail "a refused destination delivered an SR"
pass "a destination trusting another CA, and one without a client certificate, are refused in the handshake: pending, retried, with the reason"

# Orthanc refused the node's association when it came without a certificate.
grep -qiE "Receiving Association failed: TLS error" "$ORTHANC_DIR/orthanc.log" ||
  fail "Orthanc's log shows no refused TLS association"
pass "Orthanc logged the refused TLS associations"

# ---------------------------------------------------------------------------
# The other direction: Orthanc sent the study above to the node's DICOM TLS
# port. This checks what the node recorded of it, and dev-up's client
# certificate.
orthanc_sends_over_tls() {
  local study_uid
  study_uid=$(manifest "$WORK/study/manifest.json" study_uid)
  [ "$(sql "SELECT count(*) FROM studies WHERE study_instance_uid = '$study_uid'")" = 1 ] ||
    fail "the study Orthanc sent over TLS is not registered"
  [ "$(sql "SELECT count(*) FROM associations WHERE calling_ae = 'ORTHANC'")" -ge 1 ] ||
    fail "no association from ORTHANC recorded"
  # dev-up's client certificate is bound to STORESCU.
  $PY "$IT_REPO/tools/gen_instances.py" "$WORK/echo" --kind ct --count 1 >/dev/null
  storescu -aet STORESCU -aec SECONDREAD +tls "$SECONDREAD_TLS_CLIENT_KEY" "$SECONDREAD_TLS_CLIENT_CERT" \
    +cf "$SECONDREAD_TLS_CA" 127.0.0.1 "$SECONDREAD_TLS_PORT" "$WORK"/echo/*.dcm >/dev/null 2>&1 ||
    fail "storescu with dev-up's client certificate was refused on the TLS port"
  # A certificate from another CA is refused in the handshake.
  storescu -aet STORESCU -aec SECONDREAD +tls "$PKI/other.key" "$PKI/other.pem" +cf "$SECONDREAD_TLS_CA" \
    127.0.0.1 "$SECONDREAD_TLS_PORT" "$WORK"/echo/*.dcm >/dev/null 2>&1 &&
    fail "the TLS port took a client certificate from another CA"
  # A certificate from the node's CA whose subject is bound to another AE title.
  issue_cert "${SECONDREAD_TLS_CA_KEY%.key}" "$PKI/intruder" "/O=Hospital/CN=INTRUDER" --client
  storescu -aet STORESCU -aec SECONDREAD +tls "$PKI/intruder.key" "$PKI/intruder.pem" +cf "$SECONDREAD_TLS_CA" \
    127.0.0.1 "$SECONDREAD_TLS_PORT" "$WORK"/echo/*.dcm >/dev/null 2>&1 &&
    fail "the TLS port took STORESCU with a certificate whose subject is not STORESCU's"
  pass "Orthanc sent the study to the node's TLS port; dev-up's client certificate works and others are refused"
}

orthanc_sends_over_tls

# No patient data in the node's log.
! grep -qF "$(manifest "$WORK/study/manifest.json" patient_name)" "$SECONDREAD_LOG" || fail "patient name in the node log"
! grep -qF "$(manifest "$WORK/study/manifest.json" patient_id)" "$SECONDREAD_LOG" || fail "patient ID in the node log"
pass "no patient name or ID in the node log"
finish
