#!/usr/bin/env bash
# Local Kafka (KRaft) + PostgreSQL + IMAP (Dovecot) + S3 (S3Proxy) stack for Triage, no Docker.
# Run "deploy/local/stack.sh help" for usage.
set -euo pipefail

SCRIPT_DIR=$(cd -P "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -P "$SCRIPT_DIR/../.." && pwd)

# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"
# shellcheck source=lib/kafka.sh
source "$SCRIPT_DIR/lib/kafka.sh"
# shellcheck source=lib/postgres.sh
source "$SCRIPT_DIR/lib/postgres.sh"
# shellcheck source=lib/imap.sh
source "$SCRIPT_DIR/lib/imap.sh"
# shellcheck source=lib/s3.sh
source "$SCRIPT_DIR/lib/s3.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") COMMAND

Runs a single-node Apache Kafka broker (KRaft mode, Java 17+), a
PostgreSQL server and an IMAP server (Dovecot; both from Debian packages) and
an S3-compatible object store (S3Proxy, Java, from Maven Central) on
127.0.0.1 for local development and tests. No Docker needed. Everything
lives in one directory (TRIAGE_STACK_DIR).

Commands:
  start          Download/install what is missing, start the four servers and
                 wait until they answer (Kafka: ApiVersions request, PostgreSQL:
                 pg_isready, IMAP: greeting + LOGIN over IMAP and IMAPS, S3: a
                 signed ListBuckets). Only
                 what is not running is started. Prints the time.
  stop           Stop the servers cleanly (no-op when not running).
  status         Show each server as running (pid, port) or stopped.
                 Exit code 0 when all four are up, 3 otherwise.
  env            Print export lines for the application, e.g.
                   eval "\$($(basename "$0") env)"
  reset          Stop the servers and delete their data and logs
                 (downloaded jars and the IMAP certificate are kept).
  tool CLASS ... Run a Kafka command line class from the downloaded jars, e.g.
                   $(basename "$0") tool org.apache.kafka.tools.TopicCommand \\
                     --bootstrap-server 127.0.0.1:19092 --list
  imap-uidvalidity USER MAILBOX
                 Give MAILBOX of IMAP user USER a new, larger UIDVALIDITY
                 (messages stay), to test how clients handle it.
  imap-reset USER
                 Expunge every message in every mailbox of IMAP user USER.
  stop-server NAME
                 Stop one server (kafka, postgres, imap or s3) of this stack the way
                 "stop" does, leaving the others running: for fault tests (a broker
                 restart, the database gone for a while). Refuses when the ports this
                 environment names are not the ones that server was started with, so
                 it never stops another stack's server.
  crash-server NAME
                 Crash one server (kafka or postgres), leaving the others running:
                 kafka is killed with SIGKILL (kill -9), postgres is stopped with
                 "pg_ctl stop -m immediate". Neither shuts down cleanly, so the next
                 start-server recovers (Kafka's log recovery, PostgreSQL's WAL replay).
                 The same port check as stop-server.
  start-server NAME
                 Start that one server again, as "start" would, and wait until it
                 answers; the same check of the ports first.
  help           Show this text.

