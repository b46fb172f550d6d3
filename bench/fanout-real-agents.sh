#!/usr/bin/env bash
# Fan-out with real agent processes: starts a server and N `flotilla-agent` processes on this
# machine (each with its own sandbox root and state dir), then times
#   flotilla run Flotilla-RunShellScript --param commands=true --target all --wait
# over several rounds and prints the median. Stops everything it started by process id.
#
# Usage: bench/fanout-real-agents.sh [N=50] [ROUNDS=5]   (FLOTILLA_BIN_DIR, else $CARGO_TARGET_DIR/release or target/release if built, else target/debug)
set -euo pipefail
N=${1:-50}
ROUNDS=${2:-5}
cd "$(dirname "$0")/.."
source bench/lib-real-agents.sh

start_server "$N"
for i in $(seq 1 "$N"); do
  d="$WORK/agents/$i"; mkdir -p "$d/root/etc"
  printf 'ID=debian\nVERSION_ID=12\nNAME="Debian GNU/Linux"\n' > "$d/root/etc/os-release"; echo "bench-$i" > "$d/root/etc/hostname"
  "$BIN/flotilla-agent" register --server "$FLOTILLA_URL" --ca "$FLOTILLA_CA" --activation-id "$ACT" --activation-code "$CODE" \
      --state-dir "$d/state" --root "$d/root" >/dev/null 2>&1
  "$BIN/flotilla-agent" run --state-dir "$d/state" --root "$d/root" > "$d/agent.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 1 300); do
  online=$("$BIN/flotilla" nodes ls -o json | python3 -c 'import json,sys; print(sum(n["status"]=="Online" for n in json.load(sys.stdin)))')
  [ "$online" = "$N" ] && break; sleep 0.2
done
echo "agents online: $online/$N (binaries: $BIN)"
times=()
for r in $(seq 1 "$ROUNDS"); do
  start=$(date +%s.%N)
  "$BIN/flotilla" run Flotilla-RunShellScript --param commands=true --target all --max-concurrency 100% --wait -o json > "$WORK/run.json"
  end=$(date +%s.%N)
  t=$(python3 -c "print(round($end-$start, 3))")
  times+=("$t"); echo "round $r: $t s"
done
median=$(printf '%s\n' "${times[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(v[len(v)//2])')
rss_agent=$(for p in "${PIDS[@]:1}"; do awk '/VmRSS/{print $2}' /proc/$p/status 2>/dev/null; done | sort -n | python3 -c 'import sys; v=[int(x) for x in sys.stdin]; print(v[len(v)//2] if v else 0)')
rss_server=$(awk '/VmRSS/{print $2}' /proc/${PIDS[0]}/status)
echo "fan-out to $N agents (max concurrency 100%): median $median s over $ROUNDS rounds; agent RSS median ${rss_agent} KiB; server RSS ${rss_server} KiB"
