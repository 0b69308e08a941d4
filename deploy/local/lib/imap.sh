# shellcheck shell=bash
# IMAP server (a private Dovecot instance from the Debian packages) for
# deploy/local/stack.sh. Sourced, never executed directly. Needs
# lib/common.sh and load_config.
#
# The instance never reads the system's /etc/dovecot: it is started with
# "dovecot -c $IMAP_CONF", a configuration generated on every start, and keeps
# its sockets, state, mail and logs under $STACK_DIR/imap.

# Test accounts, "user:password" (local tests only; printed in the README).
IMAP_APP_USER=triage
IMAP_APP_PASSWORD=triage-imap-password
IMAP_ACCOUNTS=("$IMAP_APP_USER:$IMAP_APP_PASSWORD" "ops:ops-imap-password")
# Created (and subscribed) for every user on first use; INBOX always exists.
IMAP_MAILBOXES=(Processed Billing Support)

imap_paths() {
  IMAP_DIR="$STACK_DIR/imap"
  IMAP_CONF="$IMAP_DIR/dovecot.conf"
  IMAP_USERS_FILE="$IMAP_DIR/users"
  IMAP_RUN="$IMAP_DIR/run"     # base_dir: master.pid and unix sockets
  IMAP_STATE="$IMAP_DIR/state" # state_dir
  IMAP_MAIL="$IMAP_DIR/mail"   # one home per user, Maildir inside
  IMAP_LOGS="$IMAP_DIR/logs"
  IMAP_LOG="$IMAP_LOGS/dovecot.log"
  IMAP_OUT="$IMAP_LOGS/dovecot.out"
  IMAP_TLS="$IMAP_DIR/tls"
  IMAP_CERT="$IMAP_TLS/cert.pem" # self-signed, also the CA file for clients
  IMAP_KEY="$IMAP_TLS/key.pem"
  IMAP_PID_FILE="$IMAP_RUN/master.pid"
}

# ---------------------------------------------------------------------------
# Binaries, OS users, python
# ---------------------------------------------------------------------------

# Sets DOVECOT and DOVEADM when Dovecot with its IMAP server is installed.
imap_find_binaries() {
  local dir found=""
  DOVECOT=$(command -v dovecot 2>/dev/null) || DOVECOT=""
  [[ -z $DOVECOT && -x /usr/sbin/dovecot ]] && DOVECOT=/usr/sbin/dovecot
  DOVEADM=$(command -v doveadm 2>/dev/null) || DOVEADM=""
  [[ -z $DOVEADM && -x /usr/bin/doveadm ]] && DOVEADM=/usr/bin/doveadm
  [[ -n $DOVECOT && -n $DOVEADM ]] || return 1
  # The IMAP server itself comes from dovecot-imapd, not dovecot-core.
  for dir in /usr/lib/dovecot /usr/libexec/dovecot /usr/local/libexec/dovecot; do
    [[ -x "$dir/imap" && -x "$dir/imap-login" ]] && found=$dir
  done
  [[ -n $found ]]
}

imap_require_binaries() {
  if ! imap_find_binaries && is_root && command -v apt-get >/dev/null 2>&1; then
    info "imap: Dovecot IMAP server not found, installing the Debian package 'dovecot-imapd'..."
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dovecot 2>/dev/null; then
      warn "the package also started the system's own Dovecot service (configured in /etc/dovecot);" \
        "this stack does not use it. Stop it with 'systemctl disable --now dovecot' if you do not need it."
    fi
  fi
  imap_find_binaries ||
    die "Dovecot's IMAP server (dovecot, doveadm, imap) was not found." \
      "Install it, e.g. 'sudo apt-get install dovecot-imapd', and run start again" \
      "(the system's Dovecot service is not used and may stay disabled)."
  # The generated dovecot.conf uses Dovecot 2.3 settings (Debian 12); 2.4
  # (Debian 13) renamed most of them and would reject it.
  local version
  version=$(imap_version)
  if [[ $version != 2.3.* ]]; then
    die "found Dovecot ${version:-of unknown version} ($DOVECOT), but the configuration this script" \
      "generates is written for Dovecot 2.3 (Debian 12's dovecot-imapd)"
  fi
  command -v openssl >/dev/null 2>&1 ||
    die "'openssl' is needed to create the IMAP server's certificate; install the Debian package 'openssl'"
}

# Sets IMAP_PYTHON to a python3 that has imaplib and ssl (readiness checks).
imap_find_python() {
  local candidate
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import imaplib, ssl' >/dev/null 2>&1; then
      IMAP_PYTHON=$candidate
      return 0
    fi
  done
  die "python3 (with its ssl module) is needed to check that the IMAP server answers; install 'python3'"
}

