#!/usr/bin/env bash
# The container checks: the image, docker-compose.yml, testcontainers and the newcomer's path, all on images
# built on this machine (no image registry is needed).
#
#   scripts/containers.sh images          # the base image, the service image and the Kafka/PostgreSQL stand-ins
#   scripts/containers.sh compose-test    # docker compose up, a signed delivery end to end, down -v
#   scripts/containers.sh test-containers # a slice of the test suite on testcontainers (the stand-in images)
#   scripts/containers.sh fresh-check     # `make demo` and `make test` in a new bare Debian container
#
# Each command starts dockerd when no engine answers (as root) and stops it again afterwards. Where no
# engine can be had (no Docker installed, or not root), it says why and exits 0 — unless
# ASSETHOOKS_REQUIRE_CONTAINERS=1 (set by .ci/run), which makes that a failure.
#
# Images (kept between runs; each build reuses Docker's layer cache):
#   assethooks-base:bookworm    Debian 12 minbase from debootstrap (deb.debian.org), made once
#   assethooks:ci               the project's Dockerfile, FROM the base image
#   assethooks-kafka:ci         docker/kafka: Apache Kafka from scripts/kafka-local.sh's Maven jars
#   assethooks-postgres:ci      docker/postgres: Debian's PostgreSQL 15
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE=$ROOT/.local/containers
BASE_IMAGE=assethooks-base:bookworm
export ASSETHOOKS_IMAGE=assethooks:ci KAFKA_IMAGE=assethooks-kafka:ci POSTGRES_IMAGE=assethooks-postgres:ci
# Extra CA certificates of this machine (a proxy inspecting TLS): given to builds and the fresh container
# at build/run time, never baked into an image.
LOCAL_CA=/usr/local/share/ca-certificates
mkdir -p "$STATE"

say() { echo "containers: $*" >&2; }

