#!/usr/bin/env bash
# bench/gateway.sh — fixedgate's gateway door (TLS reverse proxy) vs nginx, haproxy and Caddy, on
# one machine, loopback only.
#
#   bash bench/gateway.sh                                   # default knobs (~7 minutes)
#   DURATION=2 WARMUP=1 ROUNDS=1 FIXEDGATE=0 bash bench/gateway.sh   # smoke run
#
# What it does: installs nginx-light, haproxy (and util-linux, curl) if missing; `go install`s
# Caddy into $WORK/bin when missing (never into the product's go.mod); builds bench/loadgen and
# (if it compiles and `fixedgate validate` accepts the gateway config) cmd/fixedgate; starts a
# loopback HTTPS origin (backend port HTTP/1.1 only unless BACKEND_H2=1, plus an h2-capable port
# for the direct baseline), a loopback DNS server that answers origin.bench.test, and every
# reverse proxy, all pinned to CPU $SERVER_CPU; checks that
# each proxy really verifies the origin's certificate (negative control with a wrong CA) and
# answers over HTTP/1.1 and HTTP/2; then, pinned to CPU $LOADGEN_CPU, measures for
# direct / nginx / haproxy / caddy / fixedgate, GET /json (200-byte JSON) with Host: gw.bench.test:
#   ka:  HTTP/1.1 keep-alive over TLS, $KA_CONC connections, back-to-back requests,
#   h2:  HTTP/2, $H2_CONNS connections x $H2_STREAMS concurrent streams,
#   new: a fresh TCP + TLS connection per request (full handshake), $NEW_CONC workers;
# and, with MODES containing bulk, one large download per target:
#   bulk: one TLS connection, a warm-up GET /json, then GET /bulk?bytes=$BULK_BYTES (1 GiB) timed
#         to its last byte, over HTTP/1.1 (BULK_H2=1: HTTP/2); MiB/s and proxy CPU s per GiB;
# in $ROUNDS interleaved rounds (order rotated), with the proxy's own CPU time per request and
# the number of connections the origin accepted. Prints one report (medians, ratios vs direct,
# fixedgate vs each peer, per-round ratios). Nothing leaves 127.0.0.0/8.
set -euo pipefail

# ---- knobs ------------------------------------------------------------------------------
DURATION=${DURATION:-5}          # measured seconds per run
WARMUP=${WARMUP:-1}              # unmeasured seconds before each run
ROUNDS=${ROUNDS:-3}              # interleaved rounds; medians are reported
KA_CONC=${KA_CONC:-64}           # ka: keep-alive connections
H2_CONNS=${H2_CONNS:-16}         # h2: connections ...
H2_STREAMS=${H2_STREAMS:-4}      #     ... x concurrent streams on each
NEW_CONC=${NEW_CONC:-64}         # new: workers, each request on a fresh TLS connection
POST_BYTES=${POST_BYTES:-0}      # >0: ka and new send POST /json with a JSON body of this size (set MODES="ka new")
MODES=${MODES:-"ka h2 new bulk"}  # any of ka h2 new bulk
BULK_BYTES=${BULK_BYTES:-1073741824} # bulk: body size of the one GET /bulk?bytes=N per target and round
BULK_H2=${BULK_H2:-0}            # bulk: 0 = HTTP/1.1 client, 1 = HTTP/2 client
TARGETS=${TARGETS:-"direct nginx haproxy caddy fixedgate"}
CADDY_PKG=${CADDY_PKG:-github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9}
FG_PROXY_IN=${FG_PROXY_IN:-}     # v1 | v2: fixedgate's listener takes PROXY headers (proxy_protocol, loopback trusted) and the load generator sends one per connection, as a balancer would; compare with a run without (PROXY-in's cost per new connection)
FIXEDGATE=${FIXEDGATE:-auto}     # auto: include if it builds and validate accepts the config; 0: skip; 1: required
CURVES=${CURVES:-x25519}         # client groups: x25519 | default | mlkem | p256
ACCESS_LOG=${ACCESS_LOG:-1}      # 1: every proxy writes one access-log line per request (fixedgate always does); 0: peers' logs off
VERIFY_CHECK=${VERIFY_CHECK:-1}  # 1: start each proxy once with a wrong origin CA and require a 5xx
INSTALL=${INSTALL:-1}            # 0: never call apt-get
NICE=${NICE:--10}                # niceness of every benchmark process (the machine is shared)
SERVER_CPU=${SERVER_CPU:-0}      # origin + DNS + proxies
LOADGEN_CPU=${LOADGEN_CPU:-1}    # load generator
ORIGIN_IP=${ORIGIN_IP:-127.0.0.1}
ORIGIN_PORT=${ORIGIN_PORT:-9443}   # the proxies' backend: HTTP/1.1 only (the peers are configured for HTTP/1.1 upstream)
DIRECT_PORT=${DIRECT_PORT:-9444}   # same origin process, offers h2 + http/1.1: the direct baseline (h2 needs it)
BACKEND_H2=${BACKEND_H2:-0}        # 1: ORIGIN_PORT offers h2 too (nginx and haproxy still ask for http/1.1)
NGINX_IP=${NGINX_IP:-127.0.0.13}; HAPROXY_IP=${HAPROXY_IP:-127.0.0.14}; FG_IP=${FG_IP:-127.0.0.10}
CADDY_IP=${CADDY_IP:-127.0.0.15}
CADDY_IDLE_CONNS=${CADDY_IDLE_CONNS:-64} # Caddy's idle origin connections (its default 32), as nginx's upstream keepalive 64
GW_PORT=${GW_PORT:-8443}         # TLS port of every proxy
FG_ADMIN=${FG_ADMIN:-127.0.0.1:9092}
FG_EGRESS=${FG_EGRESS:-127.0.0.20}
GW_NAME=gw.bench.test            # the name clients use (SNI, Host)
ORIGIN_NAME=origin.bench.test    # the backend's name (DNS for fixedgate, SNI + verification for all)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/fixedgate-gateway.XXXXXX)}
mkdir -p "$WORK/logs" "$WORK/bin"
chmod 755 "$WORK" # nginx workers drop to an unprivileged user and must reach their dirs
RAW=$WORK/results.raw # one line per loadgen run: T=target R=round RESULT ... px_ticks=... o_conns=...
: >"$RAW"
ORIGIN=$ORIGIN_IP:$ORIGIN_PORT
ORIGIN_CA=$WORK/origin-ca.pem
LOG_TAG=gateway
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
install_traps
[[ "$POST_BYTES" =~ ^[0-9]+$ ]] && ((POST_BYTES <= 1048576)) || die "POST_BYTES must be 0..1048576"
if ((POST_BYTES > 0)) && [[ " $MODES " == *" h2 "* ]]; then
  die "POST_BYTES applies to the ka and new modes; set MODES=\"ka new\" (or \"ka new bulk\": bulk stays a GET)"
