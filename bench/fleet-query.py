#!/usr/bin/env python3
"""The fleet query an operator asks first when an advisory comes out, on a server at rest.

`bench/inventory.sh` times the query right after its ingest, while the server may still be
working through the reports' aftermath. This starts `flotilla server` on a data dir kept by
`flotilla-loadgen inventory ... --data-dir DIR` (nothing else running), waits until it idles,
and times `flotilla inventory query --type Application --filter name=openssl --filter
'version<1.1.0l-1~deb9u6' -o json` (the CLI, every page) ROUNDS times.

Usage: bench/fleet-query.py DATA_DIR [ROUNDS=5]. Binary: $FLOTILLA_BENCH_BIN (default
$CARGO_TARGET_DIR/release/flotilla). Writes bench/results/fleet-query.json and appends it to
bench/results/history.jsonl.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import time

import record  # bench/record.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("FLOTILLA_BENCH_BIN", os.path.join(TARGET, "release", "flotilla"))
FILTERS = ["name=openssl", "version<1.1.0l-1~deb9u6"]


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    data, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    load_start = " ".join(open("/proc/loadavg").read().split()[:3])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([BIN, "server", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, FLOTILLA_URL=f"https://127.0.0.1:{port}",
               FLOTILLA_TOKEN=open(os.path.join(data, "admin.token")).read().strip(),
               FLOTILLA_CA=os.path.join(data, "ca.pem"), FLOTILLA_CONFIG_DIR=data)
    try:
        cli = [BIN, "inventory", "query", "--type", "Application", "-o", "json"]
        for f in FILTERS:
            cli += ["--filter", f]
        for _ in range(600):
            if subprocess.run([BIN, "nodes", "ls", "-o", "json"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        # At rest: less than 2 % of a core used over 5 s.
        for _ in range(60):
            before = cpu_seconds(server.pid)
            time.sleep(5)
            if cpu_seconds(server.pid) - before < 0.1:
                break
        times, nodes = [], 0
        for _ in range(rounds):
            started = time.monotonic()
            out = subprocess.run(cli, env=env, capture_output=True, text=True, check=True)
            times.append(round(time.monotonic() - started, 3))
            nodes = len(json.loads(out.stdout))
        total = len(json.loads(subprocess.run([BIN, "nodes", "ls", "-o", "json"], env=env, capture_output=True,
                                              text=True, check=True).stdout))
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {"benchmark": "fleet-query", "fleet_nodes": total, "filters": FILTERS, "matching_nodes": nodes,
              "rounds_seconds": times, "median_seconds": statistics.median(times),
              "note": "CLI wall clock (process start, TLS, every page, JSON output)"}
    recorded = record.save(result, "fleet-query", BIN, f"bench/fleet-query.py DATA_DIR {rounds}", load_start)
    print(json.dumps(recorded, indent=2))


if __name__ == "__main__":
    main()
