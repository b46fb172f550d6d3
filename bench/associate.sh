#!/usr/bin/env bash
# A Flotilla-DesiredState association (one file:write) over N simulated agents: time until
# every node's status is settled, then an `apply` until every node reports unchanged.
# Usage: bench/associate.sh N [extra loadgen args, e.g. --max-concurrency 10%]
source "$(dirname "$0")/lib-loadgen.sh"
N=${1:-1000}; shift || true
run_bench associate associate --agents "$N" --max-concurrency 100% "$@"
