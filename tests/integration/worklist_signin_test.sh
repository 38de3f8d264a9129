#!/usr/bin/env bash
# Worklist sign-in against the real node and PostgreSQL. OpenID Connect
# access tokens minted with openssl-made RSA and P-256 keys are checked
# against the hospital's key set, read once from a file and once from a local
# HTTPS server with a throwaway CA: valid tokens sign in with the roles their
# claim maps to; expired, not-yet-valid, wrong-audience, wrong-issuer,
# wrong-key, alg none and HS256-with-the-public-key tokens are refused; a new
# kid is picked up and a removed one stops working. Tokens issued through the
# admin API are shown once, stored only as hashes, expire and can be revoked;
# a configured token past its expiry is refused. Every attempt lands in the
# audit log with its reason.
source "$(dirname "$0")/lib/common.sh"
source "$IT_REPO/scripts/lib/tls.sh"
it_setup "$@"

MINT=("$PY" "$IT_REPO/tests/integration/tools/mint_jwt.py")
KEYS="$WORK/keys"
mkdir -p "$KEYS" "$WORK/idp"
ISS=https://idp.hospital.test/realms/radiology
AUD=secondread

"${MINT[@]}" keygen rsa "$KEYS/r1.pem"
"${MINT[@]}" keygen ec "$KEYS/e1.pem"
"${MINT[@]}" keygen rsa "$KEYS/forger.pem"
"${MINT[@]}" keygen ec "$KEYS/e2.pem"
"${MINT[@]}" jwks "$KEYS/r1.pem:r1" "$KEYS/e1.pem:e1" >"$WORK/idp/jwks.json"

# claims USER ROLE [extra python dict items]: a claims document with offsets.
claims() {
  printf '{"iss": "%s", "aud": ["account", "%s"], "sub": "sub-%s", "preferred_username": "%s", "exp": "+300", "iat": "-5", "realm_access": {"roles": ["%s", "offline_access"]}%s}' \
    "$ISS" "$AUD" "$1" "$1" "$2" "${3:-}"
}
mint() { "${MINT[@]}" token "$@"; }

OIDC=(--set "api.oidc.issuer=$ISS" --set "api.oidc.audience=$AUD"
      --set api.oidc.roles_claim=realm_access.roles
      --set 'api.oidc.roles.radiologist=[radiologist]' --set 'api.oidc.roles.admin=[secondread-admin]'
      --set api.oidc.jwks_refresh_seconds=1 --set api.oidc.jwks_min_refresh_seconds=1
      --set api.oidc.clock_skew_seconds=30)
node_up "${OIDC[@]}" --set "api.oidc.jwks_file=$WORK/idp/jwks.json"
BASE=$($PY -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.scheme + "://" + p.netloc)' \
  "$SECONDREAD_WORKLIST_URL")
LOG="$NODE/log/secondread.log"
RESP="$WORK/resp"

# code TOKEN [METHOD PATH [BODY]]: the HTTP status; the body is in $RESP.
code() {
  local token=$1 method=${2:-GET} path=${3:-/api/v1/worklist} body=${4-}
  local args=(-sS -o "$RESP" -w '%{http_code}' -X "$method" --max-time 30)
  [ "$token" != "-" ] && args+=(-H "Authorization: Bearer $token")
  if [ -n "$body" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
  curl "${args[@]}" "$BASE$path"
}
expect() {  # STATUS TOKEN [METHOD PATH [BODY]] -- message
  local want=$1; shift
  local got
  got=$(code "$@") || fail "curl"
  [ "$got" = "$want" ] || fail "HTTP $got, expected $want for ${2:-GET} ${3:-/api/v1/worklist}: $(head -c 300 "$RESP")"
}
# last_sign_in: "result|reason|actor|method" of the newest sign_in row.
last_sign_in() {
  sql "SELECT detail->>'result' || '|' || coalesce(detail->>'reason', '') || '|' || actor || '|' || (detail->>'method')
       FROM audit_log WHERE action = 'sign_in' ORDER BY id DESC LIMIT 1"
}
refused() {  # REASON TOKEN -- a 401 audited with REASON
  expect 401 "$2"
  local row
  row=$(last_sign_in)
  [[ "$row" == "failure|$1|"* ]] || fail "expected a failure row with reason $1, got: $row"
}

# ---- OIDC with the key set from a file -----------------------------------------
RAD_JWT=$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee radiologist)")
expect 200 "$RAD_JWT"
[ "$(last_sign_in)" = "success||dr.lee|oidc" ] || fail "RS256 sign-in row: $(last_sign_in)"
expect 200 "$RAD_JWT"
[ "$(sql "SELECT count(*) FROM audit_log WHERE action = 'sign_in' AND actor = 'dr.lee'")" = 1 ] ||
  fail "a token's second request was audited as another sign-in"
