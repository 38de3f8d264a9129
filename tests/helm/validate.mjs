// Validates the manifests `helm template` rendered from the chart, one file
// per values file given on the command line:
//   node validate.mjs DIR/NAME.yaml...
// 1. every object against its Kubernetes (or KEDA, CloudNativePG, Prometheus
//    Operator) model's schema;
// 2. every key against the model's declared fields, recursively, because
//    those schemas let unknown fields through and a misspelled field would
//    be dropped silently by the API server;
// 3. the chart's own promises: hardened containers, probes, NetworkPolicies,
//    the migration hook, checksum/config, no literal passwords.
// Prints one line per failed check and exits 1 if any failed.
import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";
import ts from "typescript";

const require = createRequire(import.meta.url);
const failures = [];
const fail = (file, what) => failures.push(`${file}: ${what}`);

// apiVersion's group -> the package holding its models.
function modelModule(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "keda.sh") return `@kubernetes-models/keda/keda.sh/${version}/${kind}`;
  if (group === "postgresql.cnpg.io") return `@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/${version}/${kind}`;
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`;
  return group === "" ? `kubernetes-models/${version}/${kind}` : `kubernetes-models/${group}/${version}/${kind}`;
}

// ---- the declared fields, from the models' type declarations ---------------
const kinds = new Map();  // module -> alias name in the virtual source
let checker = null;
const aliases = new Map();

function buildChecker(modules) {
  const here = dirname(new URL(import.meta.url).pathname);
  const virtualName = join(here, "__fields__.ts");
  let src = "";
  [...modules].forEach((m, i) => {
    const kind = m.split("/").pop();
    src += `import type { I${kind} as K${i} } from "${m}";\nexport type T${i} = K${i};\n`;
    kinds.set(m, `T${i}`);
  });
  const options = {
    strict: true, noEmit: true, skipLibCheck: true,
    module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022, types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === virtualName ? ts.createSourceFile(name, src, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === virtualName || fileExists(name);
  const program = ts.createProgram([virtualName], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  for (const d of diagnostics) {
    failures.push(`type declarations: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
  }
  checker = program.getTypeChecker();
  const sf = program.getSourceFile(virtualName);
  for (const stmt of sf.statements) {
    if (ts.isTypeAliasDeclaration(stmt)) aliases.set(stmt.name.text, checker.getTypeAtLocation(stmt.name));
  }
}

function nonNullish(type) {
  if (!type.isUnion()) return [type];
  return type.types.filter((t) => !(t.flags & (ts.TypeFlags.Undefined | ts.TypeFlags.Null)));
}

function checkKeys(file, value, type, path) {
  if (value === null || typeof value !== "object") return;
  const candidates = nonNullish(type);
  if (candidates.some((t) => t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown))) return;
  if (Array.isArray(value)) {
    const arr = candidates.find((t) => checker.isArrayType(t));
    if (!arr) { fail(file, `${path}: a list where the model has no list`); return; }
    const element = checker.getTypeArguments(arr)[0];
    value.forEach((v, i) => checkKeys(file, v, element, `${path}[${i}]`));
    return;
  }
  const objectType = candidates.find((t) => t.flags & ts.TypeFlags.Object && !checker.isArrayType(t));
  if (!objectType) { fail(file, `${path}: a mapping where the model has none`); return; }
  const index = checker.getIndexTypeOfType(objectType, ts.IndexKind.String);
  for (const [key, v] of Object.entries(value)) {
    const prop = checker.getPropertyOfType(objectType, key);
    if (prop) checkKeys(file, v, checker.getTypeOfSymbol(prop), `${path}.${key}`);
    else if (index) checkKeys(file, v, index, `${path}.${key}`);
    else fail(file, `${path}.${key}: unknown field`);
  }
}

// ---- the chart's own promises ------------------------------------------------
function podSpec(o) {
  if (["Deployment", "StatefulSet", "Job"].includes(o.kind)) return o.spec.template.spec;
  return null;
}

