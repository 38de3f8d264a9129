#!/usr/bin/env bash
# The Debian packages on a bare Debian 12: scripts/package-deb builds the
# node's (secondread) and the worker's (secondread-worker), each with only
# its own binary's Depends, so the node does not pull LibTorch; mmdebstrap
# makes a clean Debian 12 root file system (with systemd, as a server has)
# and apt installs the node's package, then the worker's, pulling their
# Depends from Debian. There: the packages are installed, the system user
# and the spool exist with the right owners, the units pass systemd-analyze
# verify with the hardening and no capability (port-104.conf grants only
# CAP_NET_BIND_SERVICE); then, as the units' own ExecStart lines run as the
# secondread user, `secondread version` and `migrate` work against the test
# PostgreSQL, the worker serves the packaged reference models and `serve`
# reads a chest radiograph sent to it end to end. Purging the packages
# removes their files and keeps the spool.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap --mode=root and chroot)"
ROOT="$WORK/root"
CHROOT_PIDS=()
it_also_on_exit 'for p in "${CHROOT_PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 1;
  mountpoint -q "$ROOT/proc" && umount -l "$ROOT/proc"; rm -rf "$ROOT"'

debs=$("$IT_REPO/scripts/package-deb" "$WORK/deb") || fail "scripts/package-deb failed"
VERSION=$(sed -n 's/^project(secondread VERSION \([0-9.]*\).*/\1/p' "$IT_REPO/CMakeLists.txt")
DEB="$WORK/deb/secondread_${VERSION}_amd64.deb"
WDEB="$WORK/deb/secondread-worker_${VERSION}_amd64.deb"
[ "$debs" = "$DEB"$'\n'"$WDEB" ] || fail "package-deb wrote: $debs"
depends=$(dpkg-deb -f "$DEB" Depends)
grep -q 'libdcmtk17' <<<"$depends" || fail "the node's Depends lack DCMTK: $depends"
grep -q 'libtorch' <<<"$depends" && fail "the node's Depends pull LibTorch: $depends"
wdepends=$(dpkg-deb -f "$WDEB" Depends)
grep -q 'libtorch1.13' <<<"$wdepends" || fail "the worker's Depends lack LibTorch: $wdepends"
grep -q 'libdcmtk\|libpqxx\|libgdcm' <<<"$wdepends" && fail "the worker's Depends pull the node's libraries: $wdepends"
contents=$(dpkg-deb --contents "$DEB")
for f in ./usr/bin/secondread ./etc/secondread/secondread.yaml ./lib/systemd/system/secondread.service \
  ./lib/systemd/system/secondread-migrate.service ./usr/share/secondread/systemd/port-104.conf; do
  grep -q " $f\$" <<<"$contents" || fail "the node's package lacks $f"
done
grep -q 'secondread-worker\|/models/' <<<"$contents" && fail "the node's package holds the worker's files"
wcontents=$(dpkg-deb --contents "$WDEB")
for f in ./usr/bin/secondread-worker ./etc/secondread/worker.yaml ./lib/systemd/system/secondread-worker.service \
  ./usr/share/secondread/models/synthetic-nodule-demo/model.yaml ./usr/share/secondread/models/synthetic-lesion3d-ct/model.yaml; do
  grep -q " $f\$" <<<"$wcontents" || fail "the worker's package lacks $f"
done
grep -q ' ./usr/bin/secondread$' <<<"$wcontents" && fail "the worker's package holds the node"
pass "scripts/package-deb builds $(basename "$DEB") ($(du -h "$DEB" | cut -f1)) and $(basename "$WDEB") ($(du -h "$WDEB" | cut -f1)), each with its own binary's Depends"

