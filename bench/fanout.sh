#!/usr/bin/env bash
# One Flotilla-RunShellScript command to all N simulated agents, each answering with 1 KiB of
# stdout (so the output spool, its encryption and the artifact store are on the path), then with
# none; each at max concurrency 100% then 10%: time until every result is stored.
# Usage: bench/fanout.sh N [extra loadgen args, e.g. --output-bytes 4096]
source "$(dirname "$0")/lib-loadgen.sh"
N=${1:-10000}; shift || true
run_bench fanout fanout --agents "$N" --output-bytes 1024,0 "$@"
