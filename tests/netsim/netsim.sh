#!/usr/bin/env bash
# An emulated WAN between network namespaces (docs/netsim.md). Run as root.
#
#   netsim.sh up   --prefix P --peers N [--delay-ms D] [--jitter-ms J] [--loss PCT]
#                  [--flow-cap RATE] [--flow-queue-kb KB] [--rate RATE] [--seed S]
#                  [--subnet 10.77.0] [--bin PATH]
#   netsim.sh set  --prefix P [--delay-ms D] [--jitter-ms J] [--loss PCT] [--flow-cap RATE]
#                  [--flow-queue-kb KB] [--rate RATE|none]
#   netsim.sh down --prefix P
#
# up creates the namespaces P-master (SUBNET.1) and P-p1 .. P-pN (SUBNET.11 .. SUBNET.10+N),
# each with lo up and one TUN device wan0 (address/24, so the subnet route goes through it),
# starts the forwarder qccl_netsim in the background (pid in /run/qccl-netsim/P.pid, log in
# P.log), waits until it and every device are ready, and prints one line per namespace:
# "NAMESPACE ADDRESS". Every packet between two namespaces goes through the forwarder:
#   --delay-ms D     one-way delay (RTT = 2D), on every pair, the master included
#   --jitter-ms J    uniform +-J ms on top (never reorders the packets of one flow)
#   --loss PCT       random loss, percent of packets (each direction)
#   --flow-cap RATE  per-flow (5-tuple) rate cap in the forwarder, e.g. 20mbit (0 = none);
#                    its queue: --flow-queue-kb, default cap x (delay + 100 ms)
#   --rate RATE      tc tbf on each peer namespace's wan0 egress (its uplink), burst
#                    max(256kb, 4 ms at the rate); the master is not limited (none = remove)
#   --seed S         seed of the loss and jitter draws
# RATE is tc-like: 800kbit, 20mbit, 1gbit (or 0/none). It refuses if a namespace of that
# prefix exists. set changes a running emulation (the forwarder re-reads its knobs on SIGHUP;
# unspecified knobs stay), without touching connections. down stops the forwarder by pid and
# deletes the namespaces; it is idempotent. Only the namespaces are touched: the root
# namespace gets nothing and all traffic stays inside them.
# Binary: --bin, else $QCCL_NETSIM_BIN, else build-netsim/ or build/ of this repository.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RUN_DIR=/run/qccl-netsim
DEV=wan0
READY_TIMEOUT_S=10

help() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
usage() { help >&2; exit 2; }
die() { echo "netsim.sh: $*" >&2; exit 2; }

[[ $# -ge 1 ]] || usage
CMD="$1"
shift
[[ "$CMD" != -h && "$CMD" != --help ]] || { help; exit 0; }
PREFIX="" PEERS="" SUBNET=10.77.0 BIN="${QCCL_NETSIM_BIN:-}" RATE=""
KNOBS=()  # flags for the forwarder, as given
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 || "$1" == -h || "$1" == --help ]] || die "$1 needs a value"
  case "$1" in
    --prefix) PREFIX="$2" ;;
    --peers) PEERS="$2" ;;
    --subnet) SUBNET="$2" ;;
    --bin) BIN="$2" ;;
    --rate) RATE="$2" ;;
    --delay-ms | --jitter-ms | --loss | --flow-cap | --flow-queue-kb | --seed) KNOBS+=("$1" "$2") ;;
    -h | --help) help; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
  shift 2
done
[[ "$PREFIX" =~ ^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,30}$ ]] || die "--prefix: 1-31 of [A-Za-z0-9_.-] is required"
[[ $EUID -eq 0 ]] || die "needs root (network namespaces, TUN devices, tc)"

PID_FILE="$RUN_DIR/$PREFIX.pid"
STATUS_FILE="$RUN_DIR/$PREFIX.status"
CONTROL_FILE="$RUN_DIR/$PREFIX.control"
LOG_FILE="$RUN_DIR/$PREFIX.log"
ENV_FILE="$RUN_DIR/$PREFIX.env"