[ "$(sql "SELECT actor || '|' || role FROM audit_log WHERE action = 'view_worklist' ORDER BY id DESC LIMIT 1")" = \
  "dr.lee|radiologist" ] || fail "the worklist view is not attributed to the OIDC user"
ADMIN_JWT=$(mint "$KEYS/e1.pem" e1 "$(claims ops.kim secondread-admin)")
expect 200 "$ADMIN_JWT" GET /api/v1/audit
expect 403 "$RAD_JWT" GET /api/v1/audit
expect 403 "$ADMIN_JWT" POST /api/v1/studies/1/reviews '{"verdict":"agree","expected_version":1}'
pass "RS256 and ES256 tokens sign in with the roles their claim maps to; one audit row per token"

refused expired "$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee radiologist ', "exp": "-120"')")"
refused not_yet_valid "$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee radiologist ', "nbf": "+600"')")"
refused issued_in_future "$(mint "$KEYS/e1.pem" e1 "$(claims dr.lee radiologist ', "iat": "+600"')")"
refused wrong_audience "$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee radiologist ', "aud": "another-app"')")"
refused wrong_issuer "$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee radiologist ', "iss": "https://evil.test/"')")"
refused bad_signature "$(mint "$KEYS/forger.pem" r1 "$(claims dr.lee radiologist)")"
refused algorithm "$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee radiologist)" --alg none)"
refused algorithm "$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee radiologist)" --alg HS256 --hs-secret "$KEYS/r1.pub.pem")"
refused unknown_key "$(mint "$KEYS/forger.pem" nobody "$(claims dr.lee radiologist)")"
refused no_role "$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee offline_access)")"
# Refused after the signature held: the subject is recorded.
[ "$(sql "SELECT detail->>'subject' FROM audit_log WHERE action = 'sign_in' AND detail->>'reason' = 'wrong_audience'")" = \
  sub-dr.lee ] || fail "the wrong-audience row does not name the subject"
grep -q '"event":"api_denied".*"reason":"expired"' "$LOG" || fail "the expired token was not logged at warn"
pass "expired, not yet valid, future iat, wrong audience, wrong issuer, wrong key, alg none, HS256 and unknown kid refused and audited"

# Rotation in the file: e2 appears, then r1 is removed.
"${MINT[@]}" jwks "$KEYS/r1.pem:r1" "$KEYS/e1.pem:e1" "$KEYS/e2.pem:e2" >"$WORK/idp/jwks.json.new"
mv "$WORK/idp/jwks.json.new" "$WORK/idp/jwks.json"
sleep 1.2
NEW_JWT=$(mint "$KEYS/e2.pem" e2 "$(claims dr.new radiologist)")
expect 200 "$NEW_JWT"
"${MINT[@]}" jwks "$KEYS/e1.pem:e1" "$KEYS/e2.pem:e2" >"$WORK/idp/jwks.json.new"
mv "$WORK/idp/jwks.json.new" "$WORK/idp/jwks.json"
sleep 1.2
refused unknown_key "$RAD_JWT"
expect 200 "$NEW_JWT"
pass "key rotation in the file: a new kid is accepted, a removed one refused"

# ---- the admin API for issued tokens -----------------------------------------
ADMIN=$SECONDREAD_ADMIN_TOKEN
expect 201 "$ADMIN" POST /api/v1/tokens '{"name": "reader-1", "role": "radiologist", "expires_in_seconds": 3600}'
ISSUED=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$RESP")
ISSUED_ID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$RESP")
[[ "$ISSUED" == srt_* ]] || fail "issued token has no prefix: $ISSUED"
expect 200 "$ISSUED"
[ "$(last_sign_in)" = "success||reader-1|issued_token" ] || fail "issued token sign-in row: $(last_sign_in)"
HASH=$(printf %s "$ISSUED" | sha256sum | cut -d' ' -f1)
[ "$(sql "SELECT sha256 FROM api_tokens WHERE id = $ISSUED_ID")" = "$HASH" ] || fail "stored hash is not the token's SHA-256"
# Only the hash: the token's text is nowhere in the database nor in the log.
pg_dump -h 127.0.0.1 -p "$SECONDREAD_PG_PORT" -U postgres secondread >"$WORK/dump.sql"
grep -c "$HASH" "$WORK/dump.sql" >/dev/null || fail "the dump does not hold the hash"
! grep -q "${ISSUED#srt_}" "$WORK/dump.sql" || fail "the token itself is stored in the database"
! grep -q "${ISSUED#srt_}" "$LOG" || fail "the token itself is in the node's log"
expect 200 "$ADMIN" GET /api/v1/tokens
$PY - "$RESP" <<'PY' || fail "token list: $(head -c 400 "$RESP")"
import json, sys
d = json.load(open(sys.argv[1]))
t = [i for i in d["items"] if i["name"] == "reader-1"][0]
assert t["state"] == "active" and t["created_by"] == "dev-admin" and t["role"] == "radiologist", t
assert "token" not in t and "sha256" not in t, t
PY
expect 403 "$ISSUED" POST /api/v1/tokens '{"name": "mine", "role": "admin"}'
expect 409 "$ADMIN" POST /api/v1/tokens '{"name": "reader-1", "role": "radiologist"}'
expect 409 "$ADMIN" POST /api/v1/tokens '{"name": "dev-radiologist", "role": "radiologist"}'
expect 400 "$ADMIN" POST /api/v1/tokens '{"name": "forever", "role": "radiologist", "expires_in_seconds": 999999999}'
expect 400 "$ADMIN" POST /api/v1/tokens '{"name": "x", "role": "superuser"}'
pass "an issued token is shown once, works, and only its hash is stored"

