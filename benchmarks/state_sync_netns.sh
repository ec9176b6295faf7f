#!/usr/bin/env bash
# Shared-state join download benchmark (qccl_state_sync_bench) on loopback or across network
# namespaces with a tbf bandwidth limit on every donor's link. Run as root.
#
#   benchmarks/state_sync_netns.sh [--mode netns|loopback|both] [--rate 200mbit]
#       [--burst 256kb] [--latency 50ms] [--donors 1,2,3] [--bench PATH] [-- BENCH OPTIONS]
#
# BENCH OPTIONS go to the benchmark, e.g. `-- --size-mib 256 --rounds 3 --connections 1`.
#
# netns mode builds, and always removes again (trap EXIT):
#   qccl-b-hub          a bridge br0, with one veth per namespace below (h-<name>)
#   qccl-b-master       10.77.0.1/24  the driver and its embedded master
#   qccl-b-d1..dN       10.77.0.11.. one donor each; tbf on its eth0 egress (the donor -> bridge
#                       direction, which carries the state), so every donor link is limited
#                       separately
#   qccl-b-j            10.77.0.20/24 the joiner; its link is not limited
# Nothing is added to the root namespace and all traffic stays on 10.77.0.0/24 inside these
# namespaces. The driver runs in qccl-b-master and starts each peer under `ip netns exec`.
set -euo pipefail

MODE=netns
RATE=200mbit
BURST=256kb
LATENCY=50ms
DONORS=1,2,3
PREFIX=qccl-b
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH=""
EXTRA=()

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --mode) MODE="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --burst) BURST="$2"; shift 2 ;;
    --latency) LATENCY="$2"; shift 2 ;;
    --donors) DONORS="$2"; shift 2 ;;
    --bench) BENCH="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
case "$MODE" in netns|loopback|both) ;; *) echo "bad --mode $MODE" >&2; exit 2 ;; esac

if [[ -z "$BENCH" ]]; then
  for b in "$HERE/../build-sbench/benchmarks/qccl_state_sync_bench" \
           "$HERE/../build-bench/benchmarks/qccl_state_sync_bench" \
           "$HERE/../build/benchmarks/qccl_state_sync_bench"; do
    if [[ -x "$b" ]]; then BENCH="$(cd "$(dirname "$b")" && pwd)/$(basename "$b")"; break; fi
  done
fi
[[ -n "$BENCH" && -x "$BENCH" ]] || { echo "qccl_state_sync_bench not found; pass --bench PATH" >&2; exit 2; }

MAX_DONORS=0
IFS=, read -r -a DONOR_LIST <<< "$DONORS"
for n in "${DONOR_LIST[@]}"; do
  [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 && "$n" -le 9 ]] || { echo "--donors: 1..9 each" >&2; exit 2; }
  (( n > MAX_DONORS )) && MAX_DONORS=$n
done

# shellcheck source=netns_lib.sh
source "$HERE/netns_lib.sh"

setup_netns() {
  netns_require_free hub master j $(seq -f 'd%g' 1 "$MAX_DONORS")
  netns_make_hub
  netns_add master 10.77.0.1
  netns_add j 10.77.0.20
  for i in $(seq 1 "$MAX_DONORS"); do
    netns_add "d$i" "10.77.0.$((10 + i))"
    tc -n "$PREFIX-d$i" qdisc add dev eth0 root tbf rate "$RATE" burst "$BURST" latency "$LATENCY"
  done
  netns_wait_bridge
  echo "namespaces: ${CREATED[*]}"
  for i in $(seq 1 "$MAX_DONORS"); do
    echo "  $PREFIX-d$i eth0: $(tc -n "$PREFIX-d$i" qdisc show dev eth0 | head -1)"
  done
}

echo "bench: $BENCH"
echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
RC=0
if [[ "$MODE" == loopback || "$MODE" == both ]]; then
  echo "== loopback =="
  run_bench "$BENCH" --donors "$DONORS" --label loopback "${EXTRA[@]}" || RC=$?
fi
if [[ "$MODE" == netns || "$MODE" == both ]]; then
  echo "== network namespaces, tbf $RATE (burst $BURST, latency $LATENCY) on each donor link =="
  setup_netns
  run_bench ip netns exec "$PREFIX-master" "$BENCH" --donors "$DONORS" --netns "$PREFIX" \
    --master-host 10.77.0.1 --label "netns, tbf $RATE/donor" "${EXTRA[@]}" || RC=$?
fi
exit "$RC"
