#!/usr/bin/env bash
# The container images: scripts/build-images writes the node's and the
# worker's OCI archives from the Debian packages; loaded into a private
# podman storage they carry the version and source revision as labels, run
# as a non-root uid, hold no compiler, and the node's holds no LibTorch. Then,
# as an administrator would run them (read-only root, no capability,
# no-new-privileges, the configuration mounted at /etc/secondread, the spool
# on a bind mount, host networking on loopback), the node image migrates the
# test PostgreSQL, the worker container serves the reference models and the
# node container reads a chest radiograph end to end.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap --mode=root, podman as root)"
command -v podman >/dev/null || fail "podman is missing; run scripts/bootstrap"
START=$(date +%s)
export CONTAINERS_CONF="$IT_REPO/packaging/containers/containers.conf"
PODMAN=(podman --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
it_also_on_exit '"${PODMAN[@]}" rm -a -f -t 5 >/dev/null 2>&1; "${PODMAN[@]}" rmi -a -f >/dev/null 2>&1;
  rm -rf "$WORK/storage" "$WORK/run" "$WORK/images" "$WORK/deb"'

VERSION=$(sed -n 's/^project(secondread VERSION \([0-9.]*\).*/\1/p' "$IT_REPO/CMakeLists.txt")
REVISION=$(git -C "$IT_REPO" rev-parse HEAD)
"$IT_REPO/scripts/package-deb" "$WORK/deb" >/dev/null || fail "scripts/package-deb failed"
SECONDREAD_DEB_DIR="$WORK/deb" "$IT_REPO/scripts/build-images" "$WORK/images" >"$WORK/build-images.out" 2>&1 ||
  { tail -n 30 "$WORK/build-images.out" >&2; fail "scripts/build-images failed"; }
NODE_TAR="$WORK/images/secondread-node-$VERSION.oci.tar"
WORKER_TAR="$WORK/images/secondread-worker-$VERSION.oci.tar"
[ -f "$NODE_TAR" ] && [ -f "$WORKER_TAR" ] || fail "build-images wrote: $(ls "$WORK/images")"
pass "scripts/build-images wrote both OCI archives in $(( $(date +%s) - START )) s"

for t in "$NODE_TAR" "$WORKER_TAR"; do
  "${PODMAN[@]}" load -q -i "$t" >/dev/null || fail "podman load $(basename "$t")"
done
NODE_IMG=localhost/secondread-node:$VERSION
WORKER_IMG=localhost/secondread-worker:$VERSION
label() { "${PODMAN[@]}" image inspect --format "{{index .Labels \"org.opencontainers.image.$2\"}}" "$1"; }
for img in "$NODE_IMG" "$WORKER_IMG"; do
  [ "$(label "$img" version)" = "$VERSION" ] || fail "$img: version label $(label "$img" version)"
  # A build from a tree with uncommitted changes says so in its revision.
  [ "$(label "$img" revision)" = "$REVISION" ] || [ "$(label "$img" revision)" = "$REVISION-dirty" ] ||
    fail "$img: revision label $(label "$img" revision), the tree is at $REVISION"
  for l in title created description; do [ -n "$(label "$img" "$l")" ] || fail "$img: no $l label"; done
  user=$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$img")
  # The fixed id the chart's securityContext names (runAsUser, fsGroup).
  [ "$user" = "10001:10001" ] || fail "$img runs as '$user', not the numeric non-root 10001:10001"
  [ "$("${PODMAN[@]}" run --rm --network none --entrypoint /usr/bin/id "$img" -u)" = "${user%%:*}" ] ||
    fail "$img: a container does not run as $user"
  compilers=$("${PODMAN[@]}" run --rm --network none --entrypoint /bin/sh "$img" -c \
    'for c in gcc cc g++ c++ clang clang++ cpp ld as; do command -v $c; done; ls /usr/bin | grep -E "^(gcc|g\+\+|clang)" || true')
  [ -z "$compilers" ] || fail "$img holds compilers: $compilers"
done
torch=$("${PODMAN[@]}" run --rm --network none --entrypoint /bin/sh "$NODE_IMG" -c \
  'dpkg-query -W -f "\${Package}\n" "libtorch*" 2>/dev/null; find / -xdev -name "libtorch*" 2>/dev/null; true')
[ -z "$torch" ] || fail "the node image holds LibTorch: $torch"
"${PODMAN[@]}" run --rm --network none --entrypoint /bin/sh "$WORKER_IMG" -c 'ls /usr/lib/x86_64-linux-gnu/libtorch.so.*' >/dev/null ||
  fail "the worker image has no LibTorch"
# The node's user owns the spool volume; the worker shares no files with it,
# so its ids, made in a root of its own, may differ.
UID_GID=$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$NODE_IMG")
WORKER_USER=$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$WORKER_IMG")
for img in "$NODE_IMG" "$WORKER_IMG"; do
  echo "  $img: $(( $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$img") / 1000000 )) MB unpacked"
