#!/usr/bin/env bash
# N simulated agents connected and heartbeating: server memory and idle CPU, time to connect,
# time to reconnect after a server restart. Usage: bench/connections.sh N [extra loadgen args]
source "$(dirname "$0")/lib-loadgen.sh"
N=${1:-10000}; shift || true
run_bench connections connections --agents "$N" "$@"