# The namespaces of this prefix that exist.
existing_namespaces() {
  local all
  all="$(ip netns list | awk '{print $1}')"  # captured: no early-exit pipe under pipefail
  grep -E "^$(sed 's/[.]/\\./g' <<< "$PREFIX")-(master|p[0-9]+)$" <<< "$all" || true
}

# The forwarder's pid if it is running (a stale pid file is not trusted: the process must be
# qccl_netsim).
forwarder_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == qccl_netsim ]] || return 1
  echo "$pid"
}

# Polls the status file until its first words are "$1" (ready generation G) or an error for
# generation $2; the forwarder must stay alive. Fails after READY_TIMEOUT_S.
wait_status() {
  local want="$1" gen="$2" pid="$3" deadline=$((SECONDS + READY_TIMEOUT_S)) line
  while ((SECONDS < deadline)); do
    line="$(cat "$STATUS_FILE" 2>/dev/null || true)"
    [[ "$line" == "$want "* ]] && return 0
    if [[ "$line" == "error generation $gen:"* ]]; then
      echo "netsim.sh: the forwarder refused the change: ${line#*: }" >&2
      return 2
    fi
    kill -0 "$pid" 2>/dev/null || { echo "netsim.sh: the forwarder exited; its log:" >&2; cat "$LOG_FILE" >&2; return 1; }
    sleep 0.02
  done
  echo "netsim.sh: the forwarder is not '$want' after ${READY_TIMEOUT_S}s; status '$line'" >&2
  return 1
}

