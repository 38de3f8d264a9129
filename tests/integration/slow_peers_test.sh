#!/usr/bin/env bash
# No peer can stall another: while 200 connections sit silent, trickle one
# byte a second, or stop halfway through an A-ASSOCIATE-RQ or a TLS
# handshake, echoscu and storescu (512 KB) finish within 1 s on the plain and
# on the TLS port. The node closes every one of those connections at its
# deadline, caps the connections of one peer address, bounds the pending
# ones by closing the oldest, and counts and logs every drop.
source "$(dirname "$0")/lib/common.sh"
source "$IT_REPO/scripts/lib/tls.sh"
it_setup "$@"

TLS=$WORK/tls
make_ca "$TLS" ca
issue_cert "$TLS/ca" "$TLS/server" "/O=secondread test/CN=node" --server --san "IP:127.0.0.1,DNS:localhost"
issue_cert "$TLS/ca" "$TLS/client" "/O=secondread test/CN=STORESCU" --client
SUBJECT=$(cert_subject "$TLS/client.pem")
TLS_PORT=$(free_port)
DEADLINE=4
node_up --set dicom.tls.port="$TLS_PORT" --set dicom.tls.certificate="$TLS/server.pem" \
  --set dicom.tls.private_key="$TLS/server.key" --set dicom.tls.ca="$TLS/ca.pem" \
  --set "dicom.tls.caller_subjects=[{ae_title: STORESCU, subject: \"$SUBJECT\"}]" \
  --set dicom.acceptor.association_deadline_seconds=$DEADLINE \
  --set dicom.acceptor.max_connections_per_peer=60 --set dicom.acceptor.max_pending_connections=230
