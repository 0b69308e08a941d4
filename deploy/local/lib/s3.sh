# shellcheck shell=bash
# S3Proxy, an S3-compatible server keeping objects as plain files, for deploy/local/stack.sh.
# Sourced, never executed directly. Needs lib/common.sh and load_config; call s3_paths
# once (after load_config) before the other s3_* functions. The caller holds the lock.
#
#   s3_paths       read TRIAGE_S3_* settings, set the S3_* paths
#   s3_preflight   fail-fast checks before anything is downloaded or started
#   s3_start       download the jars once, start S3Proxy, wait for a signed ListBuckets
#   s3_stop        stop it (SIGTERM, SIGKILL after 30 s)
#   s3_status      one status line; returns 0 when running and listening
#   s3_env         export lines for the application (TRIAGE_S3_*)
#   s3_reset_data  delete the stored objects and config (S3Proxy must be stopped)

# Fixed credentials of the local server: it listens on 127.0.0.1 only, for development
# and tests. The region is what clients sign with; S3Proxy's filesystem store ignores it.
S3_ACCESS_KEY_ID=triage-local
S3_SECRET_ACCESS_KEY=triage-local-secret
S3_REGION=us-east-1

s3_paths() {
  S3_PORT=${TRIAGE_S3_PORT:-19000}
  S3PROXY_VERSION=${TRIAGE_S3PROXY_VERSION:-4.1.0}
  S3_HEAP=${TRIAGE_S3_HEAP:-"-Xms32m -Xmx256m"}

  if [[ ! $S3_PORT =~ ^[0-9]+$ ]] || ((S3_PORT < 1 || S3_PORT > 65535)); then
    die "TRIAGE_S3_PORT must be a TCP port number (1-65535), got '$S3_PORT'"
  fi
  local name
  for name in KAFKA_PORT KAFKA_CONTROLLER_PORT PG_PORT IMAP_PORT IMAPS_PORT; do
    if [[ -n ${!name:-} && ${!name} == "$S3_PORT" ]]; then
      die "TRIAGE_S3_PORT ($S3_PORT) must differ from TRIAGE_$name"
    fi
  done
  [[ $S3PROXY_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    die "TRIAGE_S3PROXY_VERSION must look like 4.1.0, got '$S3PROXY_VERSION'"

  S3PROXY_HOME="$STACK_DIR/s3proxy-$S3PROXY_VERSION"
  S3PROXY_LIBS="$S3PROXY_HOME/libs"
  S3_DIR="$STACK_DIR/s3"
  S3_DATA="$S3_DIR/data"
  S3_CONFIG="$S3_DIR/s3proxy.conf"
  S3_LOGBACK="$S3_DIR/logback.xml"
  S3_PID_FILE="$S3_DIR/s3proxy.pid"
  S3_OUT="$LOG_DIR/s3proxy.out"
  S3_SERVER_LOG="$LOG_DIR/s3proxy.log"
  # The same local Maven repository as kafka.sh: plugins are downloaded once for both.
  S3_MAVEN_REPO="$STACK_DIR/m2"
  S3_MAVEN_LOG="$LOG_DIR/maven-s3proxy.log"
}

# ---------------------------------------------------------------------------
# Java
# ---------------------------------------------------------------------------

# Sets S3_JAVA to a Java >= 17 binary or exits with an explanation.
# TRIAGE_JAVA overrides the lookup (JAVA_HOME, then PATH).
s3_require_java() {
  local candidate version major
  if [[ -n ${TRIAGE_JAVA:-} ]]; then
    candidate=$TRIAGE_JAVA
    if [[ $candidate != */* ]]; then
      candidate=$(command -v "$candidate" 2>/dev/null) || candidate=$TRIAGE_JAVA
    fi
  elif [[ -n ${JAVA_HOME:-} && -x ${JAVA_HOME}/bin/java ]]; then
    candidate="$JAVA_HOME/bin/java"
  else
    candidate=$(command -v java 2>/dev/null) || candidate=""
  fi
  if [[ -z $candidate || ! -x $candidate ]]; then
    die "Java 17 or newer is needed to run S3Proxy, but no 'java' was found${TRIAGE_JAVA:+ (TRIAGE_JAVA=$TRIAGE_JAVA)}." \
      "Install it, e.g. 'apt-get install openjdk-17-jre-headless', or point TRIAGE_JAVA at a java binary."
  fi
  version=$("$candidate" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }') || version=""
  if [[ $version == 1.* ]]; then
    major=$(cut -d. -f2 <<<"$version")
  else
    major=${version%%[.+-]*}
  fi
  if [[ ! $major =~ ^[0-9]+$ ]]; then
    die "could not determine the version of $candidate ('$version'); Java 17 or newer is needed." \
      "Install it, e.g. 'apt-get install openjdk-17-jre-headless', or set TRIAGE_JAVA."
  fi
  if ((major < 17)); then
    die "S3Proxy $S3PROXY_VERSION needs Java 17 or newer, but $candidate is Java $version." \
      "Install it, e.g. 'apt-get install openjdk-17-jre-headless', or point TRIAGE_JAVA at a newer java binary."
  fi
  S3_JAVA=$candidate
}

# ---------------------------------------------------------------------------
# Jars (resolved from Maven Central with the ordinary mvn client)
# ---------------------------------------------------------------------------
s3_jars_present() {
  [[ -f "$S3PROXY_HOME/.complete" && -f "$S3PROXY_LIBS/s3proxy-$S3PROXY_VERSION.jar" ]]
}

# Makes sure mvn exists (installs the Debian package when root) - only called
# when the jars still have to be downloaded.
s3_require_maven() {
  command -v mvn >/dev/null 2>&1 && return 0
  if is_root && command -v apt-get >/dev/null 2>&1; then
    info "maven: not found, installing the Debian package 'maven'..."
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
    command -v mvn >/dev/null 2>&1 && return 0
  fi
  die "Maven ('mvn') is needed once to download the S3Proxy $S3PROXY_VERSION jars but was not found." \
    "Install it (e.g. 'sudo apt-get install maven') and run start again."
}

s3_write_pom() {
  local pom=$1
  cat >"$pom" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by deploy/local/stack.sh: the runtime class path of S3Proxy. -->
<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.triage.stack</groupId>
  <artifactId>s3proxy-runtime</artifactId>
  <version>$S3PROXY_VERSION</version>
  <packaging>pom</packaging>
  <!-- S3Proxy's own BOM imports (Jackson 3, AWS SDK, OpenTelemetry) are not applied to a
       project that depends on it; without them Maven picks an old jackson-annotations and
       the server dies at start with NoClassDefFoundError JsonSerializeAs. -->
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.gaul</groupId>
        <artifactId>s3proxy</artifactId>
        <version>$S3PROXY_VERSION</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <!-- The server (org.gaul.s3proxy.Main); Jetty is shaded inside its jar. -->
    <dependency>
      <groupId>org.gaul</groupId>
      <artifactId>s3proxy</artifactId>
      <version>$S3PROXY_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
}

s3_ensure_jars() {
  if s3_jars_present; then
    return 0
  fi
  s3_require_maven
  mkdir -p "$S3PROXY_HOME" "$LOG_DIR"
  local tmp="$S3PROXY_HOME/libs.partial" t0
  rm -rf "$tmp"
  s3_write_pom "$S3PROXY_HOME/pom.xml"
  info "s3: downloading S3Proxy $S3PROXY_VERSION jars with Maven (first start only)..."
  t0=$(now_ms)
  if ! mvn -B -q -f "$S3PROXY_HOME/pom.xml" \
    "-Dmaven.repo.local=$S3_MAVEN_REPO" \
    dependency:copy-dependencies \
    -DincludeScope=runtime \
    "-DoutputDirectory=$tmp" >"$S3_MAVEN_LOG" 2>&1; then
    show_log_tail "$S3_MAVEN_LOG" 40
    die "Maven could not download S3Proxy $S3PROXY_VERSION (see $S3_MAVEN_LOG)." \
      "Check TRIAGE_S3PROXY_VERSION and that Maven can reach its default repository."
  fi
  if [[ ! -f "$tmp/s3proxy-$S3PROXY_VERSION.jar" ]]; then
    die "Maven finished but no s3proxy-$S3PROXY_VERSION.jar was copied into $tmp (see $S3_MAVEN_LOG)"
  fi
  rm -rf "$S3PROXY_LIBS"
  mv "$tmp" "$S3PROXY_LIBS"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$S3PROXY_HOME/.complete"
  info "s3: $(find "$S3PROXY_LIBS" -name '*.jar' | wc -l) jars in $S3PROXY_LIBS ($(fmt_ms $(($(now_ms) - t0))))"
}

# ---------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------
s3_write_config() {
  mkdir -p "$S3_DIR" "$S3_DATA" "$LOG_DIR"
  # Holds the (local, fixed) credentials: readable by the owner only.
  (
    umask 077
    cat >"$S3_CONFIG" <<CONF
# Generated by deploy/local/stack.sh on every start; edits are overwritten.
# S3Proxy serving the S3 API on 127.0.0.1, objects stored as files under the data dir
# (one directory per bucket). For local development and tests only.
s3proxy.endpoint=http://127.0.0.1:$S3_PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$S3_ACCESS_KEY_ID
s3proxy.credential=$S3_SECRET_ACCESS_KEY
jclouds.provider=filesystem
jclouds.identity=$S3_ACCESS_KEY_ID
jclouds.credential=$S3_SECRET_ACCESS_KEY
jclouds.filesystem.basedir=$S3_DATA
CONF
  )

  cat >"$S3_LOGBACK" <<LOGBACK
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by deploy/local/stack.sh: S3Proxy logs INFO and up to a rolling file. -->
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>$S3_SERVER_LOG</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>$S3_SERVER_LOG.%i</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>[%d{ISO8601}] %-5level %msg [%logger{36}]%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE"/>
  </root>
</configuration>
LOGBACK
}

# ---------------------------------------------------------------------------
# Process state
# ---------------------------------------------------------------------------

# Prints the pid of our running S3Proxy, or nothing. Removes stale pid files.
s3_pid() {
  local pid cmdline
  [[ -f $S3_PID_FILE ]] || return 0
  pid=$(<"$S3_PID_FILE")
  if pid_alive "$pid"; then
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || cmdline=""
    if [[ $cmdline == *org.gaul.s3proxy.Main*"$S3_CONFIG"* ]]; then
      printf '%s\n' "$pid"
      return 0
    fi
  fi
  rm -f "$S3_PID_FILE"
}

# Port the running server was started with (from the generated config).
s3_running_port() {
  sed -n 's/^s3proxy\.endpoint=http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$S3_CONFIG" 2>/dev/null
}

# Real readiness check: a ListBuckets request signed with the local credentials
# (SigV4, by curl) is answered with a bucket list. Without a curl that can sign,
# an S3 error document for an anonymous request is accepted; without curl, an open port.
s3_api_ready() {
  local port=$1 url="http://127.0.0.1:$1/" out
  local empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  if ! command -v curl >/dev/null 2>&1; then
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    return
  fi
  if [[ -z ${S3_CURL_SIGNS:-} ]]; then
    S3_CURL_SIGNS=0
    # Not "curl | grep -q": under pipefail, curl's SIGPIPE would make the test fail.
    [[ $(curl --help all 2>/dev/null) == *--aws-sigv4* ]] && S3_CURL_SIGNS=1
  fi
  if ((S3_CURL_SIGNS)); then
    out=$(curl -sS --max-time 10 -H "x-amz-content-sha256: $empty_sha256" \
      --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY_ID:$S3_SECRET_ACCESS_KEY" \
      "$url" 2>/dev/null) || return 1
    [[ $out == *"<ListAllMyBucketsResult"* ]]
    return
  fi
  out=$(curl -sS --max-time 10 "$url" 2>/dev/null) || return 1
  [[ $out == *"<Error>"*"<Code>"* ]]
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
s3_preflight() {
  s3_require_java
  if [[ -z $(s3_pid) ]]; then
    require_port_free "$S3_PORT" TRIAGE_S3_PORT "the S3 server (S3Proxy)"
    s3_jars_present || s3_require_maven
  fi
}

s3_start() {
  local pid port deadline t0 heap=()
  t0=$(now_ms)
  deadline=$((t0 + START_TIMEOUT * 1000))
  pid=$(s3_pid)
  if [[ -n $pid ]]; then
    port=$(s3_running_port)
    if [[ $port != "$S3_PORT" ]]; then
      die "S3Proxy is already running (pid $pid) on port ${port:-?}, not TRIAGE_S3_PORT=$S3_PORT; run stop first"
    fi
    if ! wait_port "$S3_PORT" "$pid" "$deadline" || ! s3_api_ready "$S3_PORT"; then
      die "S3Proxy (pid $pid) is running but does not answer on port $S3_PORT; see $S3_SERVER_LOG or run '$0 stop'"
    fi
    info "s3: already running (pid $pid, port $S3_PORT)"
    return 0
  fi

  s3_require_java
  require_port_free "$S3_PORT" TRIAGE_S3_PORT "the S3 server (S3Proxy)"
  s3_ensure_jars
  s3_write_config

  read -r -a heap <<<"$S3_HEAP"
  rm -f "$S3_PID_FILE"
  printf '\n=== %s starting S3Proxy %s ===\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$S3PROXY_VERSION" >>"$S3_OUT"
  # As for Kafka: the child writes its own pid and then becomes the JVM (exec), in a
  # new session so that it survives the calling shell, without the lock descriptor (fd 9).
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  (
    cd "$S3_DIR" || exit 1
    # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
    exec "${launcher[@]}" bash -c 'printf "%s\n" "$$" >"$1"; shift; exec "$@"' s3proxy-launcher \
      "$S3_PID_FILE" \
      "$S3_JAVA" "${heap[@]}" \
      -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      "-Dlogback.configurationFile=$S3_LOGBACK" \
      -cp "$S3PROXY_LIBS/*" org.gaul.s3proxy.Main --properties "$S3_CONFIG"
  ) </dev/null >>"$S3_OUT" 2>&1 9>&- &

  pid=$(await_server S3Proxy "$S3_PID_FILE" "$S3_PORT" "$deadline" s3_api_ready 0.2 \
    "$S3_OUT" "$S3_SERVER_LOG") || exit 1
  info "s3: ready on http://127.0.0.1:$S3_PORT (pid $pid, S3Proxy $S3PROXY_VERSION, data in $S3_DATA, $(fmt_ms $(($(now_ms) - t0))))"
}

s3_stop() {
  local pid t0
  pid=$(s3_pid)
  if [[ -z $pid ]]; then
    info "s3: not running"
    return 0
  fi
  t0=$(now_ms)
  stop_server S3Proxy "$pid" 30
  rm -f "$S3_PID_FILE"
  info "s3: stopped (pid $pid, $(fmt_ms $(($(now_ms) - t0))))"
}

# Prints one status line; returns 0 when running and listening.
s3_status() {
  local pid port
  pid=$(s3_pid)
  if [[ -z $pid ]]; then
    info "s3:       stopped"
    return 1
  fi
  port=$(s3_running_port)
  if port_listening "${port:-$S3_PORT}"; then
    info "s3:       running (pid $pid, port ${port:-$S3_PORT}, S3Proxy $S3PROXY_VERSION)"
    return 0
  fi
  info "s3:       starting or unhealthy (pid $pid, port ${port:-$S3_PORT} not listening; see $S3_SERVER_LOG)"
  return 1
}

# Export lines for the application (and the tests) to reach the local server.
s3_env() {
  printf 'export TRIAGE_S3_ENDPOINT_URL=%q\n' "http://127.0.0.1:$S3_PORT"
  printf 'export TRIAGE_S3_ACCESS_KEY_ID=%q\n' "$S3_ACCESS_KEY_ID"
  printf 'export TRIAGE_S3_SECRET_ACCESS_KEY=%q\n' "$S3_SECRET_ACCESS_KEY"
  printf 'export TRIAGE_S3_REGION=%q\n' "$S3_REGION"
}

# Deletes all buckets and objects and the generated config; S3Proxy must be stopped.
s3_reset_data() {
  if [[ -n $(s3_pid) ]]; then
    die "S3Proxy is still running; stop it before deleting its data"
  fi
  rm -rf "$S3_DIR"
}
