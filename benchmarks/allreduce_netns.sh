#!/usr/bin/env bash
# All-reduce benchmark (qccl_allreduce_bench), e.g. quantized vs raw, across network namespaces
# with a tbf bandwidth limit on every peer's uplink, and/or on a namespace's loopback. Run as root.
#
#   benchmarks/allreduce_netns.sh [--mode netns|loopback|both] [--rate 1gbit | --rates 1gbit,100mbit]
#       [--burst auto] [--latency 50ms] [--peers 3,4] [--bench PATH] [-- BENCH OPTIONS]
#
# BENCH OPTIONS go to the benchmark, e.g.
#   -- --sizes-mib 64 --quant none,minmax:uint8,cast:bf16 --iters 5 --warmup 1
# With several --rates the benchmark runs once per rate; between runs the qdiscs are changed
# with `tc qdisc replace`. --burst auto (default) = max(256kb, 4 ms at the rate), e.g. 500kb at
# 1gbit: with less, tbf keeps a single TCP stream below the rate (see docs/performance.md).
#
# Builds, and always removes again (trap EXIT):
#   qccl-q-hub          a bridge br0, with one veth per namespace below (h-<name>)
#   qccl-q-master       10.78.0.1/24  the driver and its embedded master (not limited)
#   qccl-q-p1..pN       10.78.0.11.. one peer each (N = max of --peers); tbf on its eth0 egress,
#                       so every peer's upload is limited on its own, like a home/cloud link
# Nothing is added to the root namespace and all traffic stays inside these namespaces: netns
# mode on 10.78.0.0/24, loopback mode on qccl-q-master's own lo (no limit: the CPU cost of
# the wire settings). Refuses to start if any of these namespaces exists already.
set -euo pipefail

MODE=netns
RATES=1gbit
BURST=auto
LATENCY=50ms
PEERS=3,4
PREFIX=qccl-q
SUBNET=10.78.0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH=""
EXTRA=()

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --mode) MODE="$2"; shift 2 ;;
    --rate|--rates) RATES="$2"; shift 2 ;;
    --burst) BURST="$2"; shift 2 ;;
    --latency) LATENCY="$2"; shift 2 ;;
    --peers) PEERS="$2"; shift 2 ;;
    --bench) BENCH="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
case "$MODE" in netns|loopback|both) ;; *) echo "bad --mode $MODE" >&2; exit 2 ;; esac

if [[ -z "$BENCH" ]]; then
  for b in "$HERE/../build-qbench/benchmarks/qccl_allreduce_bench" \
           "$HERE/../build-bench/benchmarks/qccl_allreduce_bench" \
           "$HERE/../build/benchmarks/qccl_allreduce_bench"; do
    if [[ -x "$b" ]]; then BENCH="$(cd "$(dirname "$b")" && pwd)/$(basename "$b")"; break; fi
  done
fi
[[ -n "$BENCH" && -x "$BENCH" ]] || { echo "qccl_allreduce_bench not found; pass --bench PATH" >&2; exit 2; }

MAX_PEERS=0
IFS=, read -r -a PEER_LIST <<< "$PEERS"
for n in "${PEER_LIST[@]}"; do
  [[ "$n" =~ ^[0-9]+$ && "$n" -ge 2 && "$n" -le 16 ]] || { echo "--peers: 2..16 each" >&2; exit 2; }
  (( n > MAX_PEERS )) && MAX_PEERS=$n
done
IFS=, read -r -a RATE_LIST <<< "$RATES"
[[ ${#RATE_LIST[@]} -ge 1 ]] || { echo "--rates: empty" >&2; exit 2; }

# tbf needs burst >= rate x (the time between its dequeues); too small a bucket caps a TCP
# stream below the rate. auto = max(256 KiB, 4 ms at the rate).
burst_for() {
  [[ "$BURST" != auto ]] && { echo "$BURST"; return; }
  python3 - "$1" <<'EOF'
import re, sys
m = re.fullmatch(r"([0-9.]+)([kmg]?)(bit|bps)", sys.argv[1].lower())
if not m:
    sys.exit(f"cannot parse rate {sys.argv[1]!r}; pass --burst")
bits = float(m[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m[2]] * (8 if m[3] == "bps" else 1)
print(f"{max(256, int(bits / 8 * 0.004 / 1024))}kb")
EOF
}

# shellcheck source=netns_lib.sh
source "$HERE/netns_lib.sh"

setup_netns() {
  netns_require_free hub master $(seq -f 'p%g' 1 "$MAX_PEERS")
  netns_make_hub
  netns_add master "$SUBNET.1"
  for i in $(seq 1 "$MAX_PEERS"); do netns_add "p$i" "$SUBNET.$((10 + i))"; done
  netns_wait_bridge
  echo "namespaces: ${CREATED[*]}"
}

show_drops() {  # what tbf did on each uplink during the last run (drops mean TCP loss recovery)
  local i
  for i in $(seq 1 "$MAX_PEERS"); do
    echo "  $PREFIX-p$i eth0: $(tc -s -n "$PREFIX-p$i" qdisc show dev eth0 | grep -o 'Sent.*)' | head -1)"
  done
}

set_rate() {  # the same tbf on every peer's uplink; replace works for the first one too
  local rate="$1" burst
  burst="$(burst_for "$rate")"
  for i in $(seq 1 "$MAX_PEERS"); do
    tc -n "$PREFIX-p$i" qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency "$LATENCY"
  done
  echo "  $PREFIX-p1..p$MAX_PEERS eth0: $(tc -n "$PREFIX-p1" qdisc show dev eth0 | head -1)"
}

echo "bench: $BENCH"
echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
setup_netns
RC=0
if [[ "$MODE" == loopback || "$MODE" == both ]]; then
  echo "== loopback (lo of $PREFIX-master, no limit) =="
  run_bench ip netns exec "$PREFIX-master" "$BENCH" --peers "$PEERS" --label loopback \
    "${EXTRA[@]}" || RC=$?
fi
if [[ "$MODE" == netns || "$MODE" == both ]]; then
  for rate in "${RATE_LIST[@]}"; do
    echo "== network namespaces, tbf $rate (burst $(burst_for "$rate"), latency $LATENCY) on each peer's uplink =="
    set_rate "$rate"
    echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
    run_bench ip netns exec "$PREFIX-master" "$BENCH" --peers "$PEERS" --netns "$PREFIX" \
      --master-host "$SUBNET.1" --label "tbf $rate/peer" "${EXTRA[@]}" || RC=$?
    show_drops
  done
fi
exit "$RC"
