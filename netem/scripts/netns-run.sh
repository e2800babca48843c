#!/usr/bin/env bash
# One transfer through the namespaces: sets them up, applies the profile,
# starts the server in "$RISP_NS_PREFIX-a" and the client in
# "$RISP_NS_PREFIX-b", prints the client's report (JSON) on stdout and exits
# with the client's status. The client starts once the server has printed
# its "listening" line. Everything is torn down on exit, error or ^C.
#
# Usage: netns-run.sh [--tcp] [--len N] [--port P] [IMPAIRMENT FLAGS...]
#   --tcp        run risp-udp tcp-server / tcp-client instead of server / client
#   --len N      values to transfer (default 100000)
#   --port P     server port (default 8081, or 9081 with --tcp)
#   IMPAIRMENT FLAGS are passed to netns-impair.sh (--loss 0.1 --delay-ms 20 ...)
#   env: RISP_UDP_BIN   binary (default target/release/risp-udp in the repo)
#        RISP_NS_PREFIX namespace prefix (default "risp")
#        RISP_RUN_TIMEOUT seconds the client may take (default 120)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$here/common.sh"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

tcp=0 len=100000 port="" impair_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --tcp) tcp=1; shift ;;
        --len|--port)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "$1 wants a whole number"
            if [[ "$1" == --len ]]; then len="$2"; else port="$2"; fi
            shift 2
            ;;
        --strict) impair_args+=("$1"); shift ;;
        --*)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            impair_args+=("$1" "$2")
            shift 2
            ;;
        *) die "unexpected argument '$1' (try --help)" ;;
    esac
done
if [[ -z "$port" ]]; then
    if [[ $tcp -eq 1 ]]; then port=9081; else port=8081; fi
fi

bin="$(risp_udp_bin)"
run_timeout="${RISP_RUN_TIMEOUT:-120}"
require_root
need_cmd ip iproute2
need_cmd mkfifo coreutils
need_cmd timeout coreutils

for ns in "$NS_A" "$NS_B"; do
    # Checked before the teardown trap exists, so a clash never removes
    # namespaces that another run is using.
    if ns_exists "$ns"; then
        die "namespace $ns already exists (another run, or a leftover: netns-teardown.sh)"
    fi
done

workdir="$(mktemp -d)"
server_pid="" drain_pid=""

# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    # The drain ends by itself once the server's output closes.
    [[ -n "$drain_pid" ]] && { wait "$drain_pid" 2>/dev/null || true; }
    "$here/netns-teardown.sh" || true
    rm -rf "$workdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'log "failed at line $LINENO"' ERR

# Shows how many packets the impairment dropped, so a run at "10 % loss"
# proves that it lost something.
report_drops() {
    local ns counts
    for ns in "$NS_A" "$NS_B"; do
        counts="$(in_ns "$ns" nft list table inet "$NFT_TABLE" 2>/dev/null \
            | sed -n 's/.*counter packets \([0-9]*\).*/\1/p' || true)"
        [[ -n "$counts" ]] && log "nftables dropped $counts packets arriving in $ns"
        counts="$(tc -n "$ns" -s qdisc show dev "$VETH" 2>/dev/null \
            | awk '{ for (i = 1; i < NF; i++) if ($i == "dropped") { gsub(",", "", $(i+1)); n += $(i+1) } } END { print n + 0 }' || true)"
        [[ "${counts:-0}" != 0 ]] && log "qdiscs dropped $counts packets leaving $ns"
    done
    return 0
}

"$here/netns-setup.sh"
"$here/netns-impair.sh" "${impair_args[@]}"

if [[ $tcp -eq 1 ]]; then
    server_cmd=("$bin" tcp-server --bind "$ADDR_A:$port")
    ready_line="tcp-server listening on "
    # The client's own limit first, so it can say how far it got.
    client_cmd=("$bin" tcp-client "$len" --server "$ADDR_A:$port" --json
        --timeout-ms "$((run_timeout * 1000))")
else
    # --health-port 0: no health endpoint (nothing else to bind or clash).
    server_cmd=("$bin" server --bind "$ADDR_A" --port "$port" --health-port 0)
    ready_line="risp-udp server listening on udp "
    client_cmd=("$bin" client "$len" --server "$ADDR_A:$port" --json --no-progress)
fi

# The server's stdout and stderr go through a FIFO: the script reads it until
# the server says it is listening (it prints that line once its socket is
# bound), then a background cat keeps draining it into server.log.
mkfifo "$workdir/server.fifo"
ip netns exec "$NS_A" "${server_cmd[@]}" >"$workdir/server.fifo" 2>&1 &
server_pid=$!
exec 3<"$workdir/server.fifo"
ready=0
deadline=$((SECONDS + 10))
while [[ $SECONDS -lt $deadline ]] \
    && IFS= read -r -t "$((deadline - SECONDS))" line <&3; do
    printf '%s\n' "$line" >>"$workdir/server.log"
    if [[ "$line" == "$ready_line"* ]]; then
        ready=1
        break
    fi
done
cat <&3 >>"$workdir/server.log" &
drain_pid=$!
exec 3<&-
if [[ $ready -ne 1 ]]; then
    if kill -0 "$server_pid" 2>/dev/null; then
        log "server did not say it was listening within 10 s:"
    else
        log "server exited before listening:"
    fi
    sed 's/^/  server: /' "$workdir/server.log" >&2
    exit 1
fi

client_status=0
# The tcp-client stops itself at RISP_RUN_TIMEOUT; this bound is the backstop
# for it and the only limit on the risp-udp client.
outer_limit="$run_timeout"
[[ $tcp -eq 1 ]] && outer_limit=$((run_timeout + 5))
timeout --kill-after=5 "$outer_limit" \
    ip netns exec "$NS_B" "${client_cmd[@]}" >"$workdir/client.out" 2>"$workdir/client.err" \
    || client_status=$?

cat "$workdir/client.out"
if [[ $client_status -ne 0 ]]; then
    if [[ $client_status -eq 124 || $client_status -eq 137 ]] \
        || grep -q 'no complete transfer within' "$workdir/client.err"; then
        log "client timed out: no complete transfer within ${run_timeout} s (RISP_RUN_TIMEOUT)"
    fi
    log "client exited with status $client_status"
    sed 's/^/  client: /' "$workdir/client.err" >&2
    sed 's/^/  server: /' "$workdir/server.log" >&2
fi
report_drops
exit "$client_status"
