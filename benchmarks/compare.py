#!/usr/bin/env python3
"""Compare qccl's all-reduce with Gloo (torch.distributed) and Open MPI over TCP, in one run.

    python3 benchmarks/compare.py [--quick] [--rounds R] [--json FILE]
        [--ops allreduce,allgather,reducescatter,broadcast]

Runs, for every N and size, qccl_allreduce_bench, benchmarks/compare/gloo_allreduce.py and
benchmarks/compare/mpi_allreduce.c (under mpirun --mca pml ob1 --mca btl tcp,self) on loopback,
all measured the same way (untimed barrier, slowest rank's op time, results checked), then
prints one table of busbw with the ratios qccl/gloo and qccl/mpi and the fraction of the
loopback ceiling (--ceiling-gbs / N), then a table of CPU seconds per GB of every system (each
rank's process CPU time, user + system, all threads, over its timed ops, summed over the ranks)
beside where qccl's op time went (qcclGetStats via benchmarks/op_profile.hpp: the data exchange,
the frame work in it, the I/O thread's CPU, the rest off-CPU, and the commit round), checks
issue 21's aims (64-256 MiB: busbw >= 1.2x Gloo, >= 80% of the ceiling, CPU per GB <= Gloo's;
1 MiB at N=2: op time <= Open MPI's), and writes JSON. Softirq time (the receive side of
loopback TCP, run on whichever CPU sends) is not in any process's CPU time.
Prerequisites: scripts/install_bench_deps.sh, and qccl built in --build-dir (default
build-bench) with the benchmarks enabled. With --rounds R > 1 the systems run interleaved R
times and each cell is the median over rounds (rounds on this machine vary by up to 2x).
--ops (default allreduce) adds all-gather, reduce-scatter and broadcast: each program runs every
op of the list in the same group (--op), size being the op's total data (all-gather: the
output; reduce-scatter: the input; broadcast: the buffer, from rank / peer index 0), busbw as
nccl-tests (all-gather, reduce-scatter: size/time * (N-1)/N; broadcast: size/time), one table
per op; the other ops' tables also give qccl's busbw over qccl's all-reduce busbw in the same
run (q/qAR: 1.0 = the op moves data as fast as the all-reduce's phases do).
--systems may also name qccl-auth and qccl-enc (issue 23): qccl_allreduce_bench again, with a
shared secret (a random one in a 0600 file of this run's temporary directory) for the master
and every peer, connections authenticated only (--encryption off) or encrypted (--encryption
on). They run in the same rotation as the others and get a table of their own against plain
qccl (no secret): busbw median [min-max over rounds], the ratio of the medians with the range
of the per-round ratios, and CPU seconds per GB with what encryption adds over plain.
"""
import argparse
import json
import os
import shutil
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SYSTEMS = ("qccl", "gloo", "mpi")
SECURED = {"qccl-auth": "off", "qccl-enc": "on"}  # qccl with a shared secret: --encryption
OPS = ("allreduce", "allgather", "reducescatter", "broadcast")
OP_TITLE = {"allreduce": "all-reduce", "allgather": "all-gather", "reducescatter": "reduce-scatter",
            "broadcast": "broadcast"}


def busbw_factor(op, n):
    """nccl-tests' busbw / algbw."""
    return 2 * (n - 1) / n if op == "allreduce" else 1.0 if op == "broadcast" else (n - 1) / n


def ceiling_busbw(op, n, loopback_gbs):
    """Busbw when loopback moves loopback_gbs in total: every peer sends busbw * time, except
    broadcast's last peer on the ring (N-1 senders)."""
    return loopback_gbs / (n - 1 if op == "broadcast" else n)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--peers", default="2,3,4", help="group sizes N (default 2,3,4)")
    ap.add_argument("--sizes-mib", default="1,16,64,256", help="float32 MiB (default 1,16,64,256)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="repeat all systems R times")
    ap.add_argument("--connections", type=int, default=0, help="qccl connections per peer (0 = default)")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="subset of qccl,gloo,mpi and qccl-auth,qccl-enc (with a shared secret)")
    ap.add_argument("--ops", default="allreduce", help="subset of " + ",".join(OPS)
                    + " (default allreduce); qccl's all-reduce is the reference of the others")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1,16 MiB, N=2, 3 iters, 1 warm-up")
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build-bench"))
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch for gloo")
    ap.add_argument("--ceiling-gbs", type=float, default=4.0,
                    help="what the machine's loopback moves at once, GB/s (ceiling busbw = this / N)")
    ap.add_argument("--timeout-s", type=float, default=1800, help="per system run")
    ap.add_argument("--json", help="write the table and raw results here")
    a = ap.parse_args()
    if a.quick:
        a.sizes_mib, a.peers, a.iters, a.warmup = "1,16", "2", 3, 1
    a.peers = [int(x) for x in a.peers.split(",") if x]
    a.sizes = [int(x) for x in a.sizes_mib.split(",") if x]
    a.systems = [s for s in a.systems.split(",") if s]
    for s in a.systems:
        if s not in SYSTEMS and s not in SECURED:
            ap.error(f"unknown system {s}")
    a.ops = [o for o in a.ops.split(",") if o]
    if not a.ops or any(o not in OPS for o in a.ops):
        ap.error(f"--ops takes a comma-separated subset of {','.join(OPS)}")
    return a


