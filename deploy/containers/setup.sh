#!/usr/bin/env bash
# Get a container engine and a base image on a fresh Debian machine, from Debian's packages
# alone (no container registry needed): rootful Podman with runc, a Docker-compatible API
# socket, and a Debian base image built from the host's own apt mirror. Safe to re-run:
# every step checks first and skips what is already there. CI calls it before building
# the images (deploy/containers/build.sh).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/containers/setup.sh [COMMAND]

Commands:
  all          (default) install, configure, base image, socket, then a smoke test
  install      install podman, runc, buildah, mmdebstrap, podman-compose from Debian
  configure    write /etc/containers/containers.conf (runc, cgroupfs, the host's rlimits)
  base         build the base image from the host's apt mirror (skipped if it exists)
  socket       start podman's Docker-compatible API socket (skipped if it answers)
  stop-socket  stop the socket service this script started
  env          print the exports for the docker CLI, docker-compose and testcontainers:
                 eval "$(deploy/containers/setup.sh env)"

Environment:
  TRIAGE_BASE_IMAGE   name of the base image (default localhost/debian:base)
  TRIAGE_SUITE        Debian suite of the base image (default: the host's)
  TRIAGE_MIRROR       Debian mirror (default: the first one in the host's apt sources)
  TRIAGE_PODMAN_SOCKET  the API socket (default /run/podman/podman.sock)
USAGE
}

BASE_IMAGE="${TRIAGE_BASE_IMAGE:-localhost/debian:base}"
SOCKET="${TRIAGE_PODMAN_SOCKET:-/run/podman/podman.sock}"
SOCKET_PID="${SOCKET%.sock}.service.pid"
SOCKET_LOG=/var/log/triage-podman-service.log
CONF=/etc/containers/containers.conf
MARK="# written by triage deploy/containers/setup.sh"
export DEBIAN_FRONTEND=noninteractive
WORK=""
trap '[[ -z $WORK ]] || rm -rf "$WORK"' EXIT

say() { printf '[containers] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [[ $EUID -eq 0 ]] || die "run as root: rootful podman, apt-get and /etc/containers need it"
}

install_packages() {
  local missing=()
  for cmd in podman runc buildah mmdebstrap podman-compose; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "packages: present ($(podman --version))"
    return
  fi
  need_root
  say "installing from Debian: podman runc buildah mmdebstrap podman-compose (missing: ${missing[*]})"
  apt-get update -qq
  # crun comes with podman as its default runtime; configure() switches to runc (see there).
  apt-get install -y -qq --no-install-recommends \
    podman runc buildah netavark aardvark-dns fuse-overlayfs slirp4netns uidmap catatonit \
    conmon iptables podman-compose mmdebstrap ca-certificates \
    >/dev/null
  say "installed $(podman --version)"
}

# The host's hard limit, capped at what podman would otherwise ask for.
host_limit() { # host_limit VALUE CAP
  local value=$1 cap=$2
  if [[ $value == unlimited || $value -gt $cap ]]; then value=$cap; fi
  echo "$value"
}

configure() {
  # Why each setting:
  #  runtime = runc: the host's cgroups are v1 with one controller on the v2 hierarchy
  #    ("hybrid"), which Debian's crun refuses ("cgroups in hybrid mode not supported").
  #  default_ulimits: podman asks for nofile=1048576 by default, but root here may not
  #    raise its hard limit (no CAP_SYS_RESOURCE), so every container would fail to start
  #    with "error setting rlimit"; ask for what the host allows instead.
  local nofile nproc want
  nofile=$(host_limit "$(ulimit -Hn)" 1048576)
  nproc=$(host_limit "$(ulimit -Hu)" 32768)
  want="$MARK
[containers]
default_ulimits = [\"nofile=${nofile}:${nofile}\", \"nproc=${nproc}:${nproc}\"]

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"

[network]
network_backend = \"netavark\""
  if [[ -f $CONF ]] && [[ "$(cat "$CONF")" == "$want" ]]; then
    say "containers.conf: up to date (runc, nofile=$nofile, nproc=$nproc)"
    return
  fi
  need_root
  if [[ -f $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
    cp "$CONF" "$CONF.before-triage"
    say "containers.conf: kept the previous one as $CONF.before-triage"
  fi
  mkdir -p "$(dirname "$CONF")"
  printf '%s\n' "$want" >"$CONF"
  say "containers.conf: runtime=runc cgroup_manager=cgroupfs nofile=$nofile nproc=$nproc"
}

# The first URI in the host's apt sources (deb822 or one-line) whose path ends in $1.
apt_mirror() {
  {
    grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '{print $2}'
  } | grep -E "$1/?\$" | head -n 1 || true
}

base_image() {
  if podman image exists "$BASE_IMAGE"; then
    say "base image: $BASE_IMAGE exists"
    return
  fi
  need_root
  local suite mirror security
  suite="${TRIAGE_SUITE:-$(. /etc/os-release && echo "$VERSION_CODENAME")}"
  mirror="${TRIAGE_MIRROR:-$(apt_mirror /debian)}"
  security="${TRIAGE_SECURITY_MIRROR:-$(apt_mirror /debian-security)}"
  [[ -n $mirror ]] || die "no Debian mirror in the host's apt sources; set TRIAGE_MIRROR"
  WORK="$(mktemp -d /var/tmp/triage-base.XXXXXX)"
  local sources=("deb $mirror $suite main" "deb $mirror $suite-updates main")
  [[ -z $security ]] || sources+=("deb $security $suite-security main")
  say "base image: mmdebstrap $suite (minbase) from $mirror"
  # No man pages, translations or docs (the copyright files stay): about a third smaller.
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "$suite" "$WORK/rootfs.tar" "${sources[@]}"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$WORK/rootfs.tar" "$BASE_IMAGE" >/dev/null
  rm -rf "$WORK"
  say "base image: $BASE_IMAGE built ($(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
}

socket_answers() {
  [[ -S $SOCKET ]] && podman --url "unix://$SOCKET" version >/dev/null 2>&1
}

start_socket() {
  if socket_answers; then
    say "socket: unix://$SOCKET answers"
    return
  fi
  need_root
  mkdir -p "$(dirname "$SOCKET")"
  rm -f "$SOCKET"
  # --time=0: never exit when idle; tests and compose come and go.
  nohup podman system service --time=0 "unix://$SOCKET" >>"$SOCKET_LOG" 2>&1 &
  echo $! >"$SOCKET_PID"
  for _ in $(seq 1 100); do
    socket_answers && break
    sleep 0.1
  done
  socket_answers || die "podman's API socket did not come up; see $SOCKET_LOG"
  say "socket: unix://$SOCKET (pid $(cat "$SOCKET_PID"), log $SOCKET_LOG)"
}

stop_socket() {
  if [[ -f $SOCKET_PID ]] && kill -0 "$(cat "$SOCKET_PID")" 2>/dev/null; then
    kill -TERM "$(cat "$SOCKET_PID")"
    say "socket: stopped pid $(cat "$SOCKET_PID")"
  fi
  rm -f "$SOCKET_PID"
}

print_env() {
  # testcontainers: Ryuk (its reaper container) comes from a registry, which is not
  # reachable here; the tests remove their own containers instead.
  cat <<EOF
export DOCKER_HOST=unix://$SOCKET
export CONTAINER_HOST=unix://$SOCKET
export TESTCONTAINERS_RYUK_DISABLED=true
export TRIAGE_BASE_IMAGE=$BASE_IMAGE
EOF
}

smoke_test() {
  local out
  out="$(podman run --rm "$BASE_IMAGE" echo container-ok)"
  [[ $out == container-ok ]] || die "a container from $BASE_IMAGE did not run: $out"
  say "smoke test: a container from $BASE_IMAGE ran"
}

case "${1:-all}" in
  all)
    install_packages
    configure
    base_image
    start_socket
    smoke_test
    ;;
  install) install_packages ;;
  configure) configure ;;
  base) base_image ;;
  socket) start_socket ;;
  stop-socket) stop_socket ;;
  env) print_env ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