fi
for m in $MODES; do [[ $m =~ ^(ka|h2|new|bulk)$ ]] || die "unknown mode $m in MODES (want ka, h2, new, bulk)"; done
[[ "$BULK_BYTES" =~ ^[0-9]+$ ]] && ((BULK_BYTES >= 1 && BULK_BYTES <= 17179869184)) || die "BULK_BYTES must be 1..17179869184 (the origin's limit)"
[[ $BULK_H2 =~ ^[01]$ ]] || die "BULK_H2 must be 0 or 1"
has_bulk=0; [[ " $MODES " == *" bulk "* ]] && has_bulk=1
# the bound on one bulk run (connection, warm-up and transfer): 60 s plus 1 s per 16 MiB, at most 30 min
BULK_TIMEOUT=$((60 + BULK_BYTES / 16777216)); ((BULK_TIMEOUT > 1800)) && BULK_TIMEOUT=1800

# ---- 0. packages ------------------------------------------------------------------------
ensure_gw_peers # lib.sh: nginx-light, haproxy, util-linux, curl; NGINX_VER/_PKG/_SSL, HAPROXY_VER/_SSL

# ---- 1. limits, build -------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
build_loadgen
build_fixedgate
want_caddy=0; [[ " $TARGETS " == *" caddy "* ]] && want_caddy=1
((want_caddy)) && go_install_tool caddy "$CADDY_PKG" 1800 # lib.sh: only when $WORK/bin/caddy is missing

for ap in "$ORIGIN_IP $ORIGIN_PORT" "$ORIGIN_IP $DIRECT_PORT" "$NGINX_IP $GW_PORT" "$HAPROXY_IP $GW_PORT" "$CADDY_IP $GW_PORT" "$FG_IP $GW_PORT" "${FG_ADMIN%:*} ${FG_ADMIN##*:}"; do
  # shellcheck disable=SC2086
  port_free $ap || die "something already listens on ${ap/ /:} (a system nginx/haproxy service? another bench run?); stop it or change the *_IP / *_PORT knobs"
done

