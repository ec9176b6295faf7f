#!/usr/bin/env bash
# Bandwidth-aware ring benchmark (qcclOptimizeTopology) across network namespaces. Run as root.
#
#   benchmarks/topology_netns.sh [--hosts 5] [--fast 200mbit] [--slow 20mbit] [--sizes-mib 12]
#       [--iters 5] [--warmup 1] [--probe-ms 0] [--bench PATH] [--out DIR]
#
# Every directed pair of hosts is limited to --fast with a per-destination htb class on the
# sender's uplink (netns_shape), except the pair p1 <-> p2 (peers 0 and 1), limited to --slow in
# both directions. Peers are admitted in index order, so the default ring 0 -> 1 -> ... -> 0
# crosses the slow pair; rings that avoid it exist (from 4 hosts up). Two runs of
# qccl_allreduce_bench (fp32 sum, out of place):
#   1. --optimize-topology: all-reduces on the default ring, qcclOptimizeTopology (timed: probes,
#      solve, new ring's connections), all-reduces on the optimized ring;
#   2. ideal: the slow pair set to --fast as well, default ring.
# and a table: median time, busbw (per-link bytes/s = size/time * 2(N-1)/N), optimized/default
# and optimized/ideal speed-ups, and qcclOptimizeTopology's time. The JSON of both runs stays in
# --out (default: a new /tmp/qccl-topo.XXXXXX).
#
# Builds, and always removes again (trap EXIT):
#   qccl-t-hub        a bridge br0, with one veth per namespace below (h-<name>)
#   qccl-t-master     10.76.0.1/24   the driver and its embedded master (not limited)
#   qccl-t-p1..pN     10.76.0.11..   one peer each
# Nothing is added to the root namespace; all traffic stays on 10.76.0.0/24 inside these
# namespaces. Refuses to start if any of them exists already.
set -euo pipefail

HOSTS=5
FAST=200mbit
SLOW=20mbit
SIZES=12
ITERS=5
WARMUP=1
PROBE_MS=0
PREFIX=qccl-t
SUBNET=10.76.0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH=""
OUT=""

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --hosts) HOSTS="$2"; shift 2 ;;
    --fast) FAST="$2"; shift 2 ;;
    --slow) SLOW="$2"; shift 2 ;;
    --sizes-mib) SIZES="$2"; shift 2 ;;
    --iters) ITERS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --probe-ms) PROBE_MS="$2"; shift 2 ;;
    --bench) BENCH="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
[[ "$HOSTS" =~ ^[0-9]+$ && "$HOSTS" -ge 4 && "$HOSTS" -le 16 ]] || {
  echo "--hosts: 4..16 (with 3 every ring uses the slow pair)" >&2; exit 2; }

# The first qccl_allreduce_bench that knows --optimize-topology.
if [[ -z "$BENCH" ]]; then
  for b in "$HERE/../build/benchmarks/qccl_allreduce_bench" \
           "$HERE/../build-bench/benchmarks/qccl_allreduce_bench" \
           "$HERE/../build-netns/benchmarks/qccl_allreduce_bench"; do
    if [[ -x "$b" ]] && grep -q -- --optimize-topology <<< "$("$b" --help 2>&1)"; then
      BENCH="$(cd "$(dirname "$b")" && pwd)/$(basename "$b")"
      break
    fi
  done
fi
[[ -n "$BENCH" && -x "$BENCH" ]] || {
  echo "no qccl_allreduce_bench with --optimize-topology found; pass --bench PATH" >&2; exit 2; }
[[ -n "$OUT" ]] || OUT="$(mktemp -d /tmp/qccl-topo.XXXXXX)"
mkdir -p "$OUT"

# shellcheck source=netns_lib.sh
source "$HERE/netns_lib.sh"
netns_rate_bits "$FAST" > /dev/null && netns_rate_bits "$SLOW" > /dev/null

host_ip() { echo "$SUBNET.$((10 + $1))"; }
is_slow_pair() { [[ ("$1" == 1 && "$2" == 2) || ("$1" == 2 && "$2" == 1) ]]; }

# Every directed pair gets its own class: --fast, or SLOW_RATE for p1 <-> p2.
shape_all() {
  local slow_rate="$1" a b
  for a in $(seq 1 "$HOSTS"); do
    for b in $(seq 1 "$HOSTS"); do
      [[ "$a" == "$b" ]] && continue
      if is_slow_pair "$a" "$b"; then netns_shape "p$a" "$(host_ip "$b")" "$slow_rate"
      else netns_shape "p$a" "$(host_ip "$b")" "$FAST"; fi
    done
  done
}

