#!/usr/bin/env python3
"""All-reduce over an emulated WAN (issue 9): qccl with 1/4/16 connections, raw and uint8, vs Gloo.

    sudo python3 benchmarks/wan.py [--peers 4,3] [--rtt-ms 80,20,200] [--caps 10mbit,none]
        [--rate 100mbit] [--sizes-mib 64,256] [--connections 1,4,16] [--quant none,minmax:uint8]
        [--ops allreduce] [--systems qccl,gloo] [--iters 2] [--warmup 1] [--slow-s 20] [--stop-at HH:MM]
        [--retries 1] [--json FILE] [--resume FILE] [--report FILE] [--dry-run]

For every configuration (RTT, per-flow cap) the emulator (tests/netsim/netsim.sh, `up` once
for the largest N, `set` between configurations) gives each peer's uplink --rate and a one-way
delay of RTT/2 (so a peer-to-peer round trip is the RTT; measured and printed), and,
with a cap, limits every TCP flow to the cap. Then, per N: qccl_allreduce_bench (a master in
PREFIX-master, peer i in PREFIX-p<i+1>) for each size x --connections x --quant, one bench run
per cell; and Gloo (benchmarks/compare/gloo_allreduce.py, one rank per PREFIX-p<i>, rendezvous
on PREFIX-p1's address, float32 sum, every result checked) per size: one TCP connection per
pair of ranks. All float32 Sum; op time = the slowest rank's, per op after an untimed barrier.

Each cell runs --warmup + --iters ops, except cells whose op is predicted (bytes on the uplink
over min(rate, flows x min(cap, TCP window / RTT))) to take longer than --slow-s: those run one
timed op without warm-up (a 1-connection capped 256 MiB op takes minutes). --stop-at skips
cells that would end after that UTC time. A failed cell runs again (--retries, default 1; its
"ops" then reads e.g. 1+2*, and the JSON keeps each failure). Per configuration it prints a
table: median and min op time, busbw = size/time x 2(N-1)/N (the payload rate of each peer's
uplink, for uint8 the float32 bytes it stands for) against the link rate, and the ratios
1 conn / this (same wire), none / this (same conns) and Gloo / this (same size); then the aims
of issue 9 where the configuration has a cap. Markdown tables for docs/performance.md at the
end (also from a saved JSON: --report FILE). JSON is rewritten after every cell; --resume FILE
reuses its good cells.

--ops allreduce,allgather,reducescatter,broadcast (default allreduce; issue 19) runs those
collectives too, one bench run (--op) per cell; the op is part of a cell's key (a cell without
"op", e.g. of an older JSON, is an all-reduce; all-reduce cells are written without it, so a
default run's JSON and tables are as before). Size is the op's total data (all-gather's output,
reduce-scatter's input, broadcast's buffer); busbw = size/time x (N-1)/N for all-gather and
reduce-scatter, x 1 for broadcast (nccl-tests), "% link" = busbw / --rate as for all-reduce.
These ops run float32 with wire none only (other --quant entries are skipped for them); Gloo
runs them with gloo_allreduce.py --op (all_gather_into_tensor, reduce_scatter_tensor, broadcast
from rank 0). With a cap, a 16-connection all-gather / reduce-scatter / broadcast is checked
against issue 19's aim: >= 85% of the link, like the all-reduce.

--systems may also name qccl-auth and qccl-enc (issue 23): qccl_allreduce_bench with a shared
secret for its master and every peer (a random one in a 0600 file in the logs' directory),
connections authenticated only (--encryption off) or encrypted (--encryption on). They run every
qccl cell (--connections x --quant) right after plain qccl's; after the table each gets its busbw
over plain qccl's in the same configuration, checked against issue 23's aim (encrypted >= 95% of
plain) for 16 connections under a cap.

Runs as root. Creates only the emulator's namespaces PREFIX-* (refuses if any exists), runs
every process in them and ends them, and the emulator, on exit (also on SIGINT/SIGTERM).
"""
import argparse
import datetime
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

from compare import SECURED, write_secret  # qccl with a shared secret: the same rows as there

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OPS = ("allreduce", "allgather", "reducescatter", "broadcast")
QCCLS = ("qccl",) + tuple(SECURED)
WIRE_BYTES = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "bf16": 2, "fp16": 2, "fp32": 4}
FRAME = 1514 / 1448  # wire bytes per TCP payload byte (full frames, timestamps on)


