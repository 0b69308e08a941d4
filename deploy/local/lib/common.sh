# shellcheck shell=bash
# Shared helpers for deploy/local/stack.sh. Sourced, never executed directly.

# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------
info() { printf '%s\n' "$*"; }
warn() { printf 'stack: warning: %s\n' "$*" >&2; }
die() {
  printf 'stack: error: %s\n' "$*" >&2
  exit 1
}

# Monotonic-ish wall clock in milliseconds (GNU date).
now_ms() { date +%s%3N; }

# Format a duration given in milliseconds as "12.3s".
fmt_ms() {
  local ms=$1
  printf '%d.%ds' $((ms / 1000)) $(((ms % 1000) / 100))
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# ---------------------------------------------------------------------------
# Configuration (all overridable through the environment)
# ---------------------------------------------------------------------------
load_config() {
  STACK_DIR=${TRIAGE_STACK_DIR:-"$REPO_ROOT/.stack"}
  KAFKA_PORT=${TRIAGE_KAFKA_PORT:-19092}
  KAFKA_CONTROLLER_PORT=${TRIAGE_KAFKA_CONTROLLER_PORT:-19093}
  KAFKA_SASL_SSL_PORT=${TRIAGE_KAFKA_SASL_SSL_PORT:-19094}
  PG_PORT=${TRIAGE_PG_PORT:-15432}
  IMAP_PORT=${TRIAGE_IMAP_PORT:-11143}
  IMAPS_PORT=${TRIAGE_IMAPS_PORT:-11993}
  KAFKA_VERSION=${TRIAGE_KAFKA_VERSION:-4.1.1}
  KAFKA_HEAP=${TRIAGE_KAFKA_HEAP:-"-Xms256m -Xmx512m"}
  START_TIMEOUT=${TRIAGE_START_TIMEOUT:-180}

  local name value seen=" "
  for name in KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_SASL_SSL_PORT PG_PORT IMAP_PORT IMAPS_PORT; do
    value=${!name}
    if [[ ! $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
      die "TRIAGE_$name must be a TCP port number (1-65535), got '$value'"
    fi
    if [[ $seen == *" $value "* ]]; then
      die "TRIAGE_KAFKA_PORT, TRIAGE_KAFKA_CONTROLLER_PORT, TRIAGE_KAFKA_SASL_SSL_PORT," \
        "TRIAGE_PG_PORT, TRIAGE_IMAP_PORT and TRIAGE_IMAPS_PORT must all differ (port $value is given twice)"
    fi
    seen+="$value "
  done
  [[ $START_TIMEOUT =~ ^[0-9]+$ ]] || die "TRIAGE_START_TIMEOUT must be a number of seconds, got '$START_TIMEOUT'"
  [[ $KAFKA_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "TRIAGE_KAFKA_VERSION must look like 4.1.1, got '$KAFKA_VERSION'"

  # Make the stack dir absolute without requiring it to exist yet.
  case $STACK_DIR in
    /*) ;;
    *) STACK_DIR="$PWD/$STACK_DIR" ;;
  esac
  STACK_DIR=${STACK_DIR%/}

  LOG_DIR="$STACK_DIR/logs"
  LOCK_FILE="$STACK_DIR/stack.lock"
}

# Creates the stack dir, with a .gitignore so that a stack dir inside a git
# work tree (the default <repo>/.stack) is never committed by accident.
ensure_stack_dir() {
  mkdir -p "$STACK_DIR"
  if [[ ! -f "$STACK_DIR/.gitignore" ]]; then
    printf '# Created by deploy/local/stack.sh: nothing in here belongs in git.\n*\n' >"$STACK_DIR/.gitignore"
  fi
}

# Serialise concurrent invocations (several developers/tests may call
# "start" at the same time). The lock is released when the script exits.
take_lock() {
  ensure_stack_dir
  exec 9>"$LOCK_FILE"
  if command -v flock >/dev/null 2>&1; then
    if ! flock -w "$START_TIMEOUT" 9; then
      die "another stack.sh is still working on $STACK_DIR (waited ${START_TIMEOUT}s for $LOCK_FILE)"
    fi
  fi
}

# ---------------------------------------------------------------------------
# Processes and ports
# ---------------------------------------------------------------------------
# True when process PID exists and has not exited. A zombie (exited, not yet reaped: a
# server killed with SIGKILL whose parent is an init that never reaps) is not alive.
pid_alive() {
  local pid=$1 state
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  state=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null) || state=""
  [[ $state != Z ]]
}

# True when something listens on 127.0.0.1:<port> (or on a wildcard address
# that covers it).
port_listening() {
  local port=$1 out
  if command -v ss >/dev/null 2>&1; then
    out=$(ss -Hltn "sport = :$port" 2>/dev/null) || out=""
    [[ -n $out ]]
    return
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# Fail with a clear message when a port we are about to bind is taken by a
# process that is not ours.
require_port_free() {
  local port=$1 var=$2 what=$3 holder=""
  port_listening "$port" || return 0
  if command -v ss >/dev/null 2>&1; then
    holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1) || holder=""
  fi
  die "port $port (for $what) is already in use by another process${holder:+ $holder}." \
    "Stop that process or choose another port, e.g. $var=$((port + 100)) $0 start" \
    "(remember to use the same $var for 'env', 'status' and 'stop')."
}

# Warns about each given port that lies in the kernel's ephemeral range: while a server on
# such a port is down, a client retrying 127.0.0.1:<port> can be handed that very port as its
# own source port (a TCP self-connect), and the server then fails to bind it when it starts
# again ("Address already in use"). Restarts (start-server) are where that bites.
# Usage: warn_ephemeral_ports VAR=PORT...
warn_ephemeral_ports() {
  local range low high pair
  range=$(cat /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || return 0
  read -r low high <<<"$range"
  [[ $low =~ ^[0-9]+$ && $high =~ ^[0-9]+$ ]] || return 0
  for pair in "$@"; do
    if ((${pair#*=} >= low && ${pair#*=} <= high)); then
      warn "${pair%%=*}=${pair#*=} is in the ephemeral port range $low-$high: a client" \
        "reconnecting while the server is down may take that port and stop it from starting" \
        "again; prefer a port below $low"
    fi
  done
}

# Wait until <port> accepts connections or <pid> dies. Returns 0 when ready,
# 1 when the process died, 2 on timeout.
wait_port() {
  local port=$1 pid=$2 deadline=$3
  while true; do
    pid_alive "$pid" || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    (($(now_ms) < deadline)) || return 2
    sleep 0.2
  done
}

# Print the last lines of a log file to stderr (for failure diagnostics).
show_log_tail() {
  local file=$1 lines=${2:-30}
  if [[ -r $file ]]; then
    printf -- '--- last %d lines of %s ---\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2 || true
    printf -- '--- end of %s ---\n' "$file" >&2
  fi
}

# Waits for a server launched in the background: its pid file, its port, then READY_FN PORT
# answering (polled every POLL seconds), all before DEADLINE (ms). Prints the pid. On failure
# shows the logs, stops the server if it is still alive, and dies with the reason.
# Usage: await_server NAME PID_FILE PORT DEADLINE READY_FN POLL LOG...
await_server() {
  local name=$1 pid_file=$2 port=$3 deadline=$4 ready_fn=$5 poll=$6
  shift 6
  local pid="" rc=0 log
  while [[ -z $pid ]]; do
    [[ -s $pid_file ]] && pid=$(<"$pid_file")
    if [[ -z $pid ]]; then
      (($(now_ms) < deadline)) || die "$name did not start (no pid file $pid_file)"
      sleep 0.1
    fi
  done
  wait_port "$port" "$pid" "$deadline" || rc=$?
  if ((rc == 0)); then
    rc=1
    while pid_alive "$pid" && (($(now_ms) < deadline)); do
      if "$ready_fn" "$port"; then
        rc=0
        break
      fi
      sleep "$poll"
    done
  fi
  if ((rc != 0)); then
    for log in "$@"; do show_log_tail "$log" 25 >&2; done
    if pid_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      die "$name (pid $pid) did not become ready within ${START_TIMEOUT}s; stopped it. Logs: $LOG_DIR"
    fi
    rm -f "$pid_file"
    die "$name exited during startup. Logs: $LOG_DIR"
  fi
  printf '%s\n' "$pid"
}

# Stops a server. MODE "clean" (the default): SIGTERM, up to SECONDS to exit, then SIGKILL
# with a warning. MODE "crash": SIGKILL at once, as a crash would end it (no shutdown hooks,
# nothing flushed or closed by the server), and up to SECONDS for it to be gone.
# Usage: stop_server NAME PID SECONDS [clean|crash]
stop_server() {
  local name=$1 pid=$2 seconds=$3 mode=${4:-clean} waited=0
  case $mode in
    clean) kill -TERM "$pid" 2>/dev/null || true ;;
    crash) kill -KILL "$pid" 2>/dev/null || true ;;
    *) die "stop_server: unknown mode '$mode'" ;;
  esac
  while pid_alive "$pid" && ((waited < seconds * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if [[ $mode == crash ]] && pid_alive "$pid"; then
    die "$name (pid $pid) is still there ${seconds}s after SIGKILL"
  fi
  if pid_alive "$pid"; then
    warn "$name (pid $pid) did not stop within ${seconds}s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
}
