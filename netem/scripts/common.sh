# shellcheck shell=bash disable=SC2034 # the names are used by the sourcing scripts
# Shared names and helpers for the netns scripts. Sourced, not run.
#
# Two namespaces, "$NS_A" (server side) and "$NS_B" (client side), joined by
# one veth pair whose two ends are both called "$VETH", each inside its own
# namespace: nothing is created in the caller's namespace, so parallel runs
# with different RISP_NS_PREFIX values cannot collide.

RISP_NS_PREFIX="${RISP_NS_PREFIX:-risp}"
NS_A="${RISP_NS_PREFIX}-a"
NS_B="${RISP_NS_PREFIX}-b"
VETH="risp0"
ADDR_A="10.99.0.1"
ADDR_B="10.99.0.2"
ADDR_PREFIX_LEN=24
# nftables table used by the loss fallback (one per namespace).
NFT_TABLE="risp_netem"

SCRIPT_NAME="$(basename "$0")"

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# For scripts that take no arguments: --help prints the script's header
# comment (lines 2-7), anything else is an error.
no_args() {
    [[ $# -eq 0 ]] && return 0
    case "$1" in
        -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unexpected argument '$1' (try --help)" ;;
    esac
}

# risp_udp_bin: the risp-udp binary ($RISP_UDP_BIN, default the release
# build in this repository), or die.
risp_udp_bin() {
    local repo_root bin
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    bin="${RISP_UDP_BIN:-$repo_root/target/release/risp-udp}"
    [[ -x "$bin" ]] || die "no executable at $bin (build with 'cargo build --release' or set RISP_UDP_BIN)"
    echo "$bin"
}

require_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (network namespaces need CAP_SYS_ADMIN)"
}

# need_cmd COMMAND PACKAGE
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install the '$2' package"
}

ns_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$1"
}

in_ns() {
    local ns="$1"
    shift
    ip netns exec "$ns" "$@"
}
