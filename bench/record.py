#!/usr/bin/env python3
"""Adds what a benchmark record needs to be read later to one JSON result: the commit (with
"-dirty" when the worktree had changes outside bench/results), the time, the command, the server binary, the
machine's facts (CPUs and model, memory, kernel, load average at the start and the end: the
machine is shared, so the load says how much to trust a time) and `peak_server_rss_bytes`,
the largest server RSS or high-water mark anywhere in the record.

Usage: record.py RESULT.json SERVER_BINARY > OUT.json   (env BENCH_LOAD_START, BENCH_COMMAND,
FLOTILLA_BENCH_SERVER_COMMIT: the commit the server binary was built from, when not this one)
"""
import json, os, platform, subprocess, sys, time

def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""

def meminfo_kib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0

def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()

def peak_rss(v):
    best = 0
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (int, float)) and "server" in k and ("rss" in k or "hwm" in k) and "per_agent" not in k:
                best = max(best, int(x))
            else:
                best = max(best, peak_rss(x))
    elif isinstance(v, list):
        for x in v:
            best = max(best, peak_rss(x))
    return best

def annotate(record, server, command, load_start):
    """`record` with the fields above added."""
    commit = git("rev-parse", "--short=12", "HEAD")
    # The results themselves change with every run: only code makes a build "dirty".
    if git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)bench/results"):
        commit += "-dirty"
    record.update({
        "commit": commit,
        "server_commit": os.environ.get("FLOTILLA_BENCH_SERVER_COMMIT") or commit,
        "server_binary": server,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "peak_server_rss_bytes": peak_rss(record),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "mem_total_kib": meminfo_kib(),
            "kernel": platform.release(),
            "load_average_start": load_start,
            "load_average_end": " ".join(open("/proc/loadavg").read().split()[:3]),
        },
    })
    return record

def save(result, name, server, command, load_start):
    """For the Python benchmarks: annotates `result`, writes it to results/NAME.json and appends
    it to results/history.jsonl; returns the record."""
    record = annotate(result, server, command, load_start)
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, f"{name}.json"), "w") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    with open(os.path.join(results, "history.jsonl"), "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    return record

def main():
    record = json.load(open(sys.argv[1]))
    server = sys.argv[2] if len(sys.argv) > 2 else ""
    record = annotate(record, server, os.environ.get("BENCH_COMMAND", ""), os.environ.get("BENCH_LOAD_START", ""))
    print(json.dumps(record, sort_keys=True))

if __name__ == "__main__":
    main()