def run(cmd, timeout, env=None):
    """Runs cmd in its own session, streaming its output; on timeout ends that session
    (the command and whatever it started: mpirun's ranks, gloo's workers) by its id."""
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"timed out after {timeout:.0f} s: {cmd[0]}", file=sys.stderr)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return -1
    except KeyboardInterrupt:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise


def load_rows(path):
    try:
        with open(path) as f:
            return json.load(f)["results"]
    except (OSError, ValueError, KeyError) as e:
        print(f"no results in {path}: {e}", file=sys.stderr)
        return []


def common_flags(a):
    ops = [] if a.ops == ["allreduce"] else ["--op", ",".join(a.ops)]  # default: as before
    return ["--sizes-mib", ",".join(map(str, a.sizes)), "--iters", str(a.iters),
            "--warmup", str(a.warmup)] + ops


def run_qccl(a, out, system="qccl"):
    exe = os.path.join(a.build_dir, "benchmarks", "qccl_allreduce_bench")
    if not os.access(exe, os.X_OK):
        print(f"{exe} missing: build it (ninja -C {a.build_dir} qccl_allreduce_bench)", file=sys.stderr)
        return []
    path = os.path.join(out, f"{system}.json")
    secret = (["--auth-token-file", a.secret_file, "--encryption", SECURED[system]]
              if system in SECURED else [])
    run([exe, "--peers", ",".join(map(str, a.peers)), "--connections", str(a.connections),
         "--timeout-s", str(int(a.timeout_s)), "--json", path] + secret + common_flags(a),
        a.timeout_s + 30)
    return load_rows(path)


def run_gloo(a, out):
    path = os.path.join(out, "gloo.json")
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    run([a.python, os.path.join(HERE, "compare", "gloo_allreduce.py"), "--peers",
         ",".join(map(str, a.peers)), "--timeout-s", str(int(a.timeout_s)), "--json", path]
        + common_flags(a), a.timeout_s + 30, env)
    return load_rows(path)


def mpi_binary(a, out):
    built = os.path.join(a.build_dir, "benchmarks", "mpi_allreduce_bench")
    if os.access(built, os.X_OK):
        return built
    mpicc = shutil.which("mpicc")
    if not mpicc:
        print("mpicc not found: run scripts/install_bench_deps.sh", file=sys.stderr)
        return None
    exe = os.path.join(out, "mpi_allreduce_bench")
    src = os.path.join(HERE, "compare", "mpi_allreduce.c")
    if subprocess.call([mpicc, "-std=c99", "-O2", "-o", exe, src]) != 0:
        return None
    return exe


def run_mpi(a, out):
    exe = mpi_binary(a, out)
    if not exe or not shutil.which("mpirun"):
        print("Open MPI unavailable: run scripts/install_bench_deps.sh", file=sys.stderr)
        return []
    rows = []
    for n in a.peers:
        path = os.path.join(out, f"mpi_{n}.json")
        run(["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
             "--mca", "pml", "ob1", "--mca", "btl", "tcp,self",
             "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo",
             "-np", str(n), exe, "--json", path] + common_flags(a), a.timeout_s)
        rows += load_rows(path)
    return rows


RUNNERS = {"qccl": run_qccl, "gloo": run_gloo, "mpi": run_mpi,
           **{s: (lambda a, out, s=s: run_qccl(a, out, s)) for s in SECURED}}


def write_secret(out):
    """A random shared secret for qccl-auth and qccl-enc, readable by this user only."""
    path = os.path.join(out, "secret")
    if os.path.lexists(path):  # a reused directory (wan.py --out-dir): a new secret, new file
        os.remove(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


def fmt(v, spec):
    return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))


def ratio(x, y):
    return x / y if x is not None and y else None


# qccl's PROFILE fields (benchmarks/op_profile.hpp), ms per op, mean of the peers.
PROFILE_KEYS = ("wait_ring_ms", "data_ms", "frame_work_ms", "commit_ms", "io_cpu_ms")


