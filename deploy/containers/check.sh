#!/usr/bin/env bash
# Start one service image with no network at all (so Kafka and PostgreSQL are away) and
# check what an operator relies on: it serves /healthz (with tracing on: TRIAGE_OTLP_ENDPOINT
# set, so the OTLP exporter must be installed), says it is not ready on /readyz,
# runs as a user other than root, can write under /data, and has torch only if it should.
# The CLI image (entrypoint triage): --help answers, the user, /data, the sample data.
# No set -e: a failing check is reported and counted, not fatal.
set -uo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/containers/check.sh IMAGE...

IMAGE is one built by deploy/containers/build.sh, e.g. localhost/triage-router:dev.
Exits 1 if a check fails (each check prints one line). TRIAGE_CONTAINER_ENGINE: podman
(default) or docker.
USAGE
}

[[ $# -gt 0 && $1 != -h && $1 != --help ]] || { usage; [[ $# -gt 0 ]]; exit $?; }
engine="${TRIAGE_CONTAINER_ENGINE:-podman}"
failed=0
container=""
trap '[[ -z $container ]] || "$engine" rm --force --time 1 "$container" >/dev/null 2>&1 || true' EXIT

result() { # result NAME OK DETAIL
  if [[ $2 -eq 0 ]]; then printf '  ok    %s: %s\n' "$1" "$3"; else
    printf '  FAIL  %s: %s\n' "$1" "$3"; failed=1; fi
}

check_cli() {
  local image=$1 out status
  echo "$image (triage)"
  out="$("$engine" run --rm --network none "$image" --help 2>&1)"
  status=$?
  result help "$status" "$(grep -c . <<<"$out") lines of triage --help"
  out="$("$engine" run --rm --network none --entrypoint id "$image" -u)"
  [[ $out != 0 ]]
  result user $? "uid $out"
  out="$("$engine" run --rm --network none --entrypoint sh "$image" -c \
    'touch /data/models/.w && rm /data/models/.w && ls /app/data/sample' 2>&1)"
  status=$?
  result data "$status" "/data/models writable; /app/data/sample has: $(echo $out)"
  if "$engine" run --rm --network none --entrypoint python "$image" -c 'import torch' \
    >/dev/null 2>&1; then
    result torch 1 "installed"
  else
    result torch 0 "not installed"
  fi
}

check_image() {
  local image=$1 command port out status
  command="$("$engine" image inspect --format '{{index .Config.Entrypoint 0}}' "$image")" || exit 2
  case "$command" in
    triage-ingest) port=8001 ;;
    triage-classifier) port=8002 ;;
    triage-router) port=8003 ;;
    triage-review-ui) port=8004 ;;
    triage) check_cli "$image"; return ;;
    *) echo "error: $image does not run a Triage service (entrypoint $command)" >&2; exit 2 ;;
  esac
  echo "$image ($command, port $port)"
  # Reachable-looking addresses with nothing behind them: without a network, connects fail.
  container="$("$engine" run --detach --network none \
    -e TRIAGE_KAFKA_BOOTSTRAP=127.0.0.1:9 \
    -e TRIAGE_DATABASE_URL=postgresql+psycopg://triage:triage@127.0.0.1:9/triage \
    -e TRIAGE_OTLP_ENDPOINT=http://127.0.0.1:9/v1/traces \
    "$image")"
  if [[ -z $container ]]; then
    result start 1 "$engine run failed"
    return
  fi

  status=1
  for _ in $(seq 1 120); do
    if out="$("$engine" exec "$container" triage-probe "http://127.0.0.1:$port/healthz" 2>&1)"; then
      status=0; break
    fi
    [[ "$("$engine" inspect --format '{{.State.Running}}' "$container")" == true ]] || break
    sleep 0.5
  done
  result healthz "$status" "$([[ $status -eq 0 ]] && echo "200 with Kafka, PostgreSQL and the OTLP collector away" \
    || echo "no 200 in 60 s: ${out:-}; last log lines: $("$engine" logs --tail 5 "$container" 2>&1)")"

  if out="$("$engine" exec "$container" triage-probe "http://127.0.0.1:$port/readyz" 2>&1)"; then
    result readyz 1 "ready although Kafka and PostgreSQL are away"
  else
    result readyz 0 "not ready: ${out:0:160}"
  fi

  out="$("$engine" exec "$container" id -u)"
  [[ $out != 0 ]]
  result user $? "uid $out"

  out="$("$engine" exec "$container" sh -c \
    'for d in /data/*/; do touch "$d.w" && rm "$d.w" || exit 1; done; echo /data/*/' 2>&1)"
  status=$?
  result data "$status" "$out"

  if "$engine" exec "$container" python -c 'import torch' >/dev/null 2>&1; then
    [[ $image == *embeddings* ]]
    result torch $? "installed"
  else
    [[ $image != *embeddings* ]]
    result torch $? "not installed"
  fi

  "$engine" rm --force --time 5 "$container" >/dev/null
  container=""
}

for image in "$@"; do
  check_image "$image"
done
exit "$failed"
