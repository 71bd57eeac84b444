#!/usr/bin/env bash
# bench/h2spec.sh — HTTP/2 conformance (h2spec) of the TLS listener of fixedgate's gateway door,
# nginx, haproxy and Caddy, each a reverse proxy to the same loopback HTTPS origin. Run by hand;
# not part of CI. Nothing leaves 127.0.0.0/8.
#
#   bash bench/h2spec.sh                                  # all four targets, ~1.5 min (+~5 min to build Caddy on a cold Go cache)
#   TARGETS="fixedgate nginx" bash bench/h2spec.sh        # a subset
#   WORK=/tmp/h2 bash bench/h2spec.sh                     # reuse h2spec/caddy built in /tmp/h2/bin
#
# What it does: installs nginx-light, haproxy (and util-linux, curl, python3) if missing; builds
# bench/loadgen and cmd/fixedgate; `go install`s h2spec and Caddy into $WORK/bin when missing
# (never into the product's go.mod); starts the loadgen origin (HTTP/1.1, backend port) and its
# DNS server as bench/gateway.sh does; then, one target at a time: starts the proxy (TLS on
# IP:$GW_PORT, reverse proxy to the origin, origin certificate verified), checks over HTTP/2 that
# GET and POST $H2SPEC_PATH answer 200 with a body, runs
#   h2spec -t -k -h IP -p $GW_PORT -o $H2SPEC_TIMEOUT -P $H2SPEC_PATH -j $WORK/h2spec/TARGET.xml
# pinned to CPU $LOADGEN_CPU (proxies and origin on $SERVER_CPU), and stops the proxy. Prints,
# per target, passed/total and the failed case ids (key/section/number, as h2spec numbers them,
# e.g. http2/6.9.1/2) with what h2spec expected and got, then a summary table ($WORK/report.txt).
set -euo pipefail

# ---- knobs ------------------------------------------------------------------------------
TARGETS=${TARGETS:-"fixedgate nginx haproxy caddy"}
FIXEDGATE=${FIXEDGATE:-auto}       # auto: skip fixedgate if it does not build; 0: skip; 1: required
H2SPEC_PKG=${H2SPEC_PKG:-github.com/summerwind/h2spec/cmd/h2spec@latest}
CADDY_PKG=${CADDY_PKG:-github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9}
H2SPEC_TIMEOUT=${H2SPEC_TIMEOUT:-2}  # h2spec -o: seconds each case waits for the server
# h2spec -P: the request path. The origin answers GET and POST /json with 200 and a 200-byte body
# (it has no POST /); h2spec's POST cases send a body and several cases need response DATA.
H2SPEC_PATH=${H2SPEC_PATH:-/json}
RUN_LIMIT=${RUN_LIMIT:-600}        # seconds one h2spec run may take (then it is killed and reported as no result)
ACCESS_LOG=${ACCESS_LOG:-1}        # nginx and haproxy access logs into the work dir (fixedgate always logs)
INSTALL=${INSTALL:-1}              # 0: never call apt-get
NICE=${NICE:--10}
SERVER_CPU=${SERVER_CPU:-0}        # origin + DNS + proxies
LOADGEN_CPU=${LOADGEN_CPU:-1}      # h2spec and curl
ORIGIN_IP=${ORIGIN_IP:-127.0.0.1}
ORIGIN_PORT=${ORIGIN_PORT:-9445}   # HTTP/1.1 only, as in gateway.sh (whose ports differ from these)
NGINX_IP=${NGINX_IP:-127.0.0.13}; HAPROXY_IP=${HAPROXY_IP:-127.0.0.14}; FG_IP=${FG_IP:-127.0.0.10}
CADDY_IP=${CADDY_IP:-127.0.0.15}
GW_PORT=${GW_PORT:-8445}           # TLS port of every proxy
FG_ADMIN=${FG_ADMIN:-127.0.0.1:9093}
FG_EGRESS=${FG_EGRESS:-127.0.0.20}
GW_NAME=gw.bench.test              # the proxies' certificate name (h2spec sends no SNI to an IP, and -k)
ORIGIN_NAME=origin.bench.test
# h2spec sends :authority IP:PORT, so fixedgate's route answers its listen IP (nginx's only server
# is its default server, haproxy has a default backend, Caddy's site is https://IP:PORT)
FG_ROUTE_HOST=$FG_IP
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/fixedgate-h2spec.XXXXXX)}
mkdir -p "$WORK/logs" "$WORK/bin" "$WORK/h2spec"
chmod 755 "$WORK" # nginx workers drop to an unprivileged user and must reach their dirs
ORIGIN=$ORIGIN_IP:$ORIGIN_PORT
ORIGIN_CA=$WORK/origin-ca.pem
LOG_TAG=h2spec
T0=$(date +%s)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
install_traps