expect 201 "$ADMIN" POST /api/v1/tokens '{"name": "reader-short", "role": "radiologist", "expires_in_seconds": 2}'
SHORT=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$RESP")
expect 200 "$SHORT"
sleep 2.5
refused expired "$SHORT"
expect 200 "$ADMIN" POST "/api/v1/tokens/$ISSUED_ID/revoke" "{}"
[ "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$RESP")" = revoked ] || fail "revoke answer"
refused revoked "$ISSUED"
expect 404 "$ADMIN" POST /api/v1/tokens/999999/revoke "{}"
refused unknown_token "srt_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
[ "$(sql "SELECT string_agg(action, ',' ORDER BY id) FROM audit_log WHERE action IN ('issue_token', 'revoke_token')")" = \
  "issue_token,issue_token,revoke_token" ] || fail "token administration not audited"
pass "issued tokens expire and can be revoked; both are refused and audited"

# ---- OIDC with the key set from an HTTPS URL; an expired configured token ------
make_ca "$WORK/ca" idp-ca
issue_cert "$WORK/ca/idp-ca" "$WORK/ca/idp" "/CN=localhost" --server --san "IP:127.0.0.1,DNS:localhost"
"${MINT[@]}" jwks "$KEYS/r1.pem:r1" "$KEYS/e1.pem:e1" >"$WORK/idp/jwks.json"
"$PY" "$IT_REPO/tests/integration/tools/jwks_server.py" "$WORK/idp" "$WORK/ca/idp.pem" "$WORK/ca/idp.key" \
  "$WORK/idp.port" >"$WORK/idp.log" 2>&1 &
IDP_PID=$!
it_also_on_exit "kill $IDP_PID 2>/dev/null"
for _ in $(seq 1 100); do [ -s "$WORK/idp.port" ] && break; sleep 0.1; done
[ -s "$WORK/idp.port" ] || fail "the HTTPS key server did not start"
URL="https://127.0.0.1:$(cat "$WORK/idp.port")/jwks.json"
# Plain HTTP is refused at start.
! "$SECONDREAD_BIN" migrate --config "$SECONDREAD_CONFIG" "${OIDC[@]}" \
  --set "api.oidc.jwks_url=http://127.0.0.1:1/jwks.json" >"$WORK/http.log" 2>&1 || fail "an http:// key URL was accepted"
grep -q "https" "$WORK/http.log" || fail "the refusal does not say https: $(cat "$WORK/http.log")"
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
TOKENS="[{name: dev-radiologist, role: radiologist, sha256: $(sha "$SECONDREAD_TOKEN")},
 {name: dev-admin, role: admin, sha256: $(sha "$ADMIN"), expires: '2099-01-01T00:00:00Z'},
 {name: old-kiosk, role: radiologist, sha256: $(sha old-kiosk-token), expires: '2020-01-01'}]"
node_restart "${OIDC[@]}" --set "api.oidc.jwks_url=$URL" --set "api.oidc.jwks_ca_file=$WORK/ca/idp-ca.pem" \
  --set "api.tokens=$TOKENS"
expect 200 "$RAD_JWT"
expect 200 "$ADMIN" GET /api/v1/audit
refused expired old-kiosk-token
grep -q "GET /jwks.json" "$WORK/idp.log" || fail "the node did not fetch the key set over HTTPS"
"${MINT[@]}" jwks "$KEYS/e1.pem:e1" "$KEYS/e2.pem:e2" >"$WORK/idp/jwks.json.new"
mv "$WORK/idp/jwks.json.new" "$WORK/idp/jwks.json"
sleep 1.2
expect 200 "$NEW_JWT"
sleep 1.2
refused unknown_key "$(mint "$KEYS/r1.pem" r1 "$(claims dr.lee radiologist)")"
pass "key set over HTTPS from a throwaway CA, rotated; http:// refused; an expired configured token refused"

