#!/usr/bin/env bash
# bench/soak.sh — fixedgate under steady mixed load with faults on a schedule, loopback only.
#
#   bash bench/soak.sh                 # 10 minutes (about 11 with setup)
#   DURATION=30m bash bench/soak.sh    # longer; any Go duration of at least 60s
#
# The soak is the end-to-end test TestSoak (cmd/fixedgate/soak_test.go), which starts the real
# binary, a fleet of 12 HTTPS backends, a DNS server (miekg/dns), an HTTPS origin, an echo
# server and Pebble (ACME, 30-second certificates) on 127.0.0.0/8. Load through every door:
# HTTP/1.1 and HTTP/2 gateway requests, CONNECT over the plain and the TLS listener (keep-alive
# tunnels and a new tunnel per request), absolute-form requests re-encrypted upstream, busy
# tunnels (256 KiB each way through the echo server) and 16 idle tunnels that send a request
# now and then. Faults, on a schedule over the middle two thirds: backends die, flap and come
# back; DNS rotates subsets, answers SERVFAIL, then shrinks and grows the fleet; the config is
# reloaded twice; the contract puts an announced egress address in service and retires the old
# one; the certificate renews throughout.
#
# It prints a table per minute (requests, failures and their reasons, p50/p99 latency, the
# proxy's RSS, goroutines, open descriptors and tunnels, the faults of that minute, the egress
# addresses the far ends saw) and fails when a request failed outside a window a fault
# explains, when anything left from the retired egress address after its retirement, or when
# RSS, goroutines or descriptors at the end are more than 10% above their level after warm-up.
# CI (.ci/run) runs the same soak for 60 seconds.
#
# Knobs (environment): DURATION (10m), KEEP (a directory to keep the proxy's full log, its
# config and the contract in; default a temp dir that is removed), RACE=1 (build the proxy with
# -race: slower, more memory, finds data races under faults).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"

DURATION=${DURATION:-10m}
RACE=${RACE:-0}
command -v pebble >/dev/null || go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1

args=(-v -count=1 -timeout 0 -run '^TestSoak$')
[[ $RACE == 1 ]] && args+=(-race)
if [[ -n ${KEEP:-} ]]; then
  mkdir -p "$KEEP"
  export SOAK_DIR="$KEEP"
fi
echo "soak: $DURATION, started $(date -u +%FT%TZ) on $(nproc) CPUs, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
FIXEDGATE_SOAK=$DURATION go test "${args[@]}" ./cmd/fixedgate 2>&1 | grep --line-buffered -E '^soak:|^(---|    |ok|FAIL|PASS)'
