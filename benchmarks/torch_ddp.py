#!/usr/bin/env python3
"""DDP step time on the "qccl" torch.distributed backend vs Gloo (issue 20), loopback or WAN.

    python3 benchmarks/torch_ddp.py [--wan] [--ranks 3] [--width 4096] [--depth 1] [--batch 32]
        [--steps 5] [--warmup 2] [--rounds 2] [--systems gloo,qccl,qccl:16,qccl:16:uint8]
        [--pythonpath DIR] [--json FILE]
    sudo python3 benchmarks/torch_ddp.py --wan [--rtt-ms 80] [--cap 10mbit] [--rate 100mbit]
        [--netsim-bin PATH] ...

The same model on every system: an MLP 1024 -> width (-> width, depth times) -> 1024, ReLU
between, float32, trained with DistributedDataParallel (default buckets) and SGD on a random
batch of --batch rows per rank and step, one process per rank, torch on one thread each. A
system is `gloo` (torch's Gloo backend) or `qccl[:CONNS[:uint8]]`: the qccl backend with
Options(connections_per_peer=CONNS) (none or 0: qccl's default, 2 lanes over loopback, 16 to
another host) and, with `uint8`, qccl.distributed.hooks.minmax_uint8_hook as DDP comm hook.

Each rank times every step (zero_grad, forward, backward with DDP's all-reduces, optimizer
step); a step's time is the slowest rank's; each system's figure is the median over its timed
steps of all rounds (--warmup steps per run untimed). Before DDP is built each rank also times
--steps steps of the bare model (no communication, the other ranks computing at the same time):
"compute" below, and step - compute is the communication DDP could not hide. The systems run
interleaved, one group of --ranks processes at a time, in an order rotated every round; every
run checks that all ranks end with bit-identical parameters.

Loopback: the ranks on 127.0.0.1 (Gloo on lo). --wan (root): the emulator of tests/netsim as
benchmarks/wan.py sets it up (netsim.sh up --prefix PREFIX: one-way delay RTT/2 between any two
namespaces, tbf --rate on each peer's uplink, --cap per TCP flow); rank i runs in PREFIX-p<i+1>
(10.78.0.11+i), MASTER_ADDR is rank 0's address, so torch's store and qccl's embedded master
(Options.master_host defaults to MASTER_ADDR) are on PREFIX-p1 and every byte between ranks
crosses the emulator. Only the namespaces PREFIX-* are created (it refuses if any exists);
every process started here and the emulator are ended, by pid, on exit (also on SIGINT/SIGTERM).
"""
import argparse
import copy
import datetime
import hashlib
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import wan  # noqa: E402  (the emulator, process handling and namespace helpers)


# ---- the model and one rank (--worker) -----------------------------------------------------

def make_model(nn, width, depth):
    layers = [nn.Linear(1024, width), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 1024))


def n_params(width, depth):
    return 1024 * width + width + depth * (width * width + width) + width * 1024 + 1024


def parse_system(s):
    """'gloo' | 'qccl[:CONNS[:uint8]]' -> (backend, connections_per_peer, hook name or None)."""
    f = s.split(":")
    if f[0] == "gloo" and len(f) == 1:
        return "gloo", None, None
    if f[0] != "qccl" or len(f) > 3 or (len(f) == 3 and f[2] != "uint8"):
        raise ValueError(f"system {s!r}: gloo or qccl[:CONNS[:uint8]]")
    conns = int(f[1]) if len(f) > 1 and f[1] not in ("", "default") else 0
    return "qccl", conns, "minmax_uint8" if len(f) == 3 else None


