#!/usr/bin/env bash
# N nodes x P packages: a full inventory upload, then a delta (nothing changed).
# Usage: bench/inventory.sh N P [extra loadgen args]
source "$(dirname "$0")/lib-loadgen.sh"
N=${1:-1000}; P=${2:-1000}; shift 2 || shift $# || true
run_bench inventory inventory --agents "$N" --packages "$P" "$@"