# ---- 2. origin, DNS, certificates, configs ------------------------------------------------
# the safety bound on the origin's and DNS server's life: the whole run plus a margin
n_targets=$(wc -w <<<"$TARGETS")
LIFE=$((ROUNDS * (n_targets > 4 ? n_targets : 4) * (3 * (DURATION + WARMUP + 10) + has_bulk * BULK_TIMEOUT) + 900))
BACKEND_PROTO=$([[ $BACKEND_H2 == 1 ]] && echo "h2 + http/1.1" || echo "HTTP/1.1 only")
log "starting origin on $ORIGIN (backend, $BACKEND_PROTO) + $ORIGIN_IP:$DIRECT_PORT (direct, h2 + http/1.1) and DNS ($ORIGIN_NAME -> $ORIGIN_IP) on CPU $SERVER_CPU; loadgen on CPU $LOADGEN_CPU; RLIMIT_NOFILE=$NOFILE"
origin_h2=(); [[ $BACKEND_H2 == 1 ]] && origin_h2=(-h2)
start_origin_dns "$LIFE" -listen-h2 "$ORIGIN_IP:$DIRECT_PORT" "${origin_h2[@]}"

gen_gw_peer_certs
# a CA that did NOT sign the origin's certificate, for the negative control
"$LG" gencert -dir "$WORK/wrong-ca" -ips "$ORIGIN_IP" -dns "$ORIGIN_NAME" -cn "$ORIGIN_NAME"
WRONG_CA=$WORK/wrong-ca/ca.crt

write_nginx_conf "$WORK/nginx/nginx.conf" "$ORIGIN_CA"
write_nginx_conf "$WORK/nginx/nginx-wrong-ca.conf" "$WRONG_CA"
write_haproxy_cfg "$WORK/haproxy/haproxy.cfg" "$ORIGIN_CA"
write_haproxy_cfg "$WORK/haproxy/haproxy-wrong-ca.cfg" "$WRONG_CA" neg
write_fixedgate_yaml "$WORK/fixedgate/fixedgate.yaml" "$ORIGIN_CA"
write_fixedgate_yaml "$WORK/fixedgate/fixedgate-wrong-ca.yaml" "$WRONG_CA"
chown -R "${NGINX_USER%% *}" "$WORK/nginx/tmp" 2>/dev/null || true
if ((want_caddy)); then
  mkdir -p "$WORK/caddy/data" "$WORK/caddy/config"
  "$LG" gencert -dir "$WORK/caddy/tls" -ips "$CADDY_IP" -dns "$GW_NAME" -cn "$GW_NAME"
  # site gw.bench.test (the Host and SNI the load generator sends) on $CADDY_IP:$GW_PORT
  write_caddyfile "$WORK/caddy/Caddyfile" "$ORIGIN_CA" "https://$GW_NAME:$GW_PORT" \
    "$([[ $ACCESS_LOG == 1 ]] && echo "$WORK/caddy/access.log")" "$CADDY_IDLE_CONNS"
  write_caddyfile "$WORK/caddy/Caddyfile-wrong-ca" "$WRONG_CA" "https://$GW_NAME:$GW_PORT" \
    "$([[ $ACCESS_LOG == 1 ]] && echo "$WORK/caddy/access-wrong-ca.log")" "$CADDY_IDLE_CONNS"
  caddy_validate "$WORK/caddy/Caddyfile" # lib.sh
fi

nginx -t -q -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" >"$WORK/logs/nginx-configtest.log" 2>&1 ||
  die "nginx rejects its config: $(cat "$WORK/logs/nginx-configtest.log")"
haproxy -c -q -f "$WORK/haproxy/haproxy.cfg" >"$WORK/logs/haproxy-configtest.log" 2>&1 ||
  die "haproxy rejects its config: $(cat "$WORK/logs/haproxy-configtest.log")"

FG_NOTE=""
if ((HAVE_FG)); then
  if "$WORK/bin/fixedgate" validate --config "$WORK/fixedgate/fixedgate.yaml" >"$WORK/logs/fixedgate-validate.log" 2>&1; then
    FG_NOTE="fixedgate built from $ROOT ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo "?")$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo "+dirty"))"
  elif [[ $FIXEDGATE == 1 ]]; then
    cat "$WORK/logs/fixedgate-validate.log" >&2; die "fixedgate validate refuses the gateway config (FIXEDGATE=1)"
  else
    HAVE_FG=0
    FG_NOTE="fixedgate skipped: validate refuses the gateway config (gateway door not in this build yet?): $(head -3 "$WORK/logs/fixedgate-validate.log" | tr '\n' ' ')"
    log "$FG_NOTE"
  fi
fi
sel=()
for t in $TARGETS; do
  [[ $t == fixedgate && $HAVE_FG == 0 ]] && continue
  sel+=("$t")
done
TARGETS=${sel[*]}

