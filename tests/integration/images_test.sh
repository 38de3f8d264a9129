#!/usr/bin/env bash
# The container images: scripts/build-images writes the node's and the
# worker's OCI archives from the Debian packages; loaded into a private
# podman storage they carry the version and source revision as labels, run
# as a non-root uid, hold no compiler, and the node's holds no LibTorch. Then,
# as an administrator would run them (read-only root, no capability,
# no-new-privileges, the configuration mounted at /etc/secondread, the spool
# on a bind mount, host networking on loopback), the node image migrates the
# test PostgreSQL, the worker container serves the reference models and the
# node container reads a chest radiograph end to end. Then two node
# containers run as replicas of a cluster with two worker containers and
# Orthanc as the PACS: a study sent to both at once is read once, and a
# replica killed mid-study loses nothing it acknowledged. Last, the Helm
# chart's rendered workloads run under `podman kube play` (see that part for
# what podman cannot run).
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/helm_tools.sh"
source "$(dirname "$0")/lib/cluster.sh"
it_setup "$@"
[ "$(id -u)" -eq 0 ] || fail "needs root (mmdebstrap --mode=root, podman as root)"
command -v podman >/dev/null || fail "podman is missing; run scripts/bootstrap"
START=$(date +%s)
export CONTAINERS_CONF="$IT_REPO/packaging/containers/containers.conf"
PODMAN=(podman --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
it_also_on_exit '[ -f "$WORK/orthanc/orthanc.pid" ] && orthanc_stop "$WORK/orthanc";
  "${PODMAN[@]}" rm -a -f -t 5 >/dev/null 2>&1; "${PODMAN[@]}" rmi -a -f >/dev/null 2>&1;
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
  # The chart names its commands without their directory.
  grep -q '^PATH=/.*/usr/bin' <<<"$("${PODMAN[@]}" image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$img")" ||
    fail "$img sets no PATH in its environment"
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
# Through a file: grep -q stops reading at the first match, and under
# pipefail a writer with more to write would fail the pipeline.
"${PODMAN[@]}" logs sr-node >"$WORK/sr-node.out" 2>&1
grep -q '"event":"read_finished"' "$WORK/sr-node.out" || fail "the node's log lines are not on the container's output"
pass "the worker and node containers (read-only root, no capability) read a radiograph end to end; the spool is on the volume"
"${PODMAN[@]}" rm -f -t 30 sr-node sr-worker >/dev/null

