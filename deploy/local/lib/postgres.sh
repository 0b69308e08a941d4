# shellcheck shell=bash
# PostgreSQL (Debian packages) for deploy/local/stack.sh.
# Sourced, never executed directly. Needs lib/common.sh and load_config.

PG_APP_USER=triage
PG_APP_PASSWORD=triage
PG_APP_DB=triage
PG_SUPERUSER=postgres
PG_SUPERUSER_PASSWORD=postgres

pg_paths() {
  PG_DIR="$STACK_DIR/postgres"
  PG_DATA="$PG_DIR/data"
  PG_RUN="$PG_DIR/run"
  PG_LOG="$LOG_DIR/postgres.log"
}

# ---------------------------------------------------------------------------
# Binaries and OS user
# ---------------------------------------------------------------------------

# Prints the directory holding initdb and pg_ctl, or nothing.
pg_find_bindir() {
  local pg_ctl dir
  if command -v initdb >/dev/null 2>&1 && pg_ctl=$(command -v pg_ctl 2>/dev/null); then
    dir=$(dirname "$(readlink -f "$pg_ctl")")
    if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  fi
  for dir in $(compgen -G '/usr/lib/postgresql/*/bin' | sort -V -r); do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
}

# Sets PG_BIN (initdb, pg_ctl, postgres, psql, pg_isready) or exits.
pg_require_binaries() {
  PG_BIN=$(pg_find_bindir)
  if [[ -z $PG_BIN ]]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
      info "postgres: server binaries not found, installing the Debian package 'postgresql'..."
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      PG_BIN=$(pg_find_bindir)
    fi
  fi
  if [[ -z $PG_BIN ]]; then
    die "PostgreSQL server binaries (initdb, pg_ctl) were not found in PATH or /usr/lib/postgresql/*/bin." \
      "Install them, e.g. 'sudo apt-get install postgresql', and run start again."
  fi
  local tool
  for tool in psql pg_isready; do
    [[ -x "$PG_BIN/$tool" ]] || command -v "$tool" >/dev/null 2>&1 ||
      die "'$tool' was not found next to $PG_BIN/pg_ctl nor in PATH; install the Debian package 'postgresql-client'"
  done
}

pg_tool() {
  local tool=$1
  [[ -n ${PG_BIN:-} ]] || PG_BIN=$(pg_find_bindir)
  if [[ -x "$PG_BIN/$tool" ]]; then
    printf '%s\n' "$PG_BIN/$tool"
  else
    command -v "$tool"
  fi
}