# ---- 3. servers -------------------------------------------------------------------------
proxy_of() { case $1 in nginx | haproxy | caddy | fixedgate) echo "$1" ;; *) echo "" ;; esac; }
target_args() {
  case $1 in
    direct) echo "-addr $ORIGIN_IP:$DIRECT_PORT -sni $ORIGIN_NAME -ca $ORIGIN_CA" ;;
    nginx) echo "-addr $NGINX_IP:$GW_PORT -sni $GW_NAME -ca $WORK/nginx/tls/ca.crt" ;;
    haproxy) echo "-addr $HAPROXY_IP:$GW_PORT -sni $GW_NAME -ca $WORK/haproxy/tls/ca.crt" ;;
    caddy) echo "-addr $CADDY_IP:$GW_PORT -sni $GW_NAME -ca $WORK/caddy/tls/ca.crt" ;;
    fixedgate) echo "-addr $FG_IP:$GW_PORT -sni $GW_NAME -ca $WORK/fixedgate/ca/ca.crt$([[ -n $FG_PROXY_IN ]] && echo " -proxy-header $FG_PROXY_IN")" ;;
    *) die "unknown target $1" ;;
  esac
}
mode_args() {
  case $1 in
    ka) echo "gw-ka -c $KA_CONC -post-bytes $POST_BYTES" ;;
    h2) echo "gw-h2 -c $H2_CONNS -streams $H2_STREAMS" ;;
    new) echo "gw-new -c $NEW_CONC -post-bytes $POST_BYTES" ;;
    bulk) echo "gw-bulk -bytes $BULK_BYTES -timeout ${BULK_TIMEOUT}s$([[ $BULK_H2 == 1 ]] && echo " -h2")" ;;
    *) die "unknown mode $1 (want ka, h2, new, bulk)" ;;
  esac
}
lg() { # loadgen MODE [args...] pinned to the load-generator CPU; stderr appended to logs/loadgen.log
  local mode=$1; shift
  nice -n "$NICE" taskset -c "$LOADGEN_CPU" "$LG" "$mode" -host "$GW_NAME" -curves "$CURVES" "$@" 2>>"$WORK/logs/loadgen.log"
}
# target_load TARGET gw-MODE [args]: the load generator run that lib.sh's run_one measures
target_load() {
  local target=$1 mode=$2; shift 2
  # shellcheck disable=SC2046
  lg "$mode" $(target_args "$target") -label "$target" "$@"
}
# every proxy dials the origin from its own source IP, so the origin can count per proxy
src_of() { case $1 in direct) echo 127.0.0.1 ;; nginx) echo "$NGINX_IP" ;; haproxy) echo "$HAPROXY_IP" ;; caddy) echo "$CADDY_IP" ;; fixedgate) echo "$FG_EGRESS" ;; esac; }
origin_stats() { # all "STATS ip=... conns_accepted=.. conns_open=.. conns_h1=.. conns_h2=.. requests=.." lines
  curl -fsS -m 5 --cacert "$ORIGIN_CA" --resolve "$ORIGIN_NAME:$ORIGIN_PORT:$ORIGIN_IP" "https://$ORIGIN_NAME:$ORIGIN_PORT/stats" 2>/dev/null || echo "STATS"
}
OSTATS0=""
run_extra_before() { OSTATS0=$(origin_stats); }
run_extra_after() { # what the origin saw from this target's source IP during the run (incl. warm-up)
  # o_conns_h1/h2: connections first used during the run (0: the proxy only reused older ones);
  # o_requests; o_conns_accepted: every TCP connection accepted (incl. failed handshakes; the
  # /stats connection is subtracted); o_open: connections open right after the run (the pool)
  local ip a b k d out=""
  ip=$(src_of "$1")
  a=$(grep -F "ip=$ip " <<<"$OSTATS0" || echo "STATS")
  b=$(grep -F "ip=$ip " <<<"$(origin_stats)" || echo "STATS")
  for k in conns_h1 conns_h2 requests conns_accepted; do
    d=-
    if [[ $(kv "$b" $k) != - ]]; then
      d=$(($(kv "$b" $k) - $([[ $(kv "$a" $k) == - ]] && echo 0 || kv "$a" $k)))
      # the /stats request after the run came from 127.0.0.1 too
      [[ $k == conns_accepted && $ip == 127.0.0.1 ]] && d=$((d - 1))
    fi
    out+="o_${k}=$d "
  done
  echo "${out}o_open=$(kv "$b" conns_open)"
}
probe() { # TARGET: one HTTP/1.1 and one HTTP/2 GET /json end to end, retried for up to 20 s
  local out
  # shellcheck disable=SC2046
  out=$(lg gw-probe $(target_args "$1") -label "$1" -timeout 20s) || die "$1 is not answering over HTTP/1.1 and HTTP/2; see $WORK/logs/"
  PROBE[$1]=$out
}
declare -A PROBE=() NEG=()
negative_control() { # NAME: with a wrong origin CA the proxy must answer 5xx, never the origin's 200
  local name=$1 out ip s0 s1 dreq dacc why
  ip=$(src_of "$name")
  s0=$(grep -F "ip=$ip " <<<"$(origin_stats)" || echo "STATS")
  start_gw_proxy "$name" wrong-ca
  # shellcheck disable=SC2046
  if ! out=$(lg gw-probe $(target_args "$name") -label "$name-wrong-ca" -expect-fail -timeout 20s); then
    stop_bg "$name"
    die "$name did not refuse an origin certificate signed by an unknown CA (see $WORK/logs/loadgen.log)"
  fi
  stop_bg "$name"
  # the origin's side: the proxy connected (TCP) but no request may have reached the origin
  s1=$(grep -F "ip=$ip " <<<"$(origin_stats)" || echo "STATS")
  dreq=$(($(kv "$s1" requests | sed 's/^-$/0/') - $(kv "$s0" requests | sed 's/^-$/0/')))
  dacc=$(($(kv "$s1" conns_accepted | sed 's/^-$/0/') - $(kv "$s0" conns_accepted | sed 's/^-$/0/')))
  ((dreq == 0)) || die "$name answered $(kv "$out" status) but $dreq request(s) reached the origin with the wrong CA configured"
  ((dacc > 0)) || die "$name answered $(kv "$out" status) but the origin saw no connection from $ip: it failed before the TLS check (DNS? SSRF guard?) or does not dial from $ip, so the negative control proves nothing; see $WORK/logs/$name.log"
  case $name in # the proxy's own reason, from its log
    nginx) why=$(grep -c 'upstream SSL certificate verify error' "$WORK/nginx/error.log" || true) ;;
    haproxy) why=$(grep -c 'certificate verify failed' "$WORK/haproxy/access-wrong-ca.log" || true) ;;
    caddy) why=$(grep -c 'x509:\|unknown authority\|failed to verify' "$WORK/logs/caddy.log" || true) ;;
    fixedgate) why=$(grep -c 'x509:\|unknown authority\|failed to verify' "$WORK/logs/fixedgate.log" || true) ;;
  esac
  NEG[$name]="$(kv "$out" status) (origin: $dacc TCP connection(s) from $ip, 0 requests; verify errors in $name's log: ${why:-0})"
  log "  $name with a wrong origin CA: ${NEG[$name]}"
}

