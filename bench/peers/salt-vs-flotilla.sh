#!/usr/bin/env bash
# Flotilla side by side with Salt, the closest agent-based peer (issue 7).
#
# Salt:     installs salt==$SALT_VERSION from PyPI into a throwaway virtualenv, starts a salt-master
#           and K salt-minions on 127.0.0.1 (each with its own root_dir, id and config dir, distinct
#           ports), waits until every key is accepted and `salt '*' test.ping` answers K, then times
#             salt '*' cmd.run true
# Flotilla: starts a server and K real `flotilla-agent` processes (each with its own --root and
#           --state-dir), waits until all are Online, then times
#             flotilla run Flotilla-RunShellScript --param commands=true --target all --wait
# Each over ROUNDS rounds, the first discarded as warm-up; prints both medians, their ratio and the
# resident memory (PSS and RSS, summed over a process's children) per minion/agent, master, server.
# Everything started is stopped by process id (each daemon runs in its own process group).
#
# Usage: bench/peers/salt-vs-flotilla.sh K [ROUNDS=7]
# Env:   SALT_VERSION (3008.3), SALT_VENV_DIR (/tmp/flotilla-bench-salt: venv + pip cache, reused),
#        FLOTILLA_BIN_DIR (dir holding flotilla and flotilla-agent; default $CARGO_TARGET_DIR/release,
#        CARGO_TARGET_DIR defaulting to the repository's target/; built there with
#        `cargo build --release` (LTO off) when missing), POLL_MS (20: the fast-poll client's interval).
set -euo pipefail
K=${1:?usage: $0 K [ROUNDS=7]}
ROUNDS=${2:-7}
[ "$K" -ge 1 ] && [ "$ROUNDS" -ge 2 ] || { echo "K >= 1 and ROUNDS >= 2" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SALT_VERSION=${SALT_VERSION:-3008.3}
SALT_VENV_DIR=${SALT_VENV_DIR:-/tmp/flotilla-bench-salt}
POLL_MS=${POLL_MS:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN=${FLOTILLA_BIN_DIR:-$CARGO_TARGET_DIR/release}

WORK=$(mktemp -d /tmp/salt-vs-flotilla.XXXXXX)
PGIDS=()   # one process group per daemon we started (setsid: its pid is its group id)

stop_groups() {
  local pg alive
  for pg in "$@"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  for _ in $(seq 1 150); do
    alive=0
    for pg in "$@"; do kill -0 -- "-$pg" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for pg in "$@"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
}
cleanup() {
  trap - EXIT INT TERM
  [ "${#PGIDS[@]}" -gt 0 ] && stop_groups "${PGIDS[@]}"
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start "$@" in a new session/process group, logging to $LOG; sets STARTED to its pid (= pgid).
start_group() {
  setsid "$@" > "$LOG" 2>&1 < /dev/null &
  STARTED=$!
  PGIDS+=("$STARTED")
}

free_ports() { python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Wall, user and system seconds of a command and its children: sets WALL and CPU (user + sys).
timed() {
  local out TIMEFORMAT='%R %U %S'
  out=$( { time "$@" > /dev/null 2>&1; } 2>&1 ) || true
  read -r WALL u s <<< "$out"
  CPU=$(python3 -c "print(round($u + $s, 3))")
}

# CPU seconds (user + sys, including reaped children) used so far by the process group(s) given.
cpu_of() { python3 - "$@" <<'PY'
import os, sys
want, tick, total = {int(a) for a in sys.argv[1:]}, os.sysconf("SC_CLK_TCK"), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        if int(st[2]) in want:
            total += sum(int(x) for x in st[11:15])
    except (OSError, IndexError, ValueError):
        pass
print(total / tick)
PY
}

# Median of the numbers on stdin.
median() { python3 -c 'import statistics,sys; print(round(statistics.median(float(x) for x in sys.stdin.read().split()), 3))'; }

# "PSS_KiB RSS_KiB NPROC" summed over the process group(s) given (a minion or master forks).
mem_of() { python3 - "$@" <<'EOF'
import os, sys
want = {int(a) for a in sys.argv[1:]}
pss = rss = n = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            pgrp = int(f.read().rsplit(")", 1)[1].split()[2])
        if pgrp not in want:
            continue
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"): pss += int(line.split()[1])
                elif line.startswith("Rss:"): rss += int(line.split()[1])
        n += 1
    except (OSError, IndexError, ValueError):
        pass
print(pss, rss, n)
EOF
}

# Per-node memory: median PSS/RSS (MiB) over the groups given, and the median process count.
per_node_mem() {
  local pg
  for pg in "$@"; do mem_of "$pg"; done | python3 -c '
import statistics, sys
rows = [list(map(int, l.split())) for l in sys.stdin if l.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"{med(0)/1024:.1f} {med(1)/1024:.1f} {med(2):g} {sum(r[0] for r in rows)/1024:.0f}")'
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "K=$K nodes, $ROUNDS rounds each (round 1 is warm-up, not counted)"

# ---------------------------------------------------------------- Salt
SALT=$SALT_VENV_DIR/venv/bin
if ! "$SALT/salt" --version 2>/dev/null | grep -q "salt $SALT_VERSION "; then
  echo "installing salt==$SALT_VERSION into $SALT_VENV_DIR/venv ..."
  mkdir -p "$SALT_VENV_DIR"
  rm -rf "$SALT_VENV_DIR/venv"
  python3 -m venv "$SALT_VENV_DIR/venv"
  "$SALT/pip" install -q --cache-dir "$SALT_VENV_DIR/pip-cache" "salt==$SALT_VERSION" > "$SALT_VENV_DIR/pip.log" 2>&1 \
    || { tail -20 "$SALT_VENV_DIR/pip.log" >&2; exit 1; }
fi
echo "salt: $("$SALT/salt" --version) ($SALT/salt)"

read -r PUB RET < <(free_ports 2)
S=$WORK/salt
MCONF=$S/master-conf
mkdir -p "$MCONF"
cat > "$MCONF/master" <<EOF
root_dir: $S/master
user: root
interface: 127.0.0.1
publish_port: $PUB
ret_port: $RET
auto_accept: True
log_level_logfile: warning
EOF
LOG=$S/master.log start_group "$SALT/salt-master" -c "$MCONF" -l warning
MASTER_PG=$STARTED
MINION_PGS=()
for i in $(seq 1 "$K"); do
  c=$S/minion-$i-conf; mkdir -p "$c"
  cat > "$c/minion" <<EOF
id: salt-minion-$i
root_dir: $S/minion-$i
user: root
master: 127.0.0.1
master_port: $RET
publish_port: $PUB
enable_fqdns_grains: False
acceptance_wait_time: 1
log_level_logfile: warning
EOF
  LOG=$S/minion-$i.log start_group "$SALT/salt-minion" -c "$c" -l warning
  MINION_PGS+=("$STARTED")
done

t0=$(date +%s)
accepted=0 pinged=0
while :; do
  if [ "$accepted" != "$K" ]; then
    accepted=$("$SALT/salt-key" -c "$MCONF" -l acc --out=json 2>/dev/null \
      | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("minions", [])))' 2>/dev/null || echo 0)
  fi
  if [ "$accepted" = "$K" ]; then
    pinged=$("$SALT/salt" -c "$MCONF" '*' test.ping -t 10 --out=json --static 2>/dev/null \
      | python3 -c 'import json,sys; print(sum(v is True for v in json.load(sys.stdin).values()))' 2>/dev/null || echo 0)
    [ "$pinged" = "$K" ] && break
  fi
  if [ $(( $(date +%s) - t0 )) -gt $(( 120 + 10 * K )) ]; then
    echo "salt: only $accepted keys accepted, $pinged minions answered test.ping (K=$K); master log:" >&2
    tail -20 "$S/master.log" >&2; exit 1
  fi
  sleep 1
done
echo "salt: $K keys accepted, test.ping answered by $pinged/$K ($(( $(date +%s) - t0 )) s after start)"

salt_times=() salt_cli_cpu=()
cpu0=$(cpu_of "$MASTER_PG" "${MINION_PGS[@]}")
for r in $(seq 1 "$ROUNDS"); do
  [ "$r" = 2 ] && cpu0=$(cpu_of "$MASTER_PG" "${MINION_PGS[@]}")
  timed sh -c "exec \"\$0\" \"\$@\" > '$S/run.json' 2> '$S/run.err'" "$SALT/salt" -c "$MCONF" '*' cmd.run /bin/true --out=json --static
  ok=$(python3 -c 'import json,sys; print(sum(v == "" for v in json.load(open(sys.argv[1])).values()))' "$S/run.json" 2>/dev/null || echo 0)
  [ "$ok" = "$K" ] || { echo "salt round $r: only $ok/$K minions returned:" >&2; head -c 2000 "$S/run.json" "$S/run.err" >&2; exit 1; }
  [ "$r" -gt 1 ] && { salt_times+=("$WALL"); salt_cli_cpu+=("$CPU"); }
  echo "salt round $r: $WALL s ($ok/$K returned; salt CLI CPU $CPU s)$([ "$r" = 1 ] && echo ' [warm-up]')"
done
SALT_DAEMON_CPU=$(python3 -c "print(round(($(cpu_of "$MASTER_PG" "${MINION_PGS[@]}") - $cpu0) / ($ROUNDS - 1), 3))")
SALT_CLI_CPU=$(printf '%s\n' "${salt_cli_cpu[@]}" | median)
SALT_MED=$(printf '%s\n' "${salt_times[@]}" | median)
noop_times=()
for r in 1 2 3 4; do   # the CLI's own cost: a target no minion matches (Python start-up, master round trip)
  timed "$SALT/salt" -c "$MCONF" 'no-such-minion' test.ping
  [ "$r" -gt 1 ] && noop_times+=("$WALL")
done
SALT_NOOP=$(printf '%s\n' "${noop_times[@]}" | median)
read -r SM_PSS SM_RSS SM_N SM_TOTAL < <(per_node_mem "${MINION_PGS[@]}")
read -r SMA_PSS SMA_RSS SMA_N < <(mem_of "$MASTER_PG")
SALT_MEM_LINE="salt memory: per minion median PSS $SM_PSS MiB, RSS $SM_RSS MiB ($SM_N procs each; all minions PSS $SM_TOTAL MiB); master PSS $((SMA_PSS / 1024)) MiB, RSS $((SMA_RSS / 1024)) MiB ($SMA_N procs)"
echo "salt: median $SALT_MED s over $((ROUNDS - 1)) rounds; salt CLI alone (no minion matched) $SALT_NOOP s"
echo "salt CPU per run: salt CLI $SALT_CLI_CPU s, master + minions $SALT_DAEMON_CPU s"
echo "$SALT_MEM_LINE"
stop_groups "$MASTER_PG" "${MINION_PGS[@]}"
echo "salt: master and minions stopped"

# ---------------------------------------------------------------- Flotilla
if ! [ -x "$BIN/flotilla" ] || ! [ -x "$BIN/flotilla-agent" ]; then
  [ -n "${FLOTILLA_BIN_DIR:-}" ] && { echo "FLOTILLA_BIN_DIR=$FLOTILLA_BIN_DIR has no flotilla/flotilla-agent" >&2; exit 1; }
  echo "building flotilla and flotilla-agent (release, LTO off) into $CARGO_TARGET_DIR ..."
  (cd "$REPO" && CARGO_PROFILE_RELEASE_LTO=false cargo build --release -p flotilla-cli -p flotilla-agent)
fi
echo "flotilla: binaries in $BIN; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
F=$WORK/flotilla
mkdir -p "$F"
read -r PORT < <(free_ports 1)
LOG=$F/server.log start_group "$BIN/flotilla" server --data-dir "$F/server" --listen "127.0.0.1:$PORT"
SERVER_PG=$STARTED
for _ in $(seq 1 200); do [ -s "$F/server/admin.token" ] && break; sleep 0.1; done
export FLOTILLA_URL="https://127.0.0.1:$PORT" FLOTILLA_TOKEN FLOTILLA_CA="$F/server/ca.pem"
FLOTILLA_TOKEN=$(cat "$F/server/admin.token")
for _ in $(seq 1 200); do "$BIN/flotilla" nodes ls > /dev/null 2>&1 && break; sleep 0.1; done
read -r ACT CODE < <("$BIN/flotilla" activations create --limit "$K" -o json | python3 -c 'import json,sys; a=json.load(sys.stdin); print(a["id"], a["code"])')
AGENT_PGS=()
for i in $(seq 1 "$K"); do
  d=$F/agents/$i; mkdir -p "$d/root/etc"
  printf 'ID=debian\nVERSION_ID=12\nNAME="Debian GNU/Linux"\n' > "$d/root/etc/os-release"; echo "bench-$i" > "$d/root/etc/hostname"
  "$BIN/flotilla-agent" register --server "$FLOTILLA_URL" --ca "$FLOTILLA_CA" --activation-id "$ACT" --activation-code "$CODE" \
      --state-dir "$d/state" --root "$d/root" > "$d/register.log" 2>&1
  LOG=$d/agent.log start_group "$BIN/flotilla-agent" run --state-dir "$d/state" --root "$d/root"
  AGENT_PGS+=("$STARTED")
done
t0=$(date +%s)
online=0
for _ in $(seq 1 600); do
  online=$("$BIN/flotilla" nodes ls -o json | python3 -c 'import json,sys; print(sum(n["status"]=="Online" for n in json.load(sys.stdin)))')
  [ "$online" = "$K" ] && break; sleep 0.2
done
[ "$online" = "$K" ] || { echo "flotilla: only $online/$K agents online" >&2; exit 1; }
echo "flotilla: $online/$K agents online ($(( $(date +%s) - t0 )) s after the last start)"

# What `flotilla run --wait` prints is the command with its created_at/ended_at (server clock, ms).
server_secs() { python3 -c '
import json, sys
from datetime import datetime
c = json.load(open(sys.argv[1]))
p = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
print(round((p(c["ended_at"]) - p(c["created_at"])).total_seconds(), 3))' "$1"; }

RUN=(run Flotilla-RunShellScript --param commands=true --target all --max-concurrency 100%)
fl_times=() fl_server=() fl_cli_cpu=()
for r in $(seq 1 "$ROUNDS"); do
  [ "$r" = 2 ] && cpu0=$(cpu_of "$SERVER_PG" "${AGENT_PGS[@]}")
  timed sh -c "exec \"\$0\" \"\$@\" > '$F/run.json'" "$BIN/flotilla" "${RUN[@]}" --wait -o json
  srv=$(server_secs "$F/run.json")
  n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"].get("Success", 0))' "$F/run.json")
  [ "$n" = "$K" ] || { echo "flotilla round $r: only $n/$K succeeded" >&2; exit 1; }
  [ "$r" -gt 1 ] && { fl_times+=("$WALL"); fl_server+=("$srv"); fl_cli_cpu+=("$CPU"); }
  echo "flotilla round $r: $WALL s ($n/$K Success; server created->ended $srv s; CLI CPU $CPU s)$([ "$r" = 1 ] && echo ' [warm-up]')"
done
FL_DAEMON_CPU=$(python3 -c "print(round(($(cpu_of "$SERVER_PG" "${AGENT_PGS[@]}") - $cpu0) / ($ROUNDS - 1), 3))")
FL_CLI_CPU=$(printf '%s\n' "${fl_cli_cpu[@]}" | median)
FL_MED=$(printf '%s\n' "${fl_times[@]}" | median)
FL_SRV=$(printf '%s\n' "${fl_server[@]}" | median)

# The CLI's --wait polls (every 50 ms for 2 s, then backing off to 1 s). For a poll-free view: the same CLI without --wait
# creates the command, then a client polls GET /api/v1/commands/ID every POLL_MS over one
# keep-alive connection; timed from before the CLI starts to the terminal status.
FL_FAST=$(python3 - "$BIN/flotilla" "$ROUNDS" "$K" "$POLL_MS" "${RUN[@]}" <<'EOF'
import http.client, json, os, ssl, statistics, subprocess, sys, time
from urllib.parse import urlparse
cli, rounds, k, poll_ms, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
u = urlparse(os.environ["FLOTILLA_URL"])
ctx = ssl.create_default_context(cafile=os.environ["FLOTILLA_CA"])
conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx)
hdr = {"Authorization": "Bearer " + os.environ["FLOTILLA_TOKEN"]}
times = []
for r in range(rounds):
    t0 = time.monotonic()
    cid = json.loads(subprocess.run([cli, *run, "-o", "json"], check=True, capture_output=True).stdout)["id"]
    while True:
        conn.request("GET", f"/api/v1/commands/{cid}", headers=hdr)
        c = json.loads(conn.getresponse().read())
        if c["status"] in ("Success", "Failed", "Cancelled", "TimedOut"):
            break
        time.sleep(poll_ms / 1000)
    t = time.monotonic() - t0
    if c["counts"].get("Success", 0) != k:
        sys.exit(f"fast-poll round {r + 1}: {c['counts']}")
    if r:
        times.append(t)
print(round(statistics.median(times), 3))
EOF
)
cli_times=()
for r in 1 2 3 4; do   # the CLI's own cost: one authenticated request (process start, TLS, GET)
  timed "$BIN/flotilla" nodes ls -o json
  [ "$r" -gt 1 ] && cli_times+=("$WALL")
done
FL_CLI=$(printf '%s\n' "${cli_times[@]}" | median)
read -r FA_PSS FA_RSS FA_N FA_TOTAL < <(per_node_mem "${AGENT_PGS[@]}")
read -r FS_PSS FS_RSS FS_N < <(mem_of "$SERVER_PG")
echo "flotilla: median $FL_MED s over $((ROUNDS - 1)) rounds with --wait; server created->ended median $FL_SRV s; CLI create + ${POLL_MS} ms poll median $FL_FAST s; CLI alone (nodes ls) $FL_CLI s"
echo "flotilla CPU per run: flotilla CLI $FL_CLI_CPU s, server + agents $FL_DAEMON_CPU s"
echo "flotilla memory: per agent median PSS $FA_PSS MiB, RSS $FA_RSS MiB ($FA_N procs each; all agents PSS $FA_TOTAL MiB); server PSS $((FS_PSS / 1024)) MiB, RSS $((FS_RSS / 1024)) MiB ($FS_N procs)"
python3 - "$FL_MED" "$FL_FAST" <<'EOF'
import sys
wait, fast = map(float, sys.argv[1:])
if wait - fast > 0.25 * wait:
    print(f"note: the CLI's --wait polling dominates: {wait - fast:.3f} s of the {wait:.3f} s median "
          f"(a fast-polling client sees {fast:.3f} s)")
else:
    print(f"note: the CLI's --wait polling adds {wait - fast:.3f} s to the {wait:.3f} s median (fast-polling client: {fast:.3f} s)")
EOF
stop_groups "$SERVER_PG" "${AGENT_PGS[@]}"
echo "flotilla: server and agents stopped"
echo "salt/flotilla median ratio: $(python3 -c "print(f'{$SALT_MED / $FL_MED:.2f}')") (salt $SALT_MED s, flotilla $FL_MED s, $K nodes)"
