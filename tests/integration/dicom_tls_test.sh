#!/usr/bin/env bash
# The TLS port: echoscu and storescu with a client certificate from the
# trusted CA, whose subject is bound to their AE title, are served. Refused,
# each with a log line and a metric label: no client certificate, a
# certificate from another CA, TLS 1.1, plaintext DICOM on the TLS port, TLS
# on the plain port, and an AE title presented with another subject's
# certificate.
source "$(dirname "$0")/lib/common.sh"
source "$IT_REPO/scripts/lib/tls.sh"
it_setup "$@"

TLS=$WORK/tls
make_ca "$TLS" ca
make_ca "$TLS" other
issue_cert "$TLS/ca" "$TLS/server" "/O=secondread test/CN=node" --server --san "IP:127.0.0.1,DNS:localhost"
issue_cert "$TLS/ca" "$TLS/client" "/O=secondread test/CN=STORESCU" --client
issue_cert "$TLS/ca" "$TLS/imposter" "/O=secondread test/CN=WORKSTATION" --client
issue_cert "$TLS/other" "$TLS/foreign" "/O=secondread test/CN=STORESCU" --client
SUBJECT=$(cert_subject "$TLS/client.pem")
TLS_PORT=$(free_port)
node_up --set dicom.tls.port="$TLS_PORT" --set dicom.tls.certificate="$TLS/server.pem" \
  --set dicom.tls.private_key="$TLS/server.key" --set dicom.tls.ca="$TLS/ca.pem" \
  --set "dicom.tls.caller_subjects=[{ae_title: STORESCU, subject: \"$SUBJECT\"}]" \
  --set dicom.idle_timeout_seconds=4