probe direct
if [[ $VERIFY_CHECK == 1 ]]; then
  log "negative control: each proxy started once with a CA that did not sign the origin's certificate"
  for t in $TARGETS; do [[ $t != direct ]] && negative_control "$t"; done
fi
for t in $TARGETS; do
  [[ $t == direct ]] && continue
  start_gw_proxy "$t"
  probe "$t"
done
log "targets: $TARGETS; modes: $MODES"
log "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine adds noise; rounds are interleaved)"

# ---- 4. rounds --------------------------------------------------------------------------
common=(-d "${DURATION}s" -warmup "${WARMUP}s")
log "priming every target (1 s of gw-new and gw-h2 each, not recorded)"
for t in $TARGETS; do
  # shellcheck disable=SC2046
  lg gw-new $(target_args "$t") -c 16 -d 1s -warmup 0s >/dev/null || true
  # shellcheck disable=SC2046
  lg gw-h2 $(target_args "$t") -c 4 -d 1s -warmup 0s >/dev/null || true
done
for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS"
  order=($TARGETS)
  rot=$(((r - 1) % ${#order[@]}))
  order=("${order[@]:rot}" "${order[@]:0:rot}")
  for t in "${order[@]}"; do
    for m in $MODES; do
      # shellcheck disable=SC2046
      run_one "$t" "$r" $(mode_args "$m") "${common[@]}"
    done
  done
done
for t in $TARGETS; do [[ $t != direct ]] && stop_bg "$t"; done
ORIGIN_FINAL=$(origin_stats)
stop_bg dns
stop_bg origin

# ---- 5. report --------------------------------------------------------------------------
sumk() { # sumk TARGET MODE KEY: sum over the numbered rounds
  awk -v t="T=$1" -v m="mode=$2" -v k="$3" '$1==t && $2 ~ /^R=[0-9]+$/ && index($0," " m " ") {
      for (i=3;i<=NF;i++) if (index($i, k "=") == 1) { s += substr($i, length(k)+2); n++ } }
      / failed=1/ && $1==t && index($0," " m " ") { f++ }
    END { if (f) printf "FAIL"; else if (n) printf "%d", s; else printf "-" }' "$RAW"
}
nfail() { # nfail TARGET MODE: numbered rounds whose loadgen run failed
  awk -v t="T=$1" -v m="mode=$2" '$1==t && $2 ~ /^R=[0-9]+$/ && index($0," " m " ") && / failed=1/ { f++ } END { print f + 0 }' "$RAW"
}
declare -A M
for t in $TARGETS; do
  for m in $MODES; do
    gm=gw-$m
    M[$t,$m,rps]=$(med "$t" $gm rps); M[$t,$m,p50]=$(med "$t" $gm p50_ms); M[$t,$m,p99]=$(med "$t" $gm p99_ms)
    M[$t,$m,err]=$(sumk "$t" $gm err_total); M[$t,$m,px]=$(med "$t" $gm px_us_req); M[$t,$m,or]=$(med "$t" $gm or_us_req)
    M[$t,$m,cconns]=$(med "$t" $gm conns); M[$t,$m,oh1]=$(med "$t" $gm o_conns_h1); M[$t,$m,oh2]=$(med "$t" $gm o_conns_h2)
    M[$t,$m,oreq]=$(med "$t" $gm o_requests); M[$t,$m,okt]=$(med "$t" $gm ok_total); M[$t,$m,oopen]=$(med "$t" $gm o_open); M[$t,$m,oacc]=$(med "$t" $gm o_conns_accepted)
    if [[ $m == bulk ]]; then
      M[$t,$m,mib]=$(med "$t" $gm mib_s); M[$t,$m,pxg]=$(med "$t" $gm px_s_gib); M[$t,$m,org]=$(med "$t" $gm or_s_gib)
      M[$t,$m,ttfb]=$(med "$t" $gm ttfb_ms); M[$t,$m,fail]=$(nfail "$t" $gm)
    fi
  done
done
col() { [[ " $MODES " == *" $1 "* ]]; }

REPORT=$WORK/report.txt
{
  echo
  echo "fixedgate gateway benchmark — $(date -u '+%Y-%m-%d %H:%M UTC') — $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(uname -r)"
  echo "servers (origin, DNS, proxy) on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU; rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s curves=$CURVES nofile=$NOFILE"
  req="GET /json (200 B)"
  [ "$POST_BYTES" -gt 0 ] && req="POST /json with a $POST_BYTES-byte JSON body (ka, new), answered with 200 B"
  echo "ka: $KA_CONC HTTP/1.1 keep-alive connections; h2: $H2_CONNS connections x $H2_STREAMS streams; new: $NEW_CONC workers, fresh TLS per request; $req, Host: $GW_NAME"
  ((has_bulk)) && echo "bulk: one $([[ $BULK_H2 == 1 ]] && echo HTTP/2 || echo HTTP/1.1) connection per run, warm-up GET /json, then GET /bulk?bytes=$BULK_BYTES ($(awk -v b="$BULK_BYTES" 'BEGIN{printf "%.3g MiB", b / 1048576}')) timed to its last byte; one run per target and round"
  echo "backend: origin $ORIGIN offers $BACKEND_PROTO to the proxies; direct uses $ORIGIN_IP:$DIRECT_PORT (h2 + http/1.1), same origin process"
  echo "nginx $NGINX_VER ($NGINX_PKG, $NGINX_SSL), haproxy $HAPROXY_VER ($HAPROXY_SSL), caddy $([[ -x $WORK/bin/caddy ]] && echo "$(mod_ver "$WORK/bin/caddy") (built with $(go version "$WORK/bin/caddy" | awk '{print $2}'))" || echo -), $(go version | awk '{print $3}')"
  echo "access logs: $([[ $ACCESS_LOG == 1 ]] && echo "on (nginx buffered 64k to a file, haproxy log-to-stdout into a file, Caddy JSON to a file, fixedgate JSON)" || echo "peers off, fixedgate JSON")"
  [[ -n $FG_NOTE ]] && echo "$FG_NOTE"
  echo "medians of $ROUNDS rounds; err = failed requests summed over all rounds incl. warm-up$( ((has_bulk)) && echo "; bulk: fail = failed runs")"
  echo
  hdr=$(printf '%-10s' target)
  for m in $MODES; do
    if [[ $m == bulk ]]; then hdr+=$(printf ' | %10s %8s %8s %8s %4s' bulk_MiB/s ttfb_ms px_s/GiB or_s/GiB fail)
    else hdr+=$(printf ' | %8s %7s %7s %4s %8s' "$m/s" p50_ms p99_ms err px_us/req); fi
  done
  echo "$hdr"
  for t in $TARGETS; do
    line=$(printf '%-10s' "$t")
    for m in $MODES; do
      if [[ $m == bulk ]]; then
        line+=$(printf ' | %10s %8s %8s %8s %4s' "$(fmt "${M[$t,$m,mib]}")" "$(fmt "${M[$t,$m,ttfb]}" 2)" \
          "$([[ $t == direct ]] && echo - || fmt "${M[$t,$m,pxg]}" 2)" "$(fmt "${M[$t,$m,org]}" 2)" "${M[$t,$m,fail]}")
        continue
      fi
      line+=$(printf ' | %8s %7s %7s %4s %8s' "$(fmt "${M[$t,$m,rps]}")" "$(fmt "${M[$t,$m,p50]}" 2)" "$(fmt "${M[$t,$m,p99]}" 2)" \
        "${M[$t,$m,err]}" "$([[ $t == direct ]] && echo - || fmt "${M[$t,$m,px]}" 1)")
    done
    echo "$line"
  done
  echo
  echo "ratios vs direct (req/s$( ((has_bulk)) && echo ", bulk MiB/s"): higher is better; p99: lower is better)"
  hdr=$(printf '%-10s' target)
  for m in $MODES; do
    if [[ $m == bulk ]]; then hdr+=$(printf ' %10s' bulk_MiB/s); else hdr+=$(printf ' %8s %8s' "$m/s" "${m}_p99"); fi
  done
  echo "$hdr"
  for t in $TARGETS; do
    [[ $t == direct ]] && continue
    line=$(printf '%-10s' "$t")
    for m in $MODES; do
      if [[ $m == bulk ]]; then line+=$(printf ' %10s' "$(ratio "${M[$t,$m,mib]}" "${M[direct,$m,mib]:--}")"); continue; fi
      line+=$(printf ' %8s %8s' "$(ratio "${M[$t,$m,rps]}" "${M[direct,$m,rps]:--}")" "$(ratio "${M[$t,$m,p99]}" "${M[direct,$m,p99]:--}")")
    done
    echo "$line"
  done
  # bulk's line in the "A / B" sections: MiB/s and proxy CPU seconds per GiB
  bulk_vs() { # A B INDENT: "bulk MiB/s x  px_s/GiB y" and, with ROUNDS > 1, the per-round ratios
    printf '  %-4s MiB/s %s  px_s/GiB %s\n' bulk "$(ratio "${M[$1,bulk,mib]}" "${M[$2,bulk,mib]}")" "$(ratio "${M[$1,bulk,pxg]}" "${M[$2,bulk,pxg]}")"
    if ((ROUNDS > 1)); then
      printf '       per round: MiB/s [%s]  px_s/GiB [%s]\n' "$(rr "$1" "$2" gw-bulk mib_s)" "$(rr "$1" "$2" gw-bulk px_s_gib)"
    fi
  }
  for peer in nginx haproxy caddy; do
    [[ " $TARGETS " == *" fixedgate "* && " $TARGETS " == *" $peer "* ]] || continue
    echo
    echo "fixedgate / $peer (req/s$( ((has_bulk)) && echo ", MiB/s"): >1 is better for fixedgate; p99, px_us/req$( ((has_bulk)) && echo ", px_s/GiB"): <1 is better)"
    for m in $MODES; do
      [[ $m == bulk ]] && { bulk_vs fixedgate "$peer"; continue; }
      printf '  %-4s req/s %s  p99 %s  px_us/req %s\n' "$m" "$(ratio "${M[fixedgate,$m,rps]}" "${M[$peer,$m,rps]}")" \
        "$(ratio "${M[fixedgate,$m,p99]}" "${M[$peer,$m,p99]}")" "$(ratio "${M[fixedgate,$m,px]}" "${M[$peer,$m,px]}")"
      if ((ROUNDS > 1)); then
        printf '       per round: req/s [%s]  p99 [%s]  px_us/req [%s]\n' "$(rr fixedgate "$peer" gw-$m rps)" \
          "$(rr fixedgate "$peer" gw-$m p99_ms)" "$(rr fixedgate "$peer" gw-$m px_us_req)"
      fi
    done
  done
  if [[ " $TARGETS " == *" nginx "* && " $TARGETS " == *" haproxy "* ]]; then
    echo
    echo "haproxy / nginx (reference: how far apart the two peers are)"
    for m in $MODES; do
      if [[ $m == bulk ]]; then
        printf '  %-4s MiB/s %s  px_s/GiB %s' bulk "$(ratio "${M[haproxy,bulk,mib]}" "${M[nginx,bulk,mib]}")" "$(ratio "${M[haproxy,bulk,pxg]}" "${M[nginx,bulk,pxg]}")"
        ((ROUNDS > 1)) && printf '  per round px_s/GiB [%s]' "$(rr haproxy nginx gw-bulk px_s_gib)"
        echo
        continue
      fi
      printf '  %-4s req/s %s  p99 %s  px_us/req %s' "$m" "$(ratio "${M[haproxy,$m,rps]}" "${M[nginx,$m,rps]}")" \
        "$(ratio "${M[haproxy,$m,p99]}" "${M[nginx,$m,p99]}")" "$(ratio "${M[haproxy,$m,px]}" "${M[nginx,$m,px]}")"
      ((ROUNDS > 1)) && printf '  per round px_us/req [%s]' "$(rr haproxy nginx gw-$m px_us_req)"
      echo
    done
  fi
  echo
  echo "what the origin saw from each target's source IP per run (medians; whole run incl. warm-up; direct: the client's own connections)"
  echo "  client_conns: TLS connections the loadgen opened; new_h1/new_h2: origin connections first used during the run"
  echo "  (0 = the proxy only reused connections it had opened before); open_after: connections open at the origin after"
  echo "  the run (the proxy's idle pool); accepted: every TCP connection the origin accepted (incl. failed handshakes);"
  echo "  client_reqs / origin_reqs: requests the client got answered / the origin served (equal: nothing cached or lost)"
  ((has_bulk)) && echo "  bulk: 2 requests per run (warm-up + download); its origin CPU is or_s/GiB in the first table, not per request"
  printf '  %-10s %-4s %12s %7s %7s %10s %9s %11s %11s %13s\n' target mode client_conns new_h1 new_h2 open_after accepted client_reqs origin_reqs origin_us/req
  for t in $TARGETS; do
    for m in $MODES; do
      printf '  %-10s %-4s %12s %7s %7s %10s %9s %11s %11s %13s\n' "$t" "$m" "$(fmt "${M[$t,$m,cconns]}")" "$(fmt "${M[$t,$m,oh1]}")" \
        "$(fmt "${M[$t,$m,oh2]}")" "$(fmt "${M[$t,$m,oopen]}")" "$(fmt "${M[$t,$m,oacc]}")" "$(fmt "${M[$t,$m,okt]}")" \
        "$(fmt "${M[$t,$m,oreq]}")" "$([[ $m == bulk ]] && echo - || fmt "${M[$t,$m,or]}" 1)"
    done
  done
  echo
  echo "backend protocol: connections each proxy opened to the origin over the whole run, by ALPN (origin port $ORIGIN_PORT offers $BACKEND_PROTO)"
  for t in $TARGETS; do
    [[ $t == direct ]] && continue
    l=$(grep -F "ip=$(src_of "$t") " <<<"$ORIGIN_FINAL" || echo "STATS")
    printf '  %-10s http/1.1 %s  h2 %s  requests %s\n' "$t" "$(kv "$l" conns_h1)" "$(kv "$l" conns_h2)" "$(kv "$l" requests)"
  done
  echo
  echo "TLS negotiated by the client (probe: HTTP/1.1 | HTTP/2)"
  for t in $TARGETS; do
    printf '  %-10s %s | %s\n' "$t" "$(kv "${PROBE[$t]:-}" tls_h1)" "$(kv "${PROBE[$t]:-}" tls_h2)"
  done
  if [[ $VERIFY_CHECK == 1 ]]; then
    echo
    echo "origin certificate verification (negative control: each proxy started once trusting a CA that did not sign the origin's certificate)"
    for t in $TARGETS; do [[ $t != direct ]] && printf '  %-10s answered %s\n' "$t" "${NEG[$t]:--}"; done
  fi
  echo
  echo "spread over rounds (req/s min..max$( ((has_bulk)) && echo "; bulk: MiB/s"))"
  for t in $TARGETS; do
    printf '  %-10s' "$t"
    for m in $MODES; do printf ' %s %s' "$m" "$(spread "$t" gw-$m "$([[ $m == bulk ]] && echo mib_s || echo rps)")"; done
    echo
  done
  echo
  echo "CPU during the runs (medians, %): server core (origin + proxy) / loadgen core / other work on the machine"
  echo "  a core near 100% is that run's bottleneck; a high 'other' means the run was disturbed"
  hdr=$(printf '  %-10s' target); for m in $MODES; do hdr+=$(printf ' %12s' "$m"); done; echo "$hdr"
  for t in $TARGETS; do
    printf '  %-10s' "$t"
    for m in $MODES; do
      printf ' %12s' "$(fmt "$(med "$t" gw-$m srv_core_pct)")/$(fmt "$(med "$t" gw-$m lg_core_pct)")/$(fmt "$(med "$t" gw-$m other_pct)")"
    done
    echo
  done
  echo
  echo "columns: px_us/req = the proxy's CPU time (utime+stime of all its processes, from /proc) per successful request,"
  echo "  over the whole run incl. warm-up and connection setup; origin_us/req the same for the origin."
  ((has_bulk)) && echo "  bulk: px_s/GiB = the proxy's CPU seconds over the run (connection, warm-up GET, download) per GiB downloaded; or_s/GiB the same for the origin; ttfb_ms = request written -> response headers."
  echo "raw: $RAW"
} | tee "$REPORT"