# Decides which OS users run the instance and own the mail:
#  - as root: master as root, internal processes as 'dovecot', login
#    processes as 'dovenull' (all from the Debian package), mail as 'nobody'
#    (Dovecot refuses root as the mail user);
#  - otherwise: everything as the current user (Dovecot's "rootless" mode).
imap_os_users() {
  if is_root; then
    IMAP_INTERNAL_USER=dovecot
    IMAP_LOGIN_USER=dovenull
    IMAP_MAIL_USER=nobody
  else
    IMAP_INTERNAL_USER=$(id -un 2>/dev/null) ||
      die "the current uid $(id -u) has no user name; Dovecot needs one to run unprivileged"
    IMAP_LOGIN_USER=$IMAP_INTERNAL_USER
    IMAP_MAIL_USER=$IMAP_INTERNAL_USER
  fi
  local user
  for user in "$IMAP_INTERNAL_USER" "$IMAP_LOGIN_USER" "$IMAP_MAIL_USER"; do
    id "$user" >/dev/null 2>&1 ||
      die "the OS user '$user' (needed by the IMAP server) does not exist; reinstall 'dovecot-core' (it creates 'dovecot' and 'dovenull')"
  done
  IMAP_MAIL_UID=$(id -u "$IMAP_MAIL_USER")
  IMAP_MAIL_GID=$(id -g "$IMAP_MAIL_USER")
  IMAP_INTERNAL_GROUP=$(id -gn "$IMAP_INTERNAL_USER")
}

imap_require_os_users() {
  imap_os_users
  is_root || return 0
  command -v runuser >/dev/null 2>&1 || die "running as root needs 'runuser' (package util-linux) for the IMAP server checks"
  ensure_stack_dir
  local user
  for user in "$IMAP_INTERNAL_USER" "$IMAP_MAIL_USER"; do
    if ! runuser -u "$user" -- test -x "$STACK_DIR"; then
      die "the OS user '$user' cannot reach $STACK_DIR (a parent directory is private to its owner," \
        "e.g. root's home). Dovecot reads its users and mail as unprivileged users, so set" \
        "TRIAGE_STACK_DIR to a directory they can reach, e.g. TRIAGE_STACK_DIR=/var/tmp/triage-stack $0 start"
    fi
  done
}