# A clean Debian 12 with systemd; the host's package cache spares downloads.
mmdebstrap --variant=apt --mode=root --include=systemd --skip=cleanup/apt/cache \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives && { cp -l /var/cache/apt/archives/*.deb "$1"/var/cache/apt/archives/ 2>/dev/null || cp /var/cache/apt/archives/*.deb "$1"/var/cache/apt/archives/ 2>/dev/null || true; }' \
  --customize-hook="cp '$DEB' '$WDEB' \"\$1\"/tmp/" \
  --customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/$(basename "$DEB")" \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f '\${Package}\\n' >'$WORK/node-only.packages'" \
  --customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/$(basename "$WDEB")" \
  bookworm "$ROOT" >"$WORK/mmdebstrap.log" 2>&1 || { tail -n 30 "$WORK/mmdebstrap.log" >&2; fail "mmdebstrap or apt install failed"; }
in_root() { chroot "$ROOT" "$@"; }
grep -qx secondread "$WORK/node-only.packages" || fail "the node's package was not installed alone first"
grep -q '^libtorch' "$WORK/node-only.packages" && fail "installing the node pulled $(grep '^libtorch' "$WORK/node-only.packages")"
for p in secondread secondread-worker; do
  [ "$(in_root dpkg-query -W -f '${Status} ${Version}' $p)" = "install ok installed $VERSION" ] ||
    fail "dpkg: $p $(in_root dpkg-query -W -f '${Status} ${Version}' $p)"
done
in_root getent passwd secondread | grep -q ':/var/lib/secondread:/usr/sbin/nologin$' ||
  fail "system user: $(in_root getent passwd secondread)"
[ "$(in_root stat -c '%U:%G %a' /var/lib/secondread/spool)" = "secondread:secondread 750" ] ||
  fail "spool: $(in_root stat -c '%U:%G %a' /var/lib/secondread/spool)"
pass "apt installs the node without LibTorch, then the worker, on a clean Debian 12 with their Depends; the secondread system user owns the spool"

verify=$(in_root systemd-analyze verify /lib/systemd/system/secondread.service /lib/systemd/system/secondread-worker.service \
  /lib/systemd/system/secondread-migrate.service 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
unit_value() { sed -n "s/^$2=//p" "$ROOT/lib/systemd/system/$1"; }
for u in secondread.service secondread-worker.service secondread-migrate.service; do
  [ "$(unit_value $u User)" = secondread ] || fail "$u runs as $(unit_value $u User)"
  for k in NoNewPrivileges=yes ProtectSystem=strict PrivateTmp=yes CapabilityBoundingSet= AmbientCapabilities=; do
    grep -qx "$k" "$ROOT/lib/systemd/system/$u" || fail "$u lacks $k"
  done
done
for u in secondread.service secondread-worker.service; do
  [ "$(unit_value $u Restart)" = on-failure ] || fail "$u: Restart=$(unit_value $u Restart)"
done
grep -qx "ReadWritePaths=/var/lib/secondread" "$ROOT/lib/systemd/system/secondread.service" || fail "no ReadWritePaths for the spool"
grep -q '^StandardOutput=\|^StandardError=' "$ROOT"/lib/systemd/system/secondread*.service && fail "a unit sends its output elsewhere than the journal"
grep -qx "AmbientCapabilities=CAP_NET_BIND_SERVICE" "$ROOT/usr/share/secondread/systemd/port-104.conf" ||
  fail "port-104.conf does not grant CAP_NET_BIND_SERVICE"
pass "the units verify, run as secondread, hardened with no capability, restart on failure and log to the journal"

# Configure as an administrator would, then run each unit's ExecStart as the
# unit's user.
"$IT_REPO/scripts/dev-up" "$NODE" --db-only >/dev/null
# shellcheck disable=SC1091
source "$NODE/pg.env"
DICOM_PORT=$(free_port); HTTP_PORT=$(free_port); GRPC_PORT=$(free_port); WORKER_HTTP=$(free_port)
echo "$SECONDREAD_DATABASE_URL" >"$ROOT/etc/secondread/database.url"
in_root chown root:secondread /etc/secondread/database.url
chmod 0640 "$ROOT/etc/secondread/database.url"
sed -i -e "s/^  port: 11112/  port: $DICOM_PORT/" -e "s/^  port: 9090/  port: $HTTP_PORT/" \
  -e "s/- PACS@127.0.0.1/- STORESCU@127.0.0.1/" -e "s/127.0.0.1:50051/127.0.0.1:$GRPC_PORT/" \
  -e "s/min_free_bytes: 20GiB/min_free_bytes: 64MiB/" "$ROOT/etc/secondread/secondread.yaml"
sed -i -e "s/127.0.0.1:50051/127.0.0.1:$GRPC_PORT/" -e "s/port: 9091/port: $WORKER_HTTP/" "$ROOT/etc/secondread/worker.yaml"
mount -t proc proc "$ROOT/proc"
as_unit() {  # unit -> runs its ExecStart as its user, in the root
  chroot --userspec=secondread:secondread "$ROOT" sh -c "cd / && exec $(unit_value "$1" ExecStart)"
}

[ "$(in_root secondread version)" = "secondread $VERSION" ] || fail "secondread version: $(in_root secondread version)"
# The test database comes migrated: remove the schema, so that the unit's
# command creates it from nothing.
latest=$(ls "$IT_REPO"/sql/migrations/*.up.sql | wc -l)
out=$(chroot --userspec=secondread:secondread "$ROOT" secondread migrate --config /etc/secondread/secondread.yaml --to 0 2>&1) ||
  fail "migrate --to 0: $out"
out=$(as_unit secondread-migrate.service 2>&1) || fail "migrate: $out"
grep -q "schema version 0 -> $latest" <<<"$out" || fail "migrate printed: $out"
pass "secondread version and the migrate unit's command work against the test PostgreSQL"

as_unit secondread-worker.service >"$WORK/worker.out" 2>&1 &
CHROOT_PIDS+=($!)
wait_http_ok "http://127.0.0.1:$WORKER_HTTP/readyz" 120 || { tail -n 20 "$WORK/worker.out" >&2; fail "the packaged worker is not ready"; }
as_unit secondread.service >"$WORK/node.out" 2>&1 &
CHROOT_PIDS+=($!)
wait_http_ok "http://127.0.0.1:$HTTP_PORT/readyz" 60 || { tail -n 20 "$WORK/node.out" >&2; fail "the packaged node is not ready"; }
SECONDREAD_DICOM_PORT=$DICOM_PORT
$PY "$IT_REPO/tools/gen_study.py" "$WORK/study" --studies 1 --lesion yes --modality CR --seed 41 >/dev/null
send "$WORK"/study/study-*/*.dcm >/dev/null 2>&1 || fail "storescu to the packaged node"
wait_sql "SELECT state FROM reads" done 90
[ "$(sql "SELECT model_name FROM reads")" = synthetic-nodule-demo ] || fail "read by $(sql "SELECT model_name FROM reads")"
spooled=$(in_root find /var/lib/secondread/spool -name '*.dcm' -user secondread | wc -l)
[ "$spooled" -ge 1 ] || fail "nothing in the packaged spool owned by secondread"
grep -q '"event":"read_finished"' "$WORK/node.out" || fail "the node's log lines did not reach its output (the journal)"
pass "the packaged worker and node, run as their units run them, read a radiograph end to end (logs on standard error)"

for p in "${CHROOT_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
CHROOT_PIDS=()
umount "$ROOT/proc"
in_root env DEBIAN_FRONTEND=noninteractive dpkg --purge secondread-worker secondread >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log" >&2; fail "dpkg --purge"; }
[ ! -e "$ROOT/usr/bin/secondread" ] && [ ! -e "$ROOT/usr/bin/secondread-worker" ] || fail "a binary survived the purge"
[ -n "$(find "$ROOT/var/lib/secondread/spool" -name '*.dcm')" ] || fail "the purge removed the spool, which holds patient data"
pass "purging the packages removes their files and keeps the spool for the hospital to dispose of"
finish
