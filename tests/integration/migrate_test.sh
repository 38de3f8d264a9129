#!/usr/bin/env bash
# Migrations apply under an advisory lock, record their version, roll back
# with their down files and apply again; concurrent runs do not collide.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
node_up
CONFIG=(--config "$SECONDREAD_CONFIG")
latest=$(sql "select max(version) from schema_migrations")
[ "$latest" -ge 1 ] || fail "no version recorded"
rerun=$("$SECONDREAD_BIN" migrate "${CONFIG[@]}") || fail "re-run failed"
grep -q "schema version $latest -> $latest" <<<"$rerun" || fail "re-run not a no-op"
pass "migrate is idempotent"

# Migrations that widen audit_log's actions keep what earlier ones added:
# every action the node writes is allowed, also after a partial roll back.
audit_actions_allowed() {
  local def
  def=$(sql "select pg_get_constraintdef(oid) from pg_constraint where conname = 'audit_log_action_check'")
  for action in view_study view_image review dismiss view_audit view_worklist \
                sign_in issue_token revoke_token view_tokens purge_study purge_results; do
    grep -q "'$action'" <<<"$def" || fail "audit_log does not allow $action $1: $def"
  done
}
audit_actions_allowed "after migrate"
# Rows of the later actions stay in the append-only log through the roll
# back; applying 0013 again (before 0014 allows purges again) must not trip
# over them.
sql "INSERT INTO audit_log (actor, role, action, remote_addr) VALUES ('secondread', 'system', 'purge_study', ''),
     ('dr.lee', 'radiologist', 'sign_in', '127.0.0.1')" >/dev/null
"$SECONDREAD_BIN" migrate "${CONFIG[@]}" --to 12 >/dev/null || fail "roll back to 12 failed"
def=$(sql "select pg_get_constraintdef(oid) from pg_constraint where conname = 'audit_log_action_check'")
grep -q "'sign_in'\|'purge_study'" <<<"$def" && fail "rolled back actions still allowed: $def"
grep -q "'view_worklist'" <<<"$def" || fail "roll back removed an older action: $def"
"$SECONDREAD_BIN" migrate "${CONFIG[@]}" >"$WORK/reapply.log" 2>&1 || fail "re-apply after roll back failed: $(tail -3 "$WORK/reapply.log")"
audit_actions_allowed "after a roll back and re-apply"
pass "audit_log's actions survive every migration and their roll back"

kill -TERM "$SECONDREAD_PID"; while kill -0 "$SECONDREAD_PID" 2>/dev/null; do sleep 0.1; done
"$SECONDREAD_BIN" migrate "${CONFIG[@]}" --to 0 >/dev/null || fail "down migration failed"
[ "$(sql "select to_regclass('instances') is null")" = t ] || fail "down did not drop tables"
[ "$(sql "select count(*) from schema_migrations")" = 0 ] || fail "down did not clear versions"
# serve refuses a database that is behind.
"$SECONDREAD_BIN" serve "${CONFIG[@]}" >"$WORK/serve.log" 2>&1 && fail "serve ran on an unmigrated database"
grep -q "secondread migrate" "$WORK/serve.log" || fail "serve did not say how to fix the schema"
pass "down migration and schema check"

for i in 1 2 3 4; do "$SECONDREAD_BIN" migrate "${CONFIG[@]}" >"$WORK/m$i.log" 2>&1 & done
wait
[ "$(sql "select count(*) from schema_migrations")" = "$latest" ] || fail "concurrent migrate miscounted"
[ "$(sql "select to_regclass('instances') is not null")" = t ] || fail "tables missing after re-apply"
pass "four concurrent migrate runs serialize on the advisory lock"
"$SECONDREAD_BIN" migrate "${CONFIG[@]}" --to 99 >/dev/null 2>&1 && fail "accepted a version beyond the latest"
pass "unknown target version refused"
finish
