#!/usr/bin/env bash
# The Kafka and PostgreSQL images that compose.yaml (deploy/compose/ci.sh) and the tests'
# containers mode (tests/containers.sh) run: which ones (TRIAGE_KAFKA_IMAGE,
# TRIAGE_POSTGRES_IMAGE; local ones by default, as no container registry is reachable here),
# and how the local ones are built, from deploy/compose/{kafka,postgres}/Containerfile on
# TRIAGE_BASE_IMAGE. An image not named localhost/... is left for the engine to pull.
#
#   deploy/compose/infra-images.sh [--missing]   build them (--missing: only those not there)
#   source deploy/compose/infra-images.sh        set and export the image variables, and
#                                                define infra_images [--missing]
#
# Environment:
#   TRIAGE_BASE_IMAGE      base of the local images (default localhost/debian:base, made by
#                          deploy/containers/setup.sh)
#   TRIAGE_KAFKA_VERSION   Kafka version of the local broker image (default 4.1.1)
#   TRIAGE_KAFKA_IMAGE     default localhost/triage-kafka:<TRIAGE_KAFKA_VERSION>
#   TRIAGE_POSTGRES_IMAGE  default localhost/triage-postgres:15
#   TRIAGE_M2_CACHE        Maven repository the Kafka image's build keeps its downloads in
#                          (default /var/tmp/triage-compose-m2)
#   TRIAGE_JAVA_CACERTS    Java trust store Maven uses in that build, for a TLS-intercepting
#                          proxy (default the host's /etc/ssl/certs/java/cacerts, if any)
#   TRIAGE_BUILD_LOCK      lock file that keeps image builds one at a time
#                          (default /tmp/podman-build.lock)

export TRIAGE_BASE_IMAGE="${TRIAGE_BASE_IMAGE:-localhost/debian:base}"
TRIAGE_KAFKA_VERSION="${TRIAGE_KAFKA_VERSION:-4.1.1}"
export TRIAGE_KAFKA_IMAGE="${TRIAGE_KAFKA_IMAGE:-localhost/triage-kafka:$TRIAGE_KAFKA_VERSION}"
export TRIAGE_POSTGRES_IMAGE="${TRIAGE_POSTGRES_IMAGE:-localhost/triage-postgres:15}"
INFRA_DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_infra_build() { # _infra_build MODE NAME IMAGE [podman build options...]
  local mode=$1 name=$2 image=$3
  shift 3
  if [[ $mode == missing ]] && podman image exists "$image"; then return; fi
  podman image exists "$TRIAGE_BASE_IMAGE" ||
    { echo "error: no base image $TRIAGE_BASE_IMAGE: run deploy/containers/setup.sh base" >&2; return 1; }
  printf '\033[1m==> %s\033[0m\n' \
    "building $image from deploy/compose/$name/Containerfile (base $TRIAGE_BASE_IMAGE)" >&2
  flock "${TRIAGE_BUILD_LOCK:-/tmp/podman-build.lock}" podman build \
    --build-arg "BASE_IMAGE=$TRIAGE_BASE_IMAGE" "$@" \
    -f "$INFRA_DEPLOY_DIR/compose/$name/Containerfile" -t "$image" "$INFRA_DEPLOY_DIR"
}

infra_images() { # infra_images [--missing]
  local mode=always m2 cacerts secret=()
  [[ ${1:-} != --missing ]] || mode=missing
  if [[ $TRIAGE_KAFKA_IMAGE == localhost/* ]]; then
    # Kafka's jars are downloaded into a Maven repository kept between runs.
    m2="${TRIAGE_M2_CACHE:-/var/tmp/triage-compose-m2}"
    cacerts="${TRIAGE_JAVA_CACERTS:-/etc/ssl/certs/java/cacerts}"
    mkdir -p "$m2"
    [[ ! -f $cacerts ]] || secret=(--secret "id=java-cacerts,src=$cacerts")
    _infra_build "$mode" kafka "$TRIAGE_KAFKA_IMAGE" \
      --build-arg "KAFKA_VERSION=$TRIAGE_KAFKA_VERSION" --volume "$m2:/build/m2" "${secret[@]}"
  fi
  if [[ $TRIAGE_POSTGRES_IMAGE == localhost/* ]]; then
    _infra_build "$mode" postgres "$TRIAGE_POSTGRES_IMAGE"
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  case "${1:-}" in
    "" | --missing) infra_images "$@" ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
fi
