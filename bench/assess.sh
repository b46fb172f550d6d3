#!/usr/bin/env bash
# Inventory of N nodes x P packages (5 images, 3 % variation), a synthetic advisory database of
# A records (default 50,000: Debian, Ubuntu, Alpine, Rocky, Red Hat; see
# crates/flotilla-loadgen/src/advisories.rs) imported through the import API, then a `cve`
# assessment of every node, timed until Completed.
# Usage: bench/assess.sh N P [A] [extra loadgen args; --advisories 0 for the real OSV sample]
source "$(dirname "$0")/lib-loadgen.sh"
N=${1:-10000}; P=${2:-1000}; A=${3:-50000}; shift 3 || shift $# || true
run_bench assess assess --agents "$N" --packages "$P" --advisories "$A" "$@"
