#!/usr/bin/env bash
# The pipeline tests on throwaway Kafka and PostgreSQL containers instead of the local stack,
# as CI runs them: testcontainers starts compose.yaml's broker and database through podman's
# Docker-compatible socket (TRIAGE_TEST_CONTAINERS=1, see tests/stack.py), the tests run,
# the containers are removed, and this script fails if any container of the tests is left.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ingest -> classifier -> router on Kafka and PostgreSQL, and the mode's own tests.
PIPELINE_TESTS=(
  tests/integration/test_containers_mode.py
  tests/integration/test_services_on_kafka.py
  tests/integration/test_tracing_pipeline.py
  tests/integration/test_scoring_pipeline.py
  tests/integration/test_topics_pipeline.py
)
LABEL=org.triage.tests # tests/containers.py labels every container it starts with it

usage() {
  cat <<'USAGE'
Usage: tests/containers.sh [PYTEST ARGUMENTS...]

Runs the pipeline tests (or the tests given) with Kafka and PostgreSQL in containers.
The images are TRIAGE_KAFKA_IMAGE and TRIAGE_POSTGRES_IMAGE (default the local ones,
localhost/triage-kafka and localhost/triage-postgres, built when missing: see
deploy/compose/infra-images.sh --help). The engine is DOCKER_HOST (default: what
deploy/containers/setup.sh env prints). Tests that need IMAP or S3 are skipped unless
TRIAGE_TEST_IMAP_* or TRIAGE_TEST_S3_* name servers.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=../deploy/containers/engine.sh
source deploy/containers/engine.sh
require_engine
# Ryuk, testcontainers' reaper, is an image from a registry; the fixture removes its own.
export TESTCONTAINERS_RYUK_DISABLED="${TESTCONTAINERS_RYUK_DISABLED:-true}"

# shellcheck source=../deploy/compose/infra-images.sh
source deploy/compose/infra-images.sh
started=$SECONDS
infra_images --missing
export TRIAGE_TEST_CONTAINERS=1

PYTEST="$ROOT/.venv/bin/pytest"
[[ -x $PYTEST ]] || PYTEST="$(command -v pytest)" || die "no pytest: run ./dev setup"
before="$(podman ps --all --quiet --no-trunc --filter "label=$LABEL" | sort)"
args=("$@")
[[ ${#args[@]} -gt 0 ]] || args=("${PIPELINE_TESTS[@]}")
say "tests on containers ($TRIAGE_KAFKA_IMAGE, $TRIAGE_POSTGRES_IMAGE): ${args[*]}"
status=0
"$PYTEST" -q -p no:cacheprovider --durations=10 "${args[@]}" || status=$?

after="$(podman ps --all --quiet --no-trunc --filter "label=$LABEL" | sort)"
left="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')"
if [[ -n $left ]]; then
  podman ps --all --filter "label=$LABEL" >&2
  die "the tests left their containers behind: $(echo "$left" | cut -c1-12 | paste -sd ' ')"
fi
((status == 0)) || die "the tests failed (pytest status $status) after $((SECONDS - started)) s"
say "passed in $((SECONDS - started)) s, no container left"
