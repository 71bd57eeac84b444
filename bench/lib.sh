# bench/lib.sh — helpers shared by bench/run.sh (CONNECT), bench/gateway.sh (reverse proxy) and
# bench/h2spec.sh (HTTP/2 conformance of the reverse proxies).
# Sourced, not run. The sourcing script sets, before calling anything here:
#   WORK (work dir, with logs/ and bin/), RAW (results file), NICE, SERVER_CPU, LOADGEN_CPU,
#   INSTALL, FIXEDGATE, ROOT, ROUNDS; and, for run_one, the functions proxy_of TARGET and
#   target_load TARGET MODE [ARGS...] (runs the load generator, prints its RESULT line), and
#   optionally run_extra_before TARGET MODE / run_extra_after TARGET MODE (prints extra k=v).
# LOG_TAG (default "bench") prefixes log lines.
# shellcheck shell=bash

HZ=$(getconf CLK_TCK)

log() { printf '[%s %(%H:%M:%S)T] %s\n' "${LOG_TAG:-bench}" -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---- process bookkeeping: we only ever signal PIDs we started ----------------------------
declare -A PIDS=()
start_bg() { # name cmd... ; pinned to SERVER_CPU, stdout+stderr appended to $WORK/logs/name.log
  local name=$1; shift
  echo "=== $(date -u +%FT%TZ) start: $*" >>"$WORK/logs/$name.log"
  nice -n "$NICE" taskset -c "$SERVER_CPU" "$@" >>"$WORK/logs/$name.log" 2>&1 &
  PIDS[$name]=$!
}
stop_bg() {
  local name=$1 pid=${PIDS[$1]:-}
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "$name ($pid) ignored SIGTERM for 10s; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for n in "${!PIDS[@]}"; do stop_bg "$n"; done
  [[ -f ${INSTALLED_POLICY_RC:-/nonexistent} ]] && rm -f "$INSTALLED_POLICY_RC"
  log "work dir (configs, logs, raw results): $WORK"
  exit "$rc"
}
install_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

# ---- /proc readings ---------------------------------------------------------------------
tree_pids() { local p=$1 c; echo "$p"; for c in $(pgrep -P "$p" 2>/dev/null || true); do tree_pids "$c"; done; }
cpu_ticks() { # utime+stime of a process and its descendants, in clock ticks
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '{sub(/^.*\) /,""); print $12+$13}' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
rss_kib() { # VmRSS of a process and its descendants, KiB
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
fd_count() { local n=0 p; for p in $(tree_pids "$1"); do n=$((n + $(ls "/proc/$p/fd" 2>/dev/null | wc -l))); done; echo "$n"; }
kv() { # kv "line" key -> value (or "-")
  local v
  v=$(grep -o " $2=[^ ]*" <<<" $1" | head -1 | cut -d= -f2-) || true
  echo "${v:--}"
}
cpu_snap() { # "busy total" jiffies for the whole machine, the server CPU and the loadgen CPU
  awk -v s="cpu$SERVER_CPU" -v l="cpu$LOADGEN_CPU" '
    $1 == "cpu" || $1 == s || $1 == l { b = $2 + $3 + $4 + $7 + $8 + $9; t = b + $5 + $6; v[$1] = b " " t }
    END { print v["cpu"], v[s], v[l] }' /proc/stat
}
port_free() { ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# ---- packages and builds ------------------------------------------------------------------
# ensure_pkgs PKG...: apt-get install the given packages (callers pass only missing ones).
# A temporary policy-rc.d keeps apt from starting them as services; apt-get update runs first
# only when the install fails (stale or empty package lists).
ensure_pkgs() {
  (($#)) || return 0
  [[ $INSTALL == 1 ]] || die "missing $* and INSTALL=0"
  log "installing $* (services are not started: policy-rc.d)"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    INSTALLED_POLICY_RC=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$INSTALLED_POLICY_RC"; chmod +x "$INSTALLED_POLICY_RC"
  fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$WORK/logs/apt.log" 2>&1; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -qq >>"$WORK/logs/apt.log" 2>&1 || die "apt-get update failed, see $WORK/logs/apt.log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$WORK/logs/apt.log" 2>&1 ||
      die "apt-get install failed, see $WORK/logs/apt.log"
  fi
  [[ -n ${INSTALLED_POLICY_RC:-} ]] && rm -f "$INSTALLED_POLICY_RC" && INSTALLED_POLICY_RC=
  return 0
}

build_loadgen() { # -> $WORK/bin/loadgen, sets LG
  export GOFLAGS=${GOFLAGS:--buildvcs=false}
  log "building loadgen"
  (cd "$ROOT" && go build -o "$WORK/bin/loadgen" ./bench/loadgen) || die "loadgen does not build"
  LG=$WORK/bin/loadgen
}

# build_fixedgate: -> $WORK/bin/fixedgate; sets HAVE_FG=1 when it builds. FIXEDGATE=0 skips,
# FIXEDGATE=1 makes a build failure fatal, auto only logs it.
build_fixedgate() {
  HAVE_FG=0
  [[ $FIXEDGATE != 0 ]] || return 0
  export GOFLAGS=${GOFLAGS:--buildvcs=false}
  log "building fixedgate"
  if (cd "$ROOT" && go build -o "$WORK/bin/fixedgate" ./cmd/fixedgate) >"$WORK/logs/fixedgate-build.log" 2>&1; then
    HAVE_FG=1
  elif [[ $FIXEDGATE == 1 ]]; then
    cat "$WORK/logs/fixedgate-build.log" >&2; die "fixedgate does not build (FIXEDGATE=1)"
  else
    log "fixedgate does not build yet (see $WORK/logs/fixedgate-build.log): its rows are skipped"
  fi
}

# go_install_tool NAME PKG@VERSION [LIMIT_S]: `go install PKG@VERSION` into $WORK/bin (GOBIN)
# unless $WORK/bin/NAME is already there; run from $WORK, so the repository's go.mod is never
# touched. Bounded by LIMIT_S seconds (default 1200).
go_install_tool() {
  local name=$1 pkg=$2 limit=${3:-1200}
  [[ -x $WORK/bin/$name ]] && return 0
  log "installing $name: go install $pkg (GOBIN=$WORK/bin, at most ${limit}s)"
  if ! (cd "$WORK" && GOWORK=off GOBIN="$WORK/bin" GOFLAGS=${GOFLAGS:--buildvcs=false} \
    timeout --kill-after=10 "$limit" go install "$pkg") >"$WORK/logs/$name-build.log" 2>&1; then
    tail -20 "$WORK/logs/$name-build.log" >&2
    die "go install $pkg failed (see $WORK/logs/$name-build.log)"
  fi
}
# mod_ver BINARY: the module version a `go install`ed binary was built from (h2spec --version
# prints a constant, and caddy version "unknown" when caddy is the main module)
mod_ver() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" {print $3; exit}'; }

# ---- gateway peers (bench/gateway.sh, bench/h2spec.sh) ------------------------------------
# nginx, haproxy, Caddy and fixedgate as TLS reverse proxies in front of the loadgen origin. The
# caller sets WORK, LG (build_loadgen), ORIGIN (ip:port), ORIGIN_IP, ORIGIN_PORT, ORIGIN_CA,
# ORIGIN_NAME, GW_NAME (the proxies' TLS name), GW_PORT, NGINX_IP, HAPROXY_IP, CADDY_IP, FG_IP,
# FG_ADMIN, FG_EGRESS, ACCESS_LOG; FG_ROUTE_HOST (default GW_NAME) is the Host fixedgate's route
# answers. Caddy is `go install`ed into $WORK/bin by the caller (go_install_tool caddy ...).

# ensure_gw_peers: installs nginx-light, haproxy, util-linux and curl when missing, sets
# NGINX_VER, NGINX_PKG, NGINX_SSL, HAPROXY_VER, HAPROXY_SSL and NGINX_USER (nginx workers' user);
# dies without nginx's HTTP/2 or SSL module.
ensure_gw_peers() {
  local need_pkgs=()
  command -v nginx >/dev/null || need_pkgs+=(nginx-light)
  command -v haproxy >/dev/null || need_pkgs+=(haproxy)
  command -v taskset >/dev/null || need_pkgs+=(util-linux)
  command -v curl >/dev/null || need_pkgs+=(curl)
  ensure_pkgs "${need_pkgs[@]}"
  NGINX_VER=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
  NGINX_PKG=$(dpkg-query -W -f='${binary:Package} ${Version}' nginx-light 2>/dev/null || dpkg -S "$(command -v nginx)" 2>/dev/null | cut -d: -f1 || echo "?")
  NGINX_SSL=$(nginx -V 2>&1 | sed -n 's/^built with \(OpenSSL [^ ]*\).*/\1/p')
  HAPROXY_VER=$(haproxy -v 2>&1 | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p')
  HAPROXY_SSL=$(haproxy -vv 2>&1 | sed -n 's/^Running on \(OpenSSL version : \)\?\(OpenSSL [^ ]*\).*/\2/p' | head -1)
  nginx -V 2>&1 | grep -q -- '--with-http_v2_module' || die "this nginx has no HTTP/2 module"
  nginx -V 2>&1 | grep -q -- '--with-http_ssl_module' || die "this nginx has no SSL module"
  NGINX_USER=$(id -u www-data >/dev/null 2>&1 && echo www-data || echo "nobody nogroup")
}

# start_origin_dns LIFE [extra origin args]: the loadgen origin on $ORIGIN (its CA written to
# $ORIGIN_CA) and a DNS server answering $ORIGIN_NAME -> $ORIGIN_IP, both exiting after LIFE
# seconds at the latest; waits until both are ready, sets DNS_ADDR.
start_origin_dns() {
  local life=$1; shift
  start_bg origin "$LG" origin -listen "$ORIGIN" "$@" -ca-out "$ORIGIN_CA" -dns "$ORIGIN_NAME" -max-life "${life}s"
  start_bg dns "$LG" dns -listen 127.0.0.1:0 -addr-out "$WORK/dns.addr" -name "$ORIGIN_NAME=$ORIGIN_IP" -ttl 300 -max-life "${life}s"
  for _ in $(seq 1 100); do
    grep -q '^READY' "$WORK/logs/origin.log" 2>/dev/null && grep -q '^READY' "$WORK/logs/dns.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^READY' "$WORK/logs/origin.log" || die "origin did not start: $(cat "$WORK/logs/origin.log")"
  grep -q '^READY' "$WORK/logs/dns.log" || die "dns did not start: $(cat "$WORK/logs/dns.log")"
  DNS_ADDR=$(cat "$WORK/dns.addr")
}

# gen_gw_peer_certs: server certificates for nginx and haproxy ($GW_NAME and their IPs), signed
# by a fresh CA each (ca.crt next to them).
gen_gw_peer_certs() {
  mkdir -p "$WORK/nginx/tmp" "$WORK/haproxy" "$WORK/fixedgate"
  "$LG" gencert -dir "$WORK/nginx/tls" -ips "$NGINX_IP" -dns "$GW_NAME" -cn "$GW_NAME"
  "$LG" gencert -dir "$WORK/haproxy/tls" -ips "$HAPROXY_IP" -dns "$GW_NAME" -cn "$GW_NAME"
  cat "$WORK/haproxy/tls/server.crt" "$WORK/haproxy/tls/server.key" >"$WORK/haproxy/tls/server.pem"
}

ver_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" == "$2" ]]; } # ver_ge A B: A >= B
write_nginx_conf() { # FILE CA
  local listen h2on=""
  if ver_ge "$NGINX_VER" 1.25.1; then listen="listen $NGINX_IP:$GW_PORT ssl;"; h2on="http2 on;"
  else listen="listen $NGINX_IP:$GW_PORT ssl http2;"; fi # 1.22 in Debian 12
  local temps="client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;"
  local m
  for m in fastcgi uwsgi scgi; do
    nginx -V 2>&1 | grep -q -- "--without-http_${m}_module" || temps+="
    ${m}_temp_path $WORK/nginx/tmp/$m;"
  done
  cat >"$1" <<EOF
# nginx $NGINX_VER as a TLS reverse proxy; Debian defaults kept except where noted.
user $NGINX_USER;
master_process on;
worker_processes 1;
worker_rlimit_nofile 8192;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    $temps
    $([[ $ACCESS_LOG == 1 ]] && echo "access_log $WORK/nginx/access.log combined buffer=64k flush=1s;" || echo "access_log off;")
    # the default keepalive_requests (1000) would close the bench's long-lived connections
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream origin_pool {
        server $ORIGIN_IP:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        $listen
        $h2on
        server_name $GW_NAME;
        ssl_certificate $WORK/nginx/tls/server.crt;
        ssl_certificate_key $WORK/nginx/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass https://origin_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # the forwarding headers fixedgate sets on every gateway request (the issue requires them)
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $2;
            proxy_ssl_name $ORIGIN_NAME;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            # dial the origin from the proxy's own IP (fixedgate dials from its egress IP), so the
            # origin can count each proxy's connections
            proxy_bind $NGINX_IP;
        }
    }
}
EOF
}
write_haproxy_cfg() { # FILE CA [neg]: neg = the negative-control variant, which always logs the backend TLS error
  local logon=$ACCESS_LOG fmt="option httplog"
  if [[ ${3:-} == neg ]]; then logon=1; fmt='log-format "%ci:%cp [%tr] %ST %tsc %b/%s ssl_bc_err=%[ssl_bc_err] %[ssl_bc_err_str]"'; fi
  cat >"$1" <<EOF
# haproxy $HAPROXY_VER as a TLS reverse proxy
global
    nbthread 1
    maxconn 4096
$([[ $logon == 1 ]] && echo "    log stdout format raw local0 info   # one line per request, to $WORK/haproxy/access*.log")
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-server-options ssl-min-ver TLSv1.2
    # haproxy prefers its own cipher order (OpenSSL's: AES-256 first); put AES-128-GCM first so
    # every target negotiates the same TLS 1.3 suite with the client (nginx follows the client's)
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
defaults
    mode http
$([[ $logon == 1 ]] && printf '    log global\n    %s' "$fmt" || echo "    no log")
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s
frontend gw
    bind $HAPROXY_IP:$GW_PORT ssl crt $WORK/haproxy/tls/server.pem alpn h2,http/1.1
    # the forwarding headers fixedgate sets on every gateway request (the issue requires them)
    option forwardfor
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Proto https
    default_backend origin_pool
backend origin_pool
    http-reuse always
    server o1 $ORIGIN_IP:$ORIGIN_PORT ssl verify required ca-file $2 sni str($ORIGIN_NAME) verifyhost $ORIGIN_NAME alpn http/1.1 source $HAPROXY_IP
EOF
}
write_fixedgate_yaml() { # FILE CA
  cat >"$1" <<EOF
listen:
  - {address: "$FG_IP:$GW_PORT", tls: true$([[ -n ${FG_PROXY_IN:-} ]] && echo ", proxy_protocol: {trusted: [127.0.0.0/8]}")}
tls:
  self_signed: {dir: $WORK/fixedgate/ca}
  default_name: $GW_NAME
routes:
  - {host: ${FG_ROUTE_HOST:-$GW_NAME}, upstream: "https://$ORIGIN_NAME:$ORIGIN_PORT"}
upstream_tls: {ca_file: $2}
resolver: {servers: ["$DNS_ADDR"]}
forward: {allow_networks: [127.0.0.0/8]}
egress: {addresses: [$FG_EGRESS]}
admin: {listen: "$FG_ADMIN"}
log: {level: info, format: json$([[ $ACCESS_LOG == 1 ]] && echo ", flush_interval: 1s")}   # as nginx's access_log buffer=64k flush=1s
# the load comes from one client address: lift the per-client limits (defaults 200/s) out of the way
limits: {max_conns_per_listener: 20000, per_client: {rate: 1000000, burst: 1000000, max_tunnels: 100000, max_requests_in_flight: 100000}}
EOF
}
# write_caddyfile FILE CA [SITE [ACCESS_LOG_FILE [IDLE_CONNS]]]: Caddy as the same TLS reverse
# proxy: site SITE (default https://$CADDY_IP:$GW_PORT) bound to $CADDY_IP only, certificate
# $WORK/caddy/tls/server.{crt,key}; HTTP/1.1 to the origin $ORIGIN_IP:$ORIGIN_PORT, dialled from
# $CADDY_IP, its certificate verified as $ORIGIN_NAME against CA. Caddy sets X-Forwarded-For,
# -Proto and -Host itself (reverse_proxy's default), the headers nginx and haproxy are told to set.
# ACCESS_LOG_FILE: one JSON line per request into that file (no rolling); IDLE_CONNS: idle origin
# connections kept (keepalive_idle_conns_per_host; Caddy's default is 32).
write_caddyfile() {
  local site=${3:-https://$CADDY_IP:$GW_PORT} alog=${4:-} idle=${5:-} logblk="" kablk=""
  [[ -n $alog ]] && logblk="
	log {
		output file $alog {
			roll_disabled
		}
		format json
	}"
  [[ -n $idle ]] && kablk="
			keepalive_idle_conns_per_host $idle"
  cat >"$1" <<EOF
# Caddy as a TLS reverse proxy; no admin endpoint, no HTTP/3, no ACME
{
	admin off
	persist_config off
	auto_https disable_redirects
	skip_install_trust
	storage file_system $WORK/caddy/data
	servers {
		protocols h1 h2
	}
}
$site {
	bind $CADDY_IP
	tls $WORK/caddy/tls/server.crt $WORK/caddy/tls/server.key$logblk
	reverse_proxy https://$ORIGIN_IP:$ORIGIN_PORT {
		transport http {
			tls_server_name $ORIGIN_NAME
			tls_trust_pool file $2
			versions 1.1
			local_address $CADDY_IP$kablk
		}
	}
}
EOF
}
# Caddy keeps its state (autosave, locks) under the work dir, not in root's home
CADDY_ENV=(env HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy/data" XDG_CONFIG_HOME="$WORK/caddy/config")
# caddy_validate FILE: `caddy validate` of a Caddyfile, dies with its complaint
caddy_validate() {
  "${CADDY_ENV[@]}" timeout 60 "$WORK/bin/caddy" validate --config "$1" --adapter caddyfile >"$WORK/logs/caddy-validate.log" 2>&1 ||
    die "caddy rejects $1: $(tail -5 "$WORK/logs/caddy-validate.log")"
}
wait_fixedgate_ready() {
  local ok=0
  for _ in $(seq 1 100); do
    if curl -fsS -m 1 -o /dev/null "http://$FG_ADMIN/readyz" 2>/dev/null; then ok=1; break; fi
    kill -0 "${PIDS[fixedgate]}" 2>/dev/null || break
    sleep 0.2
  done
  ((ok)) || { tail -20 "$WORK/logs/fixedgate.log" >&2; die "fixedgate /readyz never answered 200"; }
}
start_gw_proxy() { # NAME [wrong-ca]: nginx | haproxy | caddy | fixedgate, with the config written by write_*
  local name=$1 variant=${2:-}
  case $name in
    nginx)
      local conf=$WORK/nginx/nginx.conf
      [[ $variant == wrong-ca ]] && conf=$WORK/nginx/nginx-wrong-ca.conf
      start_bg nginx nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$conf" -g 'daemon off;' ;;
    haproxy)
      local cfg=$WORK/haproxy/haproxy.cfg
      [[ $variant == wrong-ca ]] && cfg=$WORK/haproxy/haproxy-wrong-ca.cfg
      # haproxy's "log stdout" goes to its own file: it clears O_APPEND on fd 1, so it must
      # not share the file that start_bg appends to
      # shellcheck disable=SC2016
      start_bg haproxy sh -c 'exec haproxy -f "$1" -db >"$2"' sh "$cfg" "$WORK/haproxy/access${variant:+-$variant}.log" ;;
    caddy)
      local cf=$WORK/caddy/Caddyfile
      [[ $variant == wrong-ca ]] && cf=$WORK/caddy/Caddyfile-wrong-ca
      start_bg caddy "${CADDY_ENV[@]}" "$WORK/bin/caddy" run --config "$cf" --adapter caddyfile ;;
    fixedgate)
      local y=$WORK/fixedgate/fixedgate.yaml
      [[ $variant == wrong-ca ]] && y=$WORK/fixedgate/fixedgate-wrong-ca.yaml
      start_bg fixedgate "$WORK/bin/fixedgate" serve --config "$y"
      wait_fixedgate_ready ;;
  esac
}

# ---- one measured run -------------------------------------------------------------------
# run_one TARGET ROUND MODE [extra loadgen args]: one loadgen run, appended to $RAW as
#   T=target R=round RESULT-fields px_ticks=.. origin_ticks=.. srv_core_pct=.. lg_core_pct=.. other_pct=.. [extra]
run_one() {
  local target=$1 round=$2 mode=$3; shift 3
  local pname pid=0 px0=0 px1=0 og0 og1 line extra=""
  pname=$(proxy_of "$target")
  [[ -n $pname ]] && pid=${PIDS[$pname]}
  local s0 s1 diag
  if declare -F run_extra_before >/dev/null; then run_extra_before "$target" "$mode"; fi
  og0=$(cpu_ticks "${PIDS[origin]}")
  ((pid)) && px0=$(cpu_ticks "$pid")
  s0=$(cpu_snap)
  line=$(target_load "$target" "$mode" "$@" | grep '^RESULT' | tail -1) || true
  s1=$(cpu_snap)
  ((pid)) && px1=$(cpu_ticks "$pid")
  og1=$(cpu_ticks "${PIDS[origin]}")
  if declare -F run_extra_after >/dev/null; then extra=" $(run_extra_after "$target" "$mode")"; fi
  if [[ -z $line ]]; then
    log "  $target $mode: loadgen failed (see $WORK/logs/loadgen.log)"
    line="RESULT mode=$mode failed=1"
  fi
  # whole-run CPU picture: server core busy %, loadgen core busy %, and the share of the
  # machine not charged to origin + proxy + loadgen (other people's work, unattributed softirq)
  diag=$(awk -v a="$s0" -v b="$s1" -v ours=$((px1 - px0 + og1 - og0)) -v lgms="$(kv "$line" lg_cpu_ms_total)" -v hz="$HZ" 'BEGIN {
      split(a, x, " "); split(b, y, " ")
      lgt = (lgms == "-") ? 0 : lgms * hz / 1000
      tot = y[2] - x[2]; if (tot <= 0) tot = 1
      st = y[4] - x[4]; if (st <= 0) st = 1
      lt = y[6] - x[6]; if (lt <= 0) lt = 1
      o = 100 * (y[1] - x[1] - ours - lgt) / tot; if (o < 0) o = 0
      printf "srv_core_pct=%.0f lg_core_pct=%.0f other_pct=%.0f", 100 * (y[3] - x[3]) / st, 100 * (y[5] - x[5]) / lt, o }')
  echo "T=$target R=$round $line px_ticks=$((px1 - px0)) origin_ticks=$((og1 - og0)) $diag$extra" >>"$RAW"
  local s
  if [[ $(kv "$line" mib_s) != - ]]; then
    s="$(kv "$line" mib_s) MiB/s"
  else
    s="$(kv "$line" rps) req/s p99 $(kv "$line" p99_ms) ms err $(kv "$line" err)"
  fi
  log "  r$round $target $mode: $s (proxy cpu $(((px1 - px0) * 1000 / HZ)) ms; $diag$extra)"
}

# ---- report helpers ---------------------------------------------------------------------
# med TARGET MODE KEY [ROUND-FILTER]: median over rounds of KEY in $RAW. Derived keys:
# px_us_req (proxy CPU us per successful request), or_us_req (origin CPU us per request),
# px_s_gib / or_s_gib (proxy / origin CPU s per GiB). ROUND-FILTER: num (R=1, R=2, ...; default), dflt (R=d1, ...)
# or one exact round name.
med() {
  local target=$1 mode=$2 key=$3 rf=${4:-num}
  awk -v t="T=$target" -v m="mode=$mode" -v k="$key" -v rf="$rf" -v hz="$HZ" '
    $1 != t || index($0, " " m " ") == 0 { next }
    rf == "num" && $2 !~ /^R=[0-9]+$/ { next }
    rf == "dflt" && $2 !~ /^R=d[0-9]+$/ { next }
    rf != "num" && rf != "dflt" && $2 != "R=" rf { next }
    / failed=1/ { next }
    {
      delete f
      for (i = 3; i <= NF; i++) { split($i, kvp, "="); f[kvp[1]] = substr($i, length(kvp[1]) + 2) }
      if (k == "px_us_req") { if (f["ok_total"] + 0 == 0) next; v = f["px_ticks"] * 1e6 / hz / f["ok_total"] }
      else if (k == "or_us_req") { if (f["ok_total"] + 0 == 0) next; v = f["origin_ticks"] * 1e6 / hz / f["ok_total"] }
      else if (k == "px_s_gib") { if (f["bytes"] + 0 == 0) next; v = f["px_ticks"] / hz / (f["bytes"] / 1073741824) }
      else if (k == "or_s_gib") { if (f["bytes"] + 0 == 0) next; v = f["origin_ticks"] / hz / (f["bytes"] / 1073741824) }
      else if (!(k in f) || f[k] == "-") next
      else v = f[k]
      vals[++n] = v + 0
    }
    END {
      if (n == 0) { print "-"; exit }
      for (i = 2; i <= n; i++) { x = vals[i]; j = i - 1; while (j > 0 && vals[j] > x) { vals[j + 1] = vals[j]; j-- }; vals[j + 1] = x }
      m = (n % 2) ? vals[(n + 1) / 2] : (vals[n / 2] + vals[n / 2 + 1]) / 2
      printf "%.6g\n", m
    }' "$RAW"
}
# rr A B MODE KEY [PREFIX_A]: A/B per round (same round = closest conditions), space-separated
rr() {
  local out="" r a b
  for r in $(seq 1 "$ROUNDS"); do
    a=$(med "$1" "$3" "$4" "${5:-}$r"); b=$(med "$2" "$3" "$4" "$r")
    out+="$(ratio "$a" "$b") "
  done
  echo "${out% }"
}
# spread TARGET MODE KEY: "min..max" of KEY over the numbered rounds
spread() {
  awk -v t="T=$1" -v m="mode=$2" -v k="$3" '$1==t && $2 ~ /^R=[0-9]+$/ && index($0," " m " ") {
      for (i=3;i<=NF;i++) if (index($i, k "=") == 1) { v = substr($i, length(k)+2) + 0; if (n++ == 0 || v < lo) lo = v; if (n == 1 || v > hi) hi = v } }
    END { if (n) printf "%.0f..%.0f", lo, hi; else printf "-" }' "$RAW"
}
fmt() { awk -v v="$1" -v p="${2:-0}" 'BEGIN{ if (v == "-" || v == "") print "-"; else printf "%." p "f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
