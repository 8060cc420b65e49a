#!/bin/bash
# Start a KRaft node configured like the official apache/kafka image: every KAFKA_* variable becomes a
# server property (KAFKA_ dropped, lower case, "___" -> "-", "__" -> "_", "_" -> "."), except the JVM
# options KAFKA_HEAP_OPTS and KAFKA_OPTS; CLUSTER_ID names the cluster when the storage is formatted.
set -euo pipefail
CONFIG=/opt/kafka/config/server.properties
: >"$CONFIG"
while IFS='=' read -r name value; do
  case $name in
    KAFKA_HEAP_OPTS | KAFKA_OPTS) continue ;;
  esac
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  echo "${key//@/_}=$value" >>"$CONFIG"
done < <(env | grep '^KAFKA_[A-Z0-9_]*=' | sort)
grep -q '^log\.dirs=' "$CONFIG" || echo "log.dirs=/var/lib/kafka/data" >>"$CONFIG"
LOGS=$(sed -n 's/^log\.dirs=//p' "$CONFIG" | cut -d, -f1)

JAVA=(java -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml -cp '/opt/kafka/libs/*')
if [[ ! -f $LOGS/meta.properties ]]; then
  "${JAVA[@]}" -Xmx256m kafka.tools.StorageTool format --ignore-formatted \
    -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$CONFIG"
fi
# shellcheck disable=SC2086  # the heap options are several words
exec "${JAVA[@]}" ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} ${KAFKA_OPTS:-} -XX:+UseG1GC -Djava.awt.headless=true \
  kafka.Kafka "$CONFIG"