# Per uplink, bytes sent and drops per destination class so far (cumulative since setup; the
# rates in force): one line per host.
show_classes() {
  local i
  for i in $(seq 1 "$HOSTS"); do
    tc -s -n "$PREFIX-p$i" class show dev eth0 | awk -v h="p$i" '
      /^class htb/ { split($3, c, ":"); to = c[2] == "1" ? "other" : "p" (c[2] - 20)
                     match($0, /rate [^ ]+/); r = substr($0, RSTART + 5, RLENGTH - 5) }
      /Sent/ { d = $7; sub(",", "", d); drops += d
               line = line sprintf(" %s %s %.1fMB;", to, r, $2 / 1e6) }
      END { printf "  %s ->%s drops %d\n", h, line, drops }'
  done
}

bench() {
  run_bench ip netns exec "$PREFIX-master" "$BENCH" --peers "$HOSTS" --netns "$PREFIX" \
    --master-host "$SUBNET.1" --sizes-mib "$SIZES" --iters "$ITERS" --warmup "$WARMUP" \
    --probe-ms "$PROBE_MS" "$@"
}

echo "bench: $BENCH"
echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
netns_require_free hub master $(seq -f 'p%g' 1 "$HOSTS")
netns_make_hub
netns_add master "$SUBNET.1"
for i in $(seq 1 "$HOSTS"); do netns_add "p$i" "$(host_ip "$i")"; done
netns_wait_bridge
echo "namespaces: ${CREATED[*]}"

shape_all "$SLOW"
echo "== 1. $FAST per directed pair, p1 <-> p2 $SLOW: default ring, then qcclOptimizeTopology =="
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
bench --optimize-topology --label "p1-p2 $SLOW" --json "$OUT/slow_pair.json"
show_classes

shape_all "$FAST"
echo "== 2. ideal: $FAST on every directed pair, default ring =="
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
bench --label "all $FAST" --json "$OUT/ideal.json"
show_classes
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$OUT/slow_pair.json" "$OUT/ideal.json" "$HOSTS" "$FAST" "$SLOW" <<'EOF'
import json, sys
slow, ideal = (json.load(open(p))["results"] for p in sys.argv[1:3])
n, fast, slow_rate = int(sys.argv[3]), sys.argv[4], sys.argv[5]
def mbs(r):  # busbw in MB/s (1e6 bytes/s) from the median time
    return r["size_bytes"] / (r["median_ms"] / 1e3) * 2 * (n - 1) / n / 1e6
def ring(r):
    # The ideal run admits its peers in any order: every ring is as fast there.
    return " -> ".join(map(str, r["ring"] + r["ring"][:1])) if r.get("ring") else "admission order"
print(f"\n{n} peers, {fast} per directed pair, p1 <-> p2 (peers 0, 1) {slow_rate}; fp32 sum; "
      f"median / min / max of the timed all-reduces")
print("\n| case | MiB | ring | median s | min s | max s | busbw MB/s | time / optimized time |")
print("|---|---|---|---|---|---|---|---|")
for size in sorted({r["size_bytes"] for r in slow}):
    d = next(r for r in slow if r["size_bytes"] == size and r.get("phase") == "default")
    o = next(r for r in slow if r["size_bytes"] == size and r.get("phase") == "optimized")
    i = next(r for r in ideal if r["size_bytes"] == size)
    for name, r in (("default ring", d), ("after qcclOptimizeTopology", o),
                    ("ideal (no slow pair)", i)):
        print(f"| {name} | {size >> 20} | {ring(r)} | {r['median_ms'] / 1e3:.3f} | "
              f"{r['min_ms'] / 1e3:.3f} | {r['max_ms'] / 1e3:.3f} | {mbs(r):.1f} | "
              f"{r['median_ms'] / o['median_ms']:.2f} |")
    fast_mbs = int(fast[:-4]) * {"k": 1e3, "m": 1e6, "g": 1e9}[fast[-4].lower()] / 8e6
    print(f"\nMiB {size >> 20}: optimized is {d['median_ms'] / o['median_ms']:.2f}x faster than "
          f"default and reaches {i['median_ms'] / o['median_ms'] * 100:.0f} % of ideal; "
          f"qcclOptimizeTopology took {o['optimize_ms']:.0f} ms (slowest peer); ideal busbw "
          f"{mbs(i):.1f} MB/s = {mbs(i) / fast_mbs * 100:.0f} % of {fast} ({fast_mbs:.1f} MB/s)")
ok = all(r.get("parity") for r in slow + ideal)
print("all results correct and bit-identical on every peer" if ok else "PARITY OR CORRECTNESS FAILED")
sys.exit(0 if ok else 1)
EOF