# rate -> "rate R burst B" for tbf: burst = max(256kb, 4 ms at the rate), like
# benchmarks/allreduce_netns.sh (less keeps a TCP stream below the rate).
tbf_args() {
  python3 - "$1" <<'EOF'
import re, sys
m = re.fullmatch(r"([0-9.]+)([kmg]?)(bit|bps)", sys.argv[1].lower())
if not m or float(m[1]) <= 0:
    sys.exit(f"netsim.sh: --rate: cannot parse {sys.argv[1]!r} (e.g. 100mbit, 1gbit, none)")
bits = float(m[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m[2]] * (8 if m[3] == "bps" else 1)
print(f"rate {sys.argv[1]} burst {max(256, int(bits / 8 * 0.004 / 1024))}kb latency 50ms")
EOF
}

# Puts (or with none/0, removes) the tbf on every peer's wan0.
apply_rate() {
  local rate="$1" peers="$2" args i
  if [[ "$rate" == none || "$rate" == 0 ]]; then
    for i in $(seq 1 "$peers"); do
      tc -n "$PREFIX-p$i" qdisc del dev "$DEV" root 2>/dev/null || true
    done
    return
  fi
  args="$(tbf_args "$rate")"
  for i in $(seq 1 "$peers"); do
    # shellcheck disable=SC2086  # args is words on purpose
    tc -n "$PREFIX-p$i" qdisc replace dev "$DEV" root tbf $args
  done
}

cmd_down() {
  local pid ns
  if pid="$(forwarder_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "netsim.sh: forwarder $pid ignored SIGTERM for 5 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    grep -h "qccl_netsim stats" "$LOG_FILE" 2>/dev/null | tail -1 || true
  fi
  for ns in $(existing_namespaces); do
    ip netns del "$ns" || echo "netsim.sh: could not delete $ns" >&2
  done
  rm -f "$PID_FILE" "$STATUS_FILE" "$STATUS_FILE.tmp" "$CONTROL_FILE" "$ENV_FILE" "$LOG_FILE"
}

cmd_up() {
  [[ "$PEERS" =~ ^[0-9]+$ && "$PEERS" -ge 1 && "$PEERS" -le 200 ]] || die "--peers: 1..200"
  [[ "$SUBNET" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--subnet: three octets, e.g. 10.77.0"
  if [[ -z "$BIN" ]]; then
    for b in "$REPO/build-netsim/tests/netsim/qccl_netsim" "$REPO/build/tests/netsim/qccl_netsim"; do
      [[ -x "$b" ]] && { BIN="$b"; break; }
    done
  fi
  [[ -n "$BIN" && -x "$BIN" ]] || die "qccl_netsim not found; build it or pass --bin PATH"
  [[ -z "$RATE" || "$RATE" == none || "$RATE" == 0 ]] || tbf_args "$RATE" > /dev/null || exit 2
  local existing
  existing="$(existing_namespaces)"
  [[ -z "$existing" ]] || die "namespaces of prefix $PREFIX exist already:" $existing \
                              "(netsim.sh down --prefix $PREFIX removes them)"
  ! forwarder_pid > /dev/null || die "a forwarder for $PREFIX is running (pid $(cat "$PID_FILE"))"
  # The forwarder checks its flags before anything is created.
  "$BIN" --dry-run --node a=10.0.0.1 --node b=10.0.0.2 "${KNOBS[@]}" || exit 2
  mkdir -p "$RUN_DIR"

  local names=("$PREFIX-master") addrs=("$SUBNET.1") i nodes=() ns
  for i in $(seq 1 "$PEERS"); do names+=("$PREFIX-p$i"); addrs+=("$SUBNET.$((10 + i))"); done
  trap 'rc=$?; trap - EXIT; [[ $rc -eq 0 ]] || cmd_down > /dev/null; exit $rc' EXIT
  for i in "${!names[@]}"; do
    ns="${names[$i]}"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # No IPv6 on wan0 (router solicitations would only be dropped as unknown by the forwarder).
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    nodes+=(--node "$ns=${addrs[$i]}")
  done
  rm -f "$STATUS_FILE"
  printf '%s\n' "PEERS=$PEERS" "SUBNET=$SUBNET" > "$ENV_FILE"
  # setsid: its own session, so the caller's terminal or process group signals do not reach
  # it (no job control here, so setsid does not fork and $! is the forwarder).
  setsid "$BIN" "${nodes[@]}" --dev "$DEV" "${KNOBS[@]}" --control "$CONTROL_FILE" \
    --status "$STATUS_FILE" < /dev/null > "$LOG_FILE" 2>&1 &
  local pid=$!
  echo "$pid" > "$PID_FILE"
  wait_status "ready generation 0" 0 "$pid"
  for i in "${!names[@]}"; do
    ip -n "${names[$i]}" addr add "${addrs[$i]}/24" dev "$DEV"
    # txqueuelen: the TUN's ring of packets waiting for the forwarder (default 500); a longer
    # one rides out the moments the forwarder is not scheduled instead of dropping.
    ip -n "${names[$i]}" link set "$DEV" mtu 1500 txqueuelen 4096 up
  done
  [[ -z "$RATE" ]] || apply_rate "$RATE" "$PEERS"
  # Ready once every namespace routes the subnet through wan0.
  local deadline=$((SECONDS + READY_TIMEOUT_S)) ok
  while :; do
    ok=0
    for ns in "${names[@]}"; do
      [[ "$(ip -n "$ns" -4 route show dev "$DEV" 2>/dev/null)" == *"$SUBNET.0/24"* ]] && ok=$((ok + 1))
    done
    ((ok == ${#names[@]})) && break
    ((SECONDS < deadline)) || { echo "netsim.sh: the subnet route is missing in some namespace" >&2; exit 1; }
    sleep 0.02
  done
  trap - EXIT
  for i in "${!names[@]}"; do echo "${names[$i]} ${addrs[$i]}"; done
}

cmd_set() {
  local pid gen=1 peers
  pid="$(forwarder_pid)" || die "no forwarder running for $PREFIX (netsim.sh up first)"
  peers="$(sed -n 's/^PEERS=//p' "$ENV_FILE")"
  [[ " ${KNOBS[*]} " != *" --seed "* ]] || die "--seed is fixed at up"
  if [[ ${#KNOBS[@]} -gt 0 ]]; then
    local status
    status="$(cat "$STATUS_FILE")"
    [[ "$status" =~ generation\ ([0-9]+) ]] && gen=$((BASH_REMATCH[1] + 1))
    echo "${KNOBS[*]} --generation $gen" > "$CONTROL_FILE"
    kill -HUP "$pid"
    wait_status "ready generation $gen" "$gen" "$pid"
  fi
  [[ -z "$RATE" ]] || apply_rate "$RATE" "$peers"
}

case "$CMD" in
  up) cmd_up ;;
  set) cmd_set ;;
  down) cmd_down ;;
  *) die "unknown command $CMD (up, set or down)" ;;
esac
