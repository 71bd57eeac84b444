#!/usr/bin/env bash
# bench/run.sh — fixedgate vs. its peers (squid, tinyproxy, Smokescreen) on one machine, loopback only.
#
#   bash bench/run.sh                      # everything, default knobs (~9-11 minutes)
#   DURATION=10 ROUNDS=1 bash bench/run.sh # knobs are environment variables, see below
#
# What it does: installs squid-openssl, tinyproxy and util-linux if missing; `go install`s
# Stripe's Smokescreen into $WORK/bin when missing (never into the product's go.mod); builds
# bench/loadgen and (if it compiles) cmd/fixedgate; writes a config for every proxy into a
# temp dir; starts the origin and every proxy pinned to CPU $SERVER_CPU and runs the load
# generator pinned to CPU $LOADGEN_CPU; measures
#   (1) new tunnels/s and latency, $CONC concurrent (fresh CONNECT + TLS + GET / + close),
#   (2) keep-alive GETs inside $CONC open tunnels,
#   (3) one $BULK_BYTES download through one tunnel,
#   (4) RSS per idle tunnel with $IDLE_N tunnels held open,
# for direct / squid-http / squid-https / tinyproxy / smokescreen / fixedgate-http /
# fixedgate-https, and
# prints one table plus ratios. (1)-(3) run $ROUNDS interleaved rounds; the table shows
# medians. Nothing leaves 127.0.0.0/8. See bench/README.md for how to read the output.
set -euo pipefail

# ---- knobs ------------------------------------------------------------------------------
DURATION=${DURATION:-5}          # measured seconds per newconn / keepalive run
WARMUP=${WARMUP:-1}              # unmeasured seconds before each of those runs
ROUNDS=${ROUNDS:-3}              # interleaved rounds of (1)-(3); medians are reported
CONC=${CONC:-64}                 # concurrent workers / tunnels for (1) and (2)
BULK_BYTES=${BULK_BYTES:-1073741824}
IDLE_N=${IDLE_N:-5000}           # idle tunnels for (4); 0 skips (4)
IDLE_SETTLE=${IDLE_SETTLE:-2}    # seconds between "all open" and reading RSS
CURVES=${CURVES:-x25519}         # client groups for the main table: x25519 | default | mlkem | p256
CURVE_COMPARE=${CURVE_COMPARE:-1}  # 1: each round, repeat (1) for direct and the TLS listeners with Go's default groups
TARGETS=${TARGETS:-"direct squid-http squid-https tinyproxy smokescreen fixedgate-http fixedgate-https"}
SMOKESCREEN_PKG=${SMOKESCREEN_PKG:-github.com/stripe/smokescreen@v0.1.0}
FIXEDGATE=${FIXEDGATE:-auto}     # auto: include fixedgate if it builds; 0: skip; 1: required
FG_CURVES=${FG_CURVES:-}         # e.g. "X25519" to pin fixedgate's server groups; empty: its default
INSTALL=${INSTALL:-1}            # 0: never call apt-get
NICE=${NICE:--10}                # niceness of every benchmark process (the machine is shared)
SERVER_CPU=${SERVER_CPU:-0}      # origin + proxies
LOADGEN_CPU=${LOADGEN_CPU:-1}    # load generator
ORIGIN_IP=${ORIGIN_IP:-127.0.0.1}
ORIGIN_PORT=${ORIGIN_PORT:-8443}
FG_IP=${FG_IP:-127.0.0.10};      FG_EGRESS=${FG_EGRESS:-127.0.0.20}
SQUID_IP=${SQUID_IP:-127.0.0.11}; TINY_IP=${TINY_IP:-127.0.0.12}
SMOKESCREEN_IP=${SMOKESCREEN_IP:-127.0.0.15}
FG_HTTP_PORT=${FG_HTTP_PORT:-3128};    FG_TLS_PORT=${FG_TLS_PORT:-3129}
SQUID_HTTP_PORT=${SQUID_HTTP_PORT:-3128}; SQUID_TLS_PORT=${SQUID_TLS_PORT:-3129}
TINY_PORT=${TINY_PORT:-8888}
SMOKESCREEN_PORT=${SMOKESCREEN_PORT:-4750}
FG_ADMIN=${FG_ADMIN:-127.0.0.1:9091}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/fixedgate-bench.XXXXXX)}
mkdir -p "$WORK/logs" "$WORK/bin"
chmod 755 "$WORK" # squid and tinyproxy drop to unprivileged users and must reach their dirs
RAW=$WORK/results.raw   # one line per loadgen run: T=target R=round RESULT ... px_ticks=...
: >"$RAW"
ORIGIN=$ORIGIN_IP:$ORIGIN_PORT
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh" # log, die, start_bg/stop_bg, cpu_ticks, run_one, med, rr, ...
install_traps