# Step timing: `step NAME` starts a step, `done_steps` prints them all.
steps=()
step_name=""
step_start=0
step() {
  finish_step
  step_name=$1
  step_start=$SECONDS
  say "-- $step_name"
}
finish_step() {
  [[ -n $step_name ]] && steps+=("$(printf '%4d s  %s' $((SECONDS - step_start)) "$step_name")")
  step_name=""
}
print_steps() {
  finish_step
  ((${#steps[@]})) || return 0
  echo "containers: step times"
  printf '  %s\n' "${steps[@]}"
}

# -- the engine ------------------------------------------------------------------------------------------

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

started_dockerd=""
stop_engine() {
  [[ -n $started_dockerd ]] || return 0
  say "stopping the dockerd this run started (pid $started_dockerd)"
  kill "$started_dockerd" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$started_dockerd" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
}

# Make sure an engine answers; returns 1 (after saying why) when none can be had.
need_engine() {
  if ! command -v docker >/dev/null; then
    why="no docker command (Debian: apt-get install docker.io)"
  elif engine_answers; then
    return 0
  elif ! command -v dockerd >/dev/null; then
    why="no Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io)"
  elif [[ $(id -u) != 0 ]]; then
    why="no Docker engine answers, and starting dockerd needs root"
  else
    say "starting dockerd (log: $STATE/dockerd.log)"
    dockerd >"$STATE/dockerd.log" 2>&1 </dev/null &
    started_dockerd=$!
    local deadline=$((SECONDS + 60))
    until engine_answers; do
      if ! kill -0 "$started_dockerd" 2>/dev/null || ((SECONDS >= deadline)); then
        tail -n 20 "$STATE/dockerd.log" >&2
        stop_engine
        started_dockerd=""
        why="dockerd did not start (see above)"
        break
      fi
      sleep 0.5
    done
    engine_answers && return 0
  fi
  if [[ ${ASSETHOOKS_REQUIRE_CONTAINERS:-0} == 1 ]]; then
    say "FAILED: $why"
    exit 1
  fi
  say "skipped: $why"
  return 1
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose "$@"
  else
    docker-compose "$@"
  fi
}

# -- images ----------------------------------------------------------------------------------------------

build() { # build TAG CONTEXT [docker build options]; quiet unless it fails
  local tag=$1 context=$2 out
  shift 2
  if ! out=$(docker build --build-arg "BASE=$BASE_IMAGE" -t "$tag" "$@" "$context" 2>&1); then
    echo "$out" >&2
    say "building $tag failed"
    return 1
  fi
}

base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return; fi
  command -v debootstrap >/dev/null || { say "debootstrap is needed once (apt-get install debootstrap)"; return 1; }
  local dir=$STATE/rootfs
  rm -rf "$dir"
  say "making $BASE_IMAGE with debootstrap (once)"
  debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >"$STATE/debootstrap.log" 2>&1 || {
    tail -n 20 "$STATE/debootstrap.log" >&2
    return 1
  }
  # Like the official slim images: no documentation or translations, now or from later installs.
  cat >"$dir/etc/dpkg/dpkg.cfg.d/01-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  rm -rf "$dir"/usr/share/{doc,man,info}/* "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  mkdir -p "$dir/usr/share/man/man1" # some packages' scripts (the JDK's) expect it
  tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir"
}

images() {
  step "base image $BASE_IMAGE"
  base_image
  step "image $ASSETHOOKS_IMAGE (Dockerfile, BASE=$BASE_IMAGE)"
  # this machine's CA certificates, for the build stage only; a user's own files in docker/ca stay
  local ca copied=()
  for ca in "$LOCAL_CA"/*.crt; do
    [[ -f $ca ]] || continue
    cp "$ca" "docker/ca/machine-$(basename "$ca")"
    copied+=("docker/ca/machine-$(basename "$ca")")
  done
  local built=0
  build "$ASSETHOOKS_IMAGE" . || built=$?
  rm -f "${copied[@]}"
  ((built == 0)) || return 1
  step "image $KAFKA_IMAGE (Apache Kafka jars from Maven Central)"
  KAFKA_LIB=$(scripts/kafka-local.sh jars)
  rm -rf docker/kafka/lib
  cp -r "$KAFKA_LIB" docker/kafka/lib
  build "$KAFKA_IMAGE" docker/kafka
  step "image $POSTGRES_IMAGE (Debian's PostgreSQL)"
  build "$POSTGRES_IMAGE" docker/postgres
  finish_step
  docker run --rm "$ASSETHOOKS_IMAGE" --version >&2
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(${ASSETHOOKS_IMAGE}|${KAFKA_IMAGE}|${POSTGRES_IMAGE}|${BASE_IMAGE}) " | sed 's/^/  /' >&2
}

# -- compose-test ----------------------------------------------------------------------------------------

COMPOSE_PROJECT=assethooks-ci
RECEIVER_SECRET=compose-test-secret

compose_ci() {
  COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT KAFKA_PORT=${COMPOSE_KAFKA_PORT:-29092} \
    POSTGRES_PORT=${COMPOSE_POSTGRES_PORT:-25432} ADMIN_PORT=${COMPOSE_ADMIN_PORT:-28080} \
    ASSETHOOKS_ALLOWED_CIDRS=172.29.213.0/24 ASSETHOOKS_ADMIN_TOKEN=compose-test-token \
    compose -f docker-compose.yml -f docker/compose-test.yml "$@"
}

compose_down() {
  compose_ci --profile admin --profile cli down -v --remove-orphans >/dev/null 2>&1 || true
}

wait_healthy() { # wait_healthy SERVICE SECONDS
  local id deadline=$((SECONDS + $2))
  id=$(compose_ci ps -q "$1")
  until [[ $(docker inspect -f '{{.State.Health.Status}}' "$id") == healthy ]]; do
    if ((SECONDS >= deadline)); then
      compose_ci logs --tail 30 "$1" >&2
      say "$1 not healthy within $2 s"
      return 1
    fi
    sleep 1
  done
}

compose_test() {
  images
  compose_down
  trap 'compose_down; stop_engine' EXIT
  step "docker compose up -d (Kafka, PostgreSQL, migrate, topics, dispatcher, retrier, projector, alerts, admin, receiver)"
  local out
  if ! out=$(compose_ci --profile admin up -d 2>&1); then
    echo "$out" >&2
    say "docker compose up failed"
    return 1
  fi
  wait_healthy kafka 120
  wait_healthy postgres 60
  step "the service processes are running"
  local deadline=$((SECONDS + 120)) service
  for service in dispatcher retrier projector alerts admin receiver; do
    until [[ $(docker inspect -f '{{.State.Running}}' "$(compose_ci ps -q "$service")" 2>/dev/null) == true ]]; do
      if ((SECONDS >= deadline)); then
        compose_ci logs --tail 30 "$service" >&2
        say "$service is not running"
        return 1
      fi
      sleep 1
    done
  done
  step "a webhook, created through docker compose run --rm cli"
  compose_ci run --rm --no-deps cli webhooks create --name "compose test" --url http://receiver:8080/hooks \
    --all-events --secret "$RECEIVER_SECRET" >&2
  step "publish examples/events.jsonl through docker compose run --rm -T cli"
  local expected
  expected=$(wc -l <examples/events.jsonl)
  compose_ci run --rm --no-deps -T cli publish --file - <examples/events.jsonl >&2
  step "$expected signed deliveries verified by the receiver in the compose network"
  deadline=$((SECONDS + 120))
  local verified=0
  local said
  while ((verified < expected)); do
    said=$(compose_ci logs --no-color receiver)
    verified=$(grep -c VERIFIED <<<"$said" || true)
    if grep -q REJECTED <<<"$said"; then
      echo "$said" >&2
      say "the receiver rejected a signature"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      compose_ci logs --tail 40 dispatcher receiver >&2
      say "only $verified of $expected deliveries verified within 120 s"
      return 1
    fi
    sleep 1
  done
  say "$verified of $expected deliveries verified"
  step "the delivery log in PostgreSQL and the admin API on 127.0.0.1"
  local logged=0
  deadline=$((SECONDS + 30))
  until ((logged >= expected)); do # the log is written in batches, shortly after the deliveries
    logged=$(compose_ci run --rm --no-deps -T cli logs --status ok --json 2>/dev/null |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])')
    ((SECONDS < deadline)) || { say "the delivery log holds $logged successes, not $expected"; return 1; }
    ((logged >= expected)) || sleep 1
  done
  local listed
  listed=$(curl -fsS -H "Authorization: Bearer compose-test-token" \
    "http://127.0.0.1:${COMPOSE_ADMIN_PORT:-28080}/api/webhooks") || listed=""
  grep -q '"compose test"' <<<"$listed" || {
    say "the admin API did not list the webhook"
    return 1
  }
  step "docker compose down -v"
  compose_down
  trap stop_engine EXIT
  local left
  left=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT"
    docker network ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT"
    docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT")
  [[ -z $left ]] || { say "left behind: $left"; return 1; }
  print_steps
  say "compose-test passed"
}

# -- testcontainers --------------------------------------------------------------------------------------

# The slice of the suite run on testcontainers: the stores on PostgreSQL, the topics, the delivery ledger,
# and the pipeline end to end (signed deliveries, a foreign producer, retries, dead letters, a kill -9).
P=tests/test_pipeline.py
TESTCONTAINERS_SLICE=(
  tests/test_foundation.py tests/test_ledger.py
  "$P::test_every_matching_active_webhook_gets_one_signed_delivery"
  "$P::test_events_published_by_a_plain_kafka_client_are_delivered"
  "$P::test_a_flaky_receiver_gets_the_delivery_on_attempt_three_with_one_delivery_id"
  "$P::test_a_receiver_that_always_fails_ends_in_the_dead_letter_topic_with_its_history"
  "$P::test_malformed_records_go_to_the_dead_letter_topic_and_the_rest_is_delivered"
  "$P::test_a_dispatcher_killed_mid_stream_loses_nothing"
)

test_containers() {
  images
  step "pytest on testcontainers (${#TESTCONTAINERS_SLICE[@]} files or tests; see TESTCONTAINERS_SLICE)"
  # No registry serves the testcontainers reaper image; the fixtures stop their containers themselves.
  env -u KAFKA_BOOTSTRAP_SERVERS -u ASSETHOOKS_TEST_POSTGRES_URL \
    ASSETHOOKS_TEST_CONTAINERS=1 ASSETHOOKS_TEST_KAFKA_IMAGE=$KAFKA_IMAGE \
    ASSETHOOKS_TEST_POSTGRES_IMAGE=$POSTGRES_IMAGE TESTCONTAINERS_RYUK_DISABLED=true \
    .venv/bin/pytest -q "${TESTCONTAINERS_SLICE[@]}"
  print_steps
}

# -- fresh-check -----------------------------------------------------------------------------------------

fresh_check() {
  step "base image $BASE_IMAGE"
  base_image
  local network=assethooks-fresh-check name=assethooks-fresh-check
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker network rm "$network" >/dev/null 2>&1 || true
  docker network create "$network" >/dev/null
  trap 'docker rm -f '"$name"' >/dev/null 2>&1; docker network rm '"$network"' >/dev/null 2>&1; stop_engine' EXIT
  step "fresh container: the README's prerequisites, a clone of HEAD"
  # --init: an init reaps what the tests kill (a bare `sleep` as PID 1 would leave zombies that look alive);
  # IPv6 on: a fresh machine has ::1, which the tests use.
  docker run -d --name "$name" --network "$network" --init --sysctl net.ipv6.conf.all.disable_ipv6=0 \
    --shm-size 1g -v "$ROOT:/origin:ro" -v "$LOCAL_CA:/local-ca:ro" \
    -e PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$BASE_IMAGE" sleep infinity >/dev/null
  docker exec "$name" bash -euo pipefail -c '
    mkdir -p /usr/local/share/ca-certificates
    cp /local-ca/*.crt /usr/local/share/ca-certificates/ 2>/dev/null || true
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null
    update-ca-certificates >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv openjdk-17-jdk-headless make git >/dev/null
    git clone -q /origin /project' >&2
  step "make demo"
  docker exec -w /project "$name" make demo >"$STATE/fresh-demo.log" 2>&1 || {
    tail -n 40 "$STATE/fresh-demo.log" >&2
    say "make demo failed in the fresh container (log: $STATE/fresh-demo.log)"
    return 1
  }
  step "make test"
  docker exec -w /project "$name" make test >"$STATE/fresh-test.log" 2>&1 || {
    tail -n 40 "$STATE/fresh-test.log" >&2
    say "make test failed in the fresh container (log: $STATE/fresh-test.log)"
    return 1
  }
  tail -n 3 "$STATE/fresh-test.log" >&2
  print_steps
  say "fresh-check passed (logs: $STATE/fresh-demo.log, $STATE/fresh-test.log)"
}

case ${1:-} in
  images | compose-test | test-containers | fresh-check)
    command=${1//-/_}
    if need_engine; then
      trap stop_engine EXIT
      "$command"
    fi
    ;;
  *)
    echo "usage: $0 images|compose-test|test-containers|fresh-check" >&2
    exit 2
    ;;
esac
