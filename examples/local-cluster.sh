#!/usr/bin/env bash
# A Minotaur cluster of three OS processes on 127.0.0.1:
#   1. starts minotaur-node n1, n2 and n3 (cluster ports 7101-7103, HTTP
#      ports 7111-7113; set BASE_PORT to move them),
#   2. creates a game through n1's HTTP endpoint and registers an attack,
#   3. stops n1 with SIGTERM: a graceful leave, n1 hands its games over,
#   4. reads the same game through n2's HTTP endpoint.
# Needs curl. Logs go to a temporary directory, printed at the end.
# The integration test examples/tests/multi_process.rs does the same.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_PORT=${BASE_PORT:-7100}
cargo build --release -p minotaur-examples --bin minotaur-node
BIN="${CARGO_TARGET_DIR:-target}/release/minotaur-node"
# A fresh random cluster cookie, unless one is given.
random_secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
export MINOTAUR_COOKIE=${MINOTAUR_COOKIE:-$(random_secret)}
# The operator's token, and the key every node signs players' tokens with.
export MINOTAUR_OPERATOR_TOKEN=${MINOTAUR_OPERATOR_TOKEN:-$(random_secret)}
export MINOTAUR_PLAYER_KEY=${MINOTAUR_PLAYER_KEY:-$(random_secret)}
OPERATOR=(-H "authorization: Bearer $MINOTAUR_OPERATOR_TOKEN")
LOGS=$(mktemp -d)
declare -A PIDS

cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
    echo "logs: $LOGS"
}
trap cleanup EXIT

cluster_port() { echo $((BASE_PORT + $1)); }
http_port() { echo $((BASE_PORT + 10 + $1)); }

start() { # start <index> [extra flags...]
    local i=$1
    shift
    # --placement local: a game lives on the node it was created through,
    # so the game below is on n1 and has to move when n1 leaves.
    "$BIN" --name "n$i" --listen "127.0.0.1:$(cluster_port "$i")" \
        --http "127.0.0.1:$(http_port "$i")" --placement local "$@" \
        >"$LOGS/n$i.out" 2>"$LOGS/n$i.log" &
    PIDS[$i]=$!
}

# Polls a command for up to 10 s.
wait_for() { # wait_for <what> <command...>
    local what=$1
    shift
    for _ in $(seq 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $what" >&2
    exit 1
}

three_up() { # three_up <index>: node i sees three members up
    [ "$(curl -sf "${OPERATOR[@]}" "http://127.0.0.1:$(http_port "$1")/cluster" | grep -o '"status":"up"' | wc -l)" -eq 3 ]
}

start 1
wait_for "n1" curl -sf "http://127.0.0.1:$(http_port 1)/health"
start 2 --seed "127.0.0.1:$(cluster_port 1)"
start 3 --seed "127.0.0.1:$(cluster_port 1)"
for i in 1 2 3; do wait_for "n$i to see three members" three_up "$i"; done
echo "== cluster as n1 sees it"
curl -s "${OPERATOR[@]}" "http://127.0.0.1:$(http_port 1)/cluster"
echo

echo "== create a game through n1"
GAME=$(curl -sf -X POST "${OPERATOR[@]}" "http://127.0.0.1:$(http_port 1)/games" \
    -H 'content-type: application/json' \
    -d '{"join_code":"LABY","users":["ann","bob"]}')
ID=$(echo "$GAME" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
# Each player gets their own token with the game; ann's acts as ann only.
ANN=$(echo "$GAME" | grep -o '"ann":"[^"]*"' | cut -d'"' -f4)
echo "game $ID"
echo "== ann attacks bob through n1, with ann's token"
curl -sf -X POST "http://127.0.0.1:$(http_port 1)/games/$ID/attacks" \
    -H "authorization: Bearer $ANN" \
    -H 'content-type: application/json' -d '{"user":"ann","target":"bob"}' |
    grep -o '"version":[0-9]*'

echo "== SIGTERM n1 (graceful leave)"
kill -TERM "${PIDS[1]}"
wait "${PIDS[1]}"
unset 'PIDS[1]'
grep -h "handed sessions over" "$LOGS/n1.log" || true

echo "== the same game through n2"
curl -sf -H "authorization: Bearer $ANN" "http://127.0.0.1:$(http_port 2)/games/$ID" | grep -o '"version":[0-9]*\|"actions":\[[^]]*\]'
echo "== cluster as n2 sees it"
curl -s "${OPERATOR[@]}" "http://127.0.0.1:$(http_port 2)/cluster"
echo
