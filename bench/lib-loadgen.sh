# Shared by bench/{connections,fanout,inventory,assess}.sh: builds release binaries if needed,
# picks the database (FLOTILLA_BENCH_DB=postgres for a throwaway PostgreSQL database on
# 127.0.0.1:5432, trust auth, user postgres; default SQLite) and runs flotilla-loadgen --json,
# printing a table and writing bench/results/NAME-DB.json; every run's JSON, with the commit,
# the machine's facts and the server's peak RSS added (bench/record.py), is also appended to
# bench/results/history.jsonl. FLOTILLA_BENCH_SERVER=PATH runs another `flotilla` binary as the
# server (the previous commit's, for a side-by-side figure; FLOTILLA_BENCH_SERVER_COMMIT names it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
DB_KIND=${FLOTILLA_BENCH_DB:-sqlite}

build() {
  if [ -z "${FLOTILLA_BENCH_NO_BUILD:-}" ] || [ ! -x "$BIN/flotilla-loadgen" ] || [ ! -x "$BIN/flotilla" ]; then
    (cd "$ROOT" && CARGO_PROFILE_RELEASE_LTO=false cargo build --release -q -p flotilla-loadgen -p flotilla-cli)
  fi
}

run_bench() { # NAME, loadgen arguments...
  local name=$1; shift
  build
  local db_args=()
  if [ "$DB_KIND" = postgres ]; then
    # Global, not local: the EXIT trap that drops it runs after this function returned.
    BENCH_DBNAME="flotilla_bench_$$_$(date +%s)"
    local dbname=$BENCH_DBNAME
    psql -h 127.0.0.1 -U postgres -q -c "CREATE DATABASE $dbname" postgres
    trap 'psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $BENCH_DBNAME WITH (FORCE)" postgres >/dev/null 2>&1 || true' EXIT
    db_args=(--db "postgres://postgres@127.0.0.1:5432/$dbname")
  fi
  local server_args=()
  [ -n "${FLOTILLA_BENCH_SERVER:-}" ] && server_args=(--flotilla "$FLOTILLA_BENCH_SERVER")
  mkdir -p "$ROOT/bench/results"
  local out="$ROOT/bench/results/$name-$DB_KIND.json"
  local load_start; load_start=$(cut -d' ' -f1-3 /proc/loadavg)
  "$BIN/flotilla-loadgen" "$@" "${db_args[@]}" "${server_args[@]}" --json > "$out.tmp"
  BENCH_LOAD_START=$load_start BENCH_COMMAND="flotilla-loadgen $*" \
    python3 "$ROOT/bench/record.py" "$out.tmp" "${FLOTILLA_BENCH_SERVER:-$BIN/flotilla}" > "$out"
  rm -f "$out.tmp"
  cat "$out" >> "$ROOT/bench/results/history.jsonl"
  python3 - "$out" <<'PY'
import json, sys
def rows(prefix, v, out):
    if isinstance(v, dict):
        for k, x in v.items(): rows(f"{prefix}.{k}" if prefix else k, x, out)
    elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
        for i, x in enumerate(v): rows(f"{prefix}[{i}]", x, out)
    else: out.append((prefix, v))
out = []; rows("", json.load(open(sys.argv[1])), out)
w = max(len(k) for k, _ in out)
for k, v in out: print(f"{k:<{w}}  {v}")
PY
  echo "written: $out"
}
