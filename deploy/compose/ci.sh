#!/usr/bin/env bash
# compose.yaml end to end, as CI runs it: build the images (Kafka and PostgreSQL from Debian's
# packages, the services from deploy/containers/Dockerfile), bring the stack up with
# docker-compose over podman's Docker-compatible socket, wait until the four services are
# healthy, upload the sample documents through the published ingest port, check in
# PostgreSQL that they were routed or put in review, print a report and tear everything
# down, volumes included (also when a step fails).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

usage() {
  cat <<'USAGE'
Usage: deploy/compose/ci.sh [--no-build] [--keep]

  --no-build  use the images as they are (build only those that are missing)
  --keep      leave the stack running afterwards (tear it down with the command printed)

Environment:
  TRIAGE_BASE_IMAGE       base of every image built (default localhost/debian:base, made by
                          deploy/containers/setup.sh)
  TRIAGE_COMPOSE          the compose command (default docker-compose, installed from
                          Debian when missing and root); it needs depends_on conditions
  TRIAGE_COMPOSE_PROJECT  project name (default triage-ci-<pid>): containers, network, volumes
  TRIAGE_CI_TIMEOUT       seconds the stack has to become healthy (default 900)
  TRIAGE_CI_REPORT        where the report is written (default test-artifacts/compose/report.txt)
  TRIAGE_KAFKA_IMAGE, TRIAGE_POSTGRES_IMAGE, TRIAGE_M2_CACHE, TRIAGE_JAVA_CACERTS
                          the broker and database images and how the local ones are built:
                          see deploy/compose/infra-images.sh --help
USAGE
}

build=always
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) build=missing; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- the engine, the socket and the compose command ------------------------------------
# shellcheck source=../containers/engine.sh
source deploy/containers/engine.sh
require_engine
read -r -a COMPOSE <<<"${TRIAGE_COMPOSE:-docker-compose}"
if ! command -v "${COMPOSE[0]}" >/dev/null; then
  [[ ${COMPOSE[0]} == docker-compose && $EUID -eq 0 ]] ||
    die "${COMPOSE[0]} is not installed (apt-get install docker-compose)"
  say "installing docker-compose from Debian's packages"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
export COMPOSE_HTTP_TIMEOUT=300

# shellcheck source=infra-images.sh
source deploy/compose/infra-images.sh # sets TRIAGE_BASE_IMAGE, TRIAGE_{KAFKA,POSTGRES}_IMAGE
BASE_IMAGE="$TRIAGE_BASE_IMAGE"
podman image exists "$BASE_IMAGE" || die "no base image $BASE_IMAGE: run deploy/containers/setup.sh base"
PROJECT="${TRIAGE_COMPOSE_PROJECT:-triage-ci-$$}"
TIMEOUT="${TRIAGE_CI_TIMEOUT:-900}"
REPORT="${TRIAGE_CI_REPORT:-$ROOT/test-artifacts/compose/report.txt}"
SERVICES=(ingest classifier router review-ui)
started=$SECONDS

# --- images --------------------------------------------------------------------------
if [[ $build == missing ]]; then infra_images --missing; else infra_images; fi
targets=()
for target in cli "${SERVICES[@]}"; do
  if [[ $build == always ]] || ! podman image exists "localhost/triage-$target:dev"; then
    targets+=("$target")
  fi