imap_require_paths() {
  # The users file is ':' separated and dovecot.conf values are not quoted.
  if [[ $STACK_DIR =~ [[:space:]:\"\'\\#\<\>{}] ]]; then
    die "TRIAGE_STACK_DIR='$STACK_DIR' contains spaces or one of : \" ' \\ # < > { } which the" \
      "Dovecot configuration cannot hold; choose a plainer directory"
  fi
  # Longest socket Dovecot creates in base_dir is about 25 characters long.
  if ((${#IMAP_RUN} + 26 > 107)); then
    die "the IMAP base directory $IMAP_RUN is too long for Dovecot's unix sockets" \
      "(${#IMAP_RUN} + 26 > 107 characters); set TRIAGE_STACK_DIR to a shorter directory"
  fi
}

imap_doveadm() {
  "$DOVEADM" -c "$IMAP_CONF" "$@"
}

# ---------------------------------------------------------------------------
# Files: certificate, users, configuration
# ---------------------------------------------------------------------------

# A self-signed certificate for CN=localhost, SAN localhost and 127.0.0.1,
# created once; clients trust it through TRIAGE_IMAP_CA_FILE.
imap_ensure_cert() {
  if [[ -s $IMAP_CERT && -s $IMAP_KEY ]]; then
    return 0
  fi
  mkdir -p "$IMAP_TLS"
  local cnf="$IMAP_TLS/openssl.cnf" out
  # Our own openssl config, so the system's openssl.cnf does not matter. The
  # certificate is its own CA (basicConstraints CA:TRUE, keyCertSign, key
  # identifiers) so that strict verifiers accept it as a trust anchor.
  cat >"$cnf" <<'CNF'
# Generated by deploy/local/stack.sh for the IMAP server's self-signed certificate.
[req]
distinguished_name = dn
x509_extensions = v3
prompt = no
[dn]
CN = localhost
O = Triage local stack
[v3]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
  if ! out=$(umask 077 && openssl req -x509 -config "$cnf" -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -keyout "$IMAP_KEY.tmp" -out "$IMAP_CERT.tmp" 2>&1); then
    printf '%s\n' "$out" >&2
    rm -f "$IMAP_KEY.tmp" "$IMAP_CERT.tmp"
    die "openssl could not create the IMAP server's certificate in $IMAP_TLS"
  fi
  chmod 600 "$IMAP_KEY.tmp"
  chmod 644 "$IMAP_CERT.tmp"
  mv "$IMAP_KEY.tmp" "$IMAP_KEY"
  mv "$IMAP_CERT.tmp" "$IMAP_CERT"
  info "imap: created a self-signed certificate for localhost/127.0.0.1: $IMAP_CERT"
}

imap_prepare_dirs() {
  mkdir -p "$IMAP_DIR" "$IMAP_STATE" "$IMAP_MAIL" "$IMAP_LOGS"
  chmod 755 "$IMAP_DIR" "$IMAP_MAIL"
  local account user
  for account in "${IMAP_ACCOUNTS[@]}"; do
    user=${account%%:*}
    mkdir -p "$IMAP_MAIL/$user"
    if is_root; then
      chown "$IMAP_MAIL_UID:$IMAP_MAIL_GID" "$IMAP_MAIL/$user"
    fi
    chmod 700 "$IMAP_MAIL/$user"
  done
}

# passwd-file used as passdb and userdb:
#   user:{PLAIN}password:uid:gid::home
imap_write_users() {
  local account user password tmp="$IMAP_USERS_FILE.tmp"
  (
    umask 077
    : >"$tmp"
    for account in "${IMAP_ACCOUNTS[@]}"; do
      user=${account%%:*}
      password=${account#*:}
      printf '%s:{PLAIN}%s:%s:%s::%s\n' "$user" "$password" "$IMAP_MAIL_UID" "$IMAP_MAIL_GID" "$IMAP_MAIL/$user"
    done >"$tmp"
  )
  if is_root; then
    # Read by the auth process, which runs as the internal user.
    chown "root:$IMAP_INTERNAL_GROUP" "$tmp"
    chmod 640 "$tmp"
  fi
  mv "$tmp" "$IMAP_USERS_FILE"
}

imap_write_config() {
  local mailboxes="" box rootless="" no_chroot=""
  for box in "${IMAP_MAILBOXES[@]}"; do
    mailboxes+="  mailbox $box {
    auto = subscribe
  }
"
  done
  if ! is_root; then
    # Dovecot without root ("rootless"): no chroot, one OS user for all.
    no_chroot="
  chroot ="
    rootless="
# Running without root: every process runs as the current user.
service auth-worker {
  user = \$default_internal_user
}"
  fi
  cat >"$IMAP_CONF" <<CONF
# Generated by deploy/local/stack.sh on every start; edits are overwritten.
# A private Dovecot instance for local tests only: it does not read the
# system's /etc/dovecot and is started with "dovecot -c <this file>".
# stack ports: imap=$IMAP_PORT imaps=$IMAPS_PORT

instance_name = triage-imap
base_dir = $IMAP_RUN
state_dir = $IMAP_STATE
log_path = $IMAP_LOG
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes

default_internal_user = $IMAP_INTERNAL_USER
default_internal_group = $IMAP_INTERNAL_GROUP
default_login_user = $IMAP_LOGIN_USER
first_valid_uid = $IMAP_MAIL_UID
last_valid_uid = $IMAP_MAIL_UID
first_valid_gid = $IMAP_MAIL_GID
last_valid_gid = $IMAP_MAIL_GID

# TLS: IMAPS on its own port, STARTTLS allowed (not required) on the plain one.
ssl = yes
ssl_cert = <$IMAP_CERT
ssl_key = <$IMAP_KEY
ssl_min_protocol = TLSv1.2
# Plain LOGIN/AUTHENTICATE PLAIN without TLS is fine on 127.0.0.1.
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# Tests try wrong passwords on purpose: answer at once, and no growing
# per-IP penalty (see the anvil service below).
auth_failure_delay = 0
login_greeting = Triage local IMAP ready.

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $IMAP_USERS_FILE
}
userdb {
  driver = passwd-file
  args = username_format=%u $IMAP_USERS_FILE
}

mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
$mailboxes}

protocol imap {
  # IDLE, MOVE, UIDPLUS, CONDSTORE... are built in; tests open many sessions.
  mail_max_userip_connections = 100
}
# IDLE notices new mail through inotify at once; this is only the fallback.
mailbox_idle_check_interval = 5 secs

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }$no_chroot
}
service anvil {
  # Disables the authentication penalty (up to 15 s per login after failures).
  unix_listener anvil-auth-penalty {
    mode = 0
  }$no_chroot
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
$rootless
CONF
}

# ---------------------------------------------------------------------------
# Process state
# ---------------------------------------------------------------------------

# Prints the pid of our running Dovecot master, or nothing.
imap_pid() {
  local pid cmdline
  [[ -r $IMAP_PID_FILE ]] || return 0
  pid=$(<"$IMAP_PID_FILE")
  pid_alive "$pid" || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || cmdline=""
  [[ $cmdline == *dovecot*"$IMAP_CONF"* ]] || return 0
  printf '%s\n' "$pid"
}

# Ports the running instance was started with: "<imap> <imaps>".
imap_running_ports() {
  sed -n 's/^# stack ports: imap=\([0-9]*\) imaps=\([0-9]*\)$/\1 \2/p' "$IMAP_CONF" 2>/dev/null
}

# Real readiness check: the greeting arrives and LOGIN works over the plain
# port, and over IMAPS with the certificate verified against our CA file.
imap_ready() {
  local port=$1 sport=$2
  "$IMAP_PYTHON" - "$port" "$sport" "$IMAP_CERT" "$IMAP_APP_USER" "$IMAP_APP_PASSWORD" <<'PY' 2>/dev/null
import imaplib, socket, ssl, sys
port, sport, cafile, user, password = sys.argv[1:6]
socket.setdefaulttimeout(5)
m = imaplib.IMAP4("127.0.0.1", int(port))
m.login(user, password)
m.logout()
m = imaplib.IMAP4_SSL("127.0.0.1", int(sport), ssl_context=ssl.create_default_context(cafile=cafile))
m.login(user, password)
m.logout()
PY
}

imap_version() {
  "$DOVECOT" --version 2>/dev/null | awk '{ print $1; exit }'
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
imap_preflight() {
  imap_require_binaries
  imap_find_python
  imap_require_paths
  imap_require_os_users
  if [[ -z $(imap_pid) ]]; then
    if ! is_root && ((IMAP_PORT < 1024 || IMAPS_PORT < 1024)); then
      die "without root the IMAP server can only use ports above 1023;" \
        "set TRIAGE_IMAP_PORT and TRIAGE_IMAPS_PORT accordingly (defaults 11143 and 11993)"
    fi
    require_port_free "$IMAP_PORT" TRIAGE_IMAP_PORT "the IMAP server"
    require_port_free "$IMAPS_PORT" TRIAGE_IMAPS_PORT "the IMAP server's TLS port (IMAPS)"
  fi
}

imap_start() {
  local t0 pid ports deadline rc
  t0=$(now_ms)
  deadline=$((t0 + START_TIMEOUT * 1000))
  pid=$(imap_pid)
  if [[ -n $pid ]]; then
    ports=$(imap_running_ports)
    if [[ $ports != "$IMAP_PORT $IMAPS_PORT" ]]; then
      die "the IMAP server is already running (pid $pid) on ports ${ports:-?}, not" \
        "TRIAGE_IMAP_PORT=$IMAP_PORT/TRIAGE_IMAPS_PORT=$IMAPS_PORT; run stop first"
    fi
    if ! imap_ready "$IMAP_PORT" "$IMAPS_PORT"; then
      die "the IMAP server (pid $pid) is running but LOGIN fails on port $IMAP_PORT or $IMAPS_PORT;" \
        "see $IMAP_LOG or run '$0 stop'"
    fi
    info "imap: already running (pid $pid, ports $IMAP_PORT/$IMAPS_PORT)"
    return 0
  fi

  # Our master is not running: start from an empty base_dir, as sockets left
  # by an earlier instance (e.g. of a listener since disabled) would make
  # processes wait for connections that are refused.
  rm -rf "$IMAP_RUN"
  imap_prepare_dirs
  imap_ensure_cert
  imap_write_users
  imap_write_config
  printf '\n=== %s starting Dovecot %s ===\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(imap_version)" >>"$IMAP_OUT"
  # Dovecot checks the configuration, then daemonises; errors found before
  # that go to stderr (dovecot.out), later ones to dovecot.log.
  # 9>&-: the server must not inherit the lock descriptor of stack.sh.
  if ! "$DOVECOT" -c "$IMAP_CONF" </dev/null >>"$IMAP_OUT" 2>&1 9>&-; then
    show_log_tail "$IMAP_OUT" 20
    show_log_tail "$IMAP_LOG" 20
    die "Dovecot did not start (see $IMAP_OUT and $IMAP_LOG)"
  fi

  rc=1
  while (($(now_ms) < deadline)); do
    pid=$(imap_pid)
    if [[ -n $pid ]] && imap_ready "$IMAP_PORT" "$IMAPS_PORT"; then
      rc=0
      break
    fi
    if [[ -z $pid && $(($(now_ms) - t0)) -gt 10000 ]]; then
      break # no master after 10 s: it died
    fi
    sleep 0.1
  done
  if ((rc != 0)); then
    show_log_tail "$IMAP_OUT" 20
    show_log_tail "$IMAP_LOG" 30
    pid=$(imap_pid)
    if [[ -n $pid ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      die "the IMAP server (pid $pid) did not accept LOGIN within ${START_TIMEOUT}s; stopped it. Log: $IMAP_LOG"
    fi
    die "Dovecot exited during startup. Log: $IMAP_LOG"
  fi
  info "imap: ready on 127.0.0.1:$IMAP_PORT (IMAP, STARTTLS) and :$IMAPS_PORT (IMAPS) (pid $pid, Dovecot $(imap_version), $(fmt_ms $(($(now_ms) - t0))))"
}

imap_stop() {
  local pid t0
  pid=$(imap_pid)
  if [[ -z $pid ]]; then
    info "imap: not running"
    return 0
  fi
  t0=$(now_ms)
  # SIGTERM: the master stops its children (shutdown_clients = yes) and exits.
  stop_server Dovecot "$pid" 30
  info "imap: stopped (pid $pid, $(fmt_ms $(($(now_ms) - t0))))"
}

imap_status() {
  local pid ports port sport
  pid=$(imap_pid)
  if [[ -z $pid ]]; then
    info "imap:     stopped"
    return 1
  fi
  ports=$(imap_running_ports)
  read -r port sport <<<"${ports:-$IMAP_PORT $IMAPS_PORT}"
  if port_listening "$port" && port_listening "$sport"; then
    info "imap:     running (pid $pid, ports $port/$sport, Dovecot $(imap_version))"
    return 0
  fi
  info "imap:     starting or unhealthy (pid $pid, port $port or $sport not listening; see $IMAP_LOG)"
  return 1
}

# Deletes mail, state, sockets, configuration and logs; keeps the certificate
# so that clients holding TRIAGE_IMAP_CA_FILE keep trusting the server.
imap_delete_data() {
  [[ -d $IMAP_DIR ]] || return 0
  rm -rf "$IMAP_MAIL" "$IMAP_STATE" "$IMAP_RUN" "$IMAP_LOGS" "$IMAP_CONF" "$IMAP_USERS_FILE"
}

imap_require_running() {
  imap_find_binaries || die "Dovecot is not installed; run '$0 start' first"
  [[ -n $(imap_pid) ]] || die "the IMAP server is not running; run '$0 start' first"
}

# Gives MAILBOX of USER a new UIDVALIDITY (larger than the old one), as a
# server would after rebuilding its indexes. Messages and their UIDs stay;
# clients must treat every cached UID of that mailbox as invalid.
imap_set_new_uidvalidity() {
  local user=$1 mailbox=$2 old new now out
  if ! out=$(imap_doveadm -f flow mailbox status -u "$user" uidvalidity "$mailbox" 2>&1); then
    die "could not read UIDVALIDITY of mailbox '$mailbox' of user '$user': $out"
  fi
  old=$(sed -n 's/.*uidvalidity=\([0-9]*\).*/\1/p' <<<"$out")
  [[ $old =~ ^[0-9]+$ ]] || die "unexpected answer from doveadm mailbox status: $out"
  now=$(date +%s)
  new=$((old + 1))
  ((now > new)) && new=$now
  if ! out=$(imap_doveadm mailbox update -u "$user" --uid-validity "$new" "$mailbox" 2>&1); then
    die "could not change UIDVALIDITY of mailbox '$mailbox' of user '$user': $out"
  fi
  out=$(imap_doveadm -f flow mailbox status -u "$user" uidvalidity "$mailbox" 2>&1) || true
  [[ $out == *"uidvalidity=$new"* ]] ||
    die "UIDVALIDITY of '$mailbox' of '$user' should now be $new, but doveadm says: $out"
  info "imap: UIDVALIDITY of mailbox '$mailbox' of user '$user' changed from $old to $new"
}

# Expunges every message in every mailbox of USER (the mailboxes stay).
imap_empty_user() {
  local user=$1 out count
  if ! out=$(imap_doveadm -f flow mailbox status -u "$user" messages '*' 2>&1); then
    die "could not list the mailboxes of user '$user': $out"
  fi
  count=$(grep -o 'messages=[0-9]*' <<<"$out" | awk -F= '{ n += $2 } END { print n + 0 }')
  if ! out=$(imap_doveadm expunge -u "$user" mailbox '*' all 2>&1); then
    die "could not expunge the messages of user '$user': $out"
  fi
  info "imap: emptied all mailboxes of user '$user' ($count messages expunged)"
}
