#!/usr/bin/env bash
# The worklist API against the real node, a real worker and PostgreSQL: a
# study with a lesion and a clean one are read; the worklist lists the flagged
# one first and filters and pages correctly; the study detail has the
# findings; the Secondary Capture comes back as a PNG; a review is stored and
# audited; two reviews racing on the same version give one 201 and one 409;
# tokens, roles and parameters are enforced; SQL-shaped filter values change
# nothing. Needs scripts/dev-up to configure api.* and write
# SECONDREAD_WORKLIST_URL, SECONDREAD_TOKEN and SECONDREAD_ADMIN_TOKEN.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"

IT_WORKER=1 node_up --set api.performance_refresh_seconds=1
[ -n "${SECONDREAD_WORKLIST_URL:-}" ] || fail "dev-up wrote no SECONDREAD_WORKLIST_URL to $NODE/env"
[ -n "${SECONDREAD_TOKEN:-}" ] || fail "dev-up wrote no SECONDREAD_TOKEN"
[ -n "${SECONDREAD_ADMIN_TOKEN:-}" ] || fail "dev-up wrote no SECONDREAD_ADMIN_TOKEN"
# The URL may name the page or the API; requests here go to its origin.
BASE=$($PY -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.scheme + "://" + p.netloc)' \
  "$SECONDREAD_WORKLIST_URL")
RAD=$SECONDREAD_TOKEN
ADMIN=$SECONDREAD_ADMIN_TOKEN
RESP="$WORK/resp"
HDRS="$WORK/headers"

