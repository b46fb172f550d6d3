# Shared by bench/{fanout,inventory}-real-agents.sh (sourced from the repository root): picks the
# binaries (FLOTILLA_BIN_DIR, else $CARGO_TARGET_DIR/release or target/release if built, else
# target/debug), makes a work dir removed on exit after every process in PIDS is killed
# (KEEP_SERVER_LOG=FILE keeps the server's log), and `start_server N` starts a server on a free
# port, exports FLOTILLA_URL/TOKEN/CA and sets ACT and CODE to an activation for N agents.
BIN=${FLOTILLA_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
[ -x "$BIN/flotilla" ] && [ -x "$BIN/flotilla-agent" ] || BIN=target/debug
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_SERVER_LOG:-}" ]; then cp "$WORK/server.log" "$KEEP_SERVER_LOG"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

start_server() { # N
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$BIN/flotilla" server --data-dir "$WORK/server" --listen "127.0.0.1:$PORT" > "$WORK/server.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$WORK/server/admin.token" ] && break; sleep 0.1; done
  FLOTILLA_TOKEN=$(cat "$WORK/server/admin.token")
  export FLOTILLA_URL="https://127.0.0.1:$PORT" FLOTILLA_TOKEN FLOTILLA_CA="$WORK/server/ca.pem"
  for _ in $(seq 1 100); do "$BIN/flotilla" nodes ls >/dev/null 2>&1 && break; sleep 0.1; done
  read -r ACT CODE < <("$BIN/flotilla" activations create --limit "$1" -o json | python3 -c 'import json,sys; a=json.load(sys.stdin); print(a["id"], a["code"])')
}
