// Writes the configuration files a rendered manifest gives the node and the
// worker (their ConfigMaps' data) into a directory, so that the real
// binaries can read them:
//   node extract-config.mjs RENDERED.yaml OUT_DIR
// writes OUT_DIR/secondread.yaml and OUT_DIR/worker.yaml, and OUT_DIR/node-args:
// the arguments the node's StatefulSet adds after its configuration file, one
// a line, with $(VAR) expanded as Kubernetes would for the first pod
// (POD_NAME from metadata.name: <StatefulSet>-0).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

const [rendered, out] = process.argv.slice(2);
if (!rendered || !out) { console.error("usage: node extract-config.mjs RENDERED.yaml OUT_DIR"); process.exit(2); }
const objects = parseAllDocuments(readFileSync(rendered, "utf8")).map((d) => d.toJS()).filter((o) => o);
const configMap = (component) => objects.find((o) => o.kind === "ConfigMap" && !o.metadata.annotations?.["helm.sh/hook"]
  && o.metadata.labels?.["app.kubernetes.io/component"] === component);
mkdirSync(out, { recursive: true });
for (const [component, file] of [["node", "secondread.yaml"], ["worker", "worker.yaml"]]) {
  const cm = configMap(component);
  if (!cm?.data?.[file]) { console.error(`${rendered}: no ${component} ConfigMap with ${file}`); process.exit(1); }
  writeFileSync(join(out, file), cm.data[file]);
}
const sts = objects.find((o) => o.kind === "StatefulSet" && o.metadata.labels?.["app.kubernetes.io/component"] === "node");
if (!sts) { console.error(`${rendered}: no node StatefulSet`); process.exit(1); }
const container = sts.spec.template.spec.containers[0];
const env = {};
for (const e of container.env ?? []) {
  if (e.value !== undefined) env[e.name] = e.value;
  else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.name") env[e.name] = `${sts.metadata.name}-0`;
}
const command = container.command;
const at = command.indexOf("--config");
if (command[0] !== "secondread" || command[1] !== "serve" || at < 0) {
  console.error(`${rendered}: the node runs ${command.join(" ")}`); process.exit(1);
}
// Kubernetes leaves $(NAME) as it is when NAME is not defined; so do we, and
// the node then refuses the value.
const args = command.slice(at + 2).map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v) => env[v] ?? m));
writeFileSync(join(out, "node-args"), args.map((a) => a + "\n").join(""));