def print_costs(op, a, table):
    """CPU per GB for every system, and where qccl's op time went (benchmarks/op_profile.hpp)."""
    rows = [e for e in table if e["op"] == op]
    if not any(e["qccl"] and "cpu_ms" in e["qccl"] for e in rows):
        return
    print(f"\n{OP_TITLE[op]}: CPU seconds per GB (user + system, all threads of all ranks, "
          "per GB of the op's data) and where qccl's op time goes (ms, mean of peers)")
    hdr = (f"{'N':>2} {'MiB':>4} | {'qccl':>6} {'gloo':>6} {'mpi':>6} {'q/gloo':>6} | "
           f"{'op':>8} {'data':>8} {'frames':>7} {'I/O cpu':>8} {'off-cpu':>8} {'commit':>7}")
    print(hdr + "\n" + "-" * len(hdr))
    for e in rows:
        cpu = {s: e[s].get("cpu_s_per_gb") if e[s] else None for s in SYSTEMS}
        q = e["qccl"] or {}
        off = q["data_ms"] - q["io_cpu_ms"] if "data_ms" in q and "io_cpu_ms" in q else None
        print(f"{e['n']:>2} {e['size_bytes'] >> 20:>4} | {fmt(cpu['qccl'], '6.3f')} "
              f"{fmt(cpu['gloo'], '6.3f')} {fmt(cpu['mpi'], '6.3f')} "
              f"{fmt(ratio(cpu['qccl'], cpu['gloo']), '6.2f')} | {fmt(q.get('median_ms'), '8.3f')} "
              f"{fmt(q.get('data_ms'), '8.3f')} {fmt(q.get('frame_work_ms'), '7.3f')} "
              f"{fmt(q.get('io_cpu_ms'), '8.3f')} {fmt(off, '8.3f')} {fmt(q.get('commit_ms'), '7.3f')}")


def round_values(raw, system, op, n, size_bytes, key):
    """`key` of the (op, n, size) row of each round of `system` (None where a round lacks it)."""
    return [next((row.get(key) for row in rows if row["n"] == n and row["size_bytes"] == size_bytes
                  and row.get("op", "allreduce") == op), None) for rows in raw.get(system, [])]


def spread(values):
    """Median, min and max of the values that are there (None if none is)."""
    v = [x for x in values if x is not None]
    return (statistics.median(v), min(v), max(v)) if v else (None, None, None)


def print_security(op, a, raw):
    """qccl-auth and qccl-enc against plain qccl (issue 23), from the same invocation; returns
    the rows for the JSON."""
    shown = [s for s in ("qccl",) + tuple(SECURED) if s in a.systems]
    if len(shown) < 2 or shown[0] != "qccl":
        return []
    print(f"\n{OP_TITLE[op]}: qccl with a shared secret against plain qccl (busbw GB/s, median "
          "[min-max] over rounds; /plain = ratio of the medians [min-max of the per-round ratios, "
          "the systems running next to each other in each round]; CPU s/GB median, + = over plain)")
    hdr = (f"{'N':>2} {'MiB':>4} {'system':>9} | {'ms':>8} {'busbw':>6} {'[min-max]':>13} | "
           f"{'/plain':>6} {'[min-max]':>11} | {'CPU s/GB':>8} {'+CPU':>7}")
    print(hdr + "\n" + "-" * len(hdr))
    out = []
    for n in a.peers:
        for mib in a.sizes:
            size = mib << 20
            per = {}
            for s in shown:
                ms = round_values(raw, s, op, n, size, "median_ms")
                bus = [size / (t / 1e3) / 1e9 * busbw_factor(op, n) if t else None for t in ms]
                cpu = [c / 1e3 / (size / 1e9) if c is not None else None
                       for c in round_values(raw, s, op, n, size, "cpu_ms")]
                per[s] = {"ms": spread(ms), "busbw": spread(bus), "cpu_s_per_gb": spread(cpu),
                          "busbw_rounds": bus}
            for s in shown:
                p, e = per["qccl"], per[s]
                rounds = [x / y for x, y in zip(e["busbw_rounds"], p["busbw_rounds"]) if x and y]
                e["over_plain"] = ratio(e["busbw"][0], p["busbw"][0])
                e["over_plain_rounds"] = rounds
                e["extra_cpu_s_per_gb"] = (e["cpu_s_per_gb"][0] - p["cpu_s_per_gb"][0]
                                           if e["cpu_s_per_gb"][0] is not None
                                           and p["cpu_s_per_gb"][0] is not None else None)
                lo_hi = (f"[{fmt(e['busbw'][1], '.3f')}-{fmt(e['busbw'][2], '.3f')}]"
                         if e["busbw"][0] is not None else "-")
                r_lo_hi = f"[{min(rounds):.2f}-{max(rounds):.2f}]" if rounds and s != "qccl" else ""
                print(f"{n:>2} {mib:>4} {s:>9} | {fmt(e['ms'][0], '8.3f')} "
                      f"{fmt(e['busbw'][0], '6.3f')} {lo_hi:>13} | "
                      f"{fmt(e['over_plain'] if s != 'qccl' else None, '6.2f')} {r_lo_hi:>11} | "
                      f"{fmt(e['cpu_s_per_gb'][0], '8.3f')} "
                      f"{fmt(e['extra_cpu_s_per_gb'] if s != 'qccl' else None, '+7.3f')}")
            out.append({"op": op, "n": n, "size_bytes": size, **per})
    return out