Environment variables:
  TRIAGE_STACK_DIR              Directory holding everything: Kafka jars, Kafka
                                and PostgreSQL data, IMAP mail and certificate,
                                pid files, logs
                                (default: <repo root>/.stack; now: $STACK_DIR).
  TRIAGE_KAFKA_PORT             Kafka broker port (default 19092).
  TRIAGE_KAFKA_CONTROLLER_PORT  Kafka KRaft controller port (default 19093).
  TRIAGE_KAFKA_SASL_SSL_PORT    Kafka SASL_SSL listener port (default 19094).
  TRIAGE_PG_PORT                PostgreSQL port (default 15432).
  TRIAGE_IMAP_PORT              IMAP port, STARTTLS allowed (default 11143).
  TRIAGE_IMAPS_PORT             IMAP over TLS port (default 11993).
  TRIAGE_S3_PORT                S3Proxy port (default 19000).
  TRIAGE_S3PROXY_VERSION        S3Proxy version fetched from Maven Central.
  TRIAGE_S3_HEAP                JVM heap options of S3Proxy.
  TRIAGE_KAFKA_VERSION          Kafka version fetched from Maven Central
                                (default 4.1.1).
  TRIAGE_KAFKA_HEAP             JVM heap options of the broker
                                (default "-Xms256m -Xmx512m").
  TRIAGE_JAVA                   Java binary to use (default: \$JAVA_HOME/bin/java,
                                else java from PATH). Java 17+ is required.
  TRIAGE_START_TIMEOUT          Seconds to wait for each server to be ready
                                (default 180).

Connection settings printed by "env":
  TRIAGE_KAFKA_BOOTSTRAP=127.0.0.1:<TRIAGE_KAFKA_PORT>
  TRIAGE_KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:<TRIAGE_KAFKA_SASL_SSL_PORT>,
  TRIAGE_KAFKA_SASL_SSL_CA_FILE=<the local CA that signed the broker's cert>,
  TRIAGE_KAFKA_SASL_SSL_USERNAME=$KAFKA_SASL_USER, TRIAGE_KAFKA_SASL_SSL_PASSWORD=<generated>
    (the SASL_SSL listener: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; certificates and
    password are made on the first start, in <TRIAGE_STACK_DIR>/kafka/tls)
  TRIAGE_DATABASE_URL=postgresql+psycopg://triage:triage@127.0.0.1:<TRIAGE_PG_PORT>/triage
  TRIAGE_IMAP_HOST=127.0.0.1, TRIAGE_IMAP_PORT, TRIAGE_IMAPS_PORT,
  TRIAGE_IMAP_CA_FILE=<the server's self-signed certificate>,
  TRIAGE_IMAP_USER=$IMAP_APP_USER, TRIAGE_IMAP_PASSWORD=$IMAP_APP_PASSWORD
  TRIAGE_S3_ENDPOINT_URL=http://127.0.0.1:<TRIAGE_S3_PORT>, TRIAGE_S3_ACCESS_KEY_ID,
  TRIAGE_S3_SECRET_ACCESS_KEY, TRIAGE_S3_REGION
  TRIAGE_TOPICS_REPLICATION_FACTOR=1 (one broker; used by "triage topics apply")
The role 'triage' (password 'triage') owns database 'triage' and may create
databases. Superuser: 'postgres', password 'postgres'. IMAP users:
'triage' (password 'triage-imap-password') and 'ops' ('ops-imap-password'),
each with mailboxes INBOX, Processed, Billing and Support.
USAGE
}

cmd_start() {
  local t0 kafka_up=0 pg_up=0 imap_up=0 s3_up=0
  t0=$(now_ms)
  take_lock
  local name settings=()
  for name in $SERVERS; do
    mapfile -t -O "${#settings[@]}" settings < <(server_port_settings "$name")
  done
  warn_ephemeral_ports "${settings[@]}"
  # Checks that can fail fast come first, before anything is downloaded.
  kafka_preflight
  pg_preflight
  imap_preflight
  s3_preflight
  [[ -n $(kafka_pid) ]] && kafka_up=1
  [[ -n $(pg_pid_port) ]] && pg_up=1
  [[ -n $(imap_pid) ]] && imap_up=1
  [[ -n $(s3_pid) ]] && s3_up=1
  kafka_start
  pg_start
  imap_start
  s3_start
  if ((kafka_up && pg_up && imap_up && s3_up)); then
    info "stack: already running and healthy, nothing to do ($(fmt_ms $(($(now_ms) - t0))))"
  else
    info "stack: started in $(fmt_ms $(($(now_ms) - t0))) (data in $STACK_DIR)"
    info "stack: use it with:  eval \"\$($0 env)\""
  fi
}

