#!/usr/bin/env bash
# Applies one impairment profile to the veth between the namespaces made by
# netns-setup.sh, in both directions (each namespace's end gets the same
# settings). Re-running replaces the previous profile; no flags clears it.
#
# Usage: netns-impair.sh [--suite FILE --profile NAME]
#                        [--loss P] [--delay-ms N] [--jitter-ms N]
#                        [--reorder P] [--duplicate P] [--corrupt P]
#                        [--rate RATE] [--rate-burst SIZE] [--strict]
#   P is a fraction between 0 and 1 (0.1 = 10 %); RATE and SIZE use tc's
#   units (10mbit, 32kb; SIZE is tbf's bucket). --suite/--profile applies a
#   suite profile, translated by `risp-udp netem-args`. --strict exits with
#   status 2 when any requested impairment could not be applied.
#   env: RISP_NS_PREFIX (default "risp"), RISP_UDP_BIN (for --suite)
#
# With sch_netem: a root netem qdisc on each end (tbf beneath it for --rate).
# Without it: loss through nftables "numgen random" drop rules for udp and
# tcp, rate through tbf, and a plain list of what could not be applied.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$here/common.sh"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

loss=0 delay_ms=0 jitter_ms=0 reorder=0 duplicate=0 corrupt=0
rate="" rate_burst="32kb" strict=0 suite="" profile=""

# is_fraction VALUE: a decimal between 0 and 1.
is_fraction() {
    [[ "$1" =~ ^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$ ]]
}
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
positive() { awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }
# percent FRACTION: "12.5" for 0.125 (netem's unit).
percent() { awk -v v="$1" 'BEGIN { printf "%g", v * 100 }'; }
# per_mille FRACTION: rounded, for nftables "numgen random mod 1000".
per_mille() { awk -v v="$1" 'BEGIN { printf "%d", v * 1000 + 0.5 }'; }

# A suite profile first: its flags go in front of the command line's, so
# flags given by hand still override it.
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --suite) suite="${args[i + 1]:-}" ;;
        --profile) profile="${args[i + 1]:-}" ;;
    esac
done
if [[ -n "$suite" || -n "$profile" ]]; then
    [[ -n "$suite" && -n "$profile" ]] || die "--suite and --profile go together"
    bin="$(risp_udp_bin)"
    profile_flags="$("$bin" netem-args --suite "$suite" --profile "$profile")" ||
        die "profile '$profile' of $suite cannot be applied (see above)"
    # shellcheck disable=SC2206 # the flags are words without spaces
    set -- $profile_flags "$@"
fi

while [[ $# -gt 0 ]]; do
    flag="$1"
    case "$flag" in
        -h|--help) usage; exit 0 ;;
        --strict) strict=1; shift; continue ;;
        --suite|--profile) shift 2; continue ;;
        --burst) die "--burst is now --rate-burst (tbf's bucket); --burst means the mean loss-burst length elsewhere" ;;
        --loss|--reorder|--duplicate|--corrupt|--delay-ms|--jitter-ms|--rate|--rate-burst) ;;
        *) die "unknown flag '$flag' (try --help)" ;;
    esac
    [[ $# -ge 2 ]] || die "$flag needs a value"
    value="$2"
    shift 2
    case "$flag" in
        --loss|--reorder|--duplicate|--corrupt)
            is_fraction "$value" || die "$flag wants a fraction between 0 and 1, got '$value'"
            ;;
        --delay-ms|--jitter-ms)
            is_uint "$value" || die "$flag wants whole milliseconds, got '$value'"
            ;;
        --rate|--rate-burst)
            [[ "$value" =~ ^[0-9]+(\.[0-9]+)?[A-Za-z]*$ ]] || die "$flag wants a tc size or rate such as 10mbit, got '$value'"
            ;;
    esac
    case "$flag" in
        --loss) loss="$value" ;;
        --reorder) reorder="$value" ;;
        --duplicate) duplicate="$value" ;;
        --corrupt) corrupt="$value" ;;
        --delay-ms) delay_ms="$value" ;;
        --jitter-ms) jitter_ms="$value" ;;
        --rate) rate="$value" ;;
        --rate-burst) rate_burst="$value" ;;
    esac
done

require_root
need_cmd ip iproute2
need_cmd tc iproute2
for ns in "$NS_A" "$NS_B"; do
    ns_exists "$ns" || die "namespace $ns does not exist; run netns-setup.sh first"
done

if positive "$jitter_ms" && ! positive "$delay_ms"; then
    die "--jitter-ms needs --delay-ms (jitter varies the delay)"
