#!/usr/bin/env bash
# Start a KRaft Kafka node configured by KAFKA_* variables, the official image's way:
# KAFKA_FOO_BAR=x becomes foo.bar=x (a double underscore stands for "_", a triple one for "-").
# CLUSTER_ID names the cluster the data directory is formatted for (once).
#   run.sh                 format the storage if needed, then run the broker
#   run.sh --print-config  print the server.properties it would use, and exit
set -euo pipefail

CONFIG=${KAFKA_CONFIG_FILE:-/tmp/server.properties}
# Variables with the KAFKA_ prefix that are about the JVM or the image, not the broker.
NOT_BROKER=" KAFKA_HEAP_OPTS KAFKA_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_LOG4J_OPTS KAFKA_JMX_OPTS KAFKA_VERSION KAFKA_CONFIG_FILE "

properties() {
  local name key
  while read -r name; do
    [[ $NOT_BROKER == *" $name "* ]] && continue
    key=${name#KAFKA_}
    key=${key,,}
    key=${key//___/-}
    key=${key//__/$'\x01'}
    key=${key//_/.}
    key=${key//$'\x01'/_}
    printf '%s=%s\n' "$key" "${!name}"
  done < <(compgen -e | grep '^KAFKA_' | sort)
}

if [[ ${1:-} == --print-config ]]; then
  properties
  exit 0
fi

[[ -n ${KAFKA_PROCESS_ROLES:-} ]] || { echo "run.sh: KAFKA_PROCESS_ROLES is not set (e.g. broker,controller)" >&2; exit 2; }
[[ -n ${CLUSTER_ID:-} ]] || { echo "run.sh: CLUSTER_ID is not set (22 characters, e.g. from kafka-storage random-uuid)" >&2; exit 2; }
properties >"$CONFIG"

java=(java -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties
  -cp '/opt/kafka/libs/*')
# --ignore-formatted: a data directory formatted before (a restart) is kept as it is.
"${java[@]}" -Xmx256m -XX:TieredStopAtLevel=1 kafka.tools.StorageTool format \
  --cluster-id "$CLUSTER_ID" --config "$CONFIG" --ignore-formatted
read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m}"
read -r -a extra <<<"${KAFKA_OPTS:-}"
exec "${java[@]}" "${heap[@]}" "${extra[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:+ExitOnOutOfMemoryError kafka.Kafka "$CONFIG"