# ---- options -------------------------------------------------------------------------------

def int_list(s):
    return [int(x) for x in s.split(",") if x]


def rate_bits(r):
    m = re.fullmatch(r"([0-9.]+)([kmg]?)bit", r.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"rate {r!r}: use e.g. 200mbit")
    return float(m[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m[2]]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--peers", default="4,3", help="group sizes N")
    ap.add_argument("--rtt-ms", default="80,20,200", help="peer-to-peer round trips")
    ap.add_argument("--caps", default="10mbit,none", help="per-flow caps; none = no cap")
    ap.add_argument("--rate", default="100mbit",
                    help="each peer's uplink; 4 x 100mbit is half the emulator's ceiling")
    ap.add_argument("--sizes-mib", default="64,256")
    ap.add_argument("--connections", default="1,4,16", help="qccl connections_per_peer")
    ap.add_argument("--quant", default="none,minmax:uint8", help="qccl wire settings")
    ap.add_argument("--ops", default="allreduce",
                    help="subset of " + ",".join(OPS) + "; all but allreduce: wire none only "
                    "(qccl and Gloo, float32)")
    ap.add_argument("--systems", default="qccl,gloo",
                    help="qccl, gloo (Gloo: one connection per pair, every op of --ops); "
                    "qccl-auth, qccl-enc: qccl with a shared secret, in clear / encrypted")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--slow-s", type=float, default=20.0,
                    help="a cell whose op is predicted to take longer runs 1 op, no warm-up")
    ap.add_argument("--stop-at", help="UTC HH:MM: skip cells that would end later")
    ap.add_argument("--retries", type=int, default=1,
                    help="run a failed cell again this often (each failure is kept in the JSON)")
    ap.add_argument("--prefix", default="qccl-w")
    ap.add_argument("--subnet", default="10.77.0")
    ap.add_argument("--netsim-args", default="", help="more emulator knobs, e.g. '--jitter-ms 2'")
    ap.add_argument("--netsim", default=os.path.join(REPO, "tests", "netsim", "netsim.sh"))
    ap.add_argument("--netsim-bin", help="qccl_netsim (default: netsim.sh's own search)")
    ap.add_argument("--bench", help="qccl_allreduce_bench (default: build-wan, build-bench, build)")
    ap.add_argument("--commit", help="what the bench was built from (default: the repo's HEAD)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch for Gloo")
    ap.add_argument("--out-dir", help="per-cell logs (default: a new /tmp/qccl-wan-*)")
    ap.add_argument("--json", help="results, rewritten after every cell")
    ap.add_argument("--resume", help="reuse the good cells of this earlier --json")
    ap.add_argument("--report", help="only print the tables of this earlier --json")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the commands")
    a = ap.parse_args()
    a.peers = int_list(a.peers)
    a.rtts = int_list(a.rtt_ms)
    a.caps = [c for c in a.caps.split(",") if c]
    a.sizes = int_list(a.sizes_mib)
    a.conns = int_list(a.connections)
    a.wires = [w for w in a.quant.split(",") if w]
    a.systems = [s for s in a.systems.split(",") if s]
    a.ops = [o for o in a.ops.split(",") if o]
    if not a.ops or set(a.ops) - set(OPS):
        ap.error(f"--ops takes a comma-separated subset of {','.join(OPS)}")
    a.rate_bits = rate_bits(a.rate)
    for c in a.caps:
        if c != "none":
            rate_bits(c)
    if any(n < 2 for n in a.peers) or a.iters < 1 or a.warmup < 0:
        ap.error("--peers >= 2, --iters >= 1, --warmup >= 0")
    if set(a.systems) - {"gloo", *QCCLS}:
        ap.error("--systems: qccl, gloo, qccl-auth, qccl-enc")
    return a


# ---- processes: every one started here is ended here, by pid -------------------------------

LIVE = {}  # pid -> Popen, each the leader of its own session


def start(cmd, log):
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    LIVE[p.pid] = p
    return p


def end(p, grace=2.0):
    """Ends p's session (p and what it started, e.g. the bench's peers) by p's pid."""
    if p.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    else:  # the leader is gone: stragglers of its session, if any
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    LIVE.pop(p.pid, None)