def worker(a):
    """One rank (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the environment): writes
    --out.<rank>.json with its step times."""
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)  # 3 ranks on 2 cores already
    rank, n = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend, conns, hook = parse_system(a.system)
    kw = {}
    if backend == "qccl":
        import qccl.distributed
        kw["pg_options"] = qccl.distributed.Options(connections_per_peer=conns)
    t0 = time.perf_counter()
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=n,
                            timeout=datetime.timedelta(seconds=a.timeout_s), **kw)
    init_s = time.perf_counter() - t0

    torch.manual_seed(0)
    model = make_model(nn, a.width, a.depth)
    data = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard
    batches = [(torch.randn(a.batch, 1024, generator=data), torch.randn(a.batch, 1024,
                generator=data)) for _ in range(4)]

    def step(m, opt, k):
        x, y = batches[k % len(batches)]
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(m(x), y).backward()
        opt.step()
        return time.perf_counter() - t

    bare = copy.deepcopy(model)
    opt = torch.optim.SGD(bare.parameters(), lr=1e-3)
    compute = [step(bare, opt, k) for k in range(a.warmup + a.steps)][a.warmup:]
    del bare, opt
    dist.barrier()

    ddp = DDP(model)
    if hook:
        ddp.register_comm_hook(None, getattr(qccl.distributed.hooks, f"{hook}_hook"))
    opt = torch.optim.SGD(ddp.parameters(), lr=1e-3)
    times = [step(ddp, opt, k) for k in range(a.warmup + a.steps)]
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    dist.barrier()
    dist.destroy_process_group()
    with open(f"{a.out}.{rank}.json", "w") as f:
        json.dump({"rank": rank, "init_s": init_s, "compute_s": compute,
                   "step_s": times[a.warmup:], "warmup_s": times[:a.warmup],
                   "params_sha256": h.hexdigest()[:16], "checksum": checksum}, f)
    print(f"rank {rank}: init {init_s:.2f} s, compute {statistics.median(compute):.3f} s, "
          f"step {statistics.median(times[a.warmup:]):.3f} s, params {h.hexdigest()[:16]}",
          flush=True)


