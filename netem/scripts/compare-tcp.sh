#!/usr/bin/env bash
# risp-udp and plain TCP over the same namespaces and the same loss, one
# table: for each loss rate, one transfer with each protocol (netns-run.sh).
#
# Usage: compare-tcp.sh [--losses "0 0.1 0.3"] [--len N] [--tcp-only]
#                       [IMPAIRMENT FLAGS...]
#   --losses LIST  loss fractions, one row pair each (default "0 0.1 0.3")
#   --len N        values per transfer (default 100000)
#   --tcp-only     skip the risp-udp rows
#   IMPAIRMENT FLAGS other than --loss apply to every row (see netns-impair.sh)
#   env: as netns-run.sh (RISP_UDP_BIN, RISP_NS_PREFIX, RISP_RUN_TIMEOUT)
# Exits non-zero when any transfer failed or was not verified.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$here/common.sh"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

losses="0 0.1 0.3" len=100000 tcp_only=0 extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --tcp-only) tcp_only=1; shift ;;
        --strict) extra+=("$1"); shift ;;
        --losses|--len|--*)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            case "$1" in
                --losses) losses="$2" ;;
                --len) len="$2" ;;
                --loss) die "use --losses for the list of loss rates" ;;
                *) extra+=("$1" "$2") ;;
            esac
            shift 2
            ;;
        *) die "unexpected argument '$1' (try --help)" ;;
    esac
done
need_cmd jq jq

protocols=(risp-udp tcp)
[[ $tcp_only -eq 1 ]] && protocols=(tcp)

logdir="$(mktemp -d)"
trap 'rm -rf "$logdir"' EXIT

# field JSON NAME: the value, or "-" when absent or null.
field() { jq -r --arg k "$2" '.[$k] // "-" | if type == "number" then (. * 10 | round / 10 | tostring) else tostring end' <<<"$1"; }

rows=()
failed=0
run=0
for loss in $losses; do
    for proto in "${protocols[@]}"; do
        run=$((run + 1))
        args=(--len "$len" --loss "$loss" "${extra[@]}")
        [[ "$proto" == tcp ]] && args=(--tcp "${args[@]}")
        log "loss $loss, $proto ..."
        out="" status=0
        out="$("$here/netns-run.sh" "${args[@]}" 2>"$logdir/$run.err")" || status=$?
        report="$(grep -m1 '^{' <<<"$out" || true)"
        pct="$(awk -v v="$loss" 'BEGIN { printf "%g%%", v * 100 }')"
        if [[ -z "$report" ]] || ! jq -e . >/dev/null 2>&1 <<<"$report"; then
            failed=1
            rows+=("$pct|$proto|error (exit $status)|-|-|-")
            log "loss $loss, $proto failed (exit $status):"
            tail -n 15 "$logdir/$run.err" | sed 's/^/  /' >&2
            continue
        fi
        verified="$(field "$report" verified)"
        [[ "$verified" == true && $status -eq 0 ]] || failed=1
        rows+=("$pct|$proto|$verified|$(field "$report" elapsed_ms)|$(field "$report" values_per_sec)|$(field "$report" longest_stall_ms)")
        grep -h 'NOT APPLIED\|dropped' "$logdir/$run.err" | sed 's/^/  /' >&2 || true
    done
done

printf '%-6s  %-9s  %-18s  %12s  %14s  %17s\n' loss protocol verified elapsed_ms values/s longest_stall_ms
for row in "${rows[@]}"; do
    IFS='|' read -r l p v e r s <<<"$row"
    printf '%-6s  %-9s  %-18s  %12s  %14s  %17s\n' "$l" "$p" "$v" "$e" "$r" "$s"
done
exit "$failed"