function checkChart(file, objects) {
  const name = basename(file, ".yaml");
  const byKind = (k) => objects.filter((o) => o.kind === k);
  const component = (o) => o.metadata?.labels?.["app.kubernetes.io/component"];
  for (const o of objects) {
    const spec = podSpec(o);
    if (!spec) continue;
    const where = `${o.kind}/${o.metadata.name}`;
    if (spec.securityContext?.runAsNonRoot !== true) fail(file, `${where}: pod without runAsNonRoot`);
    if (spec.securityContext?.seccompProfile?.type !== "RuntimeDefault") fail(file, `${where}: pod seccomp is not RuntimeDefault`);
    if (spec.automountServiceAccountToken !== false) fail(file, `${where}: mounts a service account token`);
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      const sc = c.securityContext ?? {};
      const cw = `${where} container ${c.name}`;
      if (sc.runAsNonRoot !== true) fail(file, `${cw}: runAsNonRoot is not true`);
      if (sc.readOnlyRootFilesystem !== true) fail(file, `${cw}: readOnlyRootFilesystem is not true`);
      if (sc.allowPrivilegeEscalation !== false) fail(file, `${cw}: allowPrivilegeEscalation is not false`);
      if (JSON.stringify(sc.capabilities?.drop) !== '["ALL"]' || sc.capabilities?.add) fail(file, `${cw}: capabilities do not drop ALL`);
      if (sc.seccompProfile?.type !== "RuntimeDefault") fail(file, `${cw}: seccomp is not RuntimeDefault`);
      if (o.kind !== "Job") {
        for (const p of ["startupProbe", "livenessProbe", "readinessProbe"]) {
          if (!c[p]?.httpGet) fail(file, `${cw}: no ${p}`);
        }
        if (c.readinessProbe?.httpGet?.path !== "/readyz") fail(file, `${cw}: readiness is not /readyz`);
        if (c.livenessProbe?.httpGet?.path !== "/healthz") fail(file, `${cw}: liveness is not /healthz`);
      }
      if (!c.resources?.requests && !c.resources?.limits) fail(file, `${cw}: no resources`);
      if (/:latest$/.test(c.image) || !/[:@]/.test(c.image)) fail(file, `${cw}: image ${c.image} is not pinned`);
    }
    if (!o.spec.template.metadata?.annotations?.["checksum/config"]) fail(file, `${where}: no checksum/config annotation`);
  }

  const node = byKind("StatefulSet").find((o) => component(o) === "node");
  const worker = byKind("Deployment").find((o) => component(o) === "worker");
  if (!node) fail(file, "no node StatefulSet");
  if (!worker) fail(file, "no worker Deployment");
  const nodeConfigMap = byKind("ConfigMap").find((o) => o.metadata.name.endsWith("-node"));
  const cfg = nodeConfigMap ? parseAllDocuments(nodeConfigMap.data["secondread.yaml"])[0].toJS() : null;
  if (node) {
    const claim = node.spec.volumeClaimTemplates?.find((t) => t.metadata.name === "spool");
    const mount = node.spec.template.spec.containers[0].volumeMounts.find((m) => m.name === "spool");
    if (cfg?.cluster?.shared_spool_root) {
      // The spools are <root>/<node_id> on the ReadWriteMany claim; a claim per replica would go unused.
      if (claim || mount) fail(file, "a per-replica spool claim beside the shared spool");
      const shared = node.spec.template.spec.volumes.find((v) => v.name === "shared-spool");
      if (!shared?.persistentVolumeClaim?.claimName) fail(file, "the shared spool is not a PersistentVolumeClaim");
    } else {
      if (!claim) fail(file, "node StatefulSet has no spool volumeClaimTemplate");
      if (mount?.mountPath !== "/var/lib/secondread/spool") fail(file, "spool not mounted at /var/lib/secondread/spool");
    }
    if (node.spec.replicas > 1 || cfg?.cluster?.enabled) checkCluster(file, objects, node, cfg);
    else if (cfg && cfg.cluster?.enabled !== false) fail(file, "one node replica without node.cluster, yet cluster.enabled is not false");
  }

  // The configuration the node reads: spool and database file where they are mounted.
  if (!nodeConfigMap) fail(file, "no node ConfigMap");
  else {
    if (cfg.storage?.spool_dir !== "/var/lib/secondread/spool") fail(file, "node config: storage.spool_dir is not the spool mount");
    if (cfg.database?.url_file !== "/etc/secondread/database/url") fail(file, "node config: database.url_file is not the secret's mount");
    if (!/^[a-z0-9.-]+-worker\.[a-z0-9-]+\.svc:\d+$/.test(cfg.inference?.endpoints?.[0] ?? "")) fail(file, "node config: inference.endpoints does not name the worker Service");
    if (cfg.http?.bind !== "0.0.0.0" || cfg.api?.bind !== "0.0.0.0") fail(file, "node config: http and api must bind 0.0.0.0 for probes and Services");
  }

  // Migrations: a Job hook before install (after it with CloudNativePG) and before upgrade.
  const job = byKind("Job").find((o) => component(o) === "migrate");
  if (!job) fail(file, "no migration Job");
  else {
    const hook = job.metadata.annotations?.["helm.sh/hook"] ?? "";
    const want = name.startsWith("cnpg") ? "post-install,pre-upgrade" : "pre-install,pre-upgrade";
    if (hook !== want) fail(file, `migration Job hook is "${hook}", not "${want}"`);
    if (!job.metadata.annotations?.["helm.sh/hook-delete-policy"]) fail(file, "migration Job has no hook-delete-policy");
    const cmd = job.spec.template.spec.containers[0].command.join(" ");
    if (!/^secondread migrate --config /.test(cmd)) fail(file, `migration Job runs "${cmd}"`);
    const cm = job.spec.template.spec.volumes.find((v) => v.name === "config")?.configMap?.name;
    const cmObj = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === cm);
    if (!cmObj?.metadata.annotations?.["helm.sh/hook"]) fail(file, "the migration Job's ConfigMap is not a hook too (it would not exist before install)");
  }

  // NetworkPolicies.
  const policies = byKind("NetworkPolicy");
  const sel = (o) => o.spec.podSelector.matchLabels ?? {};
  const workerPolicy = policies.find((p) => sel(p)["app.kubernetes.io/component"] === "worker");
  if (!workerPolicy) fail(file, "no NetworkPolicy for the workers");
  else {
    const grpcRules = workerPolicy.spec.ingress.filter((r) => r.ports?.some((p) => p.port === "grpc"));
    if (grpcRules.length !== 1) fail(file, "the workers' gRPC port must have exactly one ingress rule");
    for (const r of grpcRules) {
      if (!r.from?.length || r.from.some((f) => f.podSelector?.matchLabels?.["app.kubernetes.io/component"] !== "node" || f.namespaceSelector || f.ipBlock)) {
        fail(file, "the workers' gRPC port admits more than the node");
      }
    }
    for (const r of workerPolicy.spec.ingress) {
      if (!r.from?.length) fail(file, "a worker ingress rule admits any source");
    }
  }
  const cluster = byKind("Cluster")[0];
  if (name.startsWith("cnpg")) {
    if (!cluster) fail(file, "no CloudNativePG Cluster");
    const dbPolicy = policies.find((p) => sel(p)["cnpg.io/cluster"] === cluster?.metadata.name);
    if (!dbPolicy) fail(file, "no NetworkPolicy for the database");
    else {
      const pg = dbPolicy.spec.ingress.filter((r) => r.ports?.some((p) => p.port === 5432));
      const peers = pg.flatMap((r) => r.from ?? [{ any: true }]);
      if (peers.some((f) => f.any || f.ipBlock)) fail(file, "the database admits any source");
      const comps = new Set(peers.map((f) => f.podSelector?.matchLabels?.["app.kubernetes.io/component"]).filter(Boolean));
      for (const c of ["node", "migrate"]) if (!comps.has(c)) fail(file, `the database does not admit the ${c}`);
      if (!peers.some((f) => f.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] === "keda")) fail(file, "the database does not admit KEDA");
      const others = peers.filter((f) => !f.namespaceSelector && !f.podSelector?.matchLabels?.["cnpg.io/cluster"]
        && !["node", "migrate"].includes(f.podSelector?.matchLabels?.["app.kubernetes.io/component"]));
      if (others.length) fail(file, `the database admits others: ${JSON.stringify(others)}`);
    }
    if (!byKind("ServiceMonitor").length) fail(file, "no ServiceMonitor");
  } else if (cluster) fail(file, "a CloudNativePG Cluster without cnpg.enabled");

  // Scaling: KEDA where its API is present, else an HPA.
  if (name.startsWith("keda")) {
    const so = byKind("ScaledObject")[0];
    if (!so) fail(file, "no ScaledObject with KEDA present");
    else {
      if (so.spec.minReplicaCount !== 0) fail(file, "the ScaledObject does not scale to zero");
      for (const t of so.spec.triggers) {
        if (t.type !== "postgresql" || !/FROM jobs WHERE queue IN \('dispatch', 'volume'\)/.test(t.metadata.query)) fail(file, `trigger ${t.name} does not query the read queues`);
      }
    }
    if (byKind("HorizontalPodAutoscaler").length) fail(file, "an HPA beside the ScaledObject");
    if (!byKind("TriggerAuthentication").length) fail(file, "no TriggerAuthentication");
  } else {
    if (byKind("ScaledObject").length) fail(file, "a ScaledObject without KEDA's API");
    // A Deployment without replicas is the autoscaler's; without KEDA that is an HPA.
    const hpa = byKind("HorizontalPodAutoscaler")[0];
    if (worker && worker.spec.replicas === undefined && !hpa) fail(file, "autoscaled workers without KEDA and without an HPA");
    if (hpa && hpa.spec.minReplicas < 1) fail(file, "an HPA cannot scale to zero");
  }

  if (name.startsWith("gpu")) {
    const c = worker?.spec.template.spec.containers[0];
    if (c?.resources?.limits?.["nvidia.com/gpu"] !== 1) fail(file, "the worker has no nvidia.com/gpu limit");
    if (!worker?.spec.template.spec.tolerations?.length) fail(file, "the GPU worker has no tolerations");
    if (!Object.keys(worker?.spec.template.spec.nodeSelector ?? {}).length) fail(file, "the GPU worker has no nodeSelector");
    if (!/@sha256:/.test(node?.spec.template.spec.containers[0].image)) fail(file, "the node image digest is not used");
  }
  if (name.startsWith("ingress")) {
    const ing = byKind("Ingress")[0];
    if (!ing?.spec.tls?.length) fail(file, "no Ingress with TLS");
    const svc = byKind("Service").find((s) => s.metadata.name.endsWith("-dicom"));
    const ports = (svc?.spec.ports ?? []).map((p) => p.name).sort().join(",");
    if (ports !== "dicom,dicom-tls") fail(file, `the DICOM Service has ports ${ports}, not dicom and dicom-tls`);
  }
  if (name.startsWith("replicas") && !(node?.spec.replicas > 1)) fail(file, "the replicas values render one node replica");
  if (!byKind("PodDisruptionBudget").length) fail(file, "no PodDisruptionBudget");

  // No password literal in a Secret or a ConfigMap: credentials come from
  // Secrets the hospital or the operator created.
  for (const o of objects) {
    if (o.kind === "Secret") fail(file, `Secret/${o.metadata.name} rendered by the chart`);
    const text = JSON.stringify(o.data ?? {}) + JSON.stringify(o.stringData ?? {});
    if (/postgres(ql)?:\/\/[^/@\s"]*:[^/@\s"]+@/.test(text) || /password["']?\s*[:=]\s*["']?[^\s"',}]/i.test(text)) {
      fail(file, `${o.kind}/${o.metadata.name} holds a password`);
    }
  }
}

