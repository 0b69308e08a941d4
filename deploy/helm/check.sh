#!/usr/bin/env bash
# Check the Helm chart without a cluster: `helm lint --strict`, then every manifest
# `helm template` renders, validated by kubeconform -strict against Kubernetes' JSON schemas
# (and KEDA's ScaledObject and TriggerAuthentication against deploy/helm/schemas/keda.sh).
# Each values file in deploy/helm/check-values/ is one configuration checked.
#
# What it needs it makes, offline after the first run, in a cache shared by every checkout
# ($TRIAGE_TOOLS_CACHE, default ~/.cache/triage/tools, one folder per tool and version):
# helm and kubeconform built from the Go module proxy (Go 1.22 or later; about 1 min for
# kubeconform and 6 min for helm on 2 cores, once), and the Kubernetes schemas taken from
# the kubernetes-validate wheel on PyPI (no schema download at check time).
# Usage: deploy/helm/check.sh [--tools-only | --print-helm]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${TRIAGE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/triage/tools}"
HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.8.0
# kubernetes-validate X.Y.Z bundles the schemas of Kubernetes vX.Y.Z (and older).
K8S_VERSION=1.37.0
SCHEMAS="$CACHE/k8s-schemas-$K8S_VERSION"
HELM="$CACHE/helm-$HELM_VERSION/helm"
KUBECONFORM="$CACHE/kubeconform-$KUBECONFORM_VERSION/kubeconform"
CHART="$ROOT/deploy/helm/triage"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

build_tool() { # build_tool PATH MODULE@VERSION
  [[ -x "$1" ]] && return
  local dir; dir="$(dirname "$1")"
  command -v go >/dev/null || die "$1 is missing and Go is not installed to build it (apt-get install golang, or put it there)"
  say "building $(basename "$1") from the Go module proxy (${2#*@}; once, into $dir)"
  mkdir -p "$dir.part"
  GOBIN="$dir.part" GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false" go install "$2"
  rm -rf "$dir" && mv "$dir.part" "$dir"
}

fetch_schemas() {
  [[ -d "$SCHEMAS/v$K8S_VERSION-standalone-strict" ]] && return
  say "extracting the Kubernetes v$K8S_VERSION schemas from PyPI's kubernetes-validate==$K8S_VERSION"
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" \
    "kubernetes-validate==$K8S_VERSION"
  python3 - "$work"/kubernetes_validate-*.whl "$SCHEMAS.part" "v$K8S_VERSION" <<'PY'
"""Copy the wheel's standalone schemas into kubeconform's layout, with no remote reference."""
import json
import sys
import zipfile
from pathlib import Path

wheel, out, version = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


def local(node):
    # "$id" is an https URL kubeconform would resolve references against (and fetch);
    # "$ref"s point at ../api/_definitions.json beside each file.
    if isinstance(node, dict):
        node.pop("$id", None)
        if isinstance(node.get("$ref"), str):
            node["$ref"] = node["$ref"].replace("/api/_definitions.json", "_definitions.json")
        for value in node.values():
            local(value)
    elif isinstance(node, list):
        for value in node:
            local(value)


count = 0
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        for flavour, suffix in (("-local/", ""), ("-local-strict/", "-strict")):
            prefix = f"kubernetes_validate/kubernetes-json-schema/{version}{flavour}"
            if name.startswith(prefix) and name.endswith(".json"):
                target = out / f"{version}-standalone{suffix}" / name[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                schema = json.loads(archive.read(name))
                local(schema)
                target.write_text(json.dumps(schema))
                count += 1
if not count:
    sys.exit(f"no {version} schemas in {wheel}")
print(f"{count} schema files", file=sys.stderr)
PY
  rm -rf "$SCHEMAS" && mv "$SCHEMAS.part" "$SCHEMAS"
}

build_tool "$KUBECONFORM" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
build_tool "$HELM" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
fetch_schemas
case "${1:-}" in
  --tools-only) exit 0 ;;
  --print-helm) echo "$HELM"; exit 0 ;;
esac

status=0
for values in "$ROOT"/deploy/helm/check-values/*.yaml; do
  label="check-values/$(basename "$values")"
  say "helm lint --strict ($label)"
  "$HELM" lint --strict "$CHART" -f "$values" || status=1
  say "helm template | kubeconform -strict ($label)"
  # Hooks (the migrations Job and its NetworkPolicy) are rendered and checked too.
  if ! "$HELM" template triage "$CHART" -f "$values" --namespace triage \
      | "$KUBECONFORM" -strict -summary \
          -kubernetes-version "$K8S_VERSION" \
          -schema-location "$SCHEMAS" \
          -schema-location "$ROOT/deploy/helm/schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"; then
    status=1
  fi
done
exit "$status"