done
echo "  archives: $(du -h "$NODE_TAR" | cut -f1) (node), $(du -h "$WORKER_TAR" | cut -f1) (worker)"
pass "labels carry version $VERSION and revision $REVISION; the node runs as $UID_GID, the worker as $WORKER_USER; no compiler; LibTorch only in the worker"

# The deployment: configuration on a read-only mount, the spool on a bind
# mount owned by the image's user, /tmp a tmpfs (podman's --read-only).
"$IT_REPO/scripts/dev-up" "$NODE" --db-only >/dev/null
# shellcheck disable=SC1091
source "$NODE/pg.env"
DICOM_PORT=$(free_port); HTTP_PORT=$(free_port); GRPC_PORT=$(free_port); WORKER_HTTP=$(free_port)
ETC="$WORK/etc"; STATE="$WORK/state"
mkdir -p "$ETC" "$STATE/spool"
cp "$IT_REPO/packaging/etc/secondread.yaml" "$IT_REPO/packaging/etc/worker.yaml" "$ETC/"
echo "$SECONDREAD_DATABASE_URL" >"$ETC/database.url"
chown "root:${UID_GID#*:}" "$ETC/database.url"; chmod 0640 "$ETC/database.url"
chown -R "$UID_GID" "$STATE"; chmod 0750 "$STATE" "$STATE/spool"
sed -i -e "s/^  port: 11112/  port: $DICOM_PORT/" -e "s/^  port: 9090/  port: $HTTP_PORT/" \
  -e "s/- PACS@127.0.0.1/- STORESCU@127.0.0.1/" -e "s/127.0.0.1:50051/127.0.0.1:$GRPC_PORT/" \
  -e "s/min_free_bytes: 20GiB/min_free_bytes: 64MiB/" "$ETC/secondread.yaml"
sed -i -e "s/127.0.0.1:50051/127.0.0.1:$GRPC_PORT/" -e "s/port: 9091/port: $WORKER_HTTP/" "$ETC/worker.yaml"
# Host networking shares the host's ports: the worklist API on a free one.
printf 'api:\n  port: 0\n' >>"$ETC/secondread.yaml"
RUN=("${PODMAN[@]}" run --network host --read-only --cap-drop=all --security-opt no-new-privileges
  -v "$ETC:/etc/secondread:ro")

# The test database comes migrated: the image's migrate removes the schema
# and builds it again.
latest=$(ls "$IT_REPO"/sql/migrations/*.up.sql | wc -l)
out=$("${RUN[@]}" --rm "$NODE_IMG" migrate --config /etc/secondread/secondread.yaml --to 0 2>&1) || fail "migrate --to 0: $out"
out=$("${RUN[@]}" --rm "$NODE_IMG" migrate --config /etc/secondread/secondread.yaml 2>&1) || fail "migrate: $out"
grep -q "schema version 0 -> $latest" <<<"$out" || fail "migrate printed: $out"
pass "the node image migrates the test PostgreSQL from a read-only root"

# The worker's own configuration listens on loopback, which host
# networking shares with the node.
"${RUN[@]}" -d --name sr-worker "$WORKER_IMG" --config /etc/secondread/worker.yaml >/dev/null || fail "the worker container did not start"
wait_http_ok "http://127.0.0.1:$WORKER_HTTP/readyz" 120 || { "${PODMAN[@]}" logs --tail 20 sr-worker >&2; fail "the worker container is not ready"; }
"${RUN[@]}" -d --name sr-node -v "$STATE:/var/lib/secondread" "$NODE_IMG" >/dev/null || fail "the node container did not start"
wait_http_ok "http://127.0.0.1:$HTTP_PORT/readyz" 60 || { "${PODMAN[@]}" logs --tail 20 sr-node >&2; fail "the node container is not ready"; }
SECONDREAD_DICOM_PORT=$DICOM_PORT
$PY "$IT_REPO/tools/gen_study.py" "$WORK/study" --studies 1 --lesion yes --modality CR --seed 43 >/dev/null
send "$WORK"/study/study-*/*.dcm >/dev/null 2>&1 || fail "storescu to the node container"
wait_sql "SELECT state FROM reads" done 90
[ "$(sql "SELECT model_name FROM reads")" = synthetic-nodule-demo ] || fail "read by $(sql "SELECT model_name FROM reads")"
spooled=$(find "$STATE/spool" -name '*.dcm' -uid "${UID_GID%%:*}" | wc -l)
[ "$spooled" -ge 1 ] || fail "nothing in the spool volume owned by the image's user"
"${PODMAN[@]}" logs sr-node 2>&1 | grep -q '"event":"read_finished"' || fail "the node's log lines are not on the container's output"
pass "the worker and node containers (read-only root, no capability) read a radiograph end to end; the spool is on the volume"
"${PODMAN[@]}" rm -f -t 30 sr-node sr-worker >/dev/null
echo "  $TEST_NAME took $(( $(date +%s) - START )) s"
finish