// Several node replicas: each names itself after its pod, advertises its
// stable name under the headless Service, serves the internal endpoint there
// with the token and TLS files mounted where the configuration says, and
// only the other replicas may reach that port.
function checkCluster(file, objects, node, cfg) {
  const spec = node.spec.template.spec;
  const c = spec.containers[0];
  const mounted = (path) => c.volumeMounts.some((m) => path.startsWith(`${m.mountPath}/`));
  if (cfg?.cluster?.enabled !== true) fail(file, "several node replicas without cluster.enabled");
  const podName = c.env?.find((e) => e.name === "POD_NAME");
  if (podName?.valueFrom?.fieldRef?.fieldPath !== "metadata.name") fail(file, "the node has no POD_NAME from metadata.name");
  const cmd = c.command ?? [];
  const setArg = (key) => cmd.find((a, i) => cmd[i - 1] === "--set" && a.startsWith(`${key}=`))?.slice(key.length + 1);
  if (setArg("cluster.node_id") !== "$(POD_NAME)") fail(file, "the command does not set cluster.node_id=$(POD_NAME)");
  const headless = objects.find((o) => o.kind === "Service" && o.metadata.name === node.spec.serviceName);
  if (!headless || headless.spec.clusterIP !== "None") fail(file, `the StatefulSet's serviceName ${node.spec.serviceName} is not a headless Service`);
  const port = spec.containers[0].ports.find((p) => p.name === "cluster");
  if (cfg?.cluster?.shared_spool_root) {
    if (!mounted(cfg.cluster.shared_spool_root + "/x")) fail(file, "cluster.shared_spool_root is not a mount");
    return;
  }
  const url = setArg("cluster.advertise_url") ?? "";
  const m = /^https:\/\/\$\(POD_NAME\)\.([a-z0-9-]+)\.([a-z0-9-]+)\.svc:(\d+)$/.exec(url);
  if (!m) fail(file, `cluster.advertise_url=${url} is not https://$(POD_NAME).<headless>.<namespace>.svc:<port>`);
  else {
    if (m[1] !== node.spec.serviceName) fail(file, `cluster.advertise_url names ${m[1]}, not the StatefulSet's Service ${node.spec.serviceName}`);
    if (m[2] !== "radiology") fail(file, `cluster.advertise_url names namespace ${m[2]}`);
    if (Number(m[3]) !== cfg?.cluster?.port || port?.containerPort !== cfg?.cluster?.port) fail(file, "cluster.advertise_url, cluster.port and the container's port disagree");
  }
  if (!headless?.spec.ports.some((p) => p.name === "cluster" && p.port === cfg?.cluster?.port && p.targetPort === "cluster")) {
    fail(file, "the headless Service does not expose the internal endpoint's port");
  }
  for (const f of [cfg?.cluster?.token_file, cfg?.cluster?.tls?.cert_file, cfg?.cluster?.tls?.key_file, cfg?.cluster?.tls?.ca_file]) {
    if (!f) fail(file, "cluster.token_file or cluster.tls.* unset with several replicas");
    else if (!mounted(f)) fail(file, `${f} is not on a mount`);
  }
  const policy = objects.find((o) => o.kind === "NetworkPolicy" && o.spec.podSelector.matchLabels?.["app.kubernetes.io/component"] === "node");
  if (policy) {
    const rules = policy.spec.ingress.filter((r) => r.ports?.some((p) => p.port === "cluster"));
    if (rules.length !== 1) fail(file, "the node's internal port must have exactly one ingress rule");
    for (const r of rules) {
      if (!r.from?.length || r.from.some((f) => f.podSelector?.matchLabels?.["app.kubernetes.io/component"] !== "node" || f.namespaceSelector || f.ipBlock)) {
        fail(file, "the node's internal port admits more than the node replicas");
      }
      if (r.ports.some((p) => p.port !== "cluster")) fail(file, "the node-to-node rule opens more than the internal port");
    }
  }
  const pdb = objects.find((o) => o.kind === "PodDisruptionBudget" && o.metadata.labels?.["app.kubernetes.io/component"] === "node");
  if (pdb && !(Number.isInteger(pdb.spec.maxUnavailable) && pdb.spec.maxUnavailable < node.spec.replicas)) {
    fail(file, `the node's PodDisruptionBudget lets ${pdb.spec.maxUnavailable} of ${node.spec.replicas} replicas go at once`);
  }
}