cmd_stop() {
  [[ -d $STACK_DIR ]] || {
    info "kafka: not running"
    info "postgres: not running"
    info "imap: not running"
    info "s3: not running"
    return 0
  }
  take_lock
  kafka_stop
  pg_stop
  imap_stop
  s3_stop
}

cmd_status() {
  local rc=0
  kafka_status || rc=3
  pg_status || rc=3
  imap_find_binaries || true
  imap_status || rc=3
  s3_status || rc=3
  info "stack dir: $STACK_DIR"
  return "$rc"
}

cmd_env() {
  printf 'export TRIAGE_KAFKA_BOOTSTRAP=%q\n' "127.0.0.1:$KAFKA_PORT"
  kafka_sasl_ssl_env
  printf 'export TRIAGE_DATABASE_URL=%q\n' \
    "postgresql+psycopg://$PG_APP_USER:$PG_APP_PASSWORD@127.0.0.1:$PG_PORT/$PG_APP_DB"
  printf 'export TRIAGE_IMAP_HOST=%q\n' 127.0.0.1
  printf 'export TRIAGE_IMAP_PORT=%q\n' "$IMAP_PORT"
  printf 'export TRIAGE_IMAPS_PORT=%q\n' "$IMAPS_PORT"
  printf 'export TRIAGE_IMAP_CA_FILE=%q\n' "$IMAP_CERT"
  printf 'export TRIAGE_IMAP_USER=%q\n' "$IMAP_APP_USER"
  printf 'export TRIAGE_IMAP_PASSWORD=%q\n' "$IMAP_APP_PASSWORD"
  s3_env
  printf 'export TRIAGE_TOPICS_REPLICATION_FACTOR=1\n' # one broker: triage topics apply
}

cmd_reset() {
  cmd_stop
  [[ -d $STACK_DIR ]] || return 0
  rm -rf "$KAFKA_DIR" "$PG_DIR" "$LOG_DIR"
  imap_delete_data
  s3_reset_data
  info "stack: deleted Kafka, PostgreSQL, IMAP and S3 data and logs in $STACK_DIR (kept downloaded jars and the IMAP certificate)"
}

cmd_tool() {
  [[ $# -ge 1 ]] || die "usage: $(basename "$0") tool CLASS [ARGS...]"
  kafka_require_java
  kafka_jars_present || die "Kafka jars are not downloaded yet; run '$0 start' first"
  kafka_tool "$@"
}

cmd_imap_uidvalidity() {
  [[ $# -eq 2 && -n $1 && -n $2 ]] || die "usage: $(basename "$0") imap-uidvalidity USER MAILBOX"
  take_lock
  imap_require_running
  imap_set_new_uidvalidity "$1" "$2"
}

SERVERS="kafka postgres imap s3"

# Prints the ports NAME was last started with, from its generated configuration
# (nothing when it never ran from this stack dir).
server_ports_configured() {
  case $1 in
    kafka)
      local broker controller
      broker=$(kafka_running_port)
      controller=$(sed -n 's/^controller\.quorum\.voters=1@127\.0\.0\.1:\([0-9]*\)$/\1/p' \
        "$KAFKA_CONFIG" 2>/dev/null)
      [[ -n $broker ]] && printf '%s %s\n' "$broker" "$controller"
      ;;
    postgres) sed -n "s/^port = \([0-9]*\)$/\1/p" "$PG_DATA/triage-stack.conf" 2>/dev/null ;;
    imap) imap_running_ports ;;
    s3) s3_running_port ;;
  esac
}