def wait_all(procs, timeout):
    """Waits for every process; ends all when one fails or the time is up. Exit codes (None =
    ended here)."""
    deadline = time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
            break
        if time.monotonic() > deadline:
            print(f"    timed out after {timeout:.0f} s", flush=True)
            break
        time.sleep(0.2)
    codes = [p.poll() for p in procs]
    for p in procs:
        end(p, grace=0.5 if any(c not in (None, 0) for c in codes) else 2.0)
    for p in procs:
        LIVE.pop(p.pid, None)
    return codes


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---- the emulator --------------------------------------------------------------------------

class Emulator:
    def __init__(self, a):
        self.a = a
        self.up = False
        self.state = None  # (rtt, cap) in place

    def knobs(self, rtt, cap):
        return (["--delay-ms", f"{rtt / 2:g}", "--rate", self.a.rate, "--flow-cap",
                 "0" if cap == "none" else cap] + shlex.split(self.a.netsim_args))

    def run(self, verb, extra):
        cmd = [self.a.netsim, verb, "--prefix", self.a.prefix] + extra
        print("$ " + " ".join(cmd), flush=True)
        if self.a.dry_run:
            return 0
        return subprocess.call(cmd)

    def apply(self, rtt, cap, n_max):
        if self.state == (rtt, cap):
            return
        if self.up and self.run("set", self.knobs(rtt, cap)) == 0:
            self.state = (rtt, cap)
            return
        if self.up:
            self.down()
        extra = ["--peers", str(n_max), "--subnet", self.a.subnet] + self.knobs(rtt, cap)
        if self.a.netsim_bin:
            extra += ["--bin", self.a.netsim_bin]
        self.up = True  # a half-built setup is torn down as well
        if self.run("up", extra) != 0:
            raise RuntimeError("netsim.sh up failed")
        self.state = (rtt, cap)

    def down(self):
        if self.up:
            self.run("down", [])
            self.up = False
            self.state = None


def ns(a, name):
    return f"{a.prefix}-{name}"


def peer_ip(a, i):  # peer i (0-based) lives in PREFIX-p<i+1>
    return f"{a.subnet}.{11 + i}"


