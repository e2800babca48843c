#!/usr/bin/env bash
# Removes the namespaces created by netns-setup.sh, with everything in them
# (veth pair, qdiscs, nftables tables). Processes still running inside them
# are sent SIGTERM first. Safe to run any number of times.
#
# Usage: netns-teardown.sh     (env: RISP_NS_PREFIX, default "risp")
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$here/common.sh"

no_args "$@"

require_root
need_cmd ip iproute2
for ns in "$NS_A" "$NS_B"; do
    if ns_exists "$ns"; then
        # Only processes inside a namespace we created: our own server/client.
        pids="$(ip netns pids "$ns" 2>/dev/null || true)"
        if [[ -n "$pids" ]]; then
            # shellcheck disable=SC2086 # one pid per word
            kill -TERM $pids 2>/dev/null || true
        fi
        ip netns del "$ns" || log "warning: could not delete namespace $ns"
    fi
done