# ---- Two node replicas and two workers as containers, Orthanc as the PACS ----------
# The node image as a cluster of two replicas on the test database: each
# with its own spool on a bind mount, the internal endpoint over HTTPS with a
# throwaway CA and the cluster token (files on the read-only configuration
# mount), host networking on loopback. Orthanc sends one CT study over two
# associations at once, one to each replica: exactly one read, whose
# results land in Orthanc. Then replica A is killed (SIGKILL) in the middle
# of an MR study: what it acknowledged stays on its spool, the read waits
# for it, and once the same container is started again the study is read
# with every instance.
CSTART=$(date +%s)
MODELS="$WORK/models"
threshold_volume_model "$MODELS"
threshold_volume_model "$MODELS" mr-threshold-volume 600 0.01 MR
chmod -R a+rX "$MODELS"
CL="$ETC/cluster"
cluster_secrets "$CL"
# The containers read the certificate, its key, the CA and the token; the
# CA's key stays out of their mount.
mv "$CL/ca.key" "$WORK/cluster-ca.key"; rm -f "$CL/node.csr" "$CL/ca.srl"
chown -R "root:${UID_GID#*:}" "$CL"; chmod 0750 "$CL"; chmod 0640 "$CL"/*

ORTHANC_DIR="$WORK/orthanc"
ORTHANC_DICOM=1
ORTHANC_DICOM_PORT=$(free_port)
export ORTHANC_DICOM ORTHANC_DICOM_PORT
G1=$(free_port); G2=$(free_port); WH1=$(free_port); WH2=$(free_port)
cat >"$ETC/replica.yaml" <<YAML
dicom:
  ae_title: SECONDREAD
  bind_address: 127.0.0.1
  allowed_callers: [ORTHANC@127.0.0.1]
storage:
  spool_dir: /var/lib/secondread/spool
  min_free_bytes: 64MiB
database:
  url_file: /etc/secondread/database.url
http:
  bind: 127.0.0.1
api:
  port: 0
log:
  level: info
$(cluster_routing)
inference:
  endpoints: [127.0.0.1:$G1, 127.0.0.1:$G2]
export:
  max_attempts: 12
  destinations:
    - {name: pacs, address: "ORTHANC@127.0.0.1:$ORTHANC_DICOM_PORT", connect_timeout_seconds: 5}
cluster:
  enabled: true
  bind: 127.0.0.1
  token_file: /etc/secondread/cluster/token
  tls:
    cert_file: /etc/secondread/cluster/node.pem
    key_file: /etc/secondread/cluster/node.key
    ca_file: /etc/secondread/cluster/ca.pem
  heartbeat_seconds: 1
YAML
for w in 1 2; do
  g=G$w; h=WH$w
  "${RUN[@]}" -d --name "sr-worker-$w" -v "$MODELS:/models:ro" "$WORKER_IMG" --config /etc/secondread/worker.yaml \
    --set models.repository=/models --set "grpc.listen=127.0.0.1:${!g}" --set "http.port=${!h}" --set cpu.threads=1 \
    >/dev/null || fail "worker container $w did not start"
done
for h in "$WH1" "$WH2"; do
  wait_http_ok "http://127.0.0.1:$h/readyz" 120 ||
    { "${PODMAN[@]}" logs --tail 20 sr-worker-1 sr-worker-2 >&2; fail "a worker container is not ready"; }
done

declare -A R_DICOM R_HTTP R_PORT
for r in a b; do
  R_DICOM[$r]=$(free_port); R_HTTP[$r]=$(free_port); R_PORT[$r]=$(free_port)
  mkdir -p "$WORK/state-$r/spool"; chown -R "$UID_GID" "$WORK/state-$r"; chmod 0750 "$WORK/state-$r" "$WORK/state-$r/spool"
  "${RUN[@]}" -d --name "sr-replica-$r" -v "$WORK/state-$r:/var/lib/secondread" "$NODE_IMG" \
    serve --config /etc/secondread/replica.yaml --set "dicom.port=${R_DICOM[$r]}" --set "http.port=${R_HTTP[$r]}" \
    --set "cluster.node_id=node-$r" --set "cluster.port=${R_PORT[$r]}" \
    --set "cluster.advertise_url=https://localhost:${R_PORT[$r]}" >/dev/null || fail "replica $r did not start"
done
for r in a b; do
  wait_http_ok "http://127.0.0.1:${R_HTTP[$r]}/readyz" 60 ||
    { "${PODMAN[@]}" logs --tail 20 "sr-replica-$r" >&2; fail "replica container $r is not ready"; }
done
[ "$(sql "SELECT string_agg(node_id || ' ' || internal_url, ',' ORDER BY node_id) FROM nodes")" = \
  "node-a https://localhost:${R_PORT[a]},node-b https://localhost:${R_PORT[b]}" ] ||
  fail "the replica containers did not register: $(sql "SELECT * FROM nodes")"

cat >"$WORK/orthanc-extra.json" <<JSON
{"ConcurrentJobs": 2,
 "DicomModalities": {"replica-a": ["SECONDREAD", "127.0.0.1", ${R_DICOM[a]}],
                     "replica-b": ["SECONDREAD", "127.0.0.1", ${R_DICOM[b]}]}}
JSON
ORTHANC_EXTRA_CONFIG="$WORK/orthanc-extra.json" orthanc_start "$ORTHANC_DIR" replica-a SECONDREAD 127.0.0.1 \
  "${R_DICOM[a]}" || fail "Orthanc did not start"
pass "two worker and two node replica containers (own spools, internal endpoints over TLS with the token) registered, Orthanc up"

gen_volume() {  # dir seed modality slices: a series with an 8 mm sphere at its centre
  $PY "$IT_REPO/tools/gen_series.py" "$1" --modality "$3" --slices "$4" --rows 96 --columns 96 \
    --pixel-spacing 0.8,0.8 --spacing 1.5 --seed "$2" >/dev/null
  local lesion
  lesion=$($PY - "$1/manifest.json" "$4" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
sz, sy, sx = g["spacing"]
k = int(sys.argv[2]) // 2
c = [g["origin"][a] + 48 * sx * g["row"][a] + 48 * sy * g["column"][a] + k * sz * g["normal"][a] for a in range(3)]
print("%.4f,%.4f,%.4f,8,1500" % tuple(c))
PY
)
  rm -rf "$1"
  $PY "$IT_REPO/tools/gen_series.py" "$1" --modality "$3" --slices "$4" --rows 96 --columns 96 \
    --pixel-spacing 0.8,0.8 --spacing 1.5 --seed "$2" --lesion="$lesion" >/dev/null
}
study_of() { dcmdump +P StudyInstanceUID "$(ls "$1"/*.dcm | head -1)" | sed 's/.*\[\(.*\)\].*/\1/'; }
held() {  # study holder -> instances of the study the holder acknowledged
  sql "SELECT count(*) FROM instances i JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = se.study_ref
       WHERE st.study_instance_uid = '$1' AND i.holder = '$2'"
}
reads_of() {  # study -> "count states" of its reads
  sql "SELECT count(*) || ' ' || coalesce(string_agg(r.state, ',' ORDER BY r.id), '') FROM reads r
       WHERE r.input = 'volume' AND r.id IN (SELECT ri.read_ref FROM read_instances ri JOIN instances i ON i.id = ri.instance_ref
         JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = se.study_ref WHERE st.study_instance_uid = '$1')"
}

