#!/usr/bin/env python3
"""Patch Manager timings on the demo's sample fleet: Scan and Install, for one node of each
package manager and for the whole fleet, through the server and the real agents.

Each phase starts a fresh `flotilla demo` (a server and real `flotilla-agent` processes whose
sandbox roots hold real dpkg/rpm/apk databases and file:// apt and dnf repositories of newer
packages; see crates/flotilla-cli/src/demo/repos.rs), then drives it with the CLI:
  1. one node: on a 4-node demo (one node per distribution), for each of the Debian, Ubuntu and
     Rocky nodes in turn: Scan, Install, Scan again (the real apt-get / dnf under --root);
     Alpine: Scan only (apk is not packaged for Debian, so its Install cannot run here);
  2. the fleet: on a demo of FLOTILLA_BENCH_PATCH_NODES nodes (default 10, the demo's default),
     Scan on all, then Install on all at 100 % concurrency.
Each time is the wall clock of `flotilla run ... --wait` (the CLI polls every 50 ms for 2 s, then
backs off to 1 s, so times are upper bounds by up to one poll), with the invocations' own start-to-end beside it.
Prints a JSON object, writes bench/results/patch.json and appends it to
bench/results/history.jsonl. Binary: $FLOTILLA_BENCH_BIN (default
$CARGO_TARGET_DIR/release/flotilla, the agent beside it).
"""

import datetime
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import record  # bench/record.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("FLOTILLA_BENCH_BIN", os.path.join(TARGET, "release", "flotilla"))
FLEET = int(os.environ.get("FLOTILLA_BENCH_PATCH_NODES", "10"))


class Demo:
    def __init__(self, nodes):
        self.dir = tempfile.TemporaryDirectory(prefix="flotilla-bench-patch-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        data = os.path.join(self.dir.name, "demo")
        self.proc = subprocess.Popen(
            [BIN, "demo", "--nodes", str(nodes), "--listen", f"127.0.0.1:{port}", "--data-dir", data],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started = time.monotonic()
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        else:
            sys.exit("the demo did not come up:\n" + "".join(lines))
        self.startup_seconds = time.monotonic() - started
        server = os.path.join(data, "server")
        self.env = dict(os.environ,
                        FLOTILLA_URL=f"https://127.0.0.1:{port}",
                        FLOTILLA_TOKEN=open(os.path.join(server, "admin.token")).read().strip(),
                        FLOTILLA_CA=os.path.join(server, "ca.pem"),
                        FLOTILLA_CONFIG_DIR=self.dir.name)

    def cli(self, *args):
        out = subprocess.run([BIN, *args, "-o", "json"], env=self.env, capture_output=True, text=True)
        if out.returncode != 0 and not out.stdout.strip():
            sys.exit(f"flotilla {' '.join(args)} failed: {out.stderr}")
        return json.loads(out.stdout)

    def nodes(self):
        return {n["hostname"]: n["id"] for n in self.cli("nodes", "ls")}

    def patch(self, operation, target):
        started = time.monotonic()
        cmd = self.cli("run", "Flotilla-RunPatchBaseline", "--param", f"Operation={operation}",
                       "--param", "RebootOption=NoReboot", "--target", target,
                       "--max-concurrency", "100%", "--max-errors", "100%", "--wait")
        wall = time.monotonic() - started
        spans = [instant(i["ended_at"]) - instant(i["started_at"]) for i in cmd["invocations"]
                 if i.get("started_at") and i.get("ended_at")]
        failures = [{"node_id": i["node_id"], "status": i["status"],
                     "stderr": (i.get("output") or {}).get("stderr", "")[-400:],
                     "stdout": (i.get("output") or {}).get("stdout", "")[-400:]}
                    for i in cmd["invocations"] if i["status"] != "Success"]
        return {
            "failures": failures,
            "seconds": round(wall, 3),
            "invocation_seconds_max": round(max(spans), 3) if spans else None,
            "invocations": len(cmd["invocations"]),
            "status": cmd["status"],
            "counts": cmd["counts"],
        }

    def compliance(self, node=None):
        rows = self.cli("patch", "compliance", *(["--target", node] if node else []))
        totals = {}
        for row in rows:
            for state, n in row["counts"].items():
                totals[state] = totals.get(state, 0) + n
        return totals

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


def instant(rfc3339):
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def label(hostname):
    return re.sub(r"^.*-\d+-", "", hostname)


def main():
    load_start = " ".join(open("/proc/loadavg").read().split()[:3])
    result = {"benchmark": "patch", "one_node": {}, "fleet": {}}
    demo = Demo(4)
    try:
        for hostname, node in sorted(demo.nodes().items()):
            dist = label(hostname)
            row = {"scan": demo.patch("Scan", node), "states_after_scan": demo.compliance(node)}
            if dist != "alpine319":
                row["install"] = demo.patch("Install", node)
                row["rescan"] = demo.patch("Scan", node)
                row["states_after_install"] = demo.compliance(node)
            result["one_node"][dist] = row
    finally:
        demo.stop()
    demo = Demo(FLEET)
    try:
        result["fleet"] = {
            "nodes": FLEET,
            "demo_startup_seconds": round(demo.startup_seconds, 3),
            "scan": demo.patch("Scan", "all"),
            "states_after_scan": demo.compliance(),
            "install": demo.patch("Install", "all"),
            "states_after_install": demo.compliance(),
        }
    finally:
        demo.stop()
    recorded = record.save(result, "patch", BIN, "bench/patch.py", load_start)
    print(json.dumps(recorded, indent=2))


if __name__ == "__main__":
    main()