# api METHOD PATH [TOKEN] [BODY]: prints the HTTP status; the body is in $RESP,
# the headers in $HDRS. TOKEN "-" sends no Authorization header.
api() {
  local method=$1 path=$2 token=${3:-$RAD} body=${4-}
  local args=(-sS -o "$RESP" -D "$HDRS" -w '%{http_code}' -X "$method" --max-time 30)
  [ "$token" != "-" ] && args+=(-H "Authorization: Bearer $token")
  if [ -n "$body" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
  curl "${args[@]}" "$BASE$path"
}
# expect STATUS METHOD PATH [TOKEN] [BODY]
expect() {
  local want=$1; shift
  local got
  got=$(api "$@") || fail "curl $1 $2"
  [ "$got" = "$want" ] || fail "$1 $2: HTTP $got, expected $want: $(head -c 300 "$RESP")"
}
# check 'python statements over d (the JSON body)' [message]
check() {
  $PY - "$RESP" "$1" <<'PY' || fail "${2:-check failed}: $1 on $(head -c 600 "$RESP")"
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[2])
PY
}
# get 'python expression over d': prints its value.
get() { $PY -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$RESP" "$1"; }
header() {
  tr -d '\r' <"$HDRS" | awk -v h="$(tr '[:upper:]' '[:lower:]' <<<"$1")" -F': ' \
    'tolower($1) == h { sub(/^[^:]*: /, ""); print; exit }'
}

# ---- two studies, read by the worker -----------------------------------------
$PY "$IT_REPO/tools/gen_study.py" "$WORK/lesion" --studies 1 --lesion yes --modality CR --seed 31 >/dev/null
$PY "$IT_REPO/tools/gen_study.py" "$WORK/clean" --studies 1 --lesion no --modality DX --seed 32 >/dev/null
manifest() { $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['studies'][0][sys.argv[2]])" "$1" "$2"; }
LESION_UID=$(manifest "$WORK/lesion/manifest.json" study_uid)
LESION_PID=$(manifest "$WORK/lesion/manifest.json" patient_id)
LESION_NAME=$(manifest "$WORK/lesion/manifest.json" patient_name)
send "$WORK"/lesion/study-*/*.dcm >/dev/null 2>&1 || fail "storescu lesion study"
sleep 1  # arrival order: the lesion study first
send "$WORK"/clean/study-*/*.dcm >/dev/null 2>&1 || fail "storescu clean study"
wait_sql "SELECT count(*) FROM reads WHERE state = 'done'" 2 180
wait_sql "SELECT count(*) FROM worklist_entries" 2 30
wait_sql "SELECT count(*) FROM result_objects WHERE kind = 'sc'" 2 60
pass "both studies read"

# ---- the page and health -------------------------------------------------------
expect 200 GET /healthz -
expect 200 GET / -
grep -qi '<html' "$RESP" || fail "/ is not the page"
[[ "$(header Content-Security-Policy)" == *"default-src 'self'"* ]] || fail "no CSP on the page"
[[ "$(header Content-Security-Policy)" == *"frame-ancestors 'none'"* ]] || fail "CSP without frame-ancestors"
[ "$(header X-Content-Type-Options)" = nosniff ] || fail "no nosniff on the page"
pass "the page is served with its CSP; health answers without a token"

# ---- the worklist: order, filters, pagination ----------------------------------
expect 200 GET /api/v1/worklist
[ "$(header Cache-Control)" = no-store ] || fail "worklist without Cache-Control: no-store"
check '
assert d["total"] == 2 and len(d["items"]) == 2 and d["limit"] == 50 and d["offset"] == 0
a, b = d["items"]
assert a["flagged"] is True and b["flagged"] is False, "flagged first"
assert a["modality"] == "CR" and b["modality"] == "DX"
assert a["model"] == "synthetic-nodule-demo" and a["status"] == "new" and a["version"] >= 1
assert a["top_score"] > a["threshold"] > b["top_score"]
for k in ("study_id", "priority", "arrived_at", "age_seconds", "accession_number", "patient_name", "patient_id"):
    assert k in a, k
' "worklist order"
LESION=$(get 'd["items"][0]["study_id"]')
CLEAN=$(get 'd["items"][1]["study_id"]')
[ "$(get 'd["items"][0]["patient_id"]')" = "$LESION_PID" ] || fail "lesion patient id"

count() {  # query -> total,len
  expect 200 GET "/api/v1/worklist?$1"
  get 'str(d["total"]) + "," + str(len(d["items"])) + "," + ",".join(str(i["study_id"]) for i in d["items"])'
}
[ "$(count flagged=true)" = "1,1,$LESION" ] || fail "flagged=true: $(count flagged=true)"
[ "$(count flagged=false)" = "1,1,$CLEAN" ] || fail "flagged=false"
[ "$(count modality=CR)" = "1,1,$LESION" ] || fail "modality=CR"
[ "$(count modality=DX)" = "1,1,$CLEAN" ] || fail "modality=DX"
[ "$(count modality=MR)" = "0,0," ] || fail "modality=MR"
[ "$(count model=synthetic-nodule-demo)" = "2,2,$LESION,$CLEAN" ] || fail "model"
[ "$(count model=other-model)" = "0,0," ] || fail "model=other-model"
[ "$(count status=new)" = "2,2,$LESION,$CLEAN" ] || fail "status=new"
[ "$(count status=agreed,dismissed)" = "0,0," ] || fail "status=agreed,dismissed"
YESTERDAY=$(date -u -d yesterday +%F)
TOMORROW=$(date -u -d tomorrow +%F)
[ "$(count "from=$YESTERDAY&to=$TOMORROW")" = "2,2,$LESION,$CLEAN" ] || fail "date range"
[ "$(count "from=2000-01-01&to=2000-12-31")" = "0,0," ] || fail "old date range"
[ "$(count "from=$TOMORROW")" = "0,0," ] || fail "from tomorrow"
[ "$(count limit=1)" = "2,1,$LESION" ] || fail "limit=1"
[ "$(count 'limit=1&offset=1')" = "2,1,$CLEAN" ] || fail "limit=1&offset=1"
[ "$(count offset=5)" = "2,0," ] || fail "offset past the end"
pass "flagged first; status, modality, model, flagged and date filters; pagination with total"

# ---- the study, its image ------------------------------------------------------
# An admin's view does not take the study into review.
expect 200 GET "/api/v1/studies/$LESION" "$ADMIN"
check 'assert d["worklist"]["status"] == "new", d["worklist"]' "admin view changed the status"
expect 200 GET "/api/v1/studies/$LESION"
check "
assert d['study_id'] == $LESION and d['study_instance_uid'] == '$LESION_UID'
assert d['patient']['id'] == '$LESION_PID'
assert d['worklist']['status'] == 'in_review' and d['worklist']['flagged'] is True
assert 'disclaimer' in d and d['reviews'] == []
r = d['reads'][0]
assert r['model'] == 'synthetic-nodule-demo' and r['state'] == 'done' and r['flagged'] is True
above = [f for f in r['findings'] if f['above']]
assert len(above) == 1 and above[0]['score'] > above[0]['threshold'] and above[0]['finding_id'] > 0
kinds = sorted(x['kind'] for x in r['results'])
assert kinds == ['sc', 'sr'], kinds
" "lesion study detail"
LESION_VERSION=$(get 'd["worklist"]["version"]')
FINDING=$(get '[f for f in d["reads"][0]["findings"] if f["above"]][0]["finding_id"]')
IMAGE_URL=$(get '[x for x in d["reads"][0]["results"] if x["kind"] == "sc"][0]["image_url"]')
[[ "$IMAGE_URL" =~ ^/api/v1/studies/$LESION/images/[0-9]+\.png$ ]] || fail "image_url $IMAGE_URL"
expect 404 GET "/api/v1/studies/999999999"
pass "the study detail with its findings and results; a radiologist's view takes it into review"

expect 200 GET "$IMAGE_URL"
[ "$(header Content-Type)" = image/png ] || fail "image content type $(header Content-Type)"
[ "$(header Cache-Control)" = no-store ] || fail "image without no-store"
[ "$(head -c 8 "$RESP" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "not a PNG"
[ "$(stat -c %s "$RESP")" -gt 1000 ] || fail "PNG too small"
RESULT_ID=$(sed -E 's#.*/images/([0-9]+)\.png#\1#' <<<"$IMAGE_URL")
expect 404 GET "/api/v1/studies/$CLEAN/images/$RESULT_ID.png"
pass "the Secondary Capture as a PNG; not through another study"

# ---- a review and its audit ----------------------------------------------------
expect 201 POST "/api/v1/studies/$LESION/reviews" "$RAD" \
  "{\"verdict\":\"agree\",\"finding_id\":$FINDING,\"comment\":\"nodule RUL\",\"expected_version\":$LESION_VERSION}"
check "assert d['review_id'] > 0 and d['worklist'] == {'status': 'agreed', 'version': $LESION_VERSION + 1}, d" "review"
REVIEW_ID=$(get 'd["review_id"]')
expect 200 GET "/api/v1/studies/$LESION"
check "
rv = d['reviews']
assert len(rv) == 1 and rv[0]['review_id'] == $REVIEW_ID and rv[0]['verdict'] == 'agree'
assert rv[0]['finding_id'] == $FINDING and rv[0]['comment'] == 'nodule RUL' and rv[0]['reviewer'] == 'dev-radiologist'
assert d['worklist']['status'] == 'agreed'
" "review history"
[ "$(count status=agreed)" = "1,1,$LESION" ] || fail "status=agreed after the review"
# A finding of another study is not reviewable here.
expect 200 GET "/api/v1/studies/$CLEAN"
CLEAN_VERSION=$(get 'd["worklist"]["version"]')
expect 404 POST "/api/v1/studies/$CLEAN/reviews" "$RAD" \
  "{\"verdict\":\"agree\",\"finding_id\":$FINDING,\"expected_version\":$CLEAN_VERSION}"

expect 200 GET "/api/v1/audit?study_id=$LESION" "$ADMIN"
check "
rows = d['items']
acts = [(r['action'], r['actor'], r['role']) for r in rows]
assert ('review', 'dev-radiologist', 'radiologist') in acts, acts
assert ('view_image', 'dev-radiologist', 'radiologist') in acts, acts
assert ('view_study', 'dev-radiologist', 'radiologist') in acts, acts
assert any(a == 'view_study' and r == 'admin' for a, _, r in acts), acts
rev = [r for r in rows if r['action'] == 'review'][0]
assert rev['study_id'] == $LESION and rev['remote_addr'] == '127.0.0.1' and rev['detail']['review_id'] == $REVIEW_ID
ids = [r['id'] for r in rows]
assert ids == sorted(ids, reverse=True), 'newest first'
" "audit rows"
expect 200 GET "/api/v1/audit?limit=5" "$ADMIN"
check "
assert d['limit'] == 5 and len(d['items']) <= 5
assert any(r['action'] == 'view_audit' and r['role'] == 'admin' for r in d['items']), 'audit reads are audited'
" "audit of the audit"
pass "a review (201) changes the status and version, and is audited with actor, role and address"

# ---- two reviews racing on one version ---------------------------------------
race() {  # n verdict
  curl -sS -o "$WORK/race$1.json" -w '%{http_code}' -X POST --max-time 30 \
    -H "Authorization: Bearer $RAD" -H 'Content-Type: application/json' \
    --data-binary "{\"verdict\":\"$2\",\"expected_version\":$CLEAN_VERSION}" \
    "$BASE/api/v1/studies/$CLEAN/reviews" >"$WORK/race$1.code"
}
race 1 agree & P1=$!
race 2 disagree & P2=$!
wait "$P1" "$P2" || fail "racing curl failed"
CODES=$(sort "$WORK/race1.code" "$WORK/race2.code" | tr '\n' ' ')
[ "$CODES" = "201 409 " ] || fail "racing reviews answered $CODES"
LOSER=$(grep -l 409 "$WORK/race1.code" "$WORK/race2.code" | sed 's/\.code$/.json/')
cp "$LOSER" "$RESP"
check "
assert d['error'] == 'conflict' and d['worklist']['version'] == $CLEAN_VERSION + 1, d
assert d['worklist']['status'] in ('agreed', 'disagreed')
" "the 409 body"
expect 200 GET "/api/v1/studies/$CLEAN"
check "assert len(d['reviews']) == 1 and d['worklist']['version'] == $CLEAN_VERSION + 1" "one review stored"
# A stale dismissal is a conflict too; a current one is stored.
expect 409 POST "/api/v1/studies/$CLEAN/dismiss" "$RAD" "{\"expected_version\":$CLEAN_VERSION}"
expect 201 POST "/api/v1/studies/$CLEAN/dismiss" "$RAD" \
  "{\"expected_version\":$((CLEAN_VERSION + 1)),\"comment\":\"duplicate study\"}"
[ "$(count status=dismissed)" = "1,1,$CLEAN" ] || fail "status=dismissed"
pass "racing reviews on one version: one 201, one 409 with the current state; dismissal"

# ---- tokens, roles, parameters ---------------------------------------------------
expect 401 GET /api/v1/worklist -
[ "$(header WWW-Authenticate)" = Bearer ] || fail "401 without WWW-Authenticate: Bearer"
check 'assert d == {"error": "unauthenticated"}'
expect 401 GET /api/v1/worklist "not-the-token"
expect 401 GET /api/v1/worklist "$RAD-x"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Basic $RAD" "$BASE/api/v1/worklist")
[ "$code" = 401 ] || fail "Basic scheme answered $code"
expect 403 POST "/api/v1/studies/$LESION/reviews" "$ADMIN" '{"verdict":"agree","expected_version":1}'
check 'assert d["error"] == "forbidden"'
expect 403 POST "/api/v1/studies/$LESION/dismiss" "$ADMIN" '{"expected_version":1}'
expect 403 GET /api/v1/audit "$RAD"
bad() {  # field method path [body]
  local field=$1; shift
  local got
  got=$(api "$1" "$2" "$RAD" "${3-}")
  [ "$got" = 400 ] || fail "$1 $2: HTTP $got, expected 400"
  check "assert d['error'] == 'bad_request' and '$field' in d['message'], d" "400 names $field"
}
bad status GET "/api/v1/worklist?status=open"
bad flagged GET "/api/v1/worklist?flagged=maybe"
bad from GET "/api/v1/worklist?from=2026-02-30"
bad to GET "/api/v1/worklist?to=30.11.2026"
bad limit GET "/api/v1/worklist?limit=0"
bad limit GET "/api/v1/worklist?limit=201"
bad offset GET "/api/v1/worklist?offset=-1"
bad study_id GET "/api/v1/studies/0"
bad window GET "/api/v1/models/performance?window=year"
bad verdict POST "/api/v1/studies/$LESION/reviews" '{"verdict":"maybe","expected_version":1}'
bad expected_version POST "/api/v1/studies/$LESION/reviews" '{"verdict":"agree"}'
bad body POST "/api/v1/studies/$LESION/reviews" 'not json'
bad reviewer POST "/api/v1/studies/$LESION/reviews" '{"verdict":"agree","expected_version":1,"reviewer":"x"}'
expect 404 GET /api/v1/nothing
check 'assert d["error"] == "not_found"'
$PY -c 'import sys; sys.stdout.write("{\"verdict\":\"agree\",\"expected_version\":1,\"comment\":\"" + "x" * 70000 + "\"}")' \
  >"$WORK/big.json"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $RAD" \
  -H 'Content-Type: application/json' --data-binary "@$WORK/big.json" "$BASE/api/v1/studies/$LESION/reviews")
[ "$code" = 413 ] || fail "a 70 KB body answered $code"
expect 200 GET "/api/v1/models/performance?window=day&windows=2" "$ADMIN"
check 'assert d["window"] == "day" and any(m["model"] == "synthetic-nodule-demo" for m in d["models"]), d' "performance"
pass "401 without or with a bad token, 403 for the wrong role, 400 naming the field, 404, 413"

# ---- SQL-shaped values ---------------------------------------------------------
BEFORE=$(sql "SELECT (SELECT count(*) FROM worklist_entries) || ',' || (SELECT count(*) FROM studies) || ',' ||
               (SELECT count(*) FROM reads) || ',' || (SELECT count(*) FROM findings)")
enc() { $PY -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
for param in modality model; do
  for value in "CR' OR '1'='1" "x'; DROP TABLE worklist_entries; --" "' UNION SELECT * FROM studies --" \
               "CR\") OR 1=1 --" "%" "_" "\\"; do
    got=$(api GET "/api/v1/worklist?$param=$(enc "$value")")
    case $got in
      200) check 'assert d["total"] == 0 and d["items"] == [], d' "$param=$value returned rows" ;;
      400) ;;
      *) fail "$param=$value answered $got" ;;
    esac
  done
done
for q in "status=$(enc "new' OR 1=1 --")" "flagged=$(enc "true OR 1=1")" "from=$(enc "2020-01-01' OR '1'='1")" \
         "to=$(enc "2030-01-01; DELETE FROM reads")" "limit=$(enc "1; DROP TABLE studies")" \
         "offset=$(enc "0 OR 1=1")"; do
  expect 400 GET "/api/v1/worklist?$q"
done
expect 400 GET "/api/v1/audit?study_id=$(enc "1 OR 1=1")" "$ADMIN"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $RAD" \
  "$BASE/api/v1/studies/1%20OR%201=1")
[ "$code" = 404 ] || [ "$code" = 400 ] || fail "an SQL-shaped study id answered $code"
expect 201 POST "/api/v1/studies/$LESION/reviews" "$RAD" \
  "{\"verdict\":\"uncertain\",\"comment\":\"'); DROP TABLE studies; --\",\"expected_version\":$((LESION_VERSION + 1))}"
AFTER=$(sql "SELECT (SELECT count(*) FROM worklist_entries) || ',' || (SELECT count(*) FROM studies) || ',' ||
              (SELECT count(*) FROM reads) || ',' || (SELECT count(*) FROM findings)")
[ "$BEFORE" = "$AFTER" ] || fail "tables changed: $BEFORE -> $AFTER"
[ "$(sql "SELECT count(*) FROM reviews WHERE comment = '''); DROP TABLE studies; --'")" = 1 ] ||
  fail "the SQL-shaped comment was not stored verbatim"
[ "$(sql "SELECT count(*) FROM reviews WHERE verdict <> 'dismiss'")" = 3 ] ||
  fail "reviews: $(sql "SELECT count(*) FROM reviews WHERE verdict <> 'dismiss'")"
[ "$(sql "SELECT count(*) FROM audit_log WHERE action = 'review'")" = 3 ] || fail "review audit rows"
expect 200 GET "/api/v1/studies/$LESION"
check "assert d['reviews'][-1]['comment'] == \"'); DROP TABLE studies; --\" or d['reviews'][0]['comment'] == \"'); DROP TABLE studies; --\"" \
  "the comment is stored verbatim"
expect 200 GET /api/v1/worklist
check 'assert d["total"] == 2' "the worklist after SQL-shaped input"
pass "SQL-shaped filter values give 200 with no rows or 400; the tables are intact"

# ---- the newest window as Prometheus gauges ------------------------------------
gauge='secondread_model_studies_read{model="synthetic-nodule-demo",version="1"}'
for _ in $(seq 1 60); do [ "$(metric "$gauge")" = 2 ] && break; sleep 0.5; done
[ "$(metric "$gauge")" = 2 ] || fail "studies-read gauge: $(metric "$gauge")"
[ "$(metric 'secondread_model_flagged_rate{model="synthetic-nodule-demo",version="1"}')" = 0.5 ] ||
  fail "flagged-rate gauge: $(metric 'secondread_model_flagged_rate{model="synthetic-nodule-demo",version="1"}')"
pass "model performance exported as gauges on /metrics"

# ---- HTTPS ---------------------------------------------------------------------
# A certificate for 127.0.0.1 as a hospital CA would issue one, and a second
# key that does not belong to it.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$WORK/api.key" -out "$WORK/api.crt" >/dev/null 2>&1 || fail "openssl could not make a certificate"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/other.key" >/dev/null 2>&1 ||
  fail "openssl could not make a key"
kill -TERM "$SECONDREAD_PID"
while kill -0 "$SECONDREAD_PID" 2>/dev/null; do sleep 0.1; done
# A key that does not match the certificate: the node refuses to start, and says why.
if timeout 30 "$SECONDREAD_BIN" serve --config "$SECONDREAD_CONFIG" --set "api.tls.cert_file=$WORK/api.crt" \
  --set "api.tls.key_file=$WORK/other.key" >"$WORK/bad-tls.log" 2>&1; then
  fail "the node started with a key that does not match its certificate"
fi
grep -q "TLS certificate" "$WORK/bad-tls.log" || fail "no reason given for the TLS refusal: $(tail -n 3 "$WORK/bad-tls.log")"
"$IT_REPO/scripts/dev-up" "$NODE" --node-only --set "api.tls.cert_file=$WORK/api.crt" \
  --set "api.tls.key_file=$WORK/api.key" >/dev/null
source "$NODE/env"
TLS_BASE=${BASE/#http:/https:}
code=$(curl -sS --max-time 30 --cacert "$WORK/api.crt" -o "$RESP" -w '%{http_code}' \
  -H "Authorization: Bearer $RAD" "$TLS_BASE/api/v1/worklist") || fail "HTTPS request failed"
[ "$code" = 200 ] || fail "HTTPS worklist: HTTP $code"
check 'assert d["total"] == 2' "the worklist over HTTPS"
! curl -sS --max-time 10 -o /dev/null -H "Authorization: Bearer $RAD" "$BASE/api/v1/worklist" 2>/dev/null ||
  fail "plain HTTP was answered on the HTTPS port"
! curl -sS --max-time 10 -o /dev/null "$TLS_BASE/healthz" 2>/dev/null ||
  fail "a client without the CA accepted the node's certificate"
grep -q '"event":"api_listening".*"tls":true' "$SECONDREAD_LOG" || fail "the API did not log that it serves TLS"
pass "HTTPS with the configured certificate; plain HTTP and untrusting clients get nothing; a mismatched key is refused"

# ---- no patient data in the log at info level ------------------------------------
! grep -qF "$LESION_NAME" "$SECONDREAD_LOG" || fail "patient name in the node log"
! grep -qF "$LESION_PID" "$SECONDREAD_LOG" || fail "patient id in the node log"
pass "no patient name or ID in the node log"
finish
