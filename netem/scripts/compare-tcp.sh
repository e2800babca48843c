#!/usr/bin/env bash
# risp-udp and plain TCP over the same namespaces and the same loss, one
# table: for each loss rate, one transfer with each protocol (netns-run.sh).
#
# Usage: compare-tcp.sh [--losses "0 0.1 0.3"] [--len N] [--timeout S]
#                       [--tcp-only] [--markdown] [IMPAIRMENT FLAGS...]
#   --losses LIST  loss fractions, one row pair each (default "0 0.1 0.3")
#   --len N        values per transfer (default 20000: TCP at 30 % loss
#                  backs off for seconds at a time, and longer runs get slow)
#   --timeout S    seconds one transfer may take before its row says
#                  "timeout" (default 60; sets RISP_RUN_TIMEOUT)
#   --tcp-only     skip the risp-udp rows
#   --markdown     print the table as a Markdown table
#   IMPAIRMENT FLAGS other than --loss apply to every row (see netns-impair.sh)
#   env: as netns-run.sh (RISP_UDP_BIN, RISP_NS_PREFIX)
# Columns: elapsed_ms, values/s, longest_stall_ms (and, for TCP, connect_ms:
# the handshake, which longest_stall_ms does not include) as the clients
# report them; dropped is what the impairment dropped (both directions).
# Exits non-zero when any transfer failed, timed out or was not verified.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$here/common.sh"

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

losses="0 0.1 0.3" len=20000 run_timeout=60 tcp_only=0 markdown=0 extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --tcp-only) tcp_only=1; shift ;;
        --markdown) markdown=1; shift ;;
        --strict) extra+=("$1"); shift ;;
        --*)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            case "$1" in
                --losses) losses="$2" ;;
                --len|--timeout)
                    [[ "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || die "$1 wants a positive whole number, got '$2'"
                    if [[ "$1" == --len ]]; then len="$2"; else run_timeout="$2"; fi
                    ;;
                --loss) die "use --losses for the list of loss rates" ;;
                *) extra+=("$1" "$2") ;;
            esac
            shift 2
            ;;
        *) die "unexpected argument '$1' (try --help)" ;;
    esac
done
need_cmd jq jq
[[ -n "${losses// /}" ]] || die "--losses is empty"
export RISP_RUN_TIMEOUT="$run_timeout"

protocols=(risp-udp tcp)
[[ $tcp_only -eq 1 ]] && protocols=(tcp)

logdir="$(mktemp -d)"
trap 'rm -rf "$logdir"' EXIT

# field JSON NAME: the value (numbers to one decimal), or "-" when absent.
field() { jq -r --arg k "$2" '.[$k] // "-" | if type == "number" then (. * 10 | round / 10 | tostring) else tostring end' <<<"$1"; }
# dropped LOG: packets the impairment dropped, summed over both namespaces.
dropped() {
    sed -n 's/.* dropped \([0-9][0-9]*\) packets.*/\1/p' "$1" | awk '{ n += $1 } END { print n + 0 }'
}

rows=()
failed=0
run=0
for loss in $losses; do
    for proto in "${protocols[@]}"; do
        run=$((run + 1))
        args=(--len "$len" --loss "$loss" "${extra[@]}")
        [[ "$proto" == tcp ]] && args=(--tcp "${args[@]}")
        log "loss $loss, $proto, $len values ..."
        out="" status=0
        out="$("$here/netns-run.sh" "${args[@]}" 2>"$logdir/$run.err")" || status=$?
        report="$(grep -m1 '^{' <<<"$out" || true)"
        pct="$(awk -v v="$loss" 'BEGIN { printf "%g%%", v * 100 }')"
        drops="$(dropped "$logdir/$run.err")"
        if [[ -z "$report" ]] || ! jq -e . >/dev/null 2>&1 <<<"$report"; then
            failed=1
            if grep -q 'client timed out' "$logdir/$run.err"; then
                rows+=("$pct|$proto|timeout (${run_timeout} s)|-|-|-|-|$drops")
                log "loss $loss, $proto: no complete transfer within $run_timeout s"
            else
                rows+=("$pct|$proto|error (exit $status)|-|-|-|-|$drops")
                log "loss $loss, $proto failed (exit $status):"
                tail -n 15 "$logdir/$run.err" | sed 's/^/  /' >&2
            fi
            continue
        fi
        verified="$(field "$report" verified)"
        [[ "$verified" == true && $status -eq 0 ]] || failed=1
        rows+=("$pct|$proto|$verified|$(field "$report" elapsed_ms)|$(field "$report" values_per_sec)|$(field "$report" longest_stall_ms)|$(field "$report" connect_ms)|$drops")
        grep -h 'NOT APPLIED' "$logdir/$run.err" | sed 's/^/  /' >&2 || true
    done
done

header=(loss protocol verified elapsed_ms values/s longest_stall_ms connect_ms dropped)
if [[ $markdown -eq 1 ]]; then
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${header[@]}"
    printf '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n'
    for row in "${rows[@]}"; do
        IFS='|' read -r -a cells <<<"$row"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${cells[@]}"
    done
else
    fmt='%-6s  %-9s  %-14s  %11s  %11s  %16s  %10s  %7s\n'
    # shellcheck disable=SC2059 # the format is ours
    printf "$fmt" "${header[@]}"
    for row in "${rows[@]}"; do
        IFS='|' read -r -a cells <<<"$row"
        # shellcheck disable=SC2059
        printf "$fmt" "${cells[@]}"
    done
fi
exit "$failed"
