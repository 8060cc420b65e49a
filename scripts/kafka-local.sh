#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1, from Maven Central jars, no Docker.
#
#   scripts/kafka-local.sh start|stop|status|restart
#   scripts/kafka-local.sh jars    # fetch the jars only and print their folder (for docker/kafka)
#
# Environment:
#   KAFKA_PORT             client port (default 9092)
#   KAFKA_CONTROLLER_PORT  controller port (default KAFKA_PORT + 1000)
#   KAFKA_LOCAL_DIR        where jars, data and logs live (default <project>/.local/kafka, git-ignored)
#   KAFKA_HEAP_OPTS        JVM heap (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_SASL_PORT        also listen with SASL_PLAINTEXT (mechanism PLAIN) on this port
#   KAFKA_SASL_USERS       the PLAIN users of that listener, "name:password,name:password"
#
# start is idempotent (a running broker is left alone), stop is idempotent, and status exits 0 only when
# the broker answers a Kafka ApiVersions request on the port.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${KAFKA_PORT:-9092}
CPORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1000))}
BASE=${KAFKA_LOCAL_DIR:-$ROOT/.local/kafka}
LIB=$BASE/lib
RUN=$BASE/node-$PORT
PIDFILE=$RUN/kafka.pid
LOG=$RUN/logs/kafka.out
TIMEOUT=${KAFKA_START_TIMEOUT:-90}
HEAP=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
POM=$ROOT/kafka/pom.xml

say() { echo "kafka-local: $*" >&2; }

# True when something on the port answers a Kafka ApiVersions v0 request with a correlated response.
answers() {
  local reply
  reply=$(timeout 5 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/'"$PORT"' || exit 1
    # size=14 | api_key=18 (ApiVersions) | api_version=0 | correlation_id=7 | client_id="probe"(len 5)
    printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x07\x00\x05probe" >&3
    head -c 8 <&3 | od -An -tx1 | tr -d " \n"' 2>/dev/null) || return 1
  # response: 4-byte size, then the 4-byte correlation id we sent
  [[ ${reply:8:8} == "00000007" ]]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

our_pid() {
  [[ -f $PIDFILE ]] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

fetch_jars() {
  local stamp=$LIB/.pom.sha256 want
  want=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  say "fetching Apache Kafka jars from Maven Central into $LIB (once)"
  rm -rf "$LIB.tmp"
  mvn -q -B -f "$POM" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIB.tmp" >&2
  rm -rf "$LIB"
  mv "$LIB.tmp" "$LIB"
  echo "$want" >"$stamp"
}

write_config() {
  mkdir -p "$RUN/data" "$RUN/logs"
  local listeners="PLAINTEXT://127.0.0.1:$PORT" sasl=""
  if [[ -n ${KAFKA_SASL_PORT:-} ]]; then
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    local users="" pair
    IFS=',' read -ra pairs <<<"${KAFKA_SASL_USERS:-}"
    for pair in "${pairs[@]}"; do users="$users user_${pair%%:*}=\"${pair#*:}\""; done
    sasl="sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;"
  fi
  cat >"$RUN/server.properties" <<EOF
process.roles=broker,controller
node.id=1
# Static quorum: the data directory stays valid across restarts whatever the ports.
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=$listeners,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=$listeners
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
$sasl
log.dirs=$RUN/data
num.partitions=1
default.replication.factor=1
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
# The log cleaner allocates this on the heap at start-up (default 128 MiB).
log.cleaner.dedupe.buffer.size=16777216
EOF
  cat >"$RUN/log4j2.yaml" <<'EOF'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      target: SYSTEM_OUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
EOF
  cat >"$RUN/tools-log4j2.yaml" <<'EOF'
Configuration:
  Appenders:
    Console:
      name: STDERR
      target: SYSTEM_ERR
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDERR
EOF
}

format_storage() {
  [[ -f $RUN/data/meta.properties ]] && return
  local tool=(java -Xmx256m -Dlog4j2.configurationFile="$RUN/tools-log4j2.yaml" -cp "$LIB/*" kafka.tools.StorageTool)
  local cluster_id
  cluster_id=$("${tool[@]}" random-uuid)
  "${tool[@]}" format -t "$cluster_id" -c "$RUN/server.properties" >"$RUN/logs/format.out" 2>&1 || {
    cat "$RUN/logs/format.out" >&2
    return 1
  }
}

start() {
  exec 9>"$BASE.lock.$PORT"
  flock 9
  if our_pid >/dev/null && answers; then
    say "already running on 127.0.0.1:$PORT (pid $(our_pid))"
    return 0
  fi
  if port_open "$PORT"; then
    say "port $PORT is taken by another process; set KAFKA_PORT to use another port"
    return 1
  fi
  if port_open "$CPORT"; then
    say "controller port $CPORT is taken by another process; set KAFKA_CONTROLLER_PORT"
    return 1
  fi
  fetch_jars
  write_config
  format_storage
  # shellcheck disable=SC2086  # HEAP holds several JVM options
  nohup java $HEAP \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$RUN/logs" -Dlog4j2.configurationFile="$RUN/log4j2.yaml" \
    -cp "$LIB/*" kafka.Kafka "$RUN/server.properties" >"$LOG" 2>&1 </dev/null 9>&- &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  local deadline=$((SECONDS + TIMEOUT))
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "broker exited during start-up; last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      rm -f "$PIDFILE"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      say "broker not ready within ${TIMEOUT}s; last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      stop
      return 1
    fi
    sleep 0.25
  done
  say "running on 127.0.0.1:$PORT (pid $pid, data in $RUN)"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PIDFILE"
    say "not running on 127.0.0.1:$PORT"
    return 0
  fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      say "broker did not stop within 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  say "stopped (pid $pid)"
}

status() {
  if answers; then
    say "answering on 127.0.0.1:$PORT${PIDFILE:+ (pid $(our_pid || echo 'not ours'))}"
    return 0
  fi
  say "not answering on 127.0.0.1:$PORT"
  return 1
}

mkdir -p "$BASE"
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart) stop && start ;;
  jars) fetch_jars && echo "$LIB" ;;
  *)
    echo "usage: $0 start|stop|status|restart|jars" >&2
    exit 2
    ;;
esac