def ifname_of(a, i):
    """The interface of PREFIX-p<i+1> that holds its subnet address (for GLOO_SOCKET_IFNAME)."""
    out = subprocess.run(["ip", "-n", ns(a, f"p{i + 1}"), "-o", "-4", "addr", "show"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) > 3 and f[3].startswith(peer_ip(a, i) + "/"):
            return f[1].split("@")[0]
    raise RuntimeError(f"no interface with {peer_ip(a, i)} in {ns(a, f'p{i + 1}')}")


RTT_PROBE = """
import socket, statistics, sys, time
ts = []
for _ in range(5):
    s = socket.socket()
    s.settimeout(5)
    t0 = time.perf_counter()
    try:
        s.connect((sys.argv[1], 9))  # nothing listens: the RST comes back after one round trip
    except OSError:
        pass
    ts.append((time.perf_counter() - t0) * 1e3)
    s.close()
print(statistics.median(ts))
"""


def rtt_ms(a, src, dst_ip):
    """A measured round trip src -> dst_ip (TCP SYN -> RST; no ping on this machine)."""
    if a.dry_run:
        return None
    r = subprocess.run(["ip", "netns", "exec", ns(a, src), sys.executable, "-c", RTT_PROBE,
                        dst_ip], capture_output=True, text=True)
    try:
        return float(r.stdout)
    except ValueError:
        return None


def tbf_counters(a, n):
    """What tbf did on each peer's uplink so far (drops mean TCP loss recovery)."""
    out = []
    for i in range(n):
        r = subprocess.run(["tc", "-s", "-n", ns(a, f"p{i + 1}"), "qdisc", "show", "dev",
                            ifname_of(a, i)], capture_output=True, text=True).stdout
        m = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", r)
        if m:
            out.append({"peer": i + 1, "bytes": int(m[1]), "packets": int(m[2]),
                        "dropped": int(m[3])})
    return out


def tcp_window_bytes(a):
    """What autotuning lets one connection have in flight: tcp_rmem max x (1 - 2^-scale)."""
    try:
        def sysctl(k):
            return subprocess.run(["ip", "netns", "exec", ns(a, "p1"), "sysctl", "-n", k],
                                  capture_output=True, text=True, check=True).stdout
        rmem = int(sysctl("net.ipv4.tcp_rmem").split()[2])
        scale = int(sysctl("net.ipv4.tcp_adv_win_scale"))
        return rmem * (1 - 2.0 ** -scale) if scale > 0 else rmem / 2.0 ** -scale
    except (subprocess.CalledProcessError, ValueError, IndexError):
        return 3 * 2**20


# ---- cells ---------------------------------------------------------------------------------

def wire_ratio(wire):
    """Bytes on the wire per float32 byte."""
    if wire == "none":
        return 1.0
    algo, _, t = wire.partition(":")
    b = WIRE_BYTES.get(t, 4)
    return b / 4 if algo == "cast" else (b + 8 / 2048) / 4  # 8 bytes per 2048-element block


def op_of(c):
    return c.get("op", "allreduce")


def busbw_factor(op, n):
    """nccl-tests' busbw / algbw: the share of the op's size each peer's uplink carries."""
    if op == "allreduce":
        return 2 * (n - 1) / n
    return 1.0 if op == "broadcast" else (n - 1) / n


def predict_s(a, n, mib, wire, flows, rtt, cap, window, op="allreduce"):
    tx = busbw_factor(op, n) * (mib << 20) * wire_ratio(wire) * FRAME * 8
    per_flow = min(rate_bits(cap) if cap != "none" else math.inf, window * 8 / (rtt / 1e3))
    return tx / min(a.rate_bits, flows * per_flow) + 2 * (n - 1) * rtt / 1e3


def plan_ops(a, pred):
    return (0, 1) if pred > a.slow_s else (a.warmup, a.iters)


def key_of(c):
    return (c["rate"], c["rtt_ms"], c["cap"], c["n"], c["system"], c["size_mib"], c["conns"],
            c["wire"], op_of(c))


def find_bench(a):
    if a.bench:
        return os.path.abspath(a.bench)
    for d in ("build-wan", "build-bench", "build"):
        p = os.path.join(REPO, d, "benchmarks", "qccl_allreduce_bench")
        if os.access(p, os.X_OK):
            return p
    sys.exit("qccl_allreduce_bench not found: build it (see docs/performance.md) or pass --bench")


def execute(a, cell, cmds, log_path, fields):
    """Runs cmds together (the first one's output to log_path, the others' beside it), then
    takes `fields` of the first row of the JSON the first one wrote (log_path as .json)."""
    cell["cmd"] = " ".join(cmds[0])
    if a.dry_run:
        return
    base = log_path[:-4]
    logs = [open(log_path if i == 0 else f"{base}.{i}.log", "w") for i in range(len(cmds))]
    try:
        codes = wait_all([start(c, log) for c, log in zip(cmds, logs)], cell["timeout_s"] + 60)
    finally:
        for log in logs:
            log.close()
    try:
        with open(base + ".json") as f:
            rows = json.load(f)["results"]
    except (OSError, ValueError, KeyError):
        rows = []
    if rows:
        cell.update({k: rows[0][k] for k in fields})
    cell["ok"] = all(c == 0 for c in codes) and bool(rows)


def run_qccl(a, cell, bench, log_path):
    cmd = ["ip", "netns", "exec", ns(a, "master"), bench, "--peers", str(cell["n"]), "--netns",
           a.prefix, "--master-host", f"{a.subnet}.1", "--sizes-mib", str(cell["size_mib"]),
           "--connections", str(cell["conns"]), "--quant", cell["wire"], "--iters",
           str(cell["iters"]), "--warmup", str(cell["warmup"]), "--timeout-s",
           str(int(cell["timeout_s"])), "--label", cell["label"], "--json", log_path[:-4] + ".json"]
    if op_of(cell) != "allreduce":
        cmd += ["--op", op_of(cell)]
    if cell["system"] in SECURED:
        cmd += ["--auth-token-file", a.secret_file, "--encryption", SECURED[cell["system"]]]
    execute(a, cell, [cmd], log_path, ("times_ms", "median_ms", "min_ms", "tx_bytes",
                                       "max_abs_err", "parity"))


GLOO_PORT = [29500]


def run_gloo(a, cell, log_path):
    """One Gloo rank per PREFIX-p<i>; rank 0 (PREFIX-p1) hosts the rendezvous."""
    n = cell["n"]
    GLOO_PORT[0] += 1  # a fresh port per group: no TIME_WAIT of the last rendezvous in the way
    cmds = [["ip", "netns", "exec", ns(a, f"p{i + 1}"), "env", "OMP_NUM_THREADS=1", a.python,
             os.path.join(HERE, "compare", "gloo_allreduce.py"), "--ifname",
             ifname_of(a, i) if not a.dry_run else "IF", "--rank", str(i), "--world-size", str(n),
             "--master-addr", peer_ip(a, 0), "--master-port", str(GLOO_PORT[0]), "--sizes-mib",
             str(cell["size_mib"]), "--iters", str(cell["iters"]), "--warmup", str(cell["warmup"]),
             "--timeout-s", str(int(cell["timeout_s"]))]
            + (["--op", op_of(cell)] if op_of(cell) != "allreduce" else [])
            + (["--json", log_path[:-4] + ".json"] if i == 0 else []) for i in range(n)]
    execute(a, cell, cmds, log_path, ("times_ms", "median_ms", "min_ms"))


# ---- tables --------------------------------------------------------------------------------

def busbw_mbit(c):
    return (c["size_mib"] << 20) * 8 / (c["median_ms"] / 1e3) * busbw_factor(op_of(c), c["n"]) / 1e6


def lookup(cells, c, **change):
    want = dict(c, **change)
    for o in cells:
        if o.get("ok") and key_of(o) == key_of(want):
            return o
    return None


def ratio(base, c):
    return base["median_ms"] / c["median_ms"] if base and c.get("ok") else None


def fx(v, spec=".2f", suffix="x"):
    return "-" if v is None else format(v, spec) + suffix


def table_rows(cells, group):
    """Rows of one (rate, RTT, cap, N) table: cells in run order with their ratios."""
    rows = []
    for c in cells:
        if (c["rate"], c["rtt_ms"], c["cap"], c["n"]) != group:
            continue
        r = {"c": c, "ok": c.get("ok")}
        if c.get("ok"):
            rate = rate_bits(c["rate"]) / 1e6
            r["bus"] = busbw_mbit(c)
            r["link"] = r["bus"] / rate
            if c["system"] in QCCLS:
                r["vs1"] = ratio(lookup(cells, c, conns=1), c) if c["conns"] != 1 else None
                r["vsnone"] = ratio(lookup(cells, c, wire="none"), c) if c["wire"] != "none" else None
                r["vsgloo"] = ratio(lookup(cells, c, system="gloo", conns=1, wire="none"), c)
        rows.append(r)
    return rows


def groups(cells):
    seen = []
    for c in cells:
        g = (c["rate"], c["rtt_ms"], c["cap"], c["n"])
        if g not in seen:
            seen.append(g)
    return seen


def title(g, cfg):
    rate, rtt, cap, n = g
    t = f"N={n}, RTT {rtt} ms, {rate}/peer uplink, " + ("no flow cap" if cap == "none" else
                                                        f"flow cap {cap}")
    seen = cfg.get(f"{rate} {rtt} {cap}", {}).get("rtt_measured_ms")
    return t + (f" (measured RTT {seen:.1f} ms)" if seen else "")


def has_ops(cells, g):
    """Whether the group holds an op other than all-reduce (then the tables get an op column;
    all-reduce-only tables are as before)."""
    return any(op_of(c) != "allreduce" for c in cells
               if (c["rate"], c["rtt_ms"], c["cap"], c["n"]) == g)


def print_table(cells, g, cfg):
    print(f"\n{title(g, cfg)}")
    opc = has_ops(cells, g)
    col = (lambda c: f"{op_of(c):>13} ") if opc else (lambda c: "")
    hdr = ((f"{'op':>13} " if opc else "") +
           f"{'MiB':>4} {'system':>9} {'conns':>5} {'wire':>13} {'ops':>5} {'median s':>9} "
           f"{'min s':>8} {'busbw Mbit/s':>12} {'% link':>6} {'1c/this':>7} {'none/this':>9} "
           f"{'gloo/this':>9}")
    print(hdr + "\n" + "-" * len(hdr))
    for r in table_rows(cells, g):
        c = r["c"]
        ops = f"{c['warmup']}+{c['iters']}" + ("*" if c.get("failures") and r["ok"] else "")
        if not r["ok"]:
            print(col(c) + f"{c['size_mib']:>4} {c['system']:>9} {c['conns']:>5} {c['wire']:>13} "
                  f"{ops:>5} {c.get('status', 'FAILED'):>9}")
            continue
        print(col(c) + f"{c['size_mib']:>4} {c['system']:>9} {c['conns']:>5} {c['wire']:>13} {ops:>5} "
              f"{c['median_ms'] / 1e3:9.2f} {c['min_ms'] / 1e3:8.2f} {r['bus']:12.1f} "
              f"{r['link']:6.0%} {fx(r.get('vs1')):>7} {fx(r.get('vsnone')):>9} "
              f"{fx(r.get('vsgloo')):>9}")


def aims(cells, g):
    """Issue 9's aims, for a configuration with a flow cap: 16 connections close to the link
    (>= 90% of its TCP payload rate) and >= 8x 1 connection; uint8 >= 3x raw at 16. Issue 19's
    for the other ops: 16 connections carry >= 85% of the link (busbw / rate), like all-reduce."""
    rate, _rtt, cap, n = g
    out = []
    for c in cells:  # issue 23: qccl with a secret against plain qccl, same cell otherwise
        if (c["rate"], c["rtt_ms"], c["cap"], c["n"]) != g or c["system"] not in SECURED:
            continue
        v = ratio(lookup(cells, c, system="qccl"), c) if c.get("ok") else None
        if v is None:
            continue
        what = (f"N={n} {c['size_mib']} MiB {c['conns']} conns {c['wire']}"
                + ("" if op_of(c) == "allreduce" else f" {op_of(c)}") + f": {c['system']} busbw")
        if c["system"] == "qccl-enc" and c["conns"] == 16 and cap != "none":
            out.append((f"{what} >= 95% of plain qccl's", v >= 0.95, f"{v:.1%}"))
        else:
            out.append((f"{what} / plain qccl's (no aim)", True, f"{v:.1%}"))
    if cap == "none":
        return out
    for c in cells:
        if (c["rate"], c["rtt_ms"], c["cap"], c["n"]) != g or not c.get("ok"):
            continue
        if c["system"] != "qccl" or c["conns"] != 16:
            continue
        what = f"N={n} {c['size_mib']} MiB 16 conns {c['wire']}"
        if op_of(c) != "allreduce":
            what = f"N={n} {c['size_mib']} MiB {op_of(c)} 16 conns"
            link = busbw_mbit(c) / (rate_bits(rate) / 1e6)
            out.append((f"{what}: >= 85% of the link", link >= 0.85, f"{link:.1%}"))
            v = ratio(lookup(cells, c, conns=1), c)
            if v:
                out.append((f"{what}: vs 1 conn (no aim)", True, f"{v:.2f}x"))
            continue
        if c["wire"] == "none":
            link = busbw_mbit(c) / (rate_bits(rate) / 1e6) * FRAME
            out.append((f"{what}: >= 90% of the link's payload rate", link >= 0.9, f"{link:.0%}"))
            v = ratio(lookup(cells, c, conns=1), c)
            if v:
                out.append((f"{what}: >= 8x 1 conn", v >= 8, f"{v:.2f}x"))
        else:
            v = ratio(lookup(cells, c, wire="none"), c)
            if v:
                out.append((f"{what}: >= 3x none", v >= 3, f"{v:.2f}x"))
    return out


def markdown(cells, g, cfg):
    opc = has_ops(cells, g)
    col = (lambda c: f"| {op_of(c)} ") if opc else (lambda c: "")
    lines = [f"{title(g, cfg)}:", "",
             ("| op " if opc else "") +
             "| MiB | system | conns | wire | ops | median s | min s | busbw Mbit/s | % link | "
             "1 conn / this | none / this | Gloo / this |", "|---" * (12 + opc) + "|"]
    for r in table_rows(cells, g):
        c = r["c"]
        ops = f"{c['warmup']}+{c['iters']}" + ("*" if c.get("failures") and r["ok"] else "")
        if not r["ok"]:
            lines.append(col(c) + f"| {c['size_mib']} | {c['system']} | {c['conns']} | {c['wire']} "
                         f"| {ops} | {c.get('status', 'failed')} | | | | | | |")
            continue
        lines.append(col(c) + f"| {c['size_mib']} | {c['system']} | {c['conns']} | {c['wire']} | {ops} | "
                     f"{c['median_ms'] / 1e3:.2f} | {c['min_ms'] / 1e3:.2f} | {r['bus']:.1f} | "
                     f"{r['link']:.0%} | {fx(r.get('vs1'))} | {fx(r.get('vsnone'))} | "
                     f"{fx(r.get('vsgloo'))} |")
    return "\n".join(lines)


def print_group(cells, g, cfg):
    print_table(cells, g, cfg)
    for what, ok, got in aims(cells, g):
        print(f"  {'met ' if ok else 'MISS'}  {what}: {got}")


def report(cells, cfg, md=True):
    for g in groups(cells):
        print_group(cells, g, cfg)
    if md:
        print("\n---- markdown ----")
        for g in groups(cells):
            print("\n" + markdown(cells, g, cfg))


# ---- main ----------------------------------------------------------------------------------


def save(a, doc):
    if a.json and not a.dry_run:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, a.json)