done
if [[ ${#targets[@]} -gt 0 ]]; then
  say "building ${targets[*]} (deploy/containers/build.sh)"
  deploy/containers/build.sh --base "$BASE_IMAGE" "${targets[@]}"
fi
built=$((SECONDS - started))

# --- the stack -----------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for name in KAFKA POSTGRES INGEST CLASSIFIER ROUTER REVIEW_UI; do
  export "TRIAGE_COMPOSE_${name}_PORT=$(free_port)"
done
compose() { "${COMPOSE[@]}" --project-name "$PROJECT" --file "$ROOT/compose.yaml" "$@"; }

# Podman runs health checks from systemd timers; on a machine without systemd nothing runs
# them, so this loop does, until the script ends: every 3 s for the project's containers
# that are not healthy yet, every 30 s for all of them.
tick_health() {
  local id tick=0 filter
  while sleep 3; do
    filter=(--filter health=starting)
    ((tick++ % 10 == 0)) && filter=()
    for id in $(podman ps --quiet --filter "label=com.docker.compose.project=$PROJECT" "${filter[@]}"); do
      podman healthcheck run "$id" >/dev/null 2>&1 || true
    done
  done
}
ticker=""
outcome=failed
teardown() {
  local status=$?
  [[ -z $ticker ]] || kill "$ticker" 2>/dev/null || true
  if [[ $outcome != passed ]]; then
    say "failed (status $status): the containers and their last log lines"
    compose ps 2>&1 || true
    compose logs --no-color --tail 40 2>&1 | tail -n 400 || true
  fi
  if [[ $keep -eq 1 ]]; then
    say "left running; tear it down with: ${COMPOSE[*]} -p $PROJECT -f compose.yaml down -v"
  else
    say "tearing down $PROJECT (containers, network, volumes)"
    compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

tick_health &
ticker=$!
say "compose up (project $PROJECT; ingest on 127.0.0.1:$TRIAGE_COMPOSE_INGEST_PORT)"
up_started=$SECONDS
compose up --detach --no-build
up_seconds=$((SECONDS - up_started))

health_of() { # health_of SERVICE: starting, healthy, unhealthy, or "exited (STATUS)"
  local id
  id="$(compose ps --quiet "$1")"
  [[ -n $id ]] || { echo missing; return; }
  podman inspect --format '{{if eq .State.Status "running"}}{{.State.Health.Status}}{{else}}{{.State.Status}} ({{.State.ExitCode}}){{end}}' "$id"
}
declare -A healthy_after
deadline=$((SECONDS + TIMEOUT))
for service in "${SERVICES[@]}"; do
  while :; do
    state="$(health_of "$service")"
    [[ $state == healthy ]] && break
    case $state in exited* | stopped* | missing) die "$service is $state" ;; esac
    ((SECONDS < deadline)) || die "$service is still $state after ${TIMEOUT}s"
    sleep 2
  done
  healthy_after[$service]=$((SECONDS - up_started))
  say "$service healthy after ${healthy_after[$service]}s"
done

# --- documents through the pipeline ---------------------------------------------------
TRIAGE_CMD="$ROOT/.venv/bin/triage"
[[ -x $TRIAGE_CMD ]] || TRIAGE_CMD="$(command -v triage)" || die "no triage command: run ./dev setup"
api_key="$(compose exec -T ingest cat /data/bootstrap/api-key)"
mkdir -p "$(dirname "$REPORT")"
upload_log="$(dirname "$REPORT")/upload.txt"
say "uploading data/sample/inbox/* to http://127.0.0.1:$TRIAGE_COMPOSE_INGEST_PORT"
TRIAGE_API_KEY="$api_key" COLUMNS=120 "$TRIAGE_CMD" upload data/sample/inbox/* \
  --url "http://127.0.0.1:$TRIAGE_COMPOSE_INGEST_PORT" --wait 180 2>&1 | tee "$upload_log"
documents="$(grep -oE 'as [0-9]+ document' "$upload_log" | grep -oE '[0-9]+' || true)"

sql() { compose exec -T postgres psql -U triage -d triage -At -F ' ' -c "$1"; }
declare -A count=([received]=0 [routed]=0 [in_review]=0 [dead_lettered]=0 [decided]=0)
while read -r status n; do
  [[ -n $status ]] && count[$status]=$n
done < <(sql "SELECT status, count(*) FROM document_status GROUP BY status")
review_items="$(sql "SELECT count(*) FROM review_item")"
queues="$(sql "SELECT queue || ': ' || count(*) FROM document_status WHERE status = 'routed' GROUP BY queue ORDER BY queue" | paste -sd ',' - | sed 's/,/, /g')"
total=0
for n in "${count[@]}"; do total=$((total + n)); done

# --- the report ------------------------------------------------------------------------
{
  printf 'compose run %s (%s, base %s)\n' "$PROJECT" "${COMPOSE[*]}" "$BASE_IMAGE"
  printf 'images built in %ss; compose up %ss\n\n' "$built" "$up_seconds"
  printf '%-12s %-46s %9s  %s\n' service image size 'healthy after'
  for service in kafka postgres migrate bootstrap "${SERVICES[@]}"; do
    id="$(compose ps --quiet "$service")"
    image="$(podman inspect --format '{{.ImageName}}' "$id")"
    size="$(numfmt --to=iec-i --suffix=B --format='%.1f' "$(podman image inspect --format '{{.Size}}' "$image")")"
    state="$(health_of "$service")"
    [[ -n ${healthy_after[$service]:-} ]] && state="${healthy_after[$service]}s"
    printf '%-12s %-46s %9s  %s\n' "$service" "$image" "$size" "$state"
  done
  printf '\ndocuments: %s uploaded, %s in PostgreSQL: %s routed (%s), %s in review (%s review items), %s dead-lettered, %s still received\n' \
    "${documents:-?}" "$total" "${count[routed]}" "${queues:-none}" "${count[in_review]}" \
    "$review_items" "${count[dead_lettered]}" "${count[received]}"
} | tee "$REPORT"

[[ -n $documents && $total -eq $documents ]] || die "the upload made ${documents:-?} documents but PostgreSQL has $total"
((count[received] == 0)) || die "${count[received]} document(s) have no outcome"
((count[routed] > 0)) || die "no document was routed to a queue"
((count[in_review] > 0)) || die "no document was put in review"
((review_items >= count[in_review])) || die "$review_items review items for ${count[in_review]} documents in review"
outcome=passed
say "compose run passed in $((SECONDS - started))s (report: $REPORT)"