# ---- 0. packages ------------------------------------------------------------------------
need_pkgs=()
if ! command -v squid >/dev/null || ! squid -v 2>/dev/null | grep -q -- '--with-openssl'; then need_pkgs+=(squid-openssl); fi
command -v tinyproxy >/dev/null || need_pkgs+=(tinyproxy)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
ensure_pkgs "${need_pkgs[@]}"
squid -v | grep -q -- '--with-openssl' || die "squid is not built with OpenSSL (install squid-openssl)"

# ---- 1. limits, build -------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited ]] && ((IDLE_N > 0 && NOFILE < 2 * IDLE_N + 200)); then
  log "WARNING: RLIMIT_NOFILE is $NOFILE (hard limit; cannot raise to 65536 here); a proxy holding $IDLE_N tunnels needs $((2 * IDLE_N + 200))"
fi

build_loadgen
build_fixedgate
# Smokescreen: a peer, built into the bench's own bin (lib.sh; only when $WORK/bin/smokescreen is missing)
[[ " $TARGETS " == *" smokescreen "* ]] && go_install_tool smokescreen "$SMOKESCREEN_PKG" 900
sel=()
for t in $TARGETS; do
  [[ $t == fixedgate-* && $HAVE_FG == 0 ]] && continue
  sel+=("$t")
done
TARGETS=${sel[*]}

for ap in "$ORIGIN_IP $ORIGIN_PORT" "$FG_IP $FG_HTTP_PORT" "$FG_IP $FG_TLS_PORT" "$SQUID_IP $SQUID_HTTP_PORT" \
  "$SQUID_IP $SQUID_TLS_PORT" "$TINY_IP $TINY_PORT" "$SMOKESCREEN_IP $SMOKESCREEN_PORT" "${FG_ADMIN%:*} ${FG_ADMIN##*:}"; do
  # shellcheck disable=SC2086
  port_free $ap || die "something already listens on ${ap/ /:} (a system squid/tinyproxy service?); stop it or change the *_IP / *_PORT knobs"
done

# ---- 2. configs -------------------------------------------------------------------------
mkdir -p "$WORK/squid" "$WORK/tinyproxy" "$WORK/fixedgate"
"$LG" gencert -dir "$WORK/squid/tls" -ips "$SQUID_IP,127.0.0.1" -dns squid.bench.test -cn squid.bench.test
cat >"$WORK/squid/squid.conf" <<EOF
# squid $(squid -v | head -1 | awk '{print $4}') as a plain forward proxy; defaults kept except where noted.
http_port $SQUID_IP:$SQUID_HTTP_PORT
https_port $SQUID_IP:$SQUID_TLS_PORT tls-cert=$WORK/squid/tls/server.crt tls-key=$WORK/squid/tls/server.key
acl bench_clients src 127.0.0.0/8
acl origin_port port $ORIGIN_PORT
acl CONNECT method CONNECT
http_access deny CONNECT !origin_port
http_access allow bench_clients
http_access deny all
# no disk cache (no cache_dir) and nothing cached in memory either
cache deny all
max_filedescriptors $([[ $NOFILE == unlimited ]] && echo 65536 || echo "$NOFILE")
workers 1
# access log as Debian ships it (via the log_file_daemon helper), into the work dir
access_log daemon:$WORK/squid/access.log squid
cache_log $WORK/squid/cache.log
pid_filename $WORK/squid/squid.pid
coredump_dir $WORK/squid
netdb_filename none
# CONNECT targets are IP literals; should anything be looked up, keep it on loopback
dns_nameservers 127.0.0.1
pinger_enable off
shutdown_lifetime 1 seconds
EOF
SQUID_USER=$(id -u proxy >/dev/null 2>&1 && echo proxy || echo nobody)
chown -R "$SQUID_USER" "$WORK/squid"