# ---- migration 0013 for a login that is no superuser ---------------------------
# As in a hospital: the DBA prepared the audit log's owner (migration 0005),
# which ends the login's membership; 0013 then needs it granted again.
PGBASE=${SECONDREAD_DATABASE_URL%/*}
HOST_PORT=${PGBASE#*@}
sql "CREATE ROLE sr_plain LOGIN" >/dev/null
for db in sr_regrant sr_plain; do
  sql "CREATE DATABASE $db" >/dev/null
  psql "$PGBASE/$db" -qAt -v ON_ERROR_STOP=1 -c "GRANT CREATE ON SCHEMA public TO sr_plain, secondread_audit_owner" >/dev/null
  echo "postgresql://sr_plain@$HOST_PORT/$db" >"$WORK/$db.url"
  sed "s#^  url_file: .*#  url_file: $WORK/$db.url#" "$SECONDREAD_CONFIG" >"$WORK/$db.yaml"
done
actions() { psql "postgresql://sr_plain@$HOST_PORT/$1" -qAt -c \
  "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'audit_log_action_check'"; }
member() { psql "postgresql://sr_plain@$HOST_PORT/$1" -qAt -c "SELECT pg_has_role('sr_plain', 'secondread_audit_owner', 'MEMBER')"; }
sql "GRANT secondread_audit_owner TO sr_plain WITH ADMIN OPTION" >/dev/null
"$SECONDREAD_BIN" migrate --config "$WORK/sr_regrant.yaml" --to 12 >"$WORK/m1.log" 2>&1 || fail "migrate to 12: $(tail -3 "$WORK/m1.log")"
[ "$(member sr_regrant)" = f ] || fail "0005 left the membership"
sql "GRANT secondread_audit_owner TO sr_plain WITH ADMIN OPTION" >/dev/null
"$SECONDREAD_BIN" migrate --config "$WORK/sr_regrant.yaml" >"$WORK/m2.log" 2>&1 || fail "migrate 13: $(tail -3 "$WORK/m2.log")"
[[ "$(actions sr_regrant)" == *"'purge_study'"*"'sign_in'"*"'view_worklist'"* ]] || fail "0013 and 0014 did not extend the actions with one grant: $(actions sr_regrant)"
[ "$(member sr_regrant)" = f ] || fail "0013 left the membership"
sql "GRANT secondread_audit_owner TO sr_plain WITH ADMIN OPTION" >/dev/null
"$SECONDREAD_BIN" migrate --config "$WORK/sr_regrant.yaml" --to 12 >"$WORK/m3.log" 2>&1 || fail "down 13"
[ "$(member sr_regrant)" = f ] || fail "0013's down left the membership"
[[ "$(actions sr_regrant)" != *sign_in* && "$(actions sr_regrant)" != *purge_* && "$(actions sr_regrant)" == *view_worklist* ]] || fail "down: $(actions sr_regrant)"
# Without the second grant 0013 completes and leaves the actions; the node warns.
sql "GRANT secondread_audit_owner TO sr_plain WITH ADMIN OPTION" >/dev/null
"$SECONDREAD_BIN" migrate --config "$WORK/sr_plain.yaml" >"$WORK/m4.log" 2>&1 || fail "plain migrate: $(tail -3 "$WORK/m4.log")"
[[ "$(actions sr_plain)" != *sign_in* && "$(actions sr_plain)" != *purge_* ]] || fail "0013 or 0014 changed audit_log without the owner's rights"
[ "$(psql "postgresql://sr_plain@$HOST_PORT/sr_plain" -qAt -c "SELECT count(*) FROM api_tokens")" = 0 ] || fail "no api_tokens"
pass "migrations 0013 and 0014 as a plain login: up and down change the actions when the DBA granted the owner again, else leave them"

# A server whose certificate the configured CA did not sign is not believed.
make_ca "$WORK/other" other-ca
node_restart "${OIDC[@]}" --set "api.oidc.jwks_url=$URL" --set "api.oidc.jwks_ca_file=$WORK/other/other-ca.pem"
refused keys_unavailable "$(mint "$KEYS/e1.pem" e1 "$(claims dr.lee radiologist)")"
pass "a key server with a certificate from another CA is refused"
node_restart --set "database.url_file=$WORK/sr_plain.url"
grep -q '"event":"audit_log_actions_missing".*"sign_in"' "$LOG" || fail "no warning that sign-ins cannot be audited"
pass "a node whose audit log lacks the sign-in actions warns at start"
finish
