#!/usr/bin/env bash
# One Flotilla-RunShellScript command to all N simulated agents, at max concurrency 100% then
# 10%: time until every result is stored. Usage: bench/fanout.sh N [extra loadgen args]
source "$(dirname "$0")/lib-loadgen.sh"
N=${1:-1000}; shift || true
run_bench fanout fanout --agents "$N" "$@"
