#!/usr/bin/env bash
# Inventory ingest with real agent processes: a server and N `flotilla-agent` processes, each
# with a dpkg database of P packages in its sandbox root. Measures
#   - the first (full) upload of every node: wall time until all N are stored, the server-side
#     time to apply one report (flotilla_inventory_ingest_seconds), and the item bytes per node;
#   - a second collection of every node (Flotilla-CollectInventory): item bytes sent (0 when
#     nothing changed) and wall time;
#   - fleet queries over all stored nodes: an indexed one (name= and version<) and a scan (~).
# Stops everything it started by process id.
#
# Usage: bench/inventory-real-agents.sh [N=50] [P=1000]   (FLOTILLA_BIN_DIR, else $CARGO_TARGET_DIR/release or target/release if built, else target/debug)
set -euo pipefail
N=${1:-50}
P=${2:-1000}
cd "$(dirname "$0")/.."
source bench/lib-real-agents.sh
now() { date +%s.%N; }
metric() { curl -sS --cacert "$FLOTILLA_CA" "$FLOTILLA_URL/metrics" | awk -v m="$1" '$1==m {print $2}'; }

start_server "$N"
for i in $(seq 1 "$N"); do
  d="$WORK/agents/$i"; mkdir -p "$d/root/etc" "$d/root/var/lib/dpkg"
  printf 'ID=debian\nVERSION_ID=12\nNAME="Debian GNU/Linux"\n' > "$d/root/etc/os-release"; echo "inv-$i" > "$d/root/etc/hostname"
  # P packages; every node differs in a few versions (node i has pkg-000i at 2.0).
  python3 - "$P" "$i" > "$d/root/var/lib/dpkg/status" <<'PY'
import sys
p, node = int(sys.argv[1]), int(sys.argv[2])
for k in range(p):
    v = "2.0-1" if k == node % p else f"1.{k % 50}.{k}-{k % 7}+deb12u{k % 3}"
    print(f"Package: pkg-{k:04d}\nStatus: install ok installed\nArchitecture: amd64\nSource: src-{k // 4:04d}\nVersion: {v}\nDescription: package {k}\n more text\n")
PY
  "$BIN/flotilla-agent" register --server "$FLOTILLA_URL" --ca "$FLOTILLA_CA" --activation-id "$ACT" --activation-code "$CODE" \
      --state-dir "$d/state" --root "$d/root" >/dev/null 2>&1
done
start=$(now)
for i in $(seq 1 "$N"); do
  d="$WORK/agents/$i"
  "$BIN/flotilla-agent" run --state-dir "$d/state" --root "$d/root" > "$d/agent.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 1 600); do
  stored=$("$BIN/flotilla" inventory query --type Application --filter name=pkg-0000 -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$stored" = "$N" ] && break; sleep 0.1
done
full=$(python3 -c "print(round($(now)-$start, 2))")
bytes=$(metric flotilla_inventory_item_bytes_total)
ingest_sum=$(metric flotilla_inventory_ingest_seconds_sum); ingest_count=$(metric flotilla_inventory_ingest_seconds_count)
echo "full inventories stored: $stored/$N nodes x $P packages in $full s (from agent start; includes process start and collection)"
echo "  item bytes received: $bytes total, $(python3 -c "print(round($bytes/$N))") per node"
echo "  server time to apply one report: mean $(python3 -c "print(round(1000*$ingest_sum/$ingest_count, 1))") ms over $ingest_count reports"

start=$(now)
"$BIN/flotilla" run Flotilla-CollectInventory --target all --max-concurrency 100% --wait -o json > "$WORK/collect.json"
second=$(python3 -c "print(round($(now)-$start, 2))")
bytes2=$(metric flotilla_inventory_item_bytes_total)
echo "second collection of all $N nodes (nothing changed): $second s, item bytes sent: $((${bytes2%.*} - ${bytes%.*}))"

for q in "name=pkg-0500|version<1.1" "name~pkg-09"; do
  IFS='|' read -r -a fs <<< "$q"; args=(); for f in "${fs[@]}"; do args+=(--filter "$f"); done
  start=$(now)
  rows=$("$BIN/flotilla" inventory query --type Application "${args[@]}" -o json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r), sum(len(x["items"]) for x in r))')
  echo "query ${fs[*]}: $(python3 -c "print(round($(now)-$start, 3))") s (CLI round trip) -> nodes, items: $rows"
done
echo "server RSS $(awk '/VmRSS/{print $2}' /proc/${PIDS[0]}/status) KiB; binaries: $BIN"