cat >"$WORK/tinyproxy/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $TINY_PORT
Listen $TINY_IP
Timeout 600
# one thread per client: enough for $CONC concurrent and the $IDLE_N-idle-tunnel test
MaxClients $((IDLE_N > 1000 ? IDLE_N * 2 : 2000))
LogFile "$WORK/tinyproxy/tinyproxy.log"
LogLevel Info
PidFile "$WORK/tinyproxy/tinyproxy.pid"
Allow 127.0.0.0/8
ConnectPort $ORIGIN_PORT
DisableViaHeader Yes
EOF
chown -R nobody "$WORK/tinyproxy"

# Smokescreen: command-line flags only (no config file, no egress ACL: every role may go
# anywhere its IP rules allow). It refuses loopback and private destinations unless allowed, so
# exactly the origin (IP:port) is: --allow-address, the counterpart of tinyproxy's ConnectPort and
# squid's origin_port ACL. Logging as shipped: logrus JSON at info to stderr (start_bg appends it
# to $WORK/logs/smokescreen.log), two lines per tunnel (CANONICAL-PROXY-DECISION and
# CANONICAL-PROXY-CN-CLOSE). No statsd/prometheus (metrics are a no-op unless configured).
SMOKESCREEN_ARGS=(--listen-ip "$SMOKESCREEN_IP" --listen-port "$SMOKESCREEN_PORT" --allow-address "$ORIGIN")

{
  echo "listen:"
  echo "  - {address: \"$FG_IP:$FG_HTTP_PORT\", tls: false}"
  echo "  - {address: \"$FG_IP:$FG_TLS_PORT\", tls: true}"
  echo "tls:"
  echo "  self_signed: {dir: $WORK/fixedgate/ca}"
  [[ -n $FG_CURVES ]] && echo "  curves: [$FG_CURVES]"
  echo "forward:"
  echo "  allow: [{host: \"*\", ports: [$ORIGIN_PORT]}]"
  echo "  allow_networks: [127.0.0.0/8]"
  echo "resolver: {servers: [\"127.0.0.1:53\"]}  # targets are IP literals; keep any lookup on loopback"
  echo "egress:"
  echo "  addresses: [$FG_EGRESS]"
  echo "admin: {listen: \"$FG_ADMIN\"}"
  echo "log: {level: info, format: json}"
  # the load comes from one client address: lift the per-client limits (defaults 200/s) out of the way
  echo "limits: {max_conns_per_listener: 20000, per_client: {rate: 1000000, burst: 1000000, max_tunnels: 100000, max_requests_in_flight: 100000}}"
} >"$WORK/fixedgate/fixedgate.yaml"

# ---- 3. servers -------------------------------------------------------------------------
proxy_of() { case $1 in squid-*) echo squid ;; tinyproxy) echo tinyproxy ;; smokescreen) echo smokescreen ;; fixedgate-*) echo fixedgate ;; *) echo "" ;; esac; }
proxy_args() {
  case $1 in
    direct) ;;
    squid-http) echo "-proxy http://$SQUID_IP:$SQUID_HTTP_PORT" ;;
    squid-https) echo "-proxy https://$SQUID_IP:$SQUID_TLS_PORT -proxy-ca $WORK/squid/tls/ca.crt" ;;
    tinyproxy) echo "-proxy http://$TINY_IP:$TINY_PORT" ;;
    smokescreen) echo "-proxy http://$SMOKESCREEN_IP:$SMOKESCREEN_PORT" ;;
    fixedgate-http) echo "-proxy http://$FG_IP:$FG_HTTP_PORT" ;;
    fixedgate-https) echo "-proxy https://$FG_IP:$FG_TLS_PORT -proxy-ca $WORK/fixedgate/ca/ca.crt" ;;
    *) die "unknown target $1" ;;
  esac
}
lg() { # loadgen MODE [args...] pinned to the load-generator CPU; stderr appended to logs/loadgen.log
  local mode=$1; shift
  nice -n "$NICE" taskset -c "$LOADGEN_CPU" "$LG" "$mode" -target "$ORIGIN" -origin-ca "$WORK/origin-ca.pem" "$@" 2>>"$WORK/logs/loadgen.log"
}
probe() { # probe TARGET: one tunnel + GET end to end, retried for up to 20 s
  # shellcheck disable=SC2046
  lg probe $(proxy_args "$1") -timeout 20s >/dev/null || die "$1 is not answering; see $WORK/logs/"
}
start_proxy() {
  case $1 in
    squid)
      start_bg squid squid -N -f "$WORK/squid/squid.conf"
      probe squid-http; probe squid-https ;;
    tinyproxy)
      start_bg tinyproxy tinyproxy -d -c "$WORK/tinyproxy/tinyproxy.conf"
      probe tinyproxy ;;
    smokescreen)
      start_bg smokescreen "$WORK/bin/smokescreen" "${SMOKESCREEN_ARGS[@]}"
      probe smokescreen ;;
    fixedgate)
      start_bg fixedgate "$WORK/bin/fixedgate" serve --config "$WORK/fixedgate/fixedgate.yaml"
      wait_fixedgate_ready # lib.sh
      probe fixedgate-http; probe fixedgate-https ;;
  esac
}

