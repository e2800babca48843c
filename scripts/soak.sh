#!/usr/bin/env bash
# Soak: one server, CLIENTS sessions kept running with loss and a killswitch
# for SECONDS; samples the server's resident memory every 10 s and prints
# the series. Usage: scripts/soak.sh [CLIENTS] [SECONDS] [LEN] [LOSS] [KILLSWITCH_MS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
clients=${1:-1000}
seconds=${2:-300}
len=${3:-20000}
loss=${4:-0.05}
kill_ms=${5:-2000}
cargo build --release --quiet --bin risp-udp --example soak
port=$((20000 + RANDOM % 20000))
./target/release/risp-udp server --port "$port" --health-port 0 --max-sessions 2048 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 0.5   # the server prints its banner once bound; a short grace suffices here
./target/release/examples/soak "127.0.0.1:$port" "$clients" "$len" "$loss" "$kill_ms" "$seconds" &
soak=$!
echo "t_s rss_kib"
t=0
while kill -0 "$soak" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
    echo "$t $rss"
    sleep 10
    t=$((t + 10))
done
wait "$soak"