PID=$(cat "$NODE/secondread.pid")
LOG=$NODE/log/secondread.log
$PY "$IT_REPO/tools/gen_instances.py" "$WORK/gen" --kind ct --count 2 >/dev/null
mapfile -t CT < <(ls "$WORK"/gen/*.dcm)
[ "$(stat -c %s "${CT[0]}")" -ge 500000 ] || fail "the CT instance is smaller than 512 KB"

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
# within_1s LABEL COMMAND...: runs a legitimate peer, fails unless it
# succeeds within a second.
within_1s() {
  local label=$1 start ms
  shift
  start=$(date +%s%N)
  "$@" >"$WORK/peer.log" 2>&1 || { cat "$WORK/peer.log" >&2; fail "$label failed"; }
  ms=$(ms_since "$start")
  [ "$ms" -lt 1000 ] || fail "$label took $ms ms"
  pass "$label: $ms ms"
}
TLS_ARGS=(+tls "$TLS/client.key" "$TLS/client.pem" +cf "$TLS/ca.pem")
legitimate_peers() {  # label suffix
  within_1s "C-ECHO on the plain port $1" echoscu -to 5 -aet STORESCU -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT"
  within_1s "512 KB C-STORE on the plain port $1" storescu -to 5 -aet STORESCU -aec SECONDREAD 127.0.0.1 \
    "$SECONDREAD_DICOM_PORT" "${CT[0]}"
  within_1s "C-ECHO on the TLS port $1" echoscu -to 5 "${TLS_ARGS[@]}" -aet STORESCU -aec SECONDREAD 127.0.0.1 "$TLS_PORT"
  within_1s "512 KB C-STORE on the TLS port $1" storescu -to 5 "${TLS_ARGS[@]}" -aet STORESCU -aec SECONDREAD \
    127.0.0.1 "$TLS_PORT" "${CT[1]}"
}
# slow PHASE HOLD ARGS...: starts the slow peers in the background and waits
# until they are connected.
slow() {
  local phase=$1 hold=$2
  shift 2
  rm -f "$WORK/$phase.ready"
  $PY "$IT_REPO/tests/integration/tools/slow_peers.py" 127.0.0.1 --port "$SECONDREAD_DICOM_PORT" --tls-port "$TLS_PORT" \
    --hold "$hold" --ready "$WORK/$phase.ready" --report "$WORK/$phase.json" "$@" &
  SLOW_PID=$!
  for _ in $(seq 100); do [ -f "$WORK/$phase.ready" ] && break; sleep 0.1; done
  [ -f "$WORK/$phase.ready" ] || fail "$phase: the slow peers did not connect"
  sleep 0.5  # the node accepts them
}
report() {  # phase mode field
  $PY -c "import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]]; print('' if v is None else v)" \
    "$WORK/$1.json" "$2" "$3"
}
dropped() { metric "secondread_scp_connections_dropped_total{reason=\"$1\"}" | cut -d. -f1; }

# ---- 200 slow connections from four addresses -------------------------------
slow mix 12 --sources 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 \
  --silent 50 --trickle 40 --half-rq 40 --half-hello 35 --hello-then-silent 35
[ "$(cat "$WORK/mix.ready")" = 200 ] || fail "only $(cat "$WORK/mix.ready") of 200 slow connections opened"
pending=$(metric secondread_scp_connections_pending | cut -d. -f1)
[ "$pending" -ge 195 ] || fail "secondread_scp_connections_pending is $pending with 200 slow connections open"
pass "200 slow connections open and pending ($pending in secondread_scp_connections_pending)"
legitimate_peers "beside 200 slow connections"
wait "$SLOW_PID"
for mode in silent trickle half-rq half-hello hello-then-silent; do
  opened=$(report mix $mode opened)
  closed=$(report mix $mode closed_by_node)
  lo=$(report mix $mode closed_after_min)
  hi=$(report mix $mode closed_after_max)
  [ "$closed" = "$opened" ] || fail "$mode: the node closed $closed of $opened connections"
  $PY -c "import sys; lo,hi,d=map(float,sys.argv[1:]); sys.exit(0 if d-0.5 <= lo and hi <= d+2 else 1)" "$lo" "$hi" \
    "$DEADLINE" || fail "$mode: closed after $lo..$hi s, deadline $DEADLINE s"
  pass "$mode: all $opened closed by the node after $lo..$hi s (deadline $DEADLINE s)"
done
n=$(dropped deadline)
[ "$n" -ge 200 ] || fail "secondread_scp_connections_dropped_total{reason=deadline} is $n"
logged=$(grep -c '"event":"connection_dropped".*"reason":"deadline"' "$LOG" || true)
[ "$logged" -ge 200 ] || fail "$logged connection_dropped log lines with reason deadline"
pass "every expired connection has a log line and the deadline label ($n counted, $logged logged)"

# ---- the per-peer cap ---------------------------------------------------------
before=$(dropped per_peer_limit)
slow per-peer 3 --sources 127.0.0.6 --silent 70
[ "$(metric secondread_scp_connections_peer_max | cut -d. -f1)" = 60 ] ||
  fail "secondread_scp_connections_peer_max is not 60 with 60 connections held by one address"
after=$(dropped per_peer_limit)
[ $((after - before)) = 10 ] || fail "per_peer_limit drops: $((after - before)), want 10 of 70 over a cap of 60"
grep -q '"event":"connection_dropped".*"reason":"per_peer_limit"' "$LOG" || fail "no per_peer_limit log line"
legitimate_peers "while one address holds its cap"
wait "$SLOW_PID"
pass "one address holds at most 60 connections; 10 more were refused, counted and logged"

# ---- the bound on pending connections ----------------------------------------
before=$(dropped pending_limit)
slow pending 3 --sources 127.0.0.7,127.0.0.8,127.0.0.9,127.0.0.10 --silent 240
pending=$(metric secondread_scp_connections_pending | cut -d. -f1)
[ "$pending" -le 230 ] || fail "secondread_scp_connections_pending is $pending over a bound of 230"
legitimate_peers "with the pending connections at their bound"
after=$(dropped pending_limit)
[ $((after - before)) -ge 10 ] || fail "pending_limit drops: $((after - before)), want at least 10"
grep -q '"event":"connection_dropped".*"reason":"pending_limit"' "$LOG" || fail "no pending_limit log line"
wait "$SLOW_PID"
pass "pending connections stay within 230: the oldest make room ($((after - before)) closed, counted and logged)"

# ---- a malformed A-ASSOCIATE-RQ never reaches DCMTK's parser --------------------
# DCMTK 3.6.7 keeps memory of each request whose items overrun the PDU
# (~47 bytes), whose presentation context holds a sub-item of another type
# (~350 bytes), whose SOP Class Extended Negotiation sub-item overruns itself
# (~70 bytes), whose user identity has an unknown type (~140 bytes) or whose
# transfer syntax is longer than a UID (~170 bytes), before any allow-list
# check. The fuzzer found them.
for case in "associate_rq_items_overrun:item overruns the PDU" \
            "associate_rq_untyped_sub_item:unexpected sub-item type 0 in presentation context" \
            "associate_rq_extended_negotiation_overrun:malformed user information sub-item 86" \
            "associate_rq_identity_type_10:malformed user information sub-item 88" \
            "associate_rq_long_transfer_syntax:abstract or transfer syntax longer than 64 bytes"; do
  file=${case%%:*}
  detail=${case#*:}
  before=$(dropped malformed_associate_rq)
  $PY - "$SECONDREAD_DICOM_PORT" "$IT_REPO/fuzz/regressions/$file" <<'PY'
import socket, struct, sys
body = open(sys.argv[2], "rb").read()
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(struct.pack(">BxI", 1, len(body)) + body)
    s.settimeout(5)
    assert s.recv(10) == b"", "the node answered a malformed A-ASSOCIATE-RQ"
    s.close()
PY
  after=$(dropped malformed_associate_rq)
  [ $((after - before)) = 200 ] || fail "$file: malformed_associate_rq drops: $((after - before)) of 200"
  grep -q "\"detail\":\"$detail\".*\"reason\":\"malformed_associate_rq\"" "$LOG" || fail "no log line saying: $detail"
  pass "200 A-ASSOCIATE-RQs ($detail): closed before DCMTK parsed them, counted and logged"
done

[ "$(cat "$NODE/secondread.pid")" = "$PID" ] && kill -0 "$PID" || fail "the node restarted or died"
[ "$(sql "select count(*) from instances")" = 2 ] || fail "the two instances sent again and again are not registered once each"
pass "the node kept its PID; each instance sent three times on each port is registered once"
finish
