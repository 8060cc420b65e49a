#!/usr/bin/env bash
# The end-to-end demo on embedded defaults: a local Kafka broker, a SQLite store, a local receiver that
# verifies signatures, one webhook, the sample events of examples/events.jsonl, and the signed deliveries
# printed as they arrive. Ends by itself; exits non-zero if a delivery is missing or fails verification.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=$ROOT/.venv/bin
DEMO=$ROOT/.local/demo
PORT=${DEMO_RECEIVER_PORT:-8787}
SECRET=demo-signing-secret
EVENTS=$ROOT/examples/events.jsonl
mkdir -p "$DEMO"

# Embedded defaults (SQLite file ./assethooks.db, topics asset-events, asset-webhooks.*), except that the
# demo receiver is on loopback, which deliveries may only reach when allowed.
export ASSETHOOKS_ALLOWED_CIDRS=127.0.0.0/8

step() { printf '\n== %s\n' "$*"; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

step "Kafka broker on 127.0.0.1:9092"
scripts/kafka-local.sh start

step "SQL store and topics"
"$BIN/assethooks" db upgrade
"$BIN/assethooks" topics ensure

step "a receiver on http://127.0.0.1:$PORT that verifies signatures"
"$BIN/assethooks" receiver --port "$PORT" --secret "$SECRET" >"$DEMO/received.log" 2>"$DEMO/receiver.err" &
pids+=($!)

step "the webhook (the seed's 'New Webhook' form)"
existing=$("$BIN/assethooks" webhooks list --json | "$BIN/python" -c 'import json,sys; print(" ".join(str(w["id"]) for w in json.load(sys.stdin) if w["name"] == "Demo receiver"))')
for id in $existing; do "$BIN/assethooks" webhooks delete "$id" --yes >/dev/null; done
"$BIN/assethooks" webhooks create --name "Demo receiver" --url "http://127.0.0.1:$PORT/hooks/assets" \
  --all-events --secret "$SECRET" --header "X-Api-Key: demo-key" 2>/dev/null
"$BIN/assethooks" webhooks list

step "dispatcher and retrier (assethooks run all)"
"$BIN/assethooks" run all --log-level WARNING >"$DEMO/run.log" 2>&1 &
pids+=($!)

step "publishing $(wc -l <"$EVENTS") sample events"
"$BIN/assethooks" publish --file "$EVENTS"

step "an asset whose warranty ends in 10 days, and the alerts cron producer"
asset=$((1000 + $(date +%s) % 100000)) # a new asset each run, so each run shows a new alert
"$BIN/assethooks" publish --event asset.created --asset-id "$asset" \
  --asset "{\"id\": $asset, \"name\": \"Dell Latitude 7440\", \"warranty_end_date\": \"$(date -u -d '+10 days' +%F)\"}"
for _ in $(seq 1 40); do # the projector (in `run all`) must have seen the asset first
  out=$("$BIN/assethooks" run alerts --once)
  echo "$out"
  grep -qE "[1-9][0-9]* sent|[1-9][0-9]* already sent" <<<"$out" && break
  sleep 0.5
done

step "deliveries as they arrive"
expected=$(($(wc -l <"$EVENTS") + 2)) # the samples, the new asset and its warranty alert
deadline=$((SECONDS + 60))
shown=0
while ((shown < expected)); do
  lines=$(wc -l <"$DEMO/received.log")
  if ((lines > shown)); then
    sed -n "$((shown + 1)),${lines}p" "$DEMO/received.log"
    shown=$lines
  elif ((SECONDS > deadline)); then
    echo "only $shown of $expected deliveries arrived within 60s; see $DEMO/run.log" >&2
    exit 1
  else
    sleep 0.2
  fi
done

if grep -q "SIGNATURE REJECTED" "$DEMO/received.log"; then
  echo "a delivery failed signature verification" >&2
  exit 1
fi
step "the admin page (the seed's Webhooks screen)"
ADMIN_PORT=${DEMO_ADMIN_PORT:-8080}
"$BIN/assethooks" serve --port "$ADMIN_PORT" >"$DEMO/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/api/webhooks" 2>/dev/null | grep -q "Demo receiver" && break
  sleep 0.25
done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/api/webhooks" | grep -q "Demo receiver"
echo "admin page: http://127.0.0.1:$ADMIN_PORT/ (answering now; after the demo: .venv/bin/assethooks serve)"

step "done: $expected signed deliveries received and verified (logs in $DEMO)"
