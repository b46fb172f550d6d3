#!/usr/bin/env bash
# Inventory of N nodes x P packages, a full upload then a delta, and the fleet query
# `name=openssl & version<...` over every node. The fleet is realistic by default: 5 base images,
# each node varying 3 % of its packages (other versions, missing, extra). The other cases:
#   bench/inventory.sh N P --fleet-images 1 --vary-percent 0    (identical fleet)
#   bench/inventory.sh N P --fleet-images 0                     (every node different)
# Usage: bench/inventory.sh N P [extra loadgen args]
source "$(dirname "$0")/lib-loadgen.sh"
N=${1:-10000}; P=${2:-1000}; shift 2 || shift $# || true
run_bench inventory inventory --agents "$N" --packages "$P" "$@"