log "starting origin on $ORIGIN (CPU $SERVER_CPU), loadgen on CPU $LOADGEN_CPU, RLIMIT_NOFILE=$NOFILE"
start_bg origin "$LG" origin -listen "$ORIGIN" -ca-out "$WORK/origin-ca.pem" -max-life 30m
for _ in $(seq 1 100); do grep -q '^READY' "$WORK/logs/origin.log" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY' "$WORK/logs/origin.log" || die "origin did not start: $(cat "$WORK/logs/origin.log")"
probe direct

need=" $TARGETS "
[[ $need == *" squid-"* ]] && start_proxy squid
[[ $need == *" tinyproxy "* ]] && start_proxy tinyproxy
[[ $need == *" smokescreen "* ]] && start_proxy smokescreen
[[ $need == *" fixedgate-"* ]] && start_proxy fixedgate
log "targets: $TARGETS"
log "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine adds noise; rounds are interleaved)"

# target_load TARGET MODE [args]: the load generator run that lib.sh's run_one measures
target_load() {
  local target=$1 mode=$2; shift 2
  # shellcheck disable=SC2046
  lg "$mode" $(proxy_args "$target") -label "$target" "$@"
}

# ---- 4. rounds of (1)-(3) ---------------------------------------------------------------
common=(-curves "$CURVES" -c "$CONC" -d "${DURATION}s" -warmup "${WARMUP}s")
log "priming every target (1 s of newconn each, not recorded)"
for t in $TARGETS; do
  # shellcheck disable=SC2046
  lg newconn $(proxy_args "$t") -curves "$CURVES" -c "$CONC" -d 1s -warmup 0s >/dev/null || true
