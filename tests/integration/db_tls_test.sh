#!/usr/bin/env bash
# PostgreSQL over TLS with sslmode=verify-full. The private PostgreSQL gets
# ssl=on with a server certificate (DNS:localhost, IP:127.0.0.1) from a
# throwaway CA, and pg_hba.conf then accepts only TLS connections. The node
# migrates and serves with ?sslmode=verify-full&sslrootcert=CA in its
# database URL and reads a chest radiograph end to end; every connection it
# holds is encrypted. A CA bundle from another CA, and a host name the
# certificate does not carry, stop `migrate` and `serve` at start with
# libpq's reason.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
source "$IT_REPO/scripts/lib/tls.sh"
it_setup "$@"

IT_WORKER=1 node_up
PGDATA=$SECONDREAD_PGDATA
PGBIN=$SECONDREAD_PG_BIN
PORT=$SECONDREAD_PG_PORT

# The server's certificate, and another CA for the negative case.
C="$WORK/pgtls"
make_ca "$C" ca "/O=secondread test/CN=database CA" || fail "make_ca"
make_ca "$C" other-ca "/O=secondread test/CN=another CA" || fail "make_ca other"
issue_cert "$C/ca" "$C/server" "/O=secondread test/CN=localhost" --server --san "DNS:localhost,IP:127.0.0.1" ||
  fail "issue server certificate"
# PostgreSQL wants its key owned by the server's user and unreadable to others.
if [ "$(id -u)" -eq 0 ]; then
  install -o postgres -g postgres -m 600 "$C/server.pem" "$PGDATA/server.crt"
  install -o postgres -g postgres -m 600 "$C/server.key" "$PGDATA/server.key"
else
  install -m 600 "$C/server.pem" "$PGDATA/server.crt"
  install -m 600 "$C/server.key" "$PGDATA/server.key"
fi
sql "ALTER SYSTEM SET ssl = on" >/dev/null
sql "ALTER SYSTEM SET ssl_cert_file = 'server.crt'" >/dev/null
sql "ALTER SYSTEM SET ssl_key_file = 'server.key'" >/dev/null
sql "ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1.2'" >/dev/null
# Only TLS from here on.
cat >"$WORK/pg_hba.conf" <<'HBA'
hostssl all all 127.0.0.1/32 trust
hostnossl all all 0.0.0.0/0 reject
HBA
if [ "$(id -u)" -eq 0 ]; then
  install -o postgres -g postgres -m 600 "$WORK/pg_hba.conf" "$PGDATA/pg_hba.conf"
else
  install -m 600 "$WORK/pg_hba.conf" "$PGDATA/pg_hba.conf"
fi
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" reload >/dev/null
kill -TERM "$SECONDREAD_PID"
while kill -0 "$SECONDREAD_PID" 2>/dev/null; do sleep 0.1; done

BASE="postgresql://postgres@127.0.0.1:$PORT/secondread"
TLS_URL="$BASE?sslmode=verify-full&sslrootcert=$C/ca.pem"
for _ in $(seq 1 50); do
  [ "$(psql "$TLS_URL" -qAt -c 'SHOW ssl' 2>/dev/null)" = on ] && break
  sleep 0.2
done
[ "$(psql "$TLS_URL" -qAt -c 'SHOW ssl')" = on ] || fail "PostgreSQL did not turn TLS on"
psql "$BASE?sslmode=disable" -qAt -c 'SELECT 1' >"$WORK/plain.out" 2>&1 && fail "PostgreSQL still takes plaintext"
grep -q "no encryption" "$WORK/plain.out" || fail "plaintext refused for another reason: $(cat "$WORK/plain.out")"
pass "PostgreSQL serves TLS with the throwaway CA's certificate and refuses plaintext"

# The node, migrated and started through verify-full (dev-up writes the URL
# from pg.env into database.url).
# The URL holds '&', so it is written quoted for the shell that sources pg.env.
$PY - "$NODE/pg.env" "$TLS_URL" <<'PY'
import re, shlex, sys
path, url = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.sub(r"^SECONDREAD_DATABASE_URL=.*$", lambda _: "SECONDREAD_DATABASE_URL=" + shlex.quote(url), text, flags=re.M)
open(path, "w").write(text)
PY
node_restart
[ "$SECONDREAD_DATABASE_URL" = "$TLS_URL" ] || fail "the node's URL is $SECONDREAD_DATABASE_URL"
grep -q "schema version" "$NODE/log/migrate.log" || fail "migrate did not run: $(cat "$NODE/log/migrate.log")"
$PY "$IT_REPO/tools/gen_study.py" "$WORK/s1" --studies 1 --lesion yes --modality CR --seed 7 >/dev/null
send "$WORK"/s1/study-*/*.dcm >/dev/null 2>&1 || fail "storescu"
wait_sql "SELECT state FROM reads" done 90
[ "$(sql "SELECT count(*) FROM instances")" -ge 1 ] || fail "no instance registered"
enc=$(sql "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
           WHERE a.datname = 'secondread' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()")
[ "${enc%|*}" = "${enc#*|}" ] && [ "${enc#*|}" -ge 1 ] || fail "the node's connections encrypted|all: $enc"
pass "secondread migrate and serve over sslmode=verify-full; a radiograph read end to end; all ${enc#*|} of the node's connections use TLS"

# What verify-full refuses, each stopping the node at start.
refused() {  # label url expected-words
  local out
  out=$("$SECONDREAD_BIN" migrate --config "$SECONDREAD_CONFIG" --set "database.url=$2" 2>&1) &&
    fail "$1: migrate accepted the server"
  grep -q "$3" <<<"$out" || fail "$1: migrate's refusal does not say '$3': $out"
  out=$(timeout 60 "$SECONDREAD_BIN" serve --config "$SECONDREAD_CONFIG" --set "database.url=$2" \
    --set "log.file=$WORK/refused.log" 2>&1) && fail "$1: serve started"
  grep -q "$3" <<<"$out" || fail "$1: serve's refusal does not say '$3': $out"
  grep '"level":"error"' "$WORK/refused.log" | grep >/dev/null "$3" || fail "$1: no error line in the log saying '$3'"
}
refused "another CA" "$BASE?sslmode=verify-full&sslrootcert=$C/other-ca.pem" "certificate verify failed"
refused "wrong host name" \
  "postgresql://postgres@db.example.org:$PORT/secondread?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert=$C/ca.pem" \
  'does not match host name'
kill -0 "$SECONDREAD_PID" || fail "the running node stopped"
pass "a server certificate from another CA and a host name it does not carry stop migrate and serve, with libpq's reason in the log"
finish
