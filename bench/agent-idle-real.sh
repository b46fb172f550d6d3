#!/usr/bin/env bash
# A real flotilla-agent against this machine's own root (`/`): registers, connects, uploads its
# real inventory (this machine's dpkg packages, units, files), then sits idle; its resident
# memory is read IDLE seconds after the inventory was stored (VmRSS, RssAnon, and Pss from
# smaps_rollup). Writes bench/results/agent-idle.json and appends it to results/history.jsonl.
# The agent's state dir is a temporary directory; it changes nothing on the machine (no command
# is sent to it). Usage: bench/agent-idle-real.sh [IDLE=30]
set -euo pipefail
IDLE=${1:-30}
cd "$(dirname "$0")/.."
source bench/lib-real-agents.sh
start_server 1
NODE=$("$BIN/flotilla-agent" register --server "$FLOTILLA_URL" --ca "$FLOTILLA_CA" --activation-id "$ACT" \
  --activation-code "$CODE" --state-dir "$WORK/state" --root / 2>/dev/null)
"$BIN/flotilla-agent" run --state-dir "$WORK/state" --root / > "$WORK/agent.log" 2>&1 &
AGENT=$!
PIDS+=($AGENT)
types=""
for _ in $(seq 1 300); do
  types=$("$BIN/flotilla" inventory show "$NODE" -o json 2>/dev/null | python3 -c '
import json, sys
t = json.load(sys.stdin)
print(json.dumps({x["type"]: x["item_count"] for x in t}) if any(x["type"] == "Application" for x in t) else "")' || true)
  [ -n "$types" ] && break; sleep 0.2
done
[ -n "$types" ] || { echo "the agent's inventory never arrived; agent log:" >&2; cat "$WORK/agent.log" >&2; exit 1; }
sleep "$IDLE"
kib() { awk -v k="$1:" '$1==k {print $2}' "$2"; }
RESULT=$(python3 - "$types" "$IDLE" "$(kib VmRSS /proc/$AGENT/status)" "$(kib RssAnon /proc/$AGENT/status)" \
  "$(kib Pss /proc/$AGENT/smaps_rollup)" "$(kib VmHWM /proc/$AGENT/status)" "$(basename "$BIN")" <<'PY'
import json, sys
types, idle, rss, anon, pss, hwm, build = sys.argv[1:]
print(json.dumps({"scenario": "agent-idle", "build": build, "inventory_items": json.loads(types),
                  "idle_seconds": int(idle), "agent_rss_kib": int(rss), "agent_rss_anon_kib": int(anon),
                  "agent_pss_kib": int(pss), "agent_hwm_kib": int(hwm)}))
PY
)
mkdir -p bench/results
echo "$RESULT" > "$WORK/result.json"
BENCH_LOAD_START="" BENCH_COMMAND="bench/agent-idle-real.sh $IDLE" python3 bench/record.py "$WORK/result.json" "$BIN/flotilla" > bench/results/agent-idle.json
cat bench/results/agent-idle.json >> bench/results/history.jsonl
python3 -m json.tool bench/results/agent-idle.json