def stop_time(a):
    if not a.stop_at:
        return None
    now = datetime.datetime.now(datetime.timezone.utc)
    h, m = (int(x) for x in a.stop_at.split(":"))
    t = now.replace(hour=h, minute=m, second=0, microsecond=0)
    return t if t > now else t + datetime.timedelta(days=1)


def commit():
    r = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                       text=True)
    return r.stdout.strip() or None


def run_cell(a, doc, cell, bench, out_dir, reuse, stop):
    """Runs one cell (or takes it from --resume, or skips it for --stop-at), appends it to
    doc["cells"] and rewrites the JSON."""
    cells = doc["cells"]
    c = cell
    op = "" if op_of(c) == "allreduce" else "-" + op_of(c)
    name = (f"{len(cells) + 1:03d}-{c['system']}{op}-n{c['n']}-rtt{c['rtt_ms']}-{c['cap']}-"
            f"{c['size_mib']}m-c{c['conns']}-{c['wire']}").replace(":", "_")
    log = os.path.join(out_dir, name + ".log")
    line = (f"  N={c['n']} {c['size_mib']:>3} MiB {c['system']}{op.replace('-', ' ')} "
            f"{c['conns']:>2} conn "
            f"{c['wire']:<13} {c['warmup']}+{c['iters']} ops, predicted "
            f"{c['predicted_s']:6.1f} s/op: ")
    old = reuse.get(key_of(cell))
    if old:
        cells.append(dict(old, resumed=True))
        print(line + f"resumed, {old['median_ms'] / 1e3:.2f} s", flush=True)
        return
    budget = c["predicted_s"] * (c["warmup"] + c["iters"])
    now = datetime.datetime.now(datetime.timezone.utc)
    if stop and now + datetime.timedelta(seconds=budget + 10) > stop:
        cells.append(dict(cell, ok=False, status="skipped"))
        print(line + "skipped (--stop-at)", flush=True)
        return
    cell["failures"] = []
    for attempt in range(1 + max(0, a.retries)):
        if attempt:
            log = log[:-4] + f".retry{attempt}.log"
        cell.update(timeout_s=3 * budget + 120, load_before=os.getloadavg()[0])
        t0 = time.monotonic()
        if c["system"] in QCCLS:
            run_qccl(a, cell, bench, log)
        else:
            run_gloo(a, cell, log)
        cell.update(wall_s=time.monotonic() - t0, load_after=os.getloadavg()[0])
        if a.dry_run:
            print(line + "\n    " + cell["cmd"])
            break
        if cell["ok"]:
            print(line + f"{cell['median_ms'] / 1e3:.2f} s ({busbw_mbit(cell):.1f} Mbit/s "
                  f"busbw), wall {cell['wall_s']:.0f} s"
                  + (f" (try {attempt + 1})" if attempt else ""), flush=True)
            break
        with open(log, errors="replace") as f:
            why = [l.strip() for l in f if "FAILED" in l or "rror" in l or "timed out" in l]
        cell["failures"].append({"log": log, "lines": why[-3:]})
        print(line + f"FAILED (try {attempt + 1}), see {log}", flush=True)
        subprocess.call(["tail", "-n", "5", log])
    if not cell.get("ok") and not a.dry_run:
        cell["status"] = "FAILED"
    cells.append(cell)
    save(a, doc)


