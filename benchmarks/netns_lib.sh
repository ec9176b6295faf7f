# Shared plumbing of the namespace benchmarks (allreduce_netns.sh, state_sync_netns.sh,
# topology_netns.sh):
# a hub namespace with a bridge, one namespace per host joined to it by a veth pair, a driver
# run in the background so that the EXIT trap can end it by pid, and cleanup of exactly the
# namespaces created. Source it after setting PREFIX; it installs the traps.
#
#   netns_require_free NAME...   exit 1 if $PREFIX-NAME exists (a previous run?)
#   netns_make_hub               $PREFIX-hub with bridge br0
#   netns_add NAME IP            $PREFIX-NAME, its eth0 = IP/24 on the bridge
#   netns_wait_bridge            until every bridge port forwards
#   netns_shape NAME DST_IP RATE limit $PREFIX-NAME's traffic to DST_IP (one directed pair) to
#                                RATE (integer kbit/mbit/gbit); again for the same pair changes it
#   run_bench CMD...             runs CMD in the background and waits for it

CREATED=()     # namespaces created, removed on exit
BENCH_PID=""   # the driver, ended by pid on exit (its peers die with it: PR_SET_PDEATHSIG)

netns_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$BENCH_PID" ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$BENCH_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  local ns
  for ns in "${CREATED[@]}"; do ip netns del "$ns" 2>/dev/null || echo "could not delete $ns" >&2; done
  [[ ${#CREATED[@]} -gt 0 ]] && echo "removed namespaces: ${CREATED[*]}"
  exit "$rc"
}
trap netns_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

run_bench() {
  "$@" &
  BENCH_PID=$!
  local rc=0
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  return "$rc"
}

netns_require_free() {
  local name existing
  existing="$(ip netns list)"  # captured: under pipefail, grep -q's early exit could fail ip
  for name in "$@"; do
    if grep -qw "^$PREFIX-$name" <<< "$existing"; then
      echo "namespace $PREFIX-$name already exists (a previous run?); remove it with" \
           "'ip netns del $PREFIX-$name' and retry" >&2
      exit 1
    fi
  done
}

netns_make_hub() {
  ip netns add "$PREFIX-hub"
  CREATED+=("$PREFIX-hub")
  ip -n "$PREFIX-hub" link set lo up
  ip -n "$PREFIX-hub" link add name br0 type bridge
  ip -n "$PREFIX-hub" link set br0 up
}

netns_add() {
  local ns="$PREFIX-$1" ip="$2"
  ip netns add "$ns"
  CREATED+=("$ns")
  ip -n "$ns" link set lo up
  ip -n "$PREFIX-hub" link add name "h-$1" type veth peer name eth0 netns "$ns"
  ip -n "$PREFIX-hub" link set "h-$1" master br0
  ip -n "$PREFIX-hub" link set "h-$1" up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
}

netns_wait_bridge() {  # no STP on br0, so this is quick
  local down
  for _ in $(seq 1 50); do
    down=$(ip -n "$PREFIX-hub" -br link show master br0 | grep -vc ' UP ' || true)
    [[ "$down" == 0 ]] && break
    sleep 0.1
  done
}

# Per-destination shaping: tbf limits a whole interface, so NAME's eth0 egress gets an htb root
# whose default class 1:1 (10 gbit) carries everything unshaped (e.g. the master's traffic),
# plus one class per shaped destination (classid 1:<last octet + 10>, a tc hex minor) at RATE,
# selected by a u32 filter on the destination address, with a 100-packet pfifo (about 60 ms at
# 20 mbit, instead of the 1000-packet default). Burst 4 ms at the rate (at least 16 kB): less
# keeps a TCP stream below the rate (htb's timer). The same scheme as tests/support/netns.hpp.
netns_rate_bits() {
  local r="${1,,}"
  case "$r" in
    *gbit) echo $(( ${r%gbit} * 1000000000 )) ;;
    *mbit) echo $(( ${r%mbit} * 1000000 )) ;;
    *kbit) echo $(( ${r%kbit} * 1000 )) ;;
    *) echo "netns_rate_bits: use an integer kbit/mbit/gbit rate, not '$1'" >&2; return 1 ;;
  esac
}

netns_shape() {
  local ns="$PREFIX-$1" dst="$2" rate="$3" bits burst id
  bits=$(netns_rate_bits "$rate")
  burst=$(( bits / 8 / 250 > 16000 ? bits / 8 / 250 : 16000 ))
  id=$(( ${dst##*.} + 10 ))
  # Outputs are captured, not piped into grep -q: under pipefail an early grep exit can fail tc
  # with SIGPIPE, and the test would take the wrong branch.
  if [[ "$(tc -n "$ns" qdisc show dev eth0)" != *"qdisc htb 1: root"* ]]; then
    tc -n "$ns" qdisc replace dev eth0 root handle 1: htb default 1
    tc -n "$ns" class add dev eth0 parent 1: classid 1:1 htb rate 10gbit burst 1mb quantum 60000
  fi
  if [[ "$(tc -n "$ns" class show dev eth0 classid "1:$id")" == *htb* ]]; then
    tc -n "$ns" class change dev eth0 parent 1: classid "1:$id" htb rate "$rate" ceil "$rate" \
      burst "$burst" cburst "$burst" quantum 60000
    return
  fi
  tc -n "$ns" class add dev eth0 parent 1: classid "1:$id" htb rate "$rate" ceil "$rate" \
    burst "$burst" cburst "$burst" quantum 60000
  tc -n "$ns" qdisc add dev eth0 parent "1:$id" handle "$id:" pfifo limit 100
  tc -n "$ns" filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst "$dst/32" \
    flowid "1:$id"
}