target_ip() {
  case $1 in
    fixedgate) echo "$FG_IP" ;; nginx) echo "$NGINX_IP" ;; haproxy) echo "$HAPROXY_IP" ;; caddy) echo "$CADDY_IP" ;;
    *) die "unknown target $1 (want fixedgate, nginx, haproxy, caddy)" ;;
  esac
}
for t in $TARGETS; do target_ip "$t" >/dev/null; done
want() { [[ " $TARGETS " == *" $1 "* ]]; }

# ---- 0. packages, builds ------------------------------------------------------------------
ensure_gw_peers # lib.sh: nginx-light, haproxy, util-linux, curl; NGINX_VER/_PKG/_SSL, HAPROXY_VER/_SSL
command -v python3 >/dev/null || ensure_pkgs python3 # reads h2spec's JUnit report
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
build_loadgen
HAVE_FG=0
want fixedgate && build_fixedgate
go_install_tool h2spec "$H2SPEC_PKG" 600
H2SPEC=$WORK/bin/h2spec
if want caddy; then go_install_tool caddy "$CADDY_PKG" 1800; fi

ports=("$ORIGIN_IP $ORIGIN_PORT")
for t in $TARGETS; do ports+=("$(target_ip "$t") $GW_PORT"); done
want fixedgate && ports+=("${FG_ADMIN%:*} ${FG_ADMIN##*:}")
for ap in "${ports[@]}"; do
  # shellcheck disable=SC2086
  port_free $ap || die "something already listens on ${ap/ /:} (a system service? another bench run?); stop it or change the *_IP / *_PORT knobs"
done

# ---- 1. origin, DNS, certificates, configs ------------------------------------------------
n_targets=$(wc -w <<<"$TARGETS")
LIFE=$((n_targets * (RUN_LIMIT + 120) + 600)) # safety bound on the origin's and DNS server's life
log "starting origin on $ORIGIN (HTTP/1.1) and DNS ($ORIGIN_NAME -> $ORIGIN_IP) on CPU $SERVER_CPU; h2spec on CPU $LOADGEN_CPU"
start_origin_dns "$LIFE"
gen_gw_peer_certs
# write_caddyfile, CADDY_ENV and mod_ver are in lib.sh (shared with gateway.sh)
write_nginx_conf "$WORK/nginx/nginx.conf" "$ORIGIN_CA"
write_haproxy_cfg "$WORK/haproxy/haproxy.cfg" "$ORIGIN_CA"
write_fixedgate_yaml "$WORK/fixedgate/fixedgate.yaml" "$ORIGIN_CA"
chown -R "${NGINX_USER%% *}" "$WORK/nginx/tmp" 2>/dev/null || true

if want caddy; then
  mkdir -p "$WORK/caddy/data" "$WORK/caddy/config"
  "$LG" gencert -dir "$WORK/caddy/tls" -ips "$CADDY_IP" -dns "$GW_NAME" -cn "$GW_NAME"
  write_caddyfile "$WORK/caddy/Caddyfile" "$ORIGIN_CA"
  "${CADDY_ENV[@]}" timeout 60 "$WORK/bin/caddy" validate --config "$WORK/caddy/Caddyfile" --adapter caddyfile >"$WORK/logs/caddy-validate.log" 2>&1 ||
    die "caddy rejects its config: $(tail -5 "$WORK/logs/caddy-validate.log")"
fi
if want nginx; then
  nginx -t -q -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" >"$WORK/logs/nginx-configtest.log" 2>&1 ||
    die "nginx rejects its config: $(cat "$WORK/logs/nginx-configtest.log")"
fi
if want haproxy; then
  haproxy -c -q -f "$WORK/haproxy/haproxy.cfg" >"$WORK/logs/haproxy-configtest.log" 2>&1 ||
    die "haproxy rejects its config: $(cat "$WORK/logs/haproxy-configtest.log")"
fi
FG_REV="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo "?")$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo "+dirty")"
FG_NOTE=""
if want fixedgate; then
  if ((HAVE_FG)) && timeout 60 "$WORK/bin/fixedgate" validate --config "$WORK/fixedgate/fixedgate.yaml" >"$WORK/logs/fixedgate-validate.log" 2>&1; then
    FG_NOTE="fixedgate built from $ROOT at $FG_REV"
  elif ((HAVE_FG)); then
    [[ $FIXEDGATE == 1 ]] && die "fixedgate validate refuses the config: $(head -3 "$WORK/logs/fixedgate-validate.log")"
    HAVE_FG=0; FG_NOTE="fixedgate skipped: validate refuses the config: $(head -3 "$WORK/logs/fixedgate-validate.log" | tr '\n' ' ')"
  else
    FG_NOTE="fixedgate skipped: it does not build at $FG_REV (see $WORK/logs/fixedgate-build.log)"
  fi