fi
if positive "$reorder" && ! positive "$delay_ms"; then
    die "--reorder needs --delay-ms (netem reorders by sending some packets without the delay)"
fi

# What netem would be asked for.
netem_args=()
positive "$loss" && netem_args+=(loss "$(percent "$loss")%")
if positive "$delay_ms"; then
    netem_args+=(delay "${delay_ms}ms")
    positive "$jitter_ms" && netem_args+=("${jitter_ms}ms")
fi
positive "$reorder" && netem_args+=(reorder "$(percent "$reorder")%")
positive "$duplicate" && netem_args+=(duplicate "$(percent "$duplicate")%")
positive "$corrupt" && netem_args+=(corrupt "$(percent "$corrupt")%")

clear_profile() {
    local ns
    for ns in "$NS_A" "$NS_B"; do
        tc -n "$ns" qdisc del dev "$VETH" root >/dev/null 2>&1 || true
        if command -v nft >/dev/null 2>&1; then
            in_ns "$ns" nft delete table inet "$NFT_TABLE" >/dev/null 2>&1 || true
        fi
    done
}

tbf_args() { echo tbf rate "$rate" burst "$rate_burst" latency 200ms; }

applied=()
not_applied=()

clear_profile

use_netem=0
if [[ ${#netem_args[@]} -gt 0 ]]; then
    if err="$(tc -n "$NS_A" qdisc add dev "$VETH" root handle 1: netem "${netem_args[@]}" 2>&1)"; then
        use_netem=1
        tc -n "$NS_B" qdisc add dev "$VETH" root handle 1: netem "${netem_args[@]}"
        applied+=("netem ${netem_args[*]} (tc, both directions)")
    else
        log "sch_netem is not available here ($err); falling back to nftables for loss"
    fi
fi

if [[ -n "$rate" ]]; then
    for ns in "$NS_A" "$NS_B"; do
        # shellcheck disable=SC2046 # tbf_args is a fixed list of words
        if [[ $use_netem -eq 1 ]]; then
            tc -n "$ns" qdisc add dev "$VETH" parent 1:1 handle 10: $(tbf_args)
        else
            tc -n "$ns" qdisc add dev "$VETH" root handle 10: $(tbf_args)
        fi
    done
    applied+=("rate $rate (tbf, bucket $rate_burst, both directions)")
fi

if [[ $use_netem -eq 0 ]]; then
    if positive "$loss"; then
        if command -v nft >/dev/null 2>&1; then
            n="$(per_mille "$loss")"
            # numgen's "mod 1000" yields 0..999, so "< 1000" is out of its
            # range: total loss is a plain drop.
            match="numgen random mod 1000 < $n"
            [[ $n -ge 1000 ]] && match=""
            for ns in "$NS_A" "$NS_B"; do
                # Dropped on the receiving side (prerouting, before conntrack):
                # a drop in the sender's output hook would fail its sendmsg
                # with EPERM instead of losing the packet silently. Each
                # namespace dropping its ingress is the peer's egress loss.
                in_ns "$ns" nft -f - <<NFT
table inet $NFT_TABLE {
    chain ingress {
        type filter hook prerouting priority -300; policy accept;
        iifname "$VETH" meta l4proto { tcp, udp } $match counter drop
    }
}
NFT
            done
            applied+=("loss $(percent "$loss")% as $n/1000 (nftables numgen, udp and tcp, both directions)")
        else
            not_applied+=("loss $(percent "$loss")% (no sch_netem and no 'nft'; install nftables)")
        fi
    fi
    positive "$delay_ms" && not_applied+=("delay ${delay_ms} ms")
    positive "$jitter_ms" && not_applied+=("jitter ${jitter_ms} ms")
    positive "$reorder" && not_applied+=("reorder $(percent "$reorder")%")
    positive "$duplicate" && not_applied+=("duplicate $(percent "$duplicate")%")
    positive "$corrupt" && not_applied+=("corrupt $(percent "$corrupt")%")
fi

if [[ ${#applied[@]} -eq 0 && ${#not_applied[@]} -eq 0 ]]; then
    log "applied: nothing (clean link)"
fi
for a in "${applied[@]}"; do
    log "applied: $a"
done
for n in "${not_applied[@]}"; do
    log "NOT APPLIED: $n (this kernel has no sch_netem; nftables can only drop)"
done
if [[ ${#not_applied[@]} -gt 0 && $strict -eq 1 ]]; then
    exit 2
fi
exit 0