// ---- main ----------------------------------------------------------------------
const files = process.argv.slice(2);
if (!files.length) { console.error("usage: node validate.mjs RENDERED.yaml..."); process.exit(2); }
const rendered = files.map((file) => {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const d of docs) if (d.errors.length) fail(file, `YAML: ${d.errors[0].message}`);
  return { file, objects: docs.map((d) => d.toJS()).filter((o) => o) };
});
const modules = new Set();
for (const { objects } of rendered) for (const o of objects) modules.add(modelModule(o.apiVersion, o.kind));
buildChecker(modules);

let count = 0;
for (const { file, objects } of rendered) {
  for (const o of objects) {
    const m = modelModule(o.apiVersion, o.kind);
    const where = `${o.kind}/${o.metadata?.name}`;
    let Model;
    try {
      Model = (await import(m))[o.kind];
    } catch (e) {
      fail(file, `${where}: no model for ${o.apiVersion} ${o.kind} (${e.message.split("\n")[0]})`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (e) {
      fail(file, `${where}: ${e.message.replace(/\s+/g, " ")}`);
    }
    checkKeys(file, o, aliases.get(kinds.get(m)), where);
    count++;
  }
  checkChart(file, objects);
}
for (const f of failures) console.log(`FAIL ${f}`);
console.log(`${count} objects in ${files.length} files checked; ${failures.length} failures`);
process.exit(failures.length ? 1 : 0);