fi

# ---- 2. one target at a time: start, check, h2spec, stop ---------------------------------
start_target() {
  case $1 in
    caddy) start_bg caddy "${CADDY_ENV[@]}" "$WORK/bin/caddy" run --config "$WORK/caddy/Caddyfile" --adapter caddyfile ;;
    *) start_gw_proxy "$1" ;; # lib.sh; waits for fixedgate's /readyz
  esac
}
# preflight TARGET: GET and POST $H2SPEC_PATH over HTTP/2 must answer 200 with a body; retried
# for up to 20 s while the proxy starts. Sets PRE[TARGET].
declare -A PRE=() RES=() FAILS=() SECS=()
preflight() {
  local t=$1 ip out m ok=0 desc="" code ver size
  ip=$(target_ip "$t")
  for _ in $(seq 1 40); do
    ok=1; desc=""
    for m in GET POST; do
      local data=()
      [[ $m == POST ]] && data=(--data-binary '{"h2spec":"preflight"}' -H 'Content-Type: application/json')
      out=$(nice -n "$NICE" taskset -c "$LOADGEN_CPU" curl -sS -k --http2 -m 5 -X "$m" "${data[@]}" \
        -o "$WORK/h2spec/$t-$m.body" -w '%{http_code} %{http_version} %{size_download}' \
        "https://$ip:$GW_PORT$H2SPEC_PATH" 2>>"$WORK/logs/curl.log") || out="000 0 0"
      read -r code ver size <<<"$out"
      desc+="$m $code h$ver ${size}B, "
      [[ $code == 200 && $ver == 2 && $size -gt 0 ]] || ok=0
    done
    ((ok)) && break
    [[ -n ${PIDS[$t]:-} ]] && ! kill -0 "${PIDS[$t]}" 2>/dev/null && break
    sleep 0.5
  done
  PRE[$t]=${desc%, }
  ((ok)) || { tail -20 "$WORK/logs/$t.log" >&2 2>/dev/null || true; die "$t: preflight over HTTP/2 failed (${PRE[$t]}); see $WORK/logs/"; }
  log "  $t preflight over HTTP/2: ${PRE[$t]}"
}
# failed_cases XML TXT: one line per failed case, "id<TAB>description<TAB>expected<TAB>actual".
# Ids are h2spec's own, key/section/number (e.g. http2/6.9.1/2): the JUnit report gives the key
# and section (a suite's cases in order are numbered from 1); its failure text runs expected and
# actual together, so those come from the Failures section of the text output, which lists the
# failed cases in the same order.
failed_cases() {
  python3 - "$1" "$2" <<'PY'
import re, sys, xml.etree.ElementTree as ET
ids = []
for ts in ET.parse(sys.argv[1]).getroot().iter("testsuite"):
    for i, tc in enumerate(ts.findall("testcase"), 1):
        bad = tc.find("failure")
        if bad is None:
            bad = tc.find("error")
        if bad is not None:
            ids.append(("%s/%d" % (ts.get("package"), i), tc.get("classname"), " ".join((bad.text or "").split())))
text = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[2], encoding="utf-8", errors="replace").read())
text = text.split("Failures:", 1)[1] if "Failures:" in text else ""
cases, cur, field = [], None, None
for line in text.splitlines():
    l = line.strip()
    m = re.match(r"^\u00d7 (\d+): (.*)$", l)
    if m:
        cur = {"seq": m.group(1), "desc": m.group(2), "exp": [], "act": ""}; cases.append(cur); field = None
    elif cur is None or not l:
        field = None
    elif l.startswith("Expected: "):
        cur["exp"].append(l[len("Expected: "):]); field = "exp"
    elif l.startswith("Actual: "):
        cur["act"] = l[len("Actual: "):]; field = None
    elif l.startswith("Error: ") and field is None:
        cur["act"] = l; field = None
    elif field == "exp":
        cur["exp"].append(l)
paired = len(cases) == len(ids) and all(c["seq"] == i[0].rsplit("/", 1)[1] for c, i in zip(cases, ids))
for k, (cid, desc, raw) in enumerate(ids):
    if paired:
        print("%s\t%s\t%s\t%s" % (cid, desc, " | ".join(cases[k]["exp"]), cases[k]["act"]))
    else:
        print("%s\t%s\t-\t%s" % (cid, desc, raw))
