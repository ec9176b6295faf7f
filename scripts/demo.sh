#!/usr/bin/env bash
# The quick-start job: installs what the build needs, builds qccl, then runs a local master
# and 4 peer processes all-reducing in a loop; one peer is killed with SIGKILL mid-run and a
# new one joins; every result is checked. Exit status 0 = every result was verified.
#
#   scripts/demo.sh [churn_demo flags, e.g. --peers 5 --steps 60 --count 1048576]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DQCCL_BUILD_TESTS=OFF \
  -DQCCL_BUILD_BENCHMARKS=OFF -DQCCL_BUILD_EXAMPLES=ON >/dev/null
cmake --build build-demo --target churn_demo
# The master's log (joins, leaves, expulsions, ring changes) goes to stderr; progress to stdout.
QCCL_LOG_LEVEL=info exec build-demo/examples/churn_demo "$@"
