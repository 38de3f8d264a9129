#!/usr/bin/env bash
# The HTTP surfaces of the real node against real clients: slow and fat
# clients are refused and counted while others are served, Range is
# ignored, the worklist listing is audited with the client address a trusted
# proxy forwarded, refusals are logged, the API's /readyz shows only the
# state, and the audit log belongs to a role the node's login cannot act
# for, both where the login is a superuser and where a DBA set it up.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
node_up --set 'api.trusted_proxies=[127.0.0.1]' --set api.limits.header_timeout_seconds=3
# shellcheck disable=SC1091
source "$NODE/api.env"
BASE=$($PY -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.scheme + "://" + p.netloc)' \
  "$SECONDREAD_WORKLIST_URL")
API_PORT=${BASE##*:}
LOG="$NODE/log/secondread.log"

# ---- slow and fat clients ------------------------------------------------------
$PY - "$API_PORT" <<'PY' || fail "slow or fat clients got through"
import socket, sys, time
port = int(sys.argv[1])

def connect(source):
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s

# Twenty sockets from one peer that send a header line now and then.
slow = [connect("127.0.0.1") for _ in range(20)]
for s in slow:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\n")
time.sleep(0.5)
for s in slow:
    try:
        s.sendall(b"X-Slow: 1\r\n")
    except OSError:
        pass
# Another client is served at once.
start = time.monotonic()
c = connect("127.0.0.2")
c.settimeout(5)
c.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
answer = c.recv(4096)
took = time.monotonic() - start
assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
assert took < 1.0, "healthz took %.2f s beside 20 slow clients" % took
# The slow ones are answered 503 (over the per-peer cap) or 408 (too slow).
statuses = []
for s in slow:
    s.settimeout(8)
    try:
        statuses.append(s.recv(64)[9:12])
    except OSError:
        statuses.append(b"")
assert statuses.count(b"503") == 12, statuses
assert statuses.count(b"408") == 8, statuses

# 20,000 headers of 8 KB: refused after the first 16 KiB.
f = connect("127.0.0.3")
f.settimeout(10)
sent = 0
try:
    f.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\n")
    line = b"X-Fat: " + b"v" * 8000 + b"\r\n"
    for _ in range(20000):
        f.sendall(line)
        sent += len(line)
except OSError:
    pass
answer = f.recv(4096)
assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
assert sent < 32 << 20, "the node read %d bytes of headers" % sent
PY
pid=$(cat "$NODE/secondread.pid")
rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
[ "$rss_kib" -lt $((200 * 1024)) ] || fail "node RSS $rss_kib KiB after a fat-header request"
for reason in too_many_connections_from_peer header_timeout headers_too_large; do
  n=$(metric "secondread_http_refused_total{reason=\"$reason\",server=\"api\"}")
  [ "${n%.*}" -ge 1 ] || fail "no $reason refusal counted"
done
grep -q '"event":"http_refused".*"peer":"127.0.0.1".*"reason":"too_many_connections_from_peer"' "$LOG" ||
  fail "refusals not logged with the peer"
pass "slow-header clients refused or timed out while /healthz answered; a fat-header request got 431"

# ---- Range ---------------------------------------------------------------------
ranges="bytes=0-$(printf ',0-%.0s' $(seq 1 2599))"
size=$(curl -sS -o "$WORK/app.js" -w '%{size_download} %{http_code}' -H "Range: $ranges" "$BASE/app.js")
[ "${size#* }" = 200 ] || fail "Range answered ${size#* }"
[ "${size% *}" -lt 1000000 ] || fail "Range answer of ${size% *} bytes"
cmp -s "$WORK/app.js" <(curl -sS "$BASE/app.js") || fail "a Range request did not get the whole file"
pass "2,600 overlapping ranges: the plain file"

# ---- the API's access trail ----------------------------------------------------
ready=$(curl -sS "$BASE/readyz")
[ "$ready" = '{"status":"ready"}' ] || fail "API /readyz says more than the state: $ready"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SECONDREAD_TOKEN" \
  -H 'X-Forwarded-For: 198.51.100.9, 203.0.113.7' "$BASE/api/v1/worklist?status=new&limit=5")
[ "$code" = 200 ] || fail "worklist answered $code"
row=$(sql "SELECT actor || '|' || remote_addr || '|' || (detail->'filter'->>'limit') || '|' || (detail ? 'study_ids')
           FROM audit_log WHERE action = 'view_worklist' ORDER BY id DESC LIMIT 1")
[ "$row" = "dev-radiologist|203.0.113.7|5|true" ] || fail "worklist audit row: $row"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'X-Forwarded-For: 203.0.113.8' "$BASE/api/v1/worklist")
[ "$code" = 401 ] || fail "no token answered $code"
grep -q '"event":"api_denied".*"peer":"203.0.113.8"' "$LOG" || fail "401 not logged with the client address"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SECONDREAD_TOKEN" "$BASE/api/v1/audit")
[ "$code" = 403 ] || fail "radiologist on the audit log answered $code"
grep -q '"event":"api_denied".*"status":403.*"token":"dev-radiologist"' "$LOG" || fail "403 not logged"
pass "worklist listing audited with the forwarded client address; 401 and 403 logged; /readyz only the state"

# ---- the audit log's owner -----------------------------------------------------
owner=$(sql "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_log'::regclass")
[ "$owner" = secondread_audit_owner ] || fail "audit_log owned by $owner"
grep -q '"event":"audit_log_unprotected".*superuser' "$LOG" || fail "no warning that a superuser login can bypass"
pass "a superuser login's migration moves audit_log to secondread_audit_owner, and the node warns"

# A hospital setup: the node's login is no superuser, cannot create roles
# and owns neither the database nor its schema (a schema's owner may drop
# any table in it); the DBA prepared the owner role once.
PGBASE=${SECONDREAD_DATABASE_URL%/*}
HOST_PORT=${PGBASE#*@}
sql "CREATE ROLE sr_node LOGIN" >/dev/null
sql "CREATE DATABASE sr_hospital" >/dev/null
as_dba() { psql "$PGBASE/sr_hospital" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
as_dba "GRANT CREATE ON SCHEMA public TO sr_node, secondread_audit_owner" >/dev/null
sql "GRANT secondread_audit_owner TO sr_node WITH ADMIN OPTION" >/dev/null
NODE_URL="postgresql://sr_node@$HOST_PORT/sr_hospital"
echo "$NODE_URL" >"$WORK/hospital.url"
sed "s#^  url_file: .*#  url_file: $WORK/hospital.url#" "$SECONDREAD_CONFIG" >"$WORK/hospital.yaml"
"$SECONDREAD_BIN" migrate --config "$WORK/hospital.yaml" >"$WORK/migrate.log" 2>&1 ||
  fail "migrate as a plain login failed: $(tail -n 5 "$WORK/migrate.log")"
as_node() { psql "$NODE_URL" -qAt -v ON_ERROR_STOP=1 -c "$1"; }
[ "$(as_node "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_log'::regclass")" = \
  secondread_audit_owner ] || fail "audit_log not moved for the plain login"
[ "$(as_node "SELECT pg_has_role('sr_node', 'secondread_audit_owner', 'MEMBER')")" = f ] ||
  fail "the node's login is still a member of the owner role"
as_node "INSERT INTO audit_log (actor, role, action, remote_addr) VALUES ('probe', 'admin', 'view_audit', '127.0.0.1')" \
  >/dev/null || fail "the node's login cannot insert audit rows"
[ "$(as_node "SELECT count(*) FROM audit_log WHERE actor = 'probe'")" = 1 ] || fail "the node's login cannot read audit rows"
while IFS= read -r stmt; do
  if as_node "$stmt" >/dev/null 2>&1; then fail "the node's login could: $stmt"; fi
done <<'SQL'
UPDATE audit_log SET actor = 'someone-else'
DELETE FROM audit_log
TRUNCATE audit_log
ALTER TABLE audit_log DISABLE TRIGGER USER
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change
DROP TRIGGER audit_log_no_change ON audit_log
ALTER TABLE audit_log OWNER TO sr_node
DROP TABLE audit_log
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'
SET ROLE secondread_audit_owner
GRANT secondread_audit_owner TO sr_node
SQL
[ "$(as_node "SELECT count(*) FROM audit_log WHERE actor = 'probe'")" = 1 ] || fail "the probe row changed"
pass "a plain login keeps INSERT and SELECT only: no UPDATE, DELETE, TRUNCATE, DISABLE TRIGGER, ALTER, DROP or SET ROLE"

# Without the DBA's preparation the migration still completes and leaves
# the table as it was (the node then warns at start).
sql "CREATE ROLE sr_plain LOGIN" >/dev/null
sql "CREATE DATABASE sr_plain OWNER sr_plain" >/dev/null
echo "postgresql://sr_plain@$HOST_PORT/sr_plain" >"$WORK/plain.url"
sed "s#^  url_file: .*#  url_file: $WORK/plain.url#" "$SECONDREAD_CONFIG" >"$WORK/plain.yaml"
"$SECONDREAD_BIN" migrate --config "$WORK/plain.yaml" >"$WORK/migrate-plain.log" 2>&1 ||
  fail "migrate without the owner role failed: $(tail -n 5 "$WORK/migrate-plain.log")"
[ "$(psql "postgresql://sr_plain@$HOST_PORT/sr_plain" -qAt -c \
  "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_log'::regclass")" = sr_plain ] ||
  fail "audit_log moved without the DBA's preparation"
pass "without the DBA's preparation the migration completes and the table keeps its owner"
finish