PY
}
run_h2spec() { # TARGET
  local t=$1 ip rc=0 t1 t2 sum
  ip=$(target_ip "$t")
  log "  $t: h2spec -t -k -h $ip -p $GW_PORT -o $H2SPEC_TIMEOUT -P $H2SPEC_PATH (at most ${RUN_LIMIT}s)"
  t1=$(date +%s)
  nice -n "$NICE" taskset -c "$LOADGEN_CPU" timeout --kill-after=10 "$RUN_LIMIT" "$H2SPEC" -t -k -h "$ip" -p "$GW_PORT" \
    -o "$H2SPEC_TIMEOUT" -P "$H2SPEC_PATH" -j "$WORK/h2spec/$t.xml" >"$WORK/h2spec/$t.txt" 2>&1 || rc=$?
  t2=$(date +%s); SECS[$t]=$((t2 - t1))
  sum=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/h2spec/$t.txt" | grep -E '^[0-9]+ tests, [0-9]+ passed, [0-9]+ skipped, [0-9]+ failed' | tail -1 || true)
  if [[ -z $sum ]]; then
    RES[$t]="no result (h2spec exit $rc$([[ $rc == 124 || $rc == 137 ]] && echo ": killed after ${RUN_LIMIT}s"))"
    FAILS[$t]=""
  else
    RES[$t]=$sum
    FAILS[$t]=$([[ -s $WORK/h2spec/$t.xml ]] && failed_cases "$WORK/h2spec/$t.xml" "$WORK/h2spec/$t.txt" || echo "?	JUnit report missing	-	see $WORK/h2spec/$t.txt")
  fi
  log "  $t: ${RES[$t]} (${SECS[$t]} s)"
}

RUN=()
for t in $TARGETS; do
  [[ $t == fixedgate && $HAVE_FG == 0 ]] && { log "$FG_NOTE"; continue; }
  RUN+=("$t")
done
log "targets: ${RUN[*]}"
for t in "${RUN[@]}"; do
  start_target "$t"
  preflight "$t"
  run_h2spec "$t"
  stop_bg "$t"
done
stop_bg dns
stop_bg origin

# ---- 3. report --------------------------------------------------------------------------
H2SPEC_MOD=$(mod_ver "$H2SPEC")
CADDY_VER="-"
[[ -x $WORK/bin/caddy ]] && CADDY_VER="$(mod_ver "$WORK/bin/caddy") (caddy version: $("${CADDY_ENV[@]}" "$WORK/bin/caddy" version 2>&1 | head -1))"
REPORT=$WORK/report.txt
{
  echo
  echo "h2spec: HTTP/2 conformance of TLS reverse proxies — $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - T0 )) s in all"
  echo "h2spec $H2SPEC_MOD (h2spec --version: $("$H2SPEC" --version 2>&1 | head -1)), built with $(go version | awk '{print $3}'); per target:"
  echo "  h2spec -t -k -h IP -p $GW_PORT -o $H2SPEC_TIMEOUT -P $H2SPEC_PATH -j $WORK/h2spec/TARGET.xml"
  echo "peers: $(nginx -v 2>&1 | sed 's/^nginx version: //') ($NGINX_PKG, $NGINX_SSL); $(haproxy -v 2>&1 | head -1) ($HAPROXY_SSL); caddy $CADDY_VER"
  [[ -n $FG_NOTE ]] && echo "$FG_NOTE"
  echo "every proxy: TLS on IP:$GW_PORT, HTTP/1.1 to the origin $ORIGIN (certificate verified as $ORIGIN_NAME)"
  echo
  for t in "${RUN[@]}"; do
    printf '%-10s %s:%s  %s  (%s s; preflight %s)\n' "$t" "$(target_ip "$t")" "$GW_PORT" "${RES[$t]}" "${SECS[$t]}" "${PRE[$t]:--}"
    if [[ -n ${FAILS[$t]} ]]; then
      while IFS=$'\t' read -r id what expected actual; do
        printf '  x %-16s %s\n      expected: %s\n      actual:   %s\n' "$id" "$what" "$expected" "$actual"
      done <<<"${FAILS[$t]}"
    fi
  done
  echo
  printf '%-10s %13s %8s %7s  %s\n' target passed/total skipped failed "failed cases"
  line=""
  for t in "${RUN[@]}"; do
    tot="" pass="" skip="" fail=""
    read -r tot pass skip fail < <(sed -n 's/^\([0-9]*\) tests, \([0-9]*\) passed, \([0-9]*\) skipped, \([0-9]*\) failed.*/\1 \2 \3 \4/p' <<<"${RES[$t]}") || true
    ids=$(cut -f1 <<<"${FAILS[$t]}" | tr '\n' ' ')
    printf '%-10s %13s %8s %7s  %s\n' "$t" "${pass:-?}/${tot:-?}" "${skip:--}" "${fail:--}" "${ids:--}"
    line+="$t ${pass:-?}/${tot:-?} | "
  done
  echo
  echo "summary (passed/total): ${line% | }"
  echo
  echo "h2spec output and JUnit reports: $WORK/h2spec/; proxies' logs: $WORK/logs/"
} | tee "$REPORT"