# ---- the driver ----------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--ranks", type=int, default=3)
    ap.add_argument("--width", type=int, default=4096, help="hidden width of the MLP")
    ap.add_argument("--depth", type=int, default=1, help="width x width layers")
    ap.add_argument("--batch", type=int, default=32, help="rows per rank and step")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per run")
    ap.add_argument("--rounds", type=int, default=2, help="runs of every system, interleaved")
    ap.add_argument("--systems", default="gloo,qccl,qccl:16,qccl:16:uint8")
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch")
    ap.add_argument("--pythonpath", default=os.path.join(REPO, "build", "python"),
                    help="where `import qccl` finds the package (a build tree's python/)")
    ap.add_argument("--timeout-s", type=float, default=900, help="per run")
    ap.add_argument("--out-dir", help="per-run logs (default: a new /tmp/qccl-ddp-*)")
    ap.add_argument("--json", help="write the table and every run here")
    ap.add_argument("--wan", action="store_true", help="ranks in netns behind the emulator (root)")
    ap.add_argument("--rtt-ms", type=float, default=80)
    ap.add_argument("--cap", default="10mbit", help="per-flow cap; none = no cap")
    ap.add_argument("--rate", default="100mbit", help="each rank's uplink")
    ap.add_argument("--prefix", default="qccl-d")
    ap.add_argument("--subnet", default="10.78.0")
    ap.add_argument("--netsim-args", default="", help="more emulator knobs, e.g. '--jitter-ms 2'")
    ap.add_argument("--netsim", default=os.path.join(REPO, "tests", "netsim", "netsim.sh"))
    ap.add_argument("--netsim-bin", help="qccl_netsim (default: netsim.sh's own search)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--system", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.systems = [s for s in a.systems.split(",") if s]
    a.dry_run = False  # wan.Emulator's knob
    try:
        for s in a.systems + ([a.system] if a.system else []):
            parse_system(s)
    except ValueError as e:
        ap.error(str(e))
    if a.ranks < 2 or a.steps < 1 or a.warmup < 0 or a.rounds < 1:
        ap.error("--ranks >= 2, --steps >= 1, --warmup >= 0, --rounds >= 1")
    return a


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WAN_PORT = [29600]


def run_group(a, system, out_dir, tag):
    """One run of `system`: --ranks processes, each timing its steps. The per-rank JSON, or
    None (the log says why)."""
    if a.wan:
        WAN_PORT[0] += 1  # fresh namespaces: any port is free; a new one per run anyway
        port, addr = WAN_PORT[0], wan.peer_ip(a, 0)
    else:
        port, addr = free_port(), "127.0.0.1"
    base = os.path.join(out_dir, tag)
    cmds = []
    for r in range(a.ranks):
        env = [f"RANK={r}", f"LOCAL_RANK={r}", f"WORLD_SIZE={a.ranks}", f"MASTER_ADDR={addr}",
               f"MASTER_PORT={port}", "OMP_NUM_THREADS=1", f"PYTHONPATH={a.pythonpath}",
               f"GLOO_SOCKET_IFNAME={wan.ifname_of(a, r) if a.wan else 'lo'}"]
        cmd = ["env"] + env + [a.python, os.path.abspath(__file__), "--worker", "--system",
                               system, "--out", base, "--width", str(a.width), "--depth",
                               str(a.depth), "--batch", str(a.batch), "--steps", str(a.steps),
                               "--warmup", str(a.warmup), "--timeout-s", str(int(a.timeout_s))]
        cmds.append((["ip", "netns", "exec", wan.ns(a, f"p{r + 1}")] if a.wan else []) + cmd)
    logs = [open(f"{base}.{r}.log", "w") for r in range(a.ranks)]
    try:
        codes = wan.wait_all([wan.start(c, log) for c, log in zip(cmds, logs)], a.timeout_s)
    finally:
        for log in logs:
            log.close()
    ranks = []
    for r in range(a.ranks):
        try:
            with open(f"{base}.{r}.json") as f:
                ranks.append(json.load(f))
        except (OSError, ValueError):
            ranks = None
            break
    if any(c != 0 for c in codes) or ranks is None:
        print(f"    FAILED (exit codes {codes}), logs {base}.*.log", flush=True)
        with open(f"{base}.0.log", errors="replace") as f:
            print("    " + "    ".join(f.readlines()[-5:]), end="", flush=True)
        return None
    return ranks


def summarize(ranks):
    """Per timed step the slowest rank's time; the same for the bare-model steps."""
    steps = [max(r["step_s"][k] for r in ranks) for k in range(len(ranks[0]["step_s"]))]
    compute = [max(r["compute_s"][k] for r in ranks) for k in range(len(ranks[0]["compute_s"]))]
    same = len({r["params_sha256"] for r in ranks}) == 1
    return {"steps_s": steps, "compute_s": compute, "identical": same,
            "init_s": max(r["init_s"] for r in ranks), "checksum": ranks[0]["checksum"],
            "params_sha256": ranks[0]["params_sha256"]}


def label(system):
    backend, conns, hook = parse_system(system)
    if backend == "gloo":
        return "gloo", "1 per pair", "float32"
    return "qccl", str(conns) if conns else "default", "MinMax uint8 (hook)" if hook else "float32"


def table(a, runs, title):
    gloo = [t for r in runs if r["system"] == "gloo" and r.get("ok") for t in r["steps_s"]]
    g = statistics.median(gloo) if gloo else None
    rows = []
    for s in a.systems:
        mine = [r for r in runs if r["system"] == s]
        ok = [r for r in mine if r.get("ok")]
        steps = [t for r in ok for t in r["steps_s"]]
        comp = [t for r in ok for t in r["compute_s"]]
        b, c, w = label(s)
        if not steps:
            rows.append(f"| {b} | {c} | {w} | 0/{len(mine)} runs ok | | | | | |")
            continue
        med, cm = statistics.median(steps), statistics.median(comp)
        rows.append(f"| {b} | {c} | {w} | {len(steps)} ({len(ok)}/{len(mine)} runs) | "
                    f"{med:.3f} | {min(steps):.3f} | {cm:.3f} | {max(0.0, med - cm):.3f} | "
                    + (f"{g / med:.2f}x |" if g else "- |"))
    return "\n".join([f"{title}:", "",
                      "| backend | connections | gradients on the wire | timed steps "
                      "| median step s | min step s | compute-only s | step - compute s "
                      "| gloo / this |",
                      "|---" * 9 + "|"] + rows)


def main():
    a = parse_args()
    if a.worker:
        worker(a)
        return 0
    if a.wan and os.geteuid() != 0:
        sys.exit("--wan runs as root (network namespaces)")
    out_dir = a.out_dir or tempfile.mkdtemp(prefix="qccl-ddp-")
    os.makedirs(out_dir, exist_ok=True)
    params = n_params(a.width, a.depth)
    where = (f"emulated WAN: RTT {a.rtt_ms:g} ms, {a.rate}/rank uplink, "
             + ("no flow cap" if a.cap == "none" else f"flow cap {a.cap}")) if a.wan else "loopback"
    print(f"{a.ranks} ranks, MLP 1024-{a.width}x{a.depth + 1}-1024: {params / 1e6:.2f} M float32 "
          f"parameters ({params * 4 / 2**20:.1f} MiB of gradients per step), batch {a.batch}, "
          f"{a.warmup}+{a.steps} steps x {a.rounds} rounds, {where}; logs in {out_dir}", flush=True)
    signal.signal(signal.SIGTERM, wan.on_signal)
    signal.signal(signal.SIGINT, wan.on_signal)
    emu = wan.Emulator(a) if a.wan else None
    doc = {"args": {k: v for k, v in vars(a).items() if k not in ("worker", "system", "out")},
           "params": params, "where": where, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
           time.gmtime()), "machine": f"{os.cpu_count()} cores, {os.uname().release}",
           "runs": []}
    runs = doc["runs"]
    try:
        if emu:
            existing = wan.subprocess.run(["ip", "netns", "list"], capture_output=True,
                                          text=True).stdout
            mine = [l.split()[0] for l in existing.splitlines() if l.startswith(a.prefix + "-")]
            if mine:
                sys.exit(f"namespaces {' '.join(mine)} exist (a previous run?): "
                         f"{a.netsim} down --prefix {a.prefix}")
            emu.apply(a.rtt_ms, a.cap, a.ranks)
            doc["rtt_measured_ms"] = wan.rtt_ms(a, "p1", wan.peer_ip(a, 1))
            print(f"RTT p1 -> p2 measured {doc['rtt_measured_ms']} ms", flush=True)
        for rnd in range(a.rounds):
            k = rnd % len(a.systems)
            for s in a.systems[k:] + a.systems[:k]:  # no system always first or last
                load = os.getloadavg()[0]
                tag = f"r{rnd + 1}-{s.replace(':', '_')}"
                t0 = time.monotonic()
                ranks = run_group(a, s, out_dir, tag)
                run = {"round": rnd + 1, "system": s, "load_before": load,
                       "wall_s": time.monotonic() - t0, "ok": ranks is not None}
                if ranks:
                    run.update(summarize(ranks))
                    run["ok"] = run["identical"]
                    print(f"  round {rnd + 1} {s:<16} median step "
                          f"{statistics.median(run['steps_s']):.3f} s"
                          f" (compute {statistics.median(run['compute_s']):.3f} s), init "
                          f"{run['init_s']:.1f} s, ranks identical {run['identical']}, load "
                          f"{load:.2f}, wall {run['wall_s']:.0f} s", flush=True)
                runs.append(run)
        if emu:
            doc["tbf"] = wan.tbf_counters(a, a.ranks)
    finally:
        for p in list(wan.LIVE.values()):
            wan.end(p, grace=0.5)
        if emu:
            emu.down()
        doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    title = (f"DDP step, {a.ranks} ranks, {params / 1e6:.1f} M params "
             f"({params * 4 / 2**20:.0f} MiB of float32 gradients), {where}"
             + (f" (measured RTT {doc['rtt_measured_ms']:.1f} ms)"
                if doc.get("rtt_measured_ms") else ""))
    doc["table"] = table(a, runs, title)
    print("\n" + doc["table"])
    sums = {s: {r["checksum"] for r in runs if r["system"] == s and r.get("ok")}
            for s in a.systems}
    print("\nparameter checksums after the run (sum of all parameters; exact systems agree "
          "to float rounding): " + "; ".join(f"{s} {', '.join(f'{c:.6f}' for c in sorted(v))}"
                                            for s, v in sums.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {a.json}")
    return 0 if all(r.get("ok") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
