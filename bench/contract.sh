#!/usr/bin/env bash
# Contract serving: a 10,000-prefix /ip-ranges.json on fixedgate's admin listener, measured with
# wrk (Debian's package) in one run: GET /healthz, a full GET /ip-ranges.json, and a conditional
# GET answered 304. Also times `ipranges show` and `validate` (which loads the contract) on it.
# Loopback only; every run is bounded by DURATION. Usage: bash bench/contract.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
PREFIXES=${PREFIXES:-10000}
ADMIN=${ADMIN:-127.0.0.1:9093}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
WORK=${WORK:-$(mktemp -d /tmp/fixedgate-contract.XXXXXX)}
mkdir -p "$WORK"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
go build -o "$WORK/fixedgate" ./cmd/fixedgate

# A valid contract: PREFIXES ingress /32s from 10.0.0.0/8 plus the two loopback addresses the
# proxy uses, all in the initial set (published = enabled = created_at).
created=$(date -u -d '-30 days' +%Y-%m-%dT%H:%M:%SZ)
token=$(($(date -u -d "$created" +%s) * 1000))
{
  printf '{"schema_version":1,"sync_token":"%s","created_at":"%s","notice_days":14,"prefixes":[\n' "$token" "$created"
  entry() { printf '{"cidr":"%s","class":"ipv4","direction":"%s","service":"proxy","facility":"bench","published":"%s","enabled":"%s","retired":null}' "$1" "$2" "$created" "$created"; }
  entry 127.0.0.10/32 ingress; printf ',\n'; entry 127.0.0.20/32 egress
  awk -v n="$PREFIXES" -v c="$created" 'BEGIN { for (i = 0; i < n; i++) printf ",\n{\"cidr\":\"10.%d.%d.%d/32\",\"class\":\"ipv4\",\"direction\":\"ingress\",\"service\":\"proxy\",\"facility\":\"bench\",\"published\":\"%s\",\"enabled\":\"%s\",\"retired\":null}", int(i/65536)%256, int(i/256)%256, i%256, c, c }'
  printf '\n],"changelog":[{"sync_token":"%s","at":"%s","action":"init","cidr":"127.0.0.10/32"}]}\n' "$token" "$created"
} >"$WORK/ip-ranges.json"

cat >"$WORK/fixedgate.yaml" <<EOF
listen: [{address: "127.0.0.10:3138", tls: false}]
egress: {addresses: [127.0.0.20]}
forward: {allow: [{host: "*"}]}
ipranges: {state: "$WORK/ip-ranges.json"}
admin: {listen: "$ADMIN"}
log: {level: warn, format: json}
EOF

t0=$(date +%s%N); "$WORK/fixedgate" ipranges show --state "$WORK/ip-ranges.json" >"$WORK/show.json"; t1=$(date +%s%N)
"$WORK/fixedgate" validate --config "$WORK/fixedgate.yaml" >/dev/null; t2=$(date +%s%N)
echo "contract: $(wc -c <"$WORK/show.json") bytes served, $((PREFIXES + 2)) prefixes"
echo "ipranges show: $(((t1 - t0) / 1000000)) ms (whole process)   validate: $(((t2 - t1) / 1000000)) ms (whole process)"

taskset -c "$SERVER_CPU" "$WORK/fixedgate" serve --config "$WORK/fixedgate.yaml" 2>"$WORK/fixedgate.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
etag=$(curl -fsI "http://$ADMIN/ip-ranges.json" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" { print $2 }')
[[ -n $etag ]] || { echo "no ETag from /ip-ranges.json" >&2; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "http://$ADMIN/ip-ranges.json") == 304 ]] || { echo "conditional GET did not answer 304" >&2; exit 1; }

wrk_rps() { taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" | awk '/Requests\/sec/ { print $2 }'; }
healthz=$(wrk_rps "http://$ADMIN/healthz")
cond=$(wrk_rps -H "If-None-Match: $etag" "http://$ADMIN/ip-ranges.json")
full=$(wrk_rps "http://$ADMIN/ip-ranges.json")
echo "wrk, $CONNS connections, ${DURATION}s each, server on CPU $SERVER_CPU:"
echo "  GET /healthz                        $healthz req/s"
echo "  GET /ip-ranges.json If-None-Match   $cond req/s (304)   ratio to /healthz $(awk -v a="$cond" -v b="$healthz" 'BEGIN { printf "%.2f", a / b }')"
echo "  GET /ip-ranges.json (full body)     $full req/s"
