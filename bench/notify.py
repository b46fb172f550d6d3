#!/usr/bin/env python3
"""Webhook delivery benchmark: event-to-delivery latency and delivery throughput to one webhook.

Starts a real `flotilla server` on SQLite (the default) or, with FLOTILLA_BENCH_DB=postgres, on a
throwaway PostgreSQL database (127.0.0.1:5432, trust auth, user postgres) and a local webhook
receiver (this process, verifying every signature), then:
  1. latency: N sequential `flotilla params put` (each one Parameter.Changed event), measured
     from the event's own `time` to its arrival at the receiver;
  2. throughput: 10,000 events committed at once into the event log (as another replica would,
     one SQL transaction; the server picks them up on its replica poll), delivered to one webhook;
     events/s from the first arrival to the last, and from the commit to the last.
Prints a JSON object, writes bench/results/notify-DB.json and appends it to
bench/results/history.jsonl. Binary: $FLOTILLA_BENCH_BIN (default target/debug/flotilla).
"""

import datetime
import hashlib
import hmac
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("FLOTILLA_BENCH_BIN", os.path.join(ROOT, "target", "debug", "flotilla"))
SECRET = b"bench-webhook-secret-0123456789ab"
LATENCY_EVENTS = int(os.environ.get("FLOTILLA_BENCH_LATENCY_EVENTS", "100"))
BURST = int(os.environ.get("FLOTILLA_BENCH_BURST", "10000"))
DB = os.environ.get("FLOTILLA_BENCH_DB", "sqlite")

arrivals = {}  # event id -> (arrival unix seconds, event time unix seconds)
bad_signatures = 0
lock = threading.Lock()


class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global bad_signatures
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        now = time.time()
        sig = dict(p.split("=", 1) for p in self.headers.get("Flotilla-Signature", "").split(",") if "=" in p)
        want = hmac.new(SECRET, (sig.get("t", "") + ".").encode() + body, hashlib.sha256).hexdigest()
        event = json.loads(body)
        t = datetime.datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
        with lock:
            if not hmac.compare_digest(want, sig.get("v1", "")):
                bad_signatures += 1
            arrivals.setdefault(self.headers["Flotilla-Event-Id"], (now, t))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def psql(sql, db="postgres"):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, db],
                   check=True, stdout=subprocess.DEVNULL)


def burst_sqlite(path):
    import sqlite3
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    last = db.execute("UPDATE event_sequence SET last_seq = last_seq + ? WHERE id = 1 RETURNING last_seq",
                      (BURST,)).fetchone()[0]
    now = int(time.time() * 1000)
    db.executemany(
        "INSERT INTO events (seq, id, time, type, source, resources, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(last - BURST + g, f"ev-{last - BURST + g}", now, "Inventory.Changed", "flotilla.inventory",
          f'["n-{g}"]', f'{{"bench": true, "i": {g}}}') for g in range(1, BURST + 1)])
    db.execute("COMMIT")
    db.close()


def main():
    dbname = f"flotilla_bench_{os.getpid()}_{int(time.time())}"
    tmp = tempfile.mkdtemp(prefix="flotilla-notify-bench-")
    data = os.path.join(tmp, "data")
    port = free_port()
    env = dict(os.environ)
    if DB == "postgres":
        psql(f"CREATE DATABASE {dbname}")
        env["FLOTILLA_DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{dbname}"
    log = open(os.path.join(tmp, "server.log"), "w")
    server = subprocess.Popen([BIN, "server", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                              env=env, stdout=log, stderr=log)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        for _ in range(300):
            if os.path.exists(os.path.join(data, "admin.token")):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        cli_env = dict(os.environ, FLOTILLA_URL=f"https://127.0.0.1:{port}",
                       FLOTILLA_TOKEN=open(os.path.join(data, "admin.token")).read().strip(),
                       FLOTILLA_CA=os.path.join(data, "ca.pem"))

        def cli(*args):
            return subprocess.run([BIN, *args], env=cli_env, check=True, capture_output=True, text=True).stdout

        for _ in range(100):
            if subprocess.run([BIN, "topics", "ls"], env=cli_env, capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        secret_file = os.path.join(tmp, "secret")
        open(secret_file, "wb").write(SECRET)
        cli("topics", "create", "bench")
        cli("subscriptions", "add", "bench", "--webhook", f"http://127.0.0.1:{receiver.server_address[1]}/hook",
            "--secret-file", secret_file)
        cli("rules", "create", "params", "--pattern", '{"type": ["Parameter.Changed"]}', "--to", "topic:bench")
        cli("rules", "create", "burst", "--pattern", '{"type": ["Inventory.Changed"], "detail": {"bench": [true]}}',
            "--to", "topic:bench")

        # 1. Latency, one event at a time.
        for i in range(LATENCY_EVENTS):
            cli("params", "put", "/bench/p", str(i), "--overwrite")
            deadline = time.time() + 30
            while len(arrivals) < i + 1 and time.time() < deadline:
                time.sleep(0.002)
        with lock:
            lat = sorted((a - t) * 1000 for a, t in arrivals.values())
            arrivals.clear()

        # 2. Throughput: a burst committed at once.
        if DB == "sqlite":
            burst_sqlite(os.path.join(data, "flotilla.db"))
        else:
            psql(f"""BEGIN;
WITH s AS (UPDATE event_sequence SET last_seq = last_seq + {BURST} WHERE id = 1 RETURNING last_seq)
INSERT INTO events (seq, id, time, type, source, resources, detail)
SELECT s.last_seq - {BURST} + g, 'ev-' || (s.last_seq - {BURST} + g),
       (extract(epoch from clock_timestamp()) * 1000)::bigint, 'Inventory.Changed', 'flotilla.inventory',
       '["n-' || g || '"]', '{{"bench": true, "i": ' || g || '}}'
FROM s, generate_series(1, {BURST}) g;
COMMIT;""", dbname)
        committed = time.time()
        deadline = committed + 900
        while len(arrivals) < BURST and time.time() < deadline:
            time.sleep(0.05)
        with lock:
            times = sorted(a for a, _ in arrivals.values())
            got = len(arrivals)
        rss = 0
        for line in open(f"/proc/{server.pid}/status"):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 1)
        result = {
            "bench": "notify",
            "db": DB,
            "binary": os.path.relpath(BIN, ROOT),
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip(),
            "latency_events": len(lat),
            "latency_ms_p50": round(statistics.median(lat), 1) if lat else None,
            "latency_ms_p95": q(0.95) if lat else None,
            "latency_ms_p99": q(0.99) if lat else None,
            "latency_ms_max": round(lat[-1], 1) if lat else None,
            "burst_events": BURST,
            "burst_delivered": got,
            "throughput_events_per_second": round(got / max(times[-1] - times[0], 1e-9), 1) if got > 1 else None,
            "commit_to_last_delivery_seconds": round(times[-1] - committed, 3) if got else None,
            "bad_signatures": bad_signatures,
            "delivery_concurrency": int(os.environ.get("FLOTILLA_DELIVERY_CONCURRENCY", "4")),
            "server_rss_bytes_after": rss,
        }
        text = json.dumps(result, sort_keys=True)
        print(text)
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        open(os.path.join(ROOT, "bench", "results", f"notify-{DB}.json"), "w").write(text + "\n")
        with open(os.path.join(ROOT, "bench", "results", "history.jsonl"), "a") as h:
            h.write(text + "\n")
        return 0 if got == BURST and bad_signatures == 0 else 1
    finally:
        server.terminate()
        server.wait()
        receiver.shutdown()
        if DB == "postgres":
            psql(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