def main():
    a = parse_args()
    if a.report:
        with open(a.report) as f:
            doc = json.load(f)
        report(doc["cells"], doc.get("configs", {}))
        return 0
    if os.geteuid() != 0 and not a.dry_run:
        sys.exit("run as root (network namespaces)")
    if not os.access(a.netsim, os.X_OK) and not a.dry_run:
        sys.exit(f"{a.netsim} missing: the emulator (tests/netsim) is needed")
    bench = find_bench(a)
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mine = [l.split()[0] for l in existing.splitlines() if l.startswith(a.prefix + "-")]
    if mine and not a.dry_run:
        sys.exit(f"namespaces {' '.join(mine)} exist (a previous run?): "
                 f"{a.netsim} down --prefix {a.prefix}")
    out_dir = a.out_dir or tempfile.mkdtemp(prefix="qccl-wan-")
    os.makedirs(out_dir, exist_ok=True)
    a.secret_file = write_secret(out_dir) if set(SECURED) & set(a.systems) else None
    reuse = {}
    if a.resume:
        with open(a.resume) as f:
            for c in json.load(f)["cells"]:
                if c.get("ok"):
                    reuse[key_of(c)] = c
    doc = {"commit": a.commit or commit(), "bench": bench, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
           time.gmtime()), "machine": f"{os.cpu_count()} cores, {os.uname().release}",
           "args": {k: v for k, v in vars(a).items() if k not in ("json",)}, "configs": {},
           "cells": []}
    cells = doc["cells"]
    print(f"bench {bench} (commit {doc['commit']}); logs in {out_dir}")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emu = Emulator(a)
    stop = stop_time(a)
    rc = 0
    try:
        for cap in a.caps:
            for rtt in a.rtts:
                emu.apply(rtt, cap, max(a.peers))
                window = 3 * 2**20 if a.dry_run else tcp_window_bytes(a)
                seen = rtt_ms(a, "p1", peer_ip(a, 1))
                doc["configs"][f"{a.rate} {rtt} {cap}"] = {
                    "rate": a.rate, "rtt_ms": rtt, "cap": cap, "rtt_measured_ms": seen,
                    "tcp_window_bytes": window}
                print(f"\n== {a.rate}/peer, RTT {rtt} ms, cap {cap}: RTT p1 -> p2 measured "
                      f"{seen} ms, TCP window {window / 2**20:.1f} MiB (load "
                      f"{os.getloadavg()[0]:.2f}) ==", flush=True)
                for n in a.peers:
                    for mib in a.sizes:
                        todo = []
                        for op in a.ops:  # other ops than all-reduce: float32, wire none only
                            wires = a.wires if op == "allreduce" else ["none"]
                            todo += [(s, c, w, op) for c in a.conns for w in wires
                                     for s in QCCLS if s in a.systems]
                            todo += [("gloo", 1, "none", op)] if "gloo" in a.systems else []
                        for system, conns, wire, op in todo:
                            cell = {"rate": a.rate, "rtt_ms": rtt, "cap": cap, "n": n,
                                    "system": system, "size_mib": mib, "conns": conns,
                                    "wire": wire, "label": f"{a.rate} rtt {rtt} ms cap {cap}"}
                            if op != "allreduce":  # no "op": all-reduce, as in older JSON
                                cell["op"] = op
                            cell["predicted_s"] = predict_s(a, n, mib, wire, conns, rtt, cap,
                                                            window, op)
                            cell["warmup"], cell["iters"] = plan_ops(a, cell["predicted_s"])
                            run_cell(a, doc, cell, bench, out_dir, reuse, stop)
                    if not a.dry_run:
                        print_group(cells, (a.rate, rtt, cap, n), doc["configs"])
                if not a.dry_run:  # counters since `up`: cumulative over configurations
                    tbf = tbf_counters(a, max(a.peers))
                    doc["configs"][f"{a.rate} {rtt} {cap}"]["tbf_after"] = tbf
                    print("  tbf so far (since up): " + ", ".join(
                        f"p{t['peer']} {t['bytes'] / 2**30:.2f} GiB dropped {t['dropped']}"
                        for t in tbf), flush=True)
    except RuntimeError as e:  # the emulator failed; what ran so far is still reported
        print(f"stopped: {e}", file=sys.stderr)
        rc = 1
    finally:
        for p in list(LIVE.values()):
            end(p, grace=0.5)
        emu.down()
        doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        save(a, doc)
    if not a.dry_run:
        print("\n==== all configurations ====")
        report(cells, doc["configs"])
        if a.json:
            print(f"\nwrote {a.json}")
    bad = [c for c in cells if not c.get("ok") and c.get("status") != "skipped"]
    return 1 if rc or (bad and not a.dry_run) else 0


if __name__ == "__main__":
    sys.exit(main())
