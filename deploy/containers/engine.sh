# Sourced by scripts that drive podman through its Docker-compatible socket
# (deploy/compose/ci.sh, tests/containers.sh): require_engine checks that podman is
# installed, takes DOCKER_HOST and the rest from `deploy/containers/setup.sh env` when
# DOCKER_HOST is not set, and checks that the socket is there, or exits with one line
# naming the setup step to run.

require_engine() {
  local setup
  setup="$(dirname "${BASH_SOURCE[0]}")/setup.sh"
  if ! command -v podman >/dev/null; then
    printf 'error: podman is not installed: run deploy/containers/setup.sh first\n' >&2
    exit 1
  fi
  if [[ -z ${DOCKER_HOST:-} ]]; then
    eval "$("$setup" env)"
  fi
  if [[ ! -S ${DOCKER_HOST#unix://} ]]; then
    printf 'error: no Docker-compatible socket at %s: run deploy/containers/setup.sh socket\n' \
      "$DOCKER_HOST" >&2
    exit 1
  fi
}
