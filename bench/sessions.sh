#!/usr/bin/env bash
# Sessions with a real server and a real agent on this machine: port-forward throughput (MiB/s
# of 100 MiB pushed through one forwarded connection to a sink on the node's side, loopback),
# set-up latency (a shell: CLI start to the first byte of the remote prompt; a forwarded
# connection: connect to first echo byte), and the agent's resident memory per open shell.
# Prints a JSON line, writes bench/results/sessions.json, appends to bench/results/history.jsonl.
# Usage: bench/sessions.sh [SHELLS]  (default 10 shells for the memory figure)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib-real-agents.sh
SHELLS=${1:-10}
start_server 1
mkdir -p "$WORK/node/root/etc"
printf 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' > "$WORK/node/root/etc/os-release"
echo bench-node > "$WORK/node/root/etc/hostname"
# root (uid 0) with an empty home in the work dir: no profile of this machine's root is read.
mkdir -p "$WORK/node/home"
echo "root:x:0:0:root:$WORK/node/home:/bin/sh" > "$WORK/node/root/etc/passwd"
NODE=$("$BIN/flotilla-agent" register --server "$FLOTILLA_URL" --ca "$FLOTILLA_CA" --activation-id "$ACT" \
  --activation-code "$CODE" --state-dir "$WORK/node/state" --root "$WORK/node/root" 2>/dev/null)
FLOTILLA_AGENT_MAX_SESSIONS=$((SHELLS + 4)) "$BIN/flotilla-agent" run --state-dir "$WORK/node/state" \
  --root "$WORK/node/root" > "$WORK/agent.log" 2>&1 &
AGENT=$!
PIDS+=($AGENT)
for _ in $(seq 1 100); do "$BIN/flotilla" nodes show "$NODE" -o json | grep -q '"Online"' && break; sleep 0.1; done
RESULT=$(python3 - "$BIN/flotilla" "$NODE" "$AGENT" "$SHELLS" "$(basename "$BIN")" <<'PY'
import json, os, socket, statistics, subprocess, sys, threading, time
cli, node, agent, shells, build = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def serve(handler):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]

def sink(c):
    n = 0
    while True:
        d = c.recv(1 << 20)
        if not d: break
        n += len(d)
    c.sendall(b"%d\n" % n); c.close()

def echo(c):
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def forward(port):
    local = free_port()
    p = subprocess.Popen([cli, "session", "port-forward", node, f"{local}:127.0.0.1:{port}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    p.stderr.readline()  # "session ...: forwarding ..."
    return p, local

out = {"scenario": "sessions", "build": build, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

# Throughput: 100 MiB pushed through one connection, the sink answers with the count.
fwd, local = forward(serve(sink))
c = socket.create_connection(("127.0.0.1", local)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
chunk = b"x" * (1 << 20); total = 100 * len(chunk)
rss0 = rss_kib(agent); peak = rss0
t = time.time()
for _ in range(100):
    c.sendall(chunk)
    peak = max(peak, rss_kib(agent))
c.shutdown(socket.SHUT_WR)
got = int(c.makefile().readline())
secs = time.time() - t
assert got == total, got
out["forward_mib_per_s"] = round(100 / secs, 1)
out["forward_agent_rss_growth_kib"] = peak - rss0
fwd.terminate(); fwd.wait()

# Forwarded connection set-up: connect, send a byte, first byte back (median of 20).
fwd, local = forward(serve(echo))
lat = []
for _ in range(20):
    t = time.time()
    c = socket.create_connection(("127.0.0.1", local)); c.sendall(b"."); c.recv(1)
    lat.append((time.time() - t) * 1000); c.close()
out["connection_setup_ms_median"] = round(statistics.median(lat), 1)
out["connection_setup_ms_max"] = round(max(lat), 1)
fwd.terminate(); fwd.wait()

# Shells: CLI start to the first byte of output; the agent's RSS with all of them open.
time.sleep(1)
rss0 = rss_kib(agent)
procs, setups = [], []
for _ in range(shells):
    t = time.time()
    p = subprocess.Popen([cli, "session", "start", node], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    p.stdout.read1(1)
    setups.append((time.time() - t) * 1000)
    procs.append(p)
time.sleep(1)
rss1 = rss_kib(agent)
out["shell_setup_ms_median"] = round(statistics.median(setups), 1)
out["shells_open"] = shells
out["agent_rss_idle_kib"] = rss0
out["agent_rss_kib_per_open_shell"] = round((rss1 - rss0) / shells, 1)
for p in procs:
    p.stdin.write(b"exit\n"); p.stdin.flush()
for p in procs:
    p.wait(timeout=30)
print(json.dumps(out))
PY
)
echo "$RESULT"
mkdir -p bench/results
echo "$RESULT" > bench/results/sessions.json
echo "$RESULT" >> bench/results/history.jsonl