# Prints VAR=PORT, one a line, for the ports this environment names for NAME.
server_port_settings() {
  case $1 in
    kafka) printf '%s\n' "TRIAGE_KAFKA_PORT=$KAFKA_PORT" "TRIAGE_KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" ;;
    postgres) printf '%s\n' "TRIAGE_PG_PORT=$PG_PORT" ;;
    imap) printf '%s\n' "TRIAGE_IMAP_PORT=$IMAP_PORT" "TRIAGE_IMAPS_PORT=$IMAPS_PORT" ;;
    s3) printf '%s\n' "TRIAGE_S3_PORT=$S3_PORT" ;;
  esac
}

# Prints the ports this environment names for NAME on one line, in the order of
# server_ports_configured.
server_ports_wanted() {
  server_port_settings "$1" | sed 's/^[^=]*=//' | paste -sd ' ' -
}

# Dies unless NAME is a server of this stack whose last start used the ports of this
# environment: stop-server, crash-server and start-server act on one server of the same
# stack, never on another stack's server that happens to share the directory or the default
# ports.
require_same_server() {
  local name=$1 configured wanted
  case $name in
    kafka | postgres | imap | s3) ;;
    *) die "unknown server '$name'; choose one of: $SERVERS" ;;
  esac
  configured=$(server_ports_configured "$name")
  wanted=$(server_ports_wanted "$name")
  [[ -n $configured ]] ||
    die "$name was never started from $STACK_DIR; run '$0 start' first"
  if [[ $configured != "$wanted" ]]; then
    die "$name in $STACK_DIR was started with port(s) $configured, but this environment names" \
      "$wanted; set TRIAGE_STACK_DIR and the TRIAGE_*_PORT variables as for 'start'"
  fi
}

# Usage: cmd_stop_server clean|crash NAME (stop-server is "clean", crash-server "crash").
cmd_stop_server() {
  local mode=$1
  shift
  if [[ $mode == crash ]]; then
    [[ $# -eq 1 ]] || die "usage: $(basename "$0") crash-server kafka|postgres"
    [[ $1 == kafka || $1 == postgres ]] ||
      die "crash-server crashes kafka or postgres, not '$1'; use stop-server for the others"
  else
    [[ $# -eq 1 ]] || die "usage: $(basename "$0") stop-server kafka|postgres|imap|s3"
  fi
  take_lock
  require_same_server "$1"
  case $1 in
    kafka) kafka_stop "$mode" ;;
    postgres) pg_stop "$mode" ;;
    imap)
      imap_find_binaries || die "Dovecot is not installed; run '$0 start' first"
      imap_stop
      ;;
    s3) s3_stop ;;
  esac
}

cmd_start_server() {
  [[ $# -eq 1 ]] || die "usage: $(basename "$0") start-server kafka|postgres|imap|s3"
  local t0
  t0=$(now_ms)
  take_lock
  require_same_server "$1"
  local settings=()
  mapfile -t settings < <(server_port_settings "$1")
  warn_ephemeral_ports "${settings[@]}"
  case $1 in
    kafka) kafka_preflight && kafka_start ;;
    postgres) pg_preflight && pg_start ;;
    imap) imap_preflight && imap_start ;;
    s3) s3_preflight && s3_start ;;
  esac
  info "stack: $1 up in $(fmt_ms $(($(now_ms) - t0)))"
}

cmd_imap_reset() {
  [[ $# -eq 1 && -n $1 ]] || die "usage: $(basename "$0") imap-reset USER"
  take_lock
  imap_require_running
  imap_empty_user "$1"
}

main() {
  local cmd=${1:-help}
  [[ $# -gt 0 ]] && shift
  load_config
  kafka_paths
  pg_paths
  imap_paths
  s3_paths
  case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    reset) cmd_reset ;;
    tool) cmd_tool "$@" ;;
    imap-uidvalidity) cmd_imap_uidvalidity "$@" ;;
    imap-reset) cmd_imap_reset "$@" ;;
    stop-server) cmd_stop_server clean "$@" ;;
    crash-server) cmd_stop_server crash "$@" ;;
    start-server) cmd_start_server "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