# PostgreSQL refuses to run as root: as root, run its programs as the
# 'postgres' OS user (created by the Debian package).
pg_as_owner() {
  if is_root; then
    (cd "$PG_DIR" && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

pg_require_os_user() {
  is_root || return 0
  id postgres >/dev/null 2>&1 ||
    die "running as root, so PostgreSQL must run as the OS user 'postgres', which does not exist." \
      "Install the Debian package 'postgresql' (it creates that user) or run this script as a normal user."
  command -v runuser >/dev/null 2>&1 || die "running as root needs 'runuser' (package util-linux) to start PostgreSQL as 'postgres'"
  ensure_stack_dir
  if ! runuser -u postgres -- test -x "$STACK_DIR"; then
    die "the OS user 'postgres' cannot reach $STACK_DIR (a parent directory is private to its owner," \
      "e.g. root's home). PostgreSQL cannot run as root, so set TRIAGE_STACK_DIR to a directory" \
      "that user can reach, e.g. TRIAGE_STACK_DIR=/var/tmp/triage-stack $0 start"
  fi
}

pg_require_socket_path() {
  local socket="$PG_RUN/.s.PGSQL.$PG_PORT"
  if ((${#socket} > 107)); then
    die "the PostgreSQL socket path $socket is too long for a unix socket (${#socket} > 107 characters);" \
      "set TRIAGE_STACK_DIR to a shorter directory"
  fi
}

# ---------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------
pg_prepare_dirs() {
  mkdir -p "$PG_DIR" "$PG_RUN" "$LOG_DIR"
  touch "$PG_LOG"
  if is_root; then
    chown postgres:postgres "$PG_DIR" "$PG_RUN" "$PG_LOG"
    [[ -d $PG_DATA ]] && chown postgres:postgres "$PG_DATA"
  fi
  chmod 700 "$PG_RUN"
}

pg_initdb_if_needed() {
  if [[ -f "$PG_DATA/PG_VERSION" ]]; then
    return 0
  fi
  local pwfile="$PG_DIR/.initdb-password" out
  rm -rf "$PG_DATA"
  (umask 077 && printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$pwfile")
  is_root && chown postgres:postgres "$pwfile"
  # Local (unix socket, inside the stack dir) connections are trusted so the
  # script can administer the cluster; TCP connections need a password.
  if ! out=$(pg_as_owner "$(pg_tool initdb)" -D "$PG_DATA" -U "$PG_SUPERUSER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale 2>&1); then
    rm -f "$pwfile"
    printf '%s\n' "$out" >&2
    die "initdb failed for $PG_DATA"
  fi
  rm -f "$pwfile"
  printf '\n# Added by deploy/local/stack.sh (settings regenerated on every start).\ninclude_if_exists = '\''triage-stack.conf'\''\n' |
    pg_as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null
  info "postgres: initialised a new cluster in $PG_DATA"
}

pg_write_config() {
  cat <<CONF | pg_as_owner tee "$PG_DATA/triage-stack.conf" >/dev/null
# Generated by deploy/local/stack.sh on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
max_connections = 200
shared_buffers = 128MB
password_encryption = scram-sha-256
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
CONF
}

# Creates the application role and database (idempotent).
pg_provision() {
  local psql
  psql=$(pg_tool psql)
  pg_as_owner "$psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres >/dev/null <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_APP_USER') THEN
    CREATE ROLE $PG_APP_USER LOGIN CREATEDB PASSWORD '$PG_APP_PASSWORD';
  ELSE
    ALTER ROLE $PG_APP_USER LOGIN CREATEDB PASSWORD '$PG_APP_PASSWORD';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $PG_APP_DB OWNER $PG_APP_USER'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_APP_DB') \gexec
SQL
}

# ---------------------------------------------------------------------------
# Process state
# ---------------------------------------------------------------------------

# Prints "<pid> <port>" of our running postmaster, or nothing.
pg_pid_port() {
  local pidfile="$PG_DATA/postmaster.pid" pid port cmdline
  [[ -r $pidfile ]] || return 0
  pid=$(sed -n 1p "$pidfile")
  port=$(sed -n 4p "$pidfile")
  pid_alive "$pid" || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || cmdline=""
  [[ $cmdline == *postgres* ]] || return 0
  printf '%s %s\n' "$pid" "$port"
}

pg_ready() {
  local port=$1
  "$(pg_tool pg_isready)" -q -h 127.0.0.1 -p "$port" -t 2 >/dev/null 2>&1
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
pg_preflight() {
  pg_require_binaries
  pg_require_os_user
  pg_require_socket_path
  if [[ -z $(pg_pid_port) ]]; then
    require_port_free "$PG_PORT" TRIAGE_PG_PORT "PostgreSQL"
  fi
}

pg_start() {
  local t0 pid port running deadline
  t0=$(now_ms)
  running=$(pg_pid_port)
  if [[ -n $running ]]; then
    read -r pid port <<<"$running"
    if [[ $port != "$PG_PORT" ]]; then
      die "PostgreSQL is already running (pid $pid) on port $port, not TRIAGE_PG_PORT=$PG_PORT; run stop first"
    fi
    if ! pg_ready "$PG_PORT"; then
      die "PostgreSQL (pid $pid) is running but pg_isready fails on port $PG_PORT; see $PG_LOG or run '$0 stop'"
    fi
    info "postgres: already running (pid $pid, port $PG_PORT)"
    return 0
  fi

  pg_prepare_dirs
  pg_initdb_if_needed
  pg_write_config
  printf '\n=== %s starting PostgreSQL ===\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$PG_LOG"
  # 9>&-: the server must not inherit the lock descriptor of stack.sh.
  if ! pg_as_owner "$(pg_tool pg_ctl)" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" -s >/dev/null 9>&-; then
    show_log_tail "$PG_LOG" 30
    die "PostgreSQL did not start (see $PG_LOG)"
  fi
  deadline=$((t0 + START_TIMEOUT * 1000))
  until pg_ready "$PG_PORT"; do
    if (($(now_ms) >= deadline)); then
      show_log_tail "$PG_LOG" 30
      die "PostgreSQL started but pg_isready on 127.0.0.1:$PG_PORT never succeeded (see $PG_LOG)"
    fi
    sleep 0.2
  done
  pg_provision || die "could not create the '$PG_APP_USER' role / '$PG_APP_DB' database (see $PG_LOG)"
  read -r pid port <<<"$(pg_pid_port)"
  info "postgres: ready on 127.0.0.1:$PG_PORT (pid $pid, database '$PG_APP_DB', $(fmt_ms $(($(now_ms) - t0))))"
}

# Stops the server. "clean" (the default) is pg_ctl's "fast" mode (SIGINT to the
# postmaster): it disconnects clients and shuts down cleanly with a checkpoint ("smart",
# SIGTERM, would wait for every client). "crash" is "immediate" mode (SIGQUIT): every
# process quits at once with no checkpoint, and the next start replays the WAL (crash
# recovery).
# Usage: pg_stop [clean|crash]
pg_stop() {
  local mode=${1:-clean} running pid port t0 pg_mode=fast done_what=stopped
  running=$(pg_pid_port)
  if [[ -z $running ]]; then
    info "postgres: not running"
    return 0
  fi
  read -r pid port <<<"$running"
  case $mode in
    clean) ;;
    crash) pg_mode=immediate done_what="crashed (pg_ctl stop -m immediate)" ;;
    *) die "pg_stop: unknown mode '$mode'" ;;
  esac
  t0=$(now_ms)
  if ! pg_as_owner "$(pg_tool pg_ctl)" stop -D "$PG_DATA" -m "$pg_mode" -w -t 60 -s >/dev/null; then
    warn "pg_ctl stop failed; sending SIGTERM to $pid"
    kill -TERM "$pid" 2>/dev/null || true
  fi
  info "postgres: $done_what (pid $pid, $(fmt_ms $(($(now_ms) - t0))))"
}

pg_status() {
  local running pid port
  running=$(pg_pid_port)
  if [[ -z $running ]]; then
    info "postgres: stopped"
    return 1
  fi
  read -r pid port <<<"$running"
  if pg_ready "$port"; then
    info "postgres: running (pid $pid, port $port, PostgreSQL $(<"$PG_DATA/PG_VERSION"))"
    return 0
  fi
  info "postgres: starting or unhealthy (pid $pid, port $port; pg_isready fails; see $PG_LOG)"
  return 1
}
