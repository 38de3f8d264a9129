#!/usr/bin/env bash
# What one spool rescan costs the running node with N registered objects.
#
#   bench/rescan_cost.sh [N]      (default 100000)
#
# Fills a private database with N instance rows and the spool with N empty
# files of the same names (nothing to register, so the cost is the listing and
# the Unregistered queries), starts the node with a rescan every 5 s and
# prints the duration_ms of its first two spool_rescanned events.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
N=${1:-100000}
D=$(mktemp -d /tmp/rescan-bench.XXXXXX)
source "$REPO/scripts/lib.sh"
trap 'private_db_down "$D"' EXIT
private_db_up "$D"
psql "$SECONDREAD_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
INSERT INTO associations (association_uid, calling_ae, called_ae, peer_host) VALUES ('bench', 'B', 'S', '127.0.0.1');
INSERT INTO patients (patient_id) VALUES ('P');
INSERT INTO studies (study_instance_uid, patient_ref) SELECT '1.2.3', id FROM patients;
INSERT INTO series (series_instance_uid, study_ref) SELECT '1.2.3.4', id FROM studies;
-- No intake for these rows: the pipeline has nothing to do.
ALTER TABLE instances DISABLE TRIGGER USER;
INSERT INTO instances (sop_instance_uid, sop_class_uid, series_ref, association_ref, transfer_syntax_uid,
                       spool_name, size_bytes)
SELECT '1.2.3.4.' || g, '1.2.840.10008.5.1.4.1.1.2', (SELECT id FROM series), (SELECT id FROM associations),
       '1.2.840.10008.1.2.1', encode(sha256(g::text::bytea), 'hex'), 0
FROM generate_series(1, $N) g;
ALTER TABLE instances ENABLE TRIGGER USER;
ANALYZE;
SQL
mkdir -p "$D/spool/objects"
psql "$SECONDREAD_DATABASE_URL" -qAt -c "SELECT spool_name FROM instances" | /usr/bin/python3 -c '
import os, sys
root = sys.argv[1]
for n in sys.stdin:
    n = n.strip()
    os.makedirs(os.path.join(root, n[:2]), exist_ok=True)
    open(os.path.join(root, n[:2], n + ".dcm"), "wb").close()
' "$D/spool/objects"
"$REPO/scripts/dev-up" "$D" --node-only --set storage.rescan_interval_seconds=5 >/dev/null
# shellcheck disable=SC1091
source "$D/env"
for _ in $(seq 120); do
  [ "$(grep -ac '"event":"spool_rescanned"' "$SECONDREAD_LOG")" -ge 2 ] && break
  sleep 1
done
grep -a '"event":"spool_rescanned"' "$SECONDREAD_LOG" | /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print("rescan_cost: objects=%d registered=%d duration_ms=%d" % (e["scanned"], e["registered"], e["duration_ms"]))'
