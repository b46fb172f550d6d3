#!/usr/bin/env bash
# Inventory of N nodes x P packages, the OSV sample imported, then a `cve` assessment of every
# node, timed until Completed. Usage: bench/assess.sh N P [extra loadgen args]
source "$(dirname "$0")/lib-loadgen.sh"
N=${1:-1000}; P=${2:-1000}; shift 2 || shift $# || true
run_bench assess assess --agents "$N" --packages "$P" "$@"
