#!/usr/bin/env bash
# Creates the namespaces "$RISP_NS_PREFIX-a" (10.99.0.1) and
# "$RISP_NS_PREFIX-b" (10.99.0.2) joined by a veth pair, with segmentation
# and receive offloads off so impairments apply per packet.
#
# Usage: netns-setup.sh        (env: RISP_NS_PREFIX, default "risp")
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$here/common.sh"

no_args "$@"

require_root
need_cmd ip iproute2
for ns in "$NS_A" "$NS_B"; do
    if ns_exists "$ns"; then
        die "namespace $ns already exists; run netns-teardown.sh (same RISP_NS_PREFIX) first"
    fi
done

# Undo a half-done setup.
undo_on_failure() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        log "setup failed; removing what was created"
        "$here/netns-teardown.sh" || true
    fi
}
trap undo_on_failure EXIT

ip netns add "$NS_A"
ip netns add "$NS_B"
ip -n "$NS_A" link add "$VETH" type veth peer name "$VETH" netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/$ADDR_PREFIX_LEN" dev "$VETH"
ip -n "$NS_B" addr add "$ADDR_B/$ADDR_PREFIX_LEN" dev "$VETH"
for ns in "$NS_A" "$NS_B"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$VETH" up
done

if command -v ethtool >/dev/null 2>&1; then
    for ns in "$NS_A" "$NS_B"; do
        # Without this the kernel hands 64 KB TCP super-packets to the qdisc,
        # and one "lost packet" would be dozens of segments.
        in_ns "$ns" ethtool -K "$VETH" tso off gso off gro off >/dev/null 2>&1 \
            || log "warning: ethtool could not turn offloads off in $ns"
        # UDP GSO super-packets would otherwise cross the veth whole (older
        # ethtool versions do not know this feature name; that is fine).
        in_ns "$ns" ethtool -K "$VETH" tx-udp-segmentation off >/dev/null 2>&1 || true
    done
else
    log "warning: ethtool not found (package 'ethtool'); offloads stay on, so TCP loss applies per super-packet"
fi

log "ready: $NS_A ($ADDR_A) <-> $NS_B ($ADDR_B) on $VETH"
