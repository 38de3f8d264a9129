// Writes the configuration files a rendered manifest gives the node and the
// worker (their ConfigMaps' data) into a directory, so that the real
// binaries can read them:
//   node extract-config.mjs RENDERED.yaml OUT_DIR
// writes OUT_DIR/secondread.yaml and OUT_DIR/worker.yaml.
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