def main():
    a = parse_args()
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} on {os.cpu_count()} cores"
          + ("  (busy machine: numbers will be low and noisy)" if load > 1.0 else ""), flush=True)
    out = tempfile.mkdtemp(prefix="qccl-compare-")
    a.secret_file = write_secret(out) if set(SECURED) & set(a.systems) else None
    raw = {s: [] for s in a.systems}  # system -> per round list of rows
    loads = []
    for r in range(a.rounds):
        order = a.systems[r % len(a.systems):] + a.systems[:r % len(a.systems)]
        for s in order:  # rotated so that no system always runs on a cold or a warm machine
            # Other jobs on this small machine skew everything: keep the load beside each run.
            load_before = os.getloadavg()[0]
            print(f"\n== round {r + 1}/{a.rounds}: {s} (load {load_before:.2f}) ==", flush=True)
            rdir = os.path.join(out, f"r{r}")
            os.makedirs(rdir, exist_ok=True)
            raw[s].append(RUNNERS[s](a, rdir))
            loads.append({"round": r + 1, "system": s, "before": load_before,
                          "after": os.getloadavg()[0]})

    def cell(system, op, n, size_bytes):
        meds = [row["median_ms"] for rows in raw.get(system, []) for row in rows
                if row["n"] == n and row["size_bytes"] == size_bytes
                and row.get("op", "allreduce") == op]
        if not meds:
            return None
        med = statistics.median(meds)
        bus = size_bytes / (med / 1e3) / 1e9 * busbw_factor(op, n)
        out = {"median_ms": med, "busbw_gbs": bus, "rounds": len(meds)}
        # CPU per op (all ranks) and, for qccl, where the op's time went: medians over rounds
        for key in ("cpu_ms",) + PROFILE_KEYS:
            vals = [row[key] for rows in raw.get(system, []) for row in rows
                    if row["n"] == n and row["size_bytes"] == size_bytes
                    and row.get("op", "allreduce") == op and row.get(key) is not None]
            if vals:
                out[key] = statistics.median(vals)
        if "cpu_ms" in out:  # CPU seconds per GB of the op's data
            out["cpu_s_per_gb"] = out["cpu_ms"] / 1e3 / (size_bytes / 1e9)
        return out

    table, aims, security = [], [], []
    for op in a.ops:
        others = op != "allreduce"  # with q/qAR: qccl's busbw over qccl's all-reduce busbw
        if others:
            print(f"\n{OP_TITLE[op]}: busbw in GB/s (size/time * "
                  + ("1" if op == "broadcast" else "(N-1)/N")
                  + ", size = the op's total data, median op time of the slowest rank"
                  + (f", median of {a.rounds} rounds" if a.rounds > 1 else "") + ")")
        else:
            print("\nbusbw in GB/s (size/time * 2(N-1)/N, median op time of the slowest rank"
                  + (f", median of {a.rounds} rounds" if a.rounds > 1 else "") + ")")
        hdr = (f"{'N':>2} {'MiB':>4} | {'qccl ms':>8} {'qccl':>6} | {'gloo ms':>8} {'gloo':>6} | "
               f"{'mpi ms':>8} {'mpi':>6} | {'q/gloo':>6} {'q/mpi':>6} | {'q/ceil':>6}"
               + (f" | {'q/qAR':>6}" if others else ""))
        print(hdr + "\n" + "-" * len(hdr))
        for n in a.peers:
            ceiling = ceiling_busbw(op, n, a.ceiling_gbs)
            for mib in a.sizes:
                size = mib << 20
                c = {s: cell(s, op, n, size) for s in SYSTEMS}
                bus = {s: c[s]["busbw_gbs"] if c[s] else None for s in SYSTEMS}
                ms = {s: c[s]["median_ms"] if c[s] else None for s in SYSTEMS}
                entry = {"op": op, "n": n, "size_bytes": size, **c,
                         "qccl_over_gloo": ratio(bus["qccl"], bus["gloo"]),
                         "qccl_over_mpi": ratio(bus["qccl"], bus["mpi"]),
                         "qccl_over_ceiling": ratio(bus["qccl"], ceiling), "ceiling_gbs": ceiling}
                line = (f"{n:>2} {mib:>4} | {fmt(ms['qccl'], '8.3f')} {fmt(bus['qccl'], '6.3f')} | "
                        f"{fmt(ms['gloo'], '8.3f')} {fmt(bus['gloo'], '6.3f')} | "
                        f"{fmt(ms['mpi'], '8.3f')} {fmt(bus['mpi'], '6.3f')} | "
                        f"{fmt(entry['qccl_over_gloo'], '6.2f')} {fmt(entry['qccl_over_mpi'], '6.2f')} | "
                        f"{fmt(entry['qccl_over_ceiling'], '6.2f')}")
                if others:
                    ar = cell("qccl", "allreduce", n, size)
                    entry["qccl_over_qccl_allreduce"] = ratio(bus["qccl"], ar and ar["busbw_gbs"])
                    line += f" | {fmt(entry['qccl_over_qccl_allreduce'], '6.2f')}"
                table.append(entry)
                print(line)
                # The issue's aims, checked where this run has the numbers.
                if others:
                    if mib < 64 or bus["qccl"] is None:
                        continue
                    q_ar = entry["qccl_over_qccl_allreduce"]
                    name = f"{OP_TITLE[op]} N={n} {mib} MiB"
                    if op == "broadcast" and q_ar is not None:
                        # time ~ size/bw, not N x size/bw: within 1.5x of size / (all-reduce busbw)
                        aims.append((f"{name} time <= 1.5 x size / qccl all-reduce busbw",
                                     q_ar >= 1 / 1.5, f"{1 / q_ar:.2f}x (N x would be {n}x)"))
                    elif q_ar is not None:
                        aims.append((f"{name} busbw >= 90% of qccl all-reduce busbw", q_ar >= 0.9,
                                     f"{q_ar:.0%}"))
                    if op != "broadcast" and bus["gloo"] is not None:
                        aims.append((f"{name} busbw >= gloo", entry["qccl_over_gloo"] >= 1.0,
                                     f"{entry['qccl_over_gloo']:.2f}x"))
                    continue
                if mib >= 64 and bus["qccl"] is not None:
                    if bus["gloo"] is not None:
                        aims.append((f"N={n} {mib} MiB busbw >= 1.2x gloo", entry["qccl_over_gloo"] >= 1.2,
                                     f"{entry['qccl_over_gloo']:.2f}x"))
                    aims.append((f"N={n} {mib} MiB busbw >= 80% of ceiling {ceiling:.2f} GB/s",
                                 entry["qccl_over_ceiling"] >= 0.8, f"{entry['qccl_over_ceiling']:.0%}"))
                if mib >= 64 and c["qccl"] and c["gloo"] and "cpu_s_per_gb" in c["qccl"] \
                        and "cpu_s_per_gb" in c["gloo"]:
                    q, g = c["qccl"]["cpu_s_per_gb"], c["gloo"]["cpu_s_per_gb"]
                    aims.append((f"N={n} {mib} MiB CPU per GB <= gloo's", q <= g,
                                 f"{q:.3f} vs {g:.3f} s/GB"))
                if mib == 1 and n == 2 and ms["qccl"] is not None and ms["mpi"] is not None:
                    aims.append(("N=2 1 MiB op time <= Open MPI's", ms["qccl"] <= ms["mpi"],
                                 f"{ms['qccl']:.3f} vs {ms['mpi']:.3f} ms"))
        print_costs(op, a, table)
        security += print_security(op, a, raw)
    if aims:
        print("\naims:")
        for what, ok, got in aims:
            print(f"  {'met ' if ok else 'MISS'}  {what}: {got}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": {k: v for k, v in vars(a).items() if k != "json"},
                       "load_average": load, "loads": loads, "table": table,
                       "aims": [{"aim": w, "met": ok, "value": g} for w, ok, g in aims],
                       "security": security,
                       "raw": raw}, f, indent=1)
        print(f"\nwrote {a.json}")
    print(f"raw per-system JSON in {out}")
    missing = [s for s in a.systems if not any(raw[s])]
    if missing:
        print(f"no results from: {', '.join(missing)}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
