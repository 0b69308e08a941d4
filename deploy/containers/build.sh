#!/usr/bin/env bash
# Build the per-service images from deploy/containers/Dockerfile, one at a time, and print
# a table of their sizes. CI and compose use it; see docs/containers.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ALL_TARGETS=(ingest router review-ui classifier classifier-embeddings cli)

usage() {
  cat <<USAGE
Usage: deploy/containers/build.sh [--base IMAGE] [--tag TAG] [--check] [TARGET...]

Builds localhost/triage-TARGET:TAG for each TARGET (default: all of them, in this order:
${ALL_TARGETS[*]}), then prints each image's size.

Options:
  --base IMAGE  the BASE_IMAGE build argument (default: \$TRIAGE_BASE_IMAGE if set, as
                'eval "\$(deploy/containers/setup.sh env)"' sets it, else the
                Dockerfile's own default, the official python:3.11-slim-bookworm)
  --tag TAG     image tag (default: dev)
  --check       afterwards run deploy/containers/check.sh on each image built

Environment:
  TRIAGE_CONTAINER_ENGINE  podman (default) or docker
  TRIAGE_BUILD_LOCK        builds on this machine wait for each other on this lock file
                           (default /tmp/podman-build.lock)
  TRIAGE_CA_BUNDLE         CA bundle given to the build as the secret ca-certificates, for
                           a TLS-intercepting proxy (default: the host's bundle, if any)
  TRIAGE_UV_CACHE          the host's uv cache, lent to podman builds so that wheels the
                           host already has are not downloaded again (default: where uv
                           keeps it, ~/.cache/uv; "none" to build without it)
USAGE
}

base="${TRIAGE_BASE_IMAGE:-}"
tag=dev
check=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) base="${2:?--base needs an image}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a tag}"; shift 2 ;;
    --check) check=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *)
      [[ " ${ALL_TARGETS[*]} " == *" $1 "* ]] \
        || { echo "error: unknown target $1 (one of: ${ALL_TARGETS[*]})" >&2; exit 2; }
      targets+=("$1"); shift ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

engine="${TRIAGE_CONTAINER_ENGINE:-podman}"
command -v "$engine" >/dev/null || {
  echo "error: $engine is not installed (deploy/containers/setup.sh installs podman)" >&2
  exit 1
}
lock="${TRIAGE_BUILD_LOCK:-/tmp/podman-build.lock}"
ca="${TRIAGE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

args=(--file "$ROOT/deploy/containers/Dockerfile")
[[ -z $base ]] || args+=(--build-arg "BASE_IMAGE=$base")
[[ ! -f $ca ]] || args+=(--secret "id=ca-certificates,src=$ca")
uv_cache="${TRIAGE_UV_CACHE:-${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}}"
if [[ $engine == podman && -n $uv_cache && $uv_cache != none && -d $uv_cache ]]; then
  args+=(--volume "$uv_cache:/uv-host-cache")
fi

human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }

declare -A seconds
for target in "${targets[@]}"; do
  image="localhost/triage-$target:$tag"
  printf '==> building %s (base %s)\n' "$image" "${base:-python:3.11-slim-bookworm}" >&2
  start=$SECONDS
  flock "$lock" "$engine" build "${args[@]}" --target "$target" --tag "$image" "$ROOT"
  seconds[$target]=$((SECONDS - start))
done

printf '\n%-46s %10s %8s\n' image size build
for target in "${targets[@]}"; do
  image="localhost/triage-$target:$tag"
  size="$("$engine" image inspect --format '{{.Size}}' "$image")"
  printf '%-46s %10s %7ss\n' "$image" "$(human "$size")" "${seconds[$target]}"
done

if [[ $check -eq 1 ]]; then
  for target in "${targets[@]}"; do
    "$ROOT/deploy/containers/check.sh" "localhost/triage-$target:$tag"
  done
fi
