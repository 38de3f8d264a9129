// Turns the manifests `helm template` rendered from the chart into what
// `podman kube play` (podman 4.3) runs on one host:
//   node kube-play.mjs RENDERED.yaml OUT_DIR SECRETS_DIR
// writes
//   OUT_DIR/migrate.yaml    the migration hook Job's pod, as a Pod that runs once;
//   OUT_DIR/workloads.yaml  the worker Deployment (one replica) and the node
//                           StatefulSet's first pod (<name>-0) as a Pod;
//   OUT_DIR/volumes/...     the files and directories their volumes become;
//   OUT_DIR/dropped         the objects podman cannot run, one "Kind/name" a line.
// podman 4.3 runs Pods and Deployments with hostPath, emptyDir and
// persistentVolumeClaim volumes, so:
// - ConfigMap and Secret volumes become hostPath directories holding the
//   same files (a Secret's from SECRETS_DIR/<secret>/<key>, as the hospital
//   would have created it); in the configuration files the bind addresses
//   and the Services' cluster names (<service>.<namespace>.svc) become
//   127.0.0.1, as every pod runs on the host's network and there is no
//   cluster DNS (podman 4.3 ignores hostAliases on the host's network);
// - the StatefulSet's volumeClaimTemplates and emptyDirs become hostPath
//   directories under OUT_DIR/volumes (the test sets their owners);
// - every pod gets hostNetwork;
// - probes are left out: podman would run them inside the containers, whose
//   images hold no HTTP client, so the test polls /healthz and /readyz itself;
//   so are the containers' ports, which on the host's network are the host's
//   (podman refuses port mappings there);
// - Services, NetworkPolicies, PodDisruptionBudgets, autoscalers,
//   ServiceAccounts and the hook ConfigMap have no podman counterpart and are
//   listed in OUT_DIR/dropped.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";

const [rendered, out, secrets] = process.argv.slice(2);
if (!rendered || !out || !secrets) {
  console.error("usage: node kube-play.mjs RENDERED.yaml OUT_DIR SECRETS_DIR");
  process.exit(2);
}
const objects = parseAllDocuments(readFileSync(rendered, "utf8")).map((d) => d.toJS()).filter((o) => o);
const die = (what) => { console.error(`kube-play: ${what}`); process.exit(1); };
const find = (kind, component) => objects.find((o) => o.kind === kind
  && o.metadata.labels?.["app.kubernetes.io/component"] === component);
const volumesDir = join(out, "volumes");
mkdirSync(volumesDir, { recursive: true });

const namespace = (() => {
  const m = /-worker\.([a-z0-9-]+)\.svc:\d+/.exec(JSON.stringify(objects));
  return m ? m[1] : "default";
})();
const serviceHosts = objects.filter((o) => o.kind === "Service").map((s) => `${s.metadata.name}.${namespace}.svc`);

// Loopback instead of every interface and instead of a Service: the pods
// share the host's network.
const loopback = (text) => serviceHosts.reduce((t, h) => t.split(h).join("127.0.0.1"),
  text.replace(/\b0\.0\.0\.0\b/g, "127.0.0.1"));

function hostDir(...parts) {
  const dir = join(volumesDir, ...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function convertVolume(pod, v) {
  if (v.configMap) {
    const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === v.configMap.name);
    if (!cm) die(`${pod}: no ConfigMap ${v.configMap.name}`);
    const dir = hostDir(pod, v.name);
    for (const [k, text] of Object.entries(cm.data ?? {})) writeFileSync(join(dir, k), loopback(text));
    return { name: v.name, hostPath: { path: dir, type: "Directory" } };
  }
  if (v.secret) {
    const dir = hostDir(pod, v.name);
    const items = v.secret.items ?? null;
    const keys = items ? items.map((i) => [i.key, i.path]) : null;
    const src = join(secrets, v.secret.secretName);
    let pairs = keys;
    if (!pairs) {
      try { pairs = readFileSync(join(src, ".keys"), "utf8").split("\n").filter(Boolean).map((k) => [k, k]); }
      catch { die(`${pod}: Secret ${v.secret.secretName} lists no keys (${src}/.keys)`); }
    }
    for (const [key, path] of pairs) {
      let data;
      try { data = readFileSync(join(src, key)); } catch { die(`${pod}: no ${src}/${key} for Secret ${v.secret.secretName}`); }
      writeFileSync(join(dir, path), data);
    }
    return { name: v.name, hostPath: { path: dir, type: "Directory" } };
  }
  if (v.emptyDir) return { name: v.name, hostPath: { path: hostDir(pod, v.name), type: "Directory" } };
  if (v.hostPath) return v;
  die(`${pod}: volume ${v.name} is of a kind podman 4.3 cannot take: ${JSON.stringify(v)}`);
}

function convertPodSpec(pod, spec, extraVolumes = []) {
  const s = structuredClone(spec);
  s.hostNetwork = true;
  for (const c of [...(s.initContainers ?? []), ...s.containers]) {
    delete c.startupProbe; delete c.livenessProbe; delete c.readinessProbe;
    // On the host's network the container's ports are the host's; podman
    // refuses port mappings there.
    delete c.ports;
  }
  s.volumes = [...(s.volumes ?? []).map((v) => convertVolume(pod, v)), ...extraVolumes];
  delete s.serviceAccountName;
  delete s.automountServiceAccountToken;
  return s;
}

const migrateJob = objects.find((o) => o.kind === "Job" && o.metadata.labels?.["app.kubernetes.io/component"] === "migrate");
const worker = find("Deployment", "worker");
const node = find("StatefulSet", "node");
if (!migrateJob || !worker || !node) die("the migration Job, the worker Deployment or the node StatefulSet is missing");

const migrateName = migrateJob.metadata.name;
const migrate = {
  apiVersion: "v1", kind: "Pod",
  metadata: { name: migrateName, labels: migrateJob.spec.template.metadata.labels },
  spec: { ...convertPodSpec(migrateName, migrateJob.spec.template.spec), restartPolicy: "Never" },
};
writeFileSync(join(out, "migrate.yaml"), stringify(migrate));

// The worker's Deployment stays one; without the autoscaler it runs one replica.
const w = structuredClone(worker);
w.spec.replicas = 1;
w.spec.template.spec = convertPodSpec(worker.metadata.name, worker.spec.template.spec);
delete w.metadata.annotations;

// The StatefulSet's first pod, with its claims as directories.
const podName = `${node.metadata.name}-0`;
const claims = (node.spec.volumeClaimTemplates ?? []).map((t) => ({
  name: t.metadata.name, hostPath: { path: hostDir(podName, t.metadata.name), type: "Directory" },
}));
const nodePod = {
  apiVersion: "v1", kind: "Pod",
  metadata: { name: podName, labels: node.spec.template.metadata.labels },
  spec: { ...convertPodSpec(podName, node.spec.template.spec, claims), restartPolicy: "Always" },
};
writeFileSync(join(out, "workloads.yaml"), [w, nodePod].map((o) => stringify(o)).join("---\n"));

const used = new Set([migrateJob, worker, node]);
const dropped = objects.filter((o) => !used.has(o) && o.kind !== "ConfigMap").map((o) => `${o.kind}/${o.metadata.name}`);
writeFileSync(join(out, "dropped"), dropped.map((d) => d + "\n").join(""));