done
for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS"
  # rotate the order every round so no target always runs first/last
  order=($TARGETS)
  rot=$(((r - 1) % ${#order[@]}))
  order=("${order[@]:rot}" "${order[@]:0:rot}")
  for t in "${order[@]}"; do
    run_one "$t" "$r" newconn "${common[@]}"
    if [[ $CURVE_COMPARE == 1 && $CURVES != default ]]; then
      case $t in direct | *-https) # same test right after, with Go's default groups (X25519MLKEM768 first)
        run_one "$t" "d$r" newconn -curves default -c "$CONC" -d "${DURATION}s" -warmup "${WARMUP}s" ;;
      esac
    fi
    run_one "$t" "$r" keepalive "${common[@]}"
    run_one "$t" "$r" bulk -curves "$CURVES" -bytes "$BULK_BYTES" -timeout 120s
  done
done

for n in squid tinyproxy smokescreen fixedgate; do stop_bg "$n"; done

# ---- 5. idle tunnels --------------------------------------------------------------------
IDLE_RAW=$WORK/idle.raw
: >"$IDLE_RAW"
idle_one() { # fresh proxy, warm-up, RSS, open IDLE_N tunnels, RSS, release
  local target=$1 pname pid rss0 rss1 fds0 fds line ready="" out=$WORK/logs/idle-$1.out lgpid
  pname=$(proxy_of "$target")
  start_proxy "$pname"
  pid=${PIDS[$pname]}
  # shellcheck disable=SC2046
  lg newconn $(proxy_args "$target") -c 8 -d 1s -warmup 0s >/dev/null || true
  sleep 1
  rss0=$(rss_kib "$pid")
  fds0=$(fd_count "$pid")
  # shellcheck disable=SC2046
  nice -n "$NICE" taskset -c "$LOADGEN_CPU" "$LG" idle -target "$ORIGIN" -origin-ca "$WORK/origin-ca.pem" \
    $(proxy_args "$target") -curves "$CURVES" -n "$IDLE_N" -c 64 -hold 180s -label "$target" >"$out" 2>>"$WORK/logs/loadgen.log" &
  lgpid=$!
  PIDS[idle-loadgen]=$lgpid
  for _ in $(seq 1 1500); do # <= 150 s to open them all
    ready=$(grep '^READY' "$out" 2>/dev/null || true)
    [[ -n $ready ]] && break
    kill -0 "$lgpid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $ready ]]; then
    log "  idle $target: loadgen never got ready"
    stop_bg idle-loadgen; stop_bg "$pname"
    echo "T=$target failed=1" >>"$IDLE_RAW"
    return 0
  fi
  sleep "$IDLE_SETTLE"
  rss1=$(rss_kib "$pid")
  fds=$(fd_count "$pid")
  kill -USR1 "$lgpid" 2>/dev/null || true
  for _ in $(seq 1 600); do kill -0 "$lgpid" 2>/dev/null || break; sleep 0.1; done
  stop_bg idle-loadgen
  line=$(grep '^RESULT' "$out" | tail -1) || true
  local opened
  opened=$(kv "$ready" opened)
  local per=- fper=-
  if ((opened > 0)); then
    per=$(awk -v a="$rss0" -v b="$rss1" -v n="$opened" 'BEGIN{printf "%.1f", (b-a)/n}')
    fper=$(awk -v a="$fds0" -v b="$fds" -v n="$opened" 'BEGIN{printf "%.1f", (b-a)/n}')
  fi
  echo "T=$target opened=$opened failed=$(kv "$ready" failed) open_secs=$(kv "$ready" secs) rss0_kib=$rss0 rss1_kib=$rss1 fds0=$fds0 fds=$fds kib_per_tunnel=$per fds_per_tunnel=$fper alive_after=$(kv "$line" alive_after)" >>"$IDLE_RAW"
  log "  idle $target: opened $opened/$IDLE_N (failed $(kv "$ready" failed)) RSS $rss0 -> $rss1 KiB = $per KiB/tunnel, fds $fds0 -> $fds = $fper/tunnel, alive after hold $(kv "$line" alive_after)"
  stop_bg "$pname"
}
if ((IDLE_N > 0)); then
  log "idle tunnels: $IDLE_N per proxy, each with a TLS handshake to the origin and one GET"
  for t in $TARGETS; do [[ $t != direct ]] && idle_one "$t"; done
fi
stop_bg origin

# ---- 6. report --------------------------------------------------------------------------
idlekv() { local l; l=$(grep "^T=$1 " "$IDLE_RAW" 2>/dev/null | tail -1) || true; kv "$l" "$2"; }

declare -A M
keys=(new_rps new_p50 new_p99 new_err ka_rps ka_p99 bulk px_new px_ka px_bulk)
for t in $TARGETS; do
  M[$t,new_rps]=$(med "$t" newconn rps);   M[$t,new_p50]=$(med "$t" newconn p50_ms)
  M[$t,new_p99]=$(med "$t" newconn p99_ms); M[$t,new_err]=$(med "$t" newconn err)
  M[$t,ka_rps]=$(med "$t" keepalive rps);  M[$t,ka_p99]=$(med "$t" keepalive p99_ms)
  M[$t,bulk]=$(med "$t" bulk mib_s)
  M[$t,px_new]=$(med "$t" newconn px_us_req); M[$t,px_ka]=$(med "$t" keepalive px_us_req)
  M[$t,px_bulk]=$(med "$t" bulk px_s_gib)
  M[$t,idle]=$(idlekv "$t" kib_per_tunnel); M[$t,idle_open]=$(idlekv "$t" opened)
  M[$t,idle_fd]=$(idlekv "$t" fds_per_tunnel)
  M[$t,idle_alive]=$(idlekv "$t" alive_after)
done

REPORT=$WORK/report.txt
{
  echo
  echo "fixedgate peer benchmark — $(date -u '+%Y-%m-%d %H:%M UTC') — $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(uname -r)"
  echo "servers on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU; rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s conc=$CONC bulk=$BULK_BYTES B idle=$IDLE_N curves=$CURVES nofile=$NOFILE"
  echo "squid $(squid -v | head -1 | awk '{print $4}') (OpenSSL), tinyproxy $(tinyproxy -v 2>&1 | awk '{print $2}'), smokescreen $([[ -x $WORK/bin/smokescreen ]] && echo "$(mod_ver "$WORK/bin/smokescreen") (built with $(go version "$WORK/bin/smokescreen" | awk '{print $2}'))" || echo -), $(go version | awk '{print $3}'); medians of $ROUNDS rounds"
  echo
  printf '%-16s %9s %8s %8s %6s | %9s %8s | %9s | %9s %8s %9s | %9s %5s %11s\n' \
    target new/s p50_ms p99_ms err ka/s p99_ms bulk_MiB/s px_us/new px_us/ka px_s/GiB idle_KiB/t fd/t idle_open/ok
  for t in $TARGETS; do
    io=-; [[ $t != direct && ${M[$t,idle_open]} != - ]] && io="${M[$t,idle_open]}/${M[$t,idle_alive]}"
    printf '%-16s %9s %8s %8s %6s | %9s %8s | %9s | %9s %8s %9s | %9s %5s %11s\n' "$t" \
      "$(fmt "${M[$t,new_rps]}")" "$(fmt "${M[$t,new_p50]}" 1)" "$(fmt "${M[$t,new_p99]}" 1)" "$(fmt "${M[$t,new_err]}")" \
      "$(fmt "${M[$t,ka_rps]}")" "$(fmt "${M[$t,ka_p99]}" 2)" "$(fmt "${M[$t,bulk]}")" \
      "$([[ $t == direct ]] && echo - || fmt "${M[$t,px_new]}")" "$([[ $t == direct ]] && echo - || fmt "${M[$t,px_ka]}" 1)" \
      "$([[ $t == direct ]] && echo - || fmt "${M[$t,px_bulk]}" 2)" \
      "$([[ $t == direct ]] && echo - || fmt "${M[$t,idle]}" 1)" "$([[ $t == direct ]] && echo - || fmt "${M[$t,idle_fd]}" 1)" "$io"
  done
  echo
  echo "ratios vs direct (new/s, ka/s, bulk: higher is better; p99: lower is better)"
  printf '%-16s %9s %8s %9s %8s %10s\n' target new/s new_p99 ka/s ka_p99 bulk
  for t in $TARGETS; do
    [[ $t == direct ]] && continue
    printf '%-16s %9s %8s %9s %8s %10s\n' "$t" \
      "$(ratio "${M[$t,new_rps]}" "${M[direct,new_rps]:--}")" "$(ratio "${M[$t,new_p99]}" "${M[direct,new_p99]:--}")" \
      "$(ratio "${M[$t,ka_rps]}" "${M[direct,ka_rps]:--}")" "$(ratio "${M[$t,ka_p99]}" "${M[direct,ka_p99]:--}")" \
      "$(ratio "${M[$t,bulk]}" "${M[direct,bulk]:--}")"
  done
  for pair in "fixedgate-https squid-https" "fixedgate-http squid-http" "fixedgate-http tinyproxy" "fixedgate-http smokescreen"; do
    set -- $pair
    [[ " $TARGETS " == *" $1 "* && " $TARGETS " == *" $2 "* ]] || continue
    echo
    echo "$1 / $2 (throughput: >1 is better for fixedgate; p99, px_*, idle: <1 is better)"
    printf '  new/s %s  new_p99 %s  ka/s %s  ka_p99 %s  bulk %s  px_us/new %s  px_us/ka %s  px_s/GiB %s  idle_KiB/t %s\n' \
      "$(ratio "${M[$1,new_rps]}" "${M[$2,new_rps]}")" "$(ratio "${M[$1,new_p99]}" "${M[$2,new_p99]}")" \
      "$(ratio "${M[$1,ka_rps]}" "${M[$2,ka_rps]}")" "$(ratio "${M[$1,ka_p99]}" "${M[$2,ka_p99]}")" \
      "$(ratio "${M[$1,bulk]}" "${M[$2,bulk]}")" "$(ratio "${M[$1,px_new]}" "${M[$2,px_new]}")" \
      "$(ratio "${M[$1,px_ka]}" "${M[$2,px_ka]}")" "$(ratio "${M[$1,px_bulk]}" "${M[$2,px_bulk]}")" \
      "$(ratio "${M[$1,idle]}" "${M[$2,idle]}")"
    if ((ROUNDS > 1)); then
      printf '  per round: new/s [%s]  px_us/new [%s]  ka/s [%s]  px_us/ka [%s]  bulk [%s]  px_s/GiB [%s]\n' \
        "$(rr "$1" "$2" newconn rps)" "$(rr "$1" "$2" newconn px_us_req)" "$(rr "$1" "$2" keepalive rps)" \
        "$(rr "$1" "$2" keepalive px_us_req)" "$(rr "$1" "$2" bulk mib_s)" "$(rr "$1" "$2" bulk px_s_gib)"
    fi
  done
  if [[ $CURVE_COMPARE == 1 && $CURVES != default ]]; then
    echo
    echo "key exchange: new tunnels with -curves $CURVES vs Go's default groups (X25519MLKEM768 first), run back to back each round"
    printf '%-16s %9s %9s %10s %10s  %-22s %s\n' target "new/s:$CURVES" new/s:dflt "px_us:$CURVES" px_us:dflt "px_us dflt/$CURVES" "negotiated with default (proxy | origin)"
    for t in $TARGETS; do
      case $t in direct | *-https) ;; *) continue ;; esac
      l=$(grep "^T=$t R=d1 " "$RAW" | tail -1) || true
      printf '%-16s %9s %9s %10s %10s  %-22s %s | %s\n' "$t" "$(fmt "${M[$t,new_rps]}")" "$(fmt "$(med "$t" newconn rps dflt)")" \
        "$([[ $t == direct ]] && echo - || fmt "${M[$t,px_new]}")" "$([[ $t == direct ]] && echo - || fmt "$(med "$t" newconn px_us_req dflt)")" \
        "$([[ $t == direct ]] && echo - || echo "[$(rr "$t" "$t" newconn px_us_req d)]")" "$(kv "$l" tls_proxy)" "$(kv "$l" tls_origin)"
    done
  fi
  echo
  echo "spread over rounds (min..max)"
  for t in $TARGETS; do
    printf '  %-16s' "$t"
    for mk in "newconn rps new/s" "newconn p99_ms new_p99" "keepalive rps ka/s" "bulk mib_s bulk"; do
      set -- $mk
      printf ' %s %s' "$3" "$(awk -v t="T=$t" -v m="mode=$1" -v k="$2" '$1==t && $2 ~ /^R=[0-9]+$/ && index($0," " m " ") {
          for (i=3;i<=NF;i++) if (index($i, k "=") == 1) { v = substr($i, length(k)+2) + 0; if (n++ == 0 || v < lo) lo = v; if (n == 1 || v > hi) hi = v } }
        END { if (n) printf "%.0f..%.0f", lo, hi; else printf "-" }' "$RAW")"
    done
    echo
  done
  echo
  echo "CPU during the runs (medians, %): server core (origin + proxy) / loadgen core / other work on the machine"
  echo "  a core near 100% is that run's bottleneck; a high 'other' means the run was disturbed"
  printf '  %-16s %14s %14s %14s\n' target newconn keepalive bulk
  for t in $TARGETS; do
    printf '  %-16s' "$t"
    for m in newconn keepalive bulk; do
      printf ' %14s' "$(fmt "$(med "$t" $m srv_core_pct)")/$(fmt "$(med "$t" $m lg_core_pct)")/$(fmt "$(med "$t" $m other_pct)")"
    done
    echo
  done
  echo
  echo "columns: new = fresh CONNECT+TLS+GET+close per request ($CONC workers); ka = keep-alive GETs in $CONC open tunnels;"
  echo "  bulk = one ${BULK_BYTES}-byte GET through one tunnel; px_us/* = proxy CPU (all its processes) per request, px_s/GiB per GiB;"
  echo "  idle_KiB/t = (proxy RSS with $IDLE_N idle tunnels - RSS before) / tunnels opened (user-space only: kernel socket/pipe memory is not in RSS);"
  echo "  fd/t = proxy file descriptors per idle tunnel; idle_open/ok = tunnels opened (of $IDLE_N) / still answering a GET after the hold."
  echo "raw: $RAW  $IDLE_RAW"
} | tee "$REPORT"