# One CT study over two associations at once: every 6th slice to A, whose
# association ends first, the rest to B.
gen_volume "$WORK/ct" 51 CT 60
CT_STUDY=$(study_of "$WORK/ct")
mapfile -t IDS < <(upload_ids "$WORK"/ct/*.dcm)
[ "${#IDS[@]}" -eq 60 ] || fail "Orthanc did not take the 60 slices"
TO_A=() TO_B=()
for i in "${!IDS[@]}"; do if [ $((i % 6)) -eq 0 ]; then TO_A+=("${IDS[$i]}"); else TO_B+=("${IDS[$i]}"); fi; done
JB=$(store_job replica-b "${TO_B[@]}")
JA=$(store_job replica-a "${TO_A[@]}")
[ "$(wait_job "$JA")" = Success ] || fail "Orthanc could not send to replica A"
[ "$(wait_job "$JB")" = Success ] || fail "Orthanc could not send to replica B"
[ "$(held "$CT_STUDY" node-a) $(held "$CT_STUDY" node-b)" = "10 50" ] ||
  fail "holders: $(sql "SELECT holder, count(*) FROM instances GROUP BY holder")"
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 1 240
sleep 3  # a second read would be created by now
[ "$(reads_of "$CT_STUDY")" = "1 done" ] || fail "expected one read of the CT study, done: $(sql "SELECT id, generation, state, error FROM reads")"
CT_READ=$(sql "SELECT max(id) FROM reads WHERE input = 'volume'")
[ "$(sql "SELECT count(*) FROM read_instances WHERE read_ref = $CT_READ")" = 60 ] || fail "the read does not hold the 60 instances"
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" 1 120
fetch_results_from_orthanc "$WORK/pacs" "SELECT kind || ' ' || sop_instance_uid FROM result_objects WHERE read_ref = $CT_READ"
[ "$(sql "SELECT count(DISTINCT kind) FROM result_objects WHERE read_ref = $CT_READ")" -ge 2 ] ||
  fail "the read produced $(sql "SELECT string_agg(kind, ',') FROM result_objects WHERE read_ref = $CT_READ")"
pass "replica containers: one CT study over two associations (10 to A, 50 to B) read once, all 60 instances; its results are in Orthanc"

# Replica A is killed right after acknowledging half of an MR study; the
# other half goes to B.
gen_volume "$WORK/mr" 52 MR 40
MR_STUDY=$(study_of "$WORK/mr")
mapfile -t IDS < <(upload_ids "$WORK"/mr/*.dcm)
J=$(store_job replica-a "${IDS[@]:0:20}")
[ "$(wait_job "$J")" = Success ] || fail "Orthanc could not send the first half to replica A"
"${PODMAN[@]}" kill -s KILL sr-replica-a >/dev/null || fail "podman kill replica A"
[ "$(held "$MR_STUDY" node-a)" = 20 ] || fail "replica A acknowledged $(held "$MR_STUDY" node-a) of 20"
J=$(store_job replica-b "${IDS[@]:20}")
[ "$(wait_job "$J")" = Success ] || fail "Orthanc could not send the second half to replica B"
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume'" 2 120
sleep 6
[ "$(sql "SELECT state FROM reads ORDER BY id DESC LIMIT 1")" != done ] || fail "the MR study was read without replica A's instances"
"${PODMAN[@]}" logs sr-replica-b >"$WORK/sr-replica-b.out" 2>&1
grep -q 'cannot fetch instance from node replica node-a' "$WORK/sr-replica-b.out" ||
  fail "replica B did not report the unreachable holder: $(sql "SELECT id, state, error FROM reads")"
while read -r name; do
  [ -s "$WORK/state-a/spool/objects/${name:0:2}/$name.dcm" ] || fail "an instance replica A acknowledged is not on its spool"
done < <(sql "SELECT spool_name FROM instances WHERE holder = 'node-a'")
"${PODMAN[@]}" start sr-replica-a >/dev/null || fail "podman start replica A"
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state = 'done'" 2 240
[ "$(sql "SELECT count(*) FROM read_instances WHERE read_ref = (SELECT max(id) FROM reads)")" = 40 ] ||
  fail "the MR read does not hold the 40 instances"
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" 2 120
pass "replica container A killed mid-study: its 20 instances stayed on its spool, the read waited for it, and after podman start the study was read with all 40 and exported"
"${PODMAN[@]}" rm -f -t 30 sr-replica-a sr-replica-b sr-worker-1 sr-worker-2 >/dev/null
echo "  the replica containers took $(( $(date +%s) - CSTART )) s"

# ---- The chart's workloads under podman kube play -----------------------------------
# The chart rendered for this host (tests/helm/kube-play-values.yaml: these
# images, never pulled; free ports) and turned by tests/helm/kube-play.mjs
# into what podman 4.3 runs: the migration hook Job's pod as a Pod run once,
# the worker Deployment, and the node StatefulSet's first pod as a Pod, all
# on the host's network with the Services' names resolving to loopback;
# ConfigMaps, the database Secret and the volumes as host directories. What
# podman cannot run (Services, NetworkPolicies, PodDisruptionBudgets, the
# ServiceAccount; KEDA or an HPA when enabled) is left out and listed. The
# migration pod builds the schema from nothing, the node pod answers
# /healthz, /readyz and C-ECHO, the worker pod serves the reference model,
# and a chest radiograph is read end to end.
KSTART=$(date +%s)
helm_tools_up
KP="$WORK/kube-play"
mkdir -p "$KP/secrets/secondread-database"
K_DICOM=$(free_port); K_API=$(free_port); K_HTTP=$(free_port); K_GRPC=$(free_port); K_WHTTP=$(free_port)
"$HELM" template secondread "$IT_REPO/helm/secondread" --namespace radiology -f "$IT_REPO/tests/helm/kube-play-values.yaml" \
  --set "image.node.tag=$VERSION" --set "image.worker.tag=$VERSION" --set "node.ports.dicom=$K_DICOM" \
  --set "node.ports.api=$K_API" --set "node.ports.http=$K_HTTP" --set "worker.ports.grpc=$K_GRPC" \
  --set "worker.ports.http=$K_WHTTP" >"$KP/rendered.yaml" 2>"$KP/helm.err" || { cat "$KP/helm.err" >&2; fail "helm template for podman"; }
echo "$SECONDREAD_DATABASE_URL" >"$KP/secrets/secondread-database/url"
# The gRPC mutual TLS Secrets, as cert-manager would write them.
kp_cert() {  # secret CN SAN...
  local dir="$KP/secrets/$1" san; mkdir -p "$dir"
  san=$(IFS=,; echo "${*:3}")
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" -keyout "$dir/tls.key" \
    -out "$KP/$1.csr" 2>/dev/null || fail "key for $1"
  openssl x509 -req -in "$KP/$1.csr" -CA "$KP/grpc-ca.pem" -CAkey "$KP/grpc-ca.key" -CAcreateserial -days 2 \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san") \
    -out "$dir/tls.crt" 2>/dev/null || fail "certificate for $1"
  cp "$KP/grpc-ca.pem" "$dir/ca.crt"
  printf 'tls.crt\ntls.key\nca.crt\n' >"$dir/.keys"
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=grpc-test-ca \
  -keyout "$KP/grpc-ca.key" -out "$KP/grpc-ca.pem" 2>/dev/null || fail "gRPC test CA"
kp_cert secondread-worker-grpc-tls secondread-worker DNS:secondread-worker.radiology.svc IP:127.0.0.1
kp_cert secondread-node-grpc-tls secondread-node DNS:secondread-node
(cd "$TOOLS" && node kube-play.mjs "$KP/rendered.yaml" "$KP/out" "$KP/secrets") || fail "kube-play.mjs could not convert the chart"
# What a kubelet would do for the pods' fsGroup and the claims: the
# configuration and the Secret readable by the pods' group, the spool and
# /tmp theirs.
chown -R "root:${UID_GID#*:}" "$KP/out/volumes"
find "$KP/out/volumes" -type d -exec chmod 0750 {} + ; find "$KP/out/volumes" -type f -exec chmod 0640 {} +
for d in "$KP"/out/volumes/*/tmp "$KP"/out/volumes/*/spool; do chown "$UID_GID" "$d"; done
echo "  left out for podman: $(tr '\n' ' ' <"$KP/out/dropped")"

# Start from an empty database: the migration pod builds the schema.
"${RUN[@]}" --rm "$NODE_IMG" migrate --config /etc/secondread/secondread.yaml --to 0 >/dev/null 2>&1 || fail "migrate --to 0"
"${PODMAN[@]}" kube play "$KP/out/migrate.yaml" >"$KP/play-migrate.out" 2>&1 || { cat "$KP/play-migrate.out" >&2; fail "podman kube play of the migration pod"; }
rc=$("${PODMAN[@]}" wait secondread-migrate-migrate) || fail "podman wait for the migration pod"
out=$("${PODMAN[@]}" logs secondread-migrate-migrate 2>&1)
[ "$rc" = 0 ] && grep -q "schema version 0 -> $latest" <<<"$out" || fail "the migration pod exited $rc: $out"
pass "podman kube play: the chart's migration Job, as a pod, migrated the database (0 -> $latest)"

"${PODMAN[@]}" kube play "$KP/out/workloads.yaml" >"$KP/play.out" 2>&1 || { cat "$KP/play.out" >&2; fail "podman kube play of the workloads"; }
NODE_CTR=secondread-node-0-node
WORKER_CTR=$("${PODMAN[@]}" ps --format '{{.Names}}' | grep '^secondread-worker-.*-worker$' | head -1)
[ -n "$WORKER_CTR" ] || fail "no worker container: $("${PODMAN[@]}" ps -a --format '{{.Names}} {{.Status}}')"
wait_http_ok "http://127.0.0.1:$K_WHTTP/readyz" 120 || { "${PODMAN[@]}" logs --tail 20 "$WORKER_CTR" >&2; fail "the worker pod is not ready"; }
wait_http_ok "http://127.0.0.1:$K_HTTP/readyz" 60 || { "${PODMAN[@]}" logs --tail 20 "$NODE_CTR" >&2; fail "the node pod is not ready"; }
curl -fsS "http://127.0.0.1:$K_HTTP/healthz" >/dev/null || fail "the node pod's /healthz"
echoscu -to 5 -aet STORESCU -aec SECONDREAD 127.0.0.1 "$K_DICOM" >/dev/null 2>&1 || fail "C-ECHO to the node pod"
[ "$("${PODMAN[@]}" inspect --format '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}' "$NODE_CTR")" = "10001:10001 true" ] ||
  fail "the node pod's container runs as $("${PODMAN[@]}" inspect --format '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}' "$NODE_CTR")"
pass "podman kube play: the worker pod serves its models, the node pod (uid 10001, read-only root) answers /healthz, /readyz and C-ECHO"

SECONDREAD_DICOM_PORT=$K_DICOM
send "$WORK"/study/study-*/*.dcm >/dev/null 2>&1 || fail "storescu to the node pod"
( wait_sql "SELECT state FROM reads" done 90 ) ||
  { "${PODMAN[@]}" logs --tail 20 "$NODE_CTR" >&2; fail "the node pod did not read the radiograph"; }
[ "$(find "$KP"/out/volumes/secondread-node-0/spool -name '*.dcm' | wc -l)" -ge 1 ] || fail "nothing on the node pod's spool claim"
"${PODMAN[@]}" logs "$NODE_CTR" >"$WORK/node-pod.out" 2>&1
grep -q '"event":"read_finished"' "$WORK/node-pod.out" || fail "the node pod did not log the read"
pass "podman kube play: the node pod read a chest radiograph end to end through the worker pod, its spool on the claim's directory"
"${PODMAN[@]}" kube down "$KP/out/workloads.yaml" >/dev/null 2>&1 || true
"${PODMAN[@]}" kube down "$KP/out/migrate.yaml" >/dev/null 2>&1 || true
echo "  podman kube play took $(( $(date +%s) - KSTART )) s"
echo "  $TEST_NAME took $(( $(date +%s) - START )) s"
finish