LOG=$NODE/log/secondread.log
$PY "$IT_REPO/tools/gen_instances.py" "$WORK/gen" --kind ct --count 1 >/dev/null
FILE=$(ls "$WORK"/gen/*.dcm)
dropped() { metric "secondread_scp_connections_dropped_total{reason=\"$1\"}" | cut -d. -f1; }
logged() { grep -c "$1" "$LOG" || true; }
echo_tls() {  # key cert [aet]
  echoscu -to 5 +tls "$1" "$2" +cf "$TLS/ca.pem" -aet "${3:-STORESCU}" -aec SECONDREAD 127.0.0.1 "$TLS_PORT" \
    >"$WORK/echo.log" 2>&1
}

# ---- accepted --------------------------------------------------------------------
echo_tls "$TLS/client.key" "$TLS/client.pem" || { cat "$WORK/echo.log" >&2; fail "C-ECHO over TLS with the bound certificate failed"; }
storescu -to 5 +tls "$TLS/client.key" "$TLS/client.pem" +cf "$TLS/ca.pem" -aet STORESCU -aec SECONDREAD \
  127.0.0.1 "$TLS_PORT" "$FILE" >"$WORK/store.log" 2>&1 || { cat "$WORK/store.log" >&2; fail "C-STORE over TLS failed"; }
[ "$(sql "select count(*) from instances")" = 1 ] || fail "the instance sent over TLS is not registered"
grep '"event":"association_accepted"' "$LOG" | grep >/dev/null "\"tls\":true.*CN=STORESCU\|CN=STORESCU.*\"tls\":true" ||
  fail "association_accepted does not name the TLS port and the certificate subject"
[ "$(metric secondread_scp_tls_handshake_duration_seconds_count | cut -d. -f1)" -ge 2 ] || fail "handshakes not counted"
pass "echoscu and storescu +tls with a certificate bound to STORESCU: served, the instance registered"

# ---- refused ----------------------------------------------------------------------
before=$(dropped tls_handshake_failed)
echoscu -to 5 +tla +cf "$TLS/ca.pem" -aet STORESCU -aec SECONDREAD 127.0.0.1 "$TLS_PORT" >/dev/null 2>&1 &&
  fail "a client without a certificate was served"
[ "$(dropped tls_handshake_failed)" -gt "$before" ] || fail "no tls_handshake_failed for a client without a certificate"
grep '"reason":"tls_handshake_failed"' "$LOG" | grep >/dev/null -i "certificate" ||
  fail "the log line does not say the certificate was missing"
pass "no client certificate: refused in the handshake, logged and counted"

before=$(dropped tls_handshake_failed)
echo_tls "$TLS/foreign.key" "$TLS/foreign.pem" && fail "a certificate from another CA was served"
[ "$(dropped tls_handshake_failed)" -gt "$before" ] || fail "no tls_handshake_failed for another CA's certificate"
grep '"reason":"tls_handshake_failed"' "$LOG" | grep >/dev/null "unable to get local issuer certificate\|certificate verify failed" ||
  fail "the log line does not say why another CA's certificate failed"
pass "a certificate from another CA (same subject): refused in the handshake"

before=$(dropped tls_handshake_failed)
openssl s_client -connect "127.0.0.1:$TLS_PORT" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' \
  -cert "$TLS/client.pem" -key "$TLS/client.key" -CAfile "$TLS/ca.pem" </dev/null >"$WORK/tls11.log" 2>&1 &&
  grep -q "^ *Protocol *: TLSv1.1" "$WORK/tls11.log" && fail "a TLS 1.1 handshake completed"
[ "$(dropped tls_handshake_failed)" -gt "$before" ] || fail "no tls_handshake_failed for TLS 1.1"
grep '"reason":"tls_handshake_failed"' "$LOG" | grep >/dev/null "unsupported protocol\|no protocols available\|version too low" ||
  fail "the log line does not say the protocol version was refused"
pass "a client limited to TLS 1.1: refused (BCP 195 non-downgrading: TLS 1.2 or later)"

before=$(dropped plaintext_on_tls_port)
echoscu -to 5 -aet STORESCU -aec SECONDREAD 127.0.0.1 "$TLS_PORT" >/dev/null 2>&1 && fail "plaintext DICOM was served on the TLS port"
[ "$(dropped plaintext_on_tls_port)" -gt "$before" ] || fail "no plaintext_on_tls_port drop"
pass "plaintext DICOM on the TLS port: refused, logged and counted"

before=$(dropped tls_on_plain_port)
echoscu -to 5 +tls "$TLS/client.key" "$TLS/client.pem" +cf "$TLS/ca.pem" -aet STORESCU -aec SECONDREAD 127.0.0.1 \
  "$SECONDREAD_DICOM_PORT" >/dev/null 2>&1 && fail "TLS was served on the plain port"
[ "$(dropped tls_on_plain_port)" -gt "$before" ] || fail "no tls_on_plain_port drop"
pass "TLS on the plain port: closed, logged and counted"

rejected=$(logged '"reason":"certificate_not_bound_to_ae"')
echo_tls "$TLS/imposter.key" "$TLS/imposter.pem" STORESCU && fail "STORESCU was served with another subject's certificate"
[ "$(logged '"reason":"certificate_not_bound_to_ae"')" -gt "$rejected" ] || fail "no certificate_not_bound_to_ae log line"
grep '"reason":"certificate_not_bound_to_ae"' "$LOG" | grep >/dev/null "CN=WORKSTATION" || fail "the rejection does not name the subject"
echoscu -to 5 -aet STORESCU -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" || fail "STORESCU on the plain port stopped working"
pass "STORESCU with a certificate of another subject: association rejected on the TLS port (still served on the plain port)"

# ---- a peer that stops inside a PDU --------------------------------------------
# Half a TLS record makes OpenSSL wait inside one read; the socket's own
# timeout (the idle timeout) ends it as DCMTK ends a plain one (after its
# A-ABORT, DCMTK waits up to the ACSE timeout for the peer to close).
STALL="$PY $IT_REPO/tests/integration/tools/stall_mid_pdu.py"
plain=$($STALL "$SECONDREAD_DICOM_PORT" --wait 20)
tls=$($STALL "$TLS_PORT" --tls "$TLS" --wait 20)
for pair in "plain:$plain" "TLS:$tls"; do
  t=${pair#*:}
  [ "$t" != open ] || fail "${pair%%:*}: an association stalled inside a PDU was still open after 20 s"
  $PY -c "import sys; sys.exit(0 if 3 <= float(sys.argv[1]) <= 12 else 1)" "$t" ||
    fail "${pair%%:*}: an association stalled inside a PDU was closed after $t s, idle timeout 4 s"
done
pass "associations stalled inside a PDU are closed at the idle timeout: plain after $plain s, TLS after $tls s"

[ "$(sql "select count(*) from instances")" = 1 ] || fail "a refused peer stored something"
finish
