# bench/lib.sh — helpers shared by bench/run.sh (CONNECT) and bench/gateway.sh (reverse proxy).
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
# px_s_gib (proxy CPU s per GiB). ROUND-FILTER: num (R=1, R=2, ...; default), dflt (R=d1, ...)
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
