#!/usr/bin/env bash
# Runs the tests that cross real sockets, the kernel or the scheduler (the
# real-socket, netns and CLI test binaries) N times while a CPU hog keeps
# every core busy, and prints how often each test failed. A test that
# passes alone but fails here depends on timing, not on what it checks.
#
# Usage: scripts/flaky.sh [N] [--no-load] [--targets "a b ..."] [--timeout S]
#                          [--max-minutes M]
#   N            iterations (default 5)
#   --no-load    no CPU hog (to tell load-dependence from plain flakiness)
#   --targets    test targets to run (default: every real-socket, netns and
#                CLI target; shim is netem's)
#   --timeout S  limit on one run of one test binary (default 300); a run
#                over it counts as a failure named "<target> (timeout)"
#   --max-minutes M  start no iteration after M minutes (default 60); the
#                table then counts the iterations that ran
# Builds once (cargo test --release --no-run), then runs the test binaries
# directly, so nothing is rebuilt between iterations. Prints a table
# "test  failures/N" of every test that failed at least once, the logs of
# the first failures, and exits 1 if any test failed (0 when none did).
# Where others build in the same tree meanwhile, give it a target folder of
# its own (CARGO_TARGET_DIR=...): a risp-udp rebuilt at another commit no
# longer matches the test binaries' idea of its version.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }

n=5 load=1 per_run_timeout=300 max_minutes=60
targets="cli_args cli_completion cli_hist cli_terminal cli_transfer loopback_transfers
net_batch net_failover net_sessions netns_kernel store_redis tcp_transfer shim"
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --no-load) load=0; shift ;;
        --targets|--timeout|--max-minutes)
            [[ $# -ge 2 ]] || { echo "flaky.sh: $1 needs a value" >&2; exit 2; }
            case "$1" in
                --targets) targets="$2" ;;
                --timeout) per_run_timeout="$2" ;;
                *) max_minutes="$2" ;;
            esac
            shift 2
            ;;
        *)
            [[ "$1" =~ ^[0-9]+$ && "$1" -gt 0 ]] || { echo "flaky.sh: unexpected argument '$1' (try --help)" >&2; exit 2; }
            n="$1"; shift
            ;;
    esac
done
for v in "$per_run_timeout" "$max_minutes"; do
    [[ "$v" =~ ^[0-9]+$ && "$v" -gt 0 ]] \
        || { echo "flaky.sh: --timeout and --max-minutes want positive whole numbers" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "flaky.sh: needs jq" >&2; exit 2; }

work="$(mktemp -d)"
hogs=()
# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
    local pid
    for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "flaky.sh: building the test binaries (cargo test --workspace --release --no-run)"
cargo test --workspace --release --no-run --message-format=json 2>"$work/build.err" >"$work/build.json" \
    || { cat "$work/build.err" >&2; exit 2; }
# "target path" for each test target wanted, with its package directory.
declare -A binary dir
while IFS=$'\t' read -r name exe manifest; do
    binary[$name]="$exe"
    dir[$name]="$(dirname "$manifest")"
done < <(jq -r 'select(.reason == "compiler-artifact" and .target.kind == ["test"] and .executable != null)
    | [.target.name, .executable, .manifest_path] | @tsv' "$work/build.json")
for t in $targets; do
    [[ -n "${binary[$t]:-}" ]] || { echo "flaky.sh: no test target '$t'" >&2; exit 2; }
done

if [[ $load -eq 1 ]]; then
    cores="$(nproc)"
    for _ in $(seq "$cores"); do
        yes >/dev/null &
        hogs+=("$!")
    done
    echo "flaky.sh: $cores CPU hogs running (yes > /dev/null)"
fi

declare -A failures=()
started=$SECONDS
tests_seen=0
ran=0
for i in $(seq "$n"); do
    if [[ $((SECONDS - started)) -ge $((max_minutes * 60)) ]]; then
        echo "flaky.sh: --max-minutes $max_minutes reached: stopping after $ran of $n iterations"
        break
    fi
    ran=$i
    for t in $targets; do
        log="$work/$t.$i.log"
        status=0
        (cd "${dir[$t]}" && timeout --kill-after=10 "$per_run_timeout" "${binary[$t]}" >"$log" 2>&1) || status=$?
        while read -r name; do
            key="$t::$name"
            failures[$key]=$((${failures[$key]:-0} + 1))
            [[ -e "$work/first.$key" ]] || cp "$log" "$work/first.$key"
        done < <(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log")
        if [[ $status -ge 124 ]]; then
            key="$t (timeout)"
            failures[$key]=$((${failures[$key]:-0} + 1))
            [[ -e "$work/first.$key" ]] || cp "$log" "$work/first.$key"
        elif [[ $status -ne 0 ]] && ! grep -q '\.\.\. FAILED$' "$log"; then
            key="$t (exit $status)"
            failures[$key]=$((${failures[$key]:-0} + 1))
            [[ -e "$work/first.$key" ]] || cp "$log" "$work/first.$key"
        fi
        [[ $i -eq 1 ]] && tests_seen=$((tests_seen + $(grep -c '^test .* \.\.\. ' "$log" || true)))
    done
    total=0
    for key in "${!failures[@]}"; do total=$((total + failures[$key])); done
    echo "flaky.sh: iteration $i/$n done at $((SECONDS - started)) s, $total failures so far"
done

echo
echo "flaky.sh: $tests_seen tests in $(wc -w <<<"$targets") binaries, $ran iterations, load=$([[ $load -eq 1 ]] && echo "$(nproc) hogs" || echo none), $((SECONDS - started)) s"
if [[ ${#failures[@]} -eq 0 ]]; then
    echo "flaky.sh: 0 failures"
    exit 0
fi
printf '%-80s  %s\n' test failures
for key in "${!failures[@]}"; do
    printf '%-80s  %s/%s\n' "$key" "${failures[$key]}" "$ran"
done | sort
for key in "${!failures[@]}"; do
    echo
    echo "--- first failure of $key (last 40 lines) ---"
    tail -n 40 "$work/first.$key"
done
exit 1
