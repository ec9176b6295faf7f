#!/usr/bin/env python3
"""Gloo baseline for benchmarks/compare.py: torch.distributed's `gloo` backend on loopback.

Measured like qccl_allreduce_bench: for each N, N processes; per iteration an untimed barrier,
each rank times its own all_reduce (float32 sum), the iteration's time is the slowest rank's
(max-reduce), and every result is checked. Gloo reduces in place, so the input is restored
before each op (untimed). Writes JSON with the same fields as the qccl benchmark.

With --rank R --world-size N --master-addr IP --master-port P this process is one rank only
(the caller starts all N, e.g. each in its own network namespace: benchmarks/wan.py); rank 0
hosts the rendezvous on IP:P, prints the rows and writes the JSON. --ifname is the interface
gloo uses (GLOO_SOCKET_IFNAME, default lo).

--op allreduce,allgather,reducescatter,broadcast (default allreduce) also runs
dist.all_gather_into_tensor, dist.reduce_scatter_tensor (sum) and dist.broadcast (from rank 0),
out of place where the op allows, each checked element by element. Size is the op's total data
(all-gather: the output; reduce-scatter: the input; broadcast: the buffer), size/N rounded down
to whole floats; busbw as nccl-tests (2(N-1)/N all-reduce, (N-1)/N all-gather and
reduce-scatter, 1 broadcast).
"""
import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time


def free_port():
    # Bind port 0 so the OS picks a free port; gloo's TCP store binds it again right after.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


OPS = ("allreduce", "allgather", "reducescatter", "broadcast")


def busbw_factor(op, n):
    return 2 * (n - 1) / n if op == "allreduce" else 1.0 if op == "broadcast" else (n - 1) / n


def worker(rank, n, port, sizes_mib, iters, warmup, queue, host="127.0.0.1", ifname="lo",
           timeout_s=1800.0, ops=("allreduce",)):
    os.environ["GLOO_SOCKET_IFNAME"] = ifname
    import datetime
    import torch
    import torch.distributed as dist

    import warnings
    # torch 2.13 calls these two (the ones the comparison names) deprecated; they still work.
    warnings.filterwarnings("ignore", category=FutureWarning,
                            message=".*(all_gather_into_tensor|reduce_scatter_tensor).*deprecated")
    torch.set_num_threads(1)  # like the baselines: processes outnumber cores already
    try:
        dist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank,
                                world_size=n, timeout=datetime.timedelta(seconds=timeout_s))
        weight = n * (n + 1) / 2
        for mib in sizes_mib:
            count = mib << 18
            block = count // n
            # Same values as qccl's benchmark: (rank+1) * ((j % 1024) + 1), exact in float.
            pattern = (torch.arange(count, dtype=torch.int64) % 1024 + 1).to(torch.float32)
            src = pattern * (rank + 1)
            for op in ops:
                # (input, output, expected output) of each op; outputs poisoned before each op.
                if op == "allreduce":  # gloo reduces in place: the input is restored each time
                    inp, buf, expected = None, torch.empty_like(src), pattern * weight
                elif op == "allgather":
                    inp, buf = src[:block], torch.empty(block * n, dtype=torch.float32)
                    expected = torch.cat([pattern[:block] * (r + 1) for r in range(n)])
                elif op == "reducescatter":
                    inp, buf = src[:block * n], torch.empty(block, dtype=torch.float32)
                    expected = pattern[rank * block:(rank + 1) * block] * weight
                else:  # broadcast from rank 0, in place
                    inp, buf, expected = None, torch.empty_like(src), pattern
                times, cpu = [], 0.0
                for it in range(warmup + iters):
                    if op == "allreduce" or (op == "broadcast" and rank == 0):
                        buf.copy_(src)
                    else:
                        buf.fill_(float("nan"))  # a stale result cannot pass
                    dist.barrier()
                    c0 = time.process_time()  # this process, all threads, user + system
                    t0 = time.perf_counter()
                    if op == "allreduce":
                        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                    elif op == "allgather":
                        dist.all_gather_into_tensor(buf, inp)
                    elif op == "reducescatter":
                        dist.reduce_scatter_tensor(buf, inp, op=dist.ReduceOp.SUM)
                    else:
                        dist.broadcast(buf, src=0)
                    dt = (time.perf_counter() - t0) * 1e3
                    if it >= warmup:
                        cpu += (time.process_time() - c0) * 1e3
                    bad = 0.0 if torch.equal(buf, expected) else 1.0
                    v = torch.tensor([dt, bad], dtype=torch.float64)
                    dist.all_reduce(v, op=dist.ReduceOp.MAX)
                    if v[1].item() != 0.0:
                        raise RuntimeError(f"wrong gloo {op} result at {mib} MiB")
                    if it >= warmup:
                        times.append(v[0].item())
                # CPU per op, summed over the ranks
                total = torch.tensor([cpu], dtype=torch.float64)
                dist.all_reduce(total, op=dist.ReduceOp.SUM)
                if rank == 0:
                    queue.put(("result", n, count * 4, times, op, total.item() / iters))
        dist.barrier()
        dist.destroy_process_group()
        queue.put(("done", rank))
    except Exception as e:  # reported to the parent, which ends the other ranks
        queue.put(("error", rank, repr(e)))


def row(n, size_bytes, times, op="allreduce", cpu_ms=None):
    med = statistics.median(times)
    algbw = size_bytes / (med / 1e3) / 1e9
    return {"n": n, "op": op, "size_bytes": size_bytes, "times_ms": times, "median_ms": med,
            "min_ms": min(times), "max_ms": max(times), "algbw_gbs": algbw,
            "busbw_gbs": algbw * busbw_factor(op, n), "cpu_ms": cpu_ms}


HEADER = (f"{'N':>3} {'size(MiB)':>10} {'iters':>6} {'median(ms)':>11} {'min(ms)':>9} "
          f"{'max(ms)':>9} {'algbw(GB/s)':>12} {'busbw(GB/s)':>12}")


def print_row(r):
    print(f"{r['n']:3d} {r['size_bytes'] / 2**20:10.0f} {len(r['times_ms']):6d} "
          f"{r['median_ms']:11.3f} {r['min_ms']:9.3f} {r['max_ms']:9.3f} "
          f"{r['algbw_gbs']:12.3f} {r['busbw_gbs']:12.3f}"
          + (f" {r['op']}" if r["op"] != "allreduce" else ""), flush=True)


def write_json(path, args, rows):
    import torch
    with open(path, "w") as f:
        json.dump({"system": "gloo", "torch": torch.__version__, "iters": args.iters,
                   "warmup": args.warmup, "results": rows}, f, indent=1)


class Collect:
    """Stands in for the queue when this process is a single rank (--rank)."""

    def __init__(self):
        self.msgs = []

    def put(self, msg):
        self.msgs.append(msg)


def run_rank(args):
    """One rank of a group whose other ranks the caller started (e.g. in other namespaces)."""
    out = Collect()
    worker(args.rank, args.world_size, args.master_port, args.sizes_mib, args.iters,
           args.warmup, out, host=args.master_addr, ifname=args.ifname, timeout_s=args.timeout_s,
           ops=args.op)
    for msg in out.msgs:
        if msg[0] == "error":
            print(f"gloo N={args.world_size}: rank {msg[1]}: {msg[2]}", file=sys.stderr)
            return 1
    if args.rank == 0:
        import torch
        what = "all-reduce, float32 sum" if args.op == ["allreduce"] else ",".join(args.op)
        print(f"gloo (torch {torch.__version__}) {what}, "
              f"{args.master_addr} via {args.ifname}, in place\n" + HEADER, flush=True)
        rows = [row(*msg[1:]) for msg in out.msgs if msg[0] == "result"]
        for r in rows:
            print_row(r)
        if args.json:
            write_json(args.json, args, rows)
    return 0


def run_group(ctx, n, args, deadline):
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, n, port, args.sizes_mib, args.iters,
                                               args.warmup, queue),
                         kwargs={"ops": args.op}) for r in range(n)]
    for p in procs:
        p.start()
    rows, done, ok = [], 0, False
    try:
        while done < n:
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"gloo N={n}: deadline passed", file=sys.stderr)
                break
            try:
                msg = queue.get(timeout=min(left, 5.0))
            except Exception:  # queue.Empty: check that the ranks are still alive
                if any(p.exitcode not in (None, 0) for p in procs):
                    print(f"gloo N={n}: a rank died", file=sys.stderr)
                    break
                continue
            if msg[0] == "result":
                rows.append(row(*msg[1:]))
                print_row(rows[-1])
            elif msg[0] == "done":
                done += 1
            else:
                print(f"gloo N={n}: rank {msg[1]}: {msg[2]}", file=sys.stderr)
                break
        ok = done == n
    finally:
        for p in procs:  # each rank started here is ended here, by pid
            p.join(timeout=2.0 if ok else 0.1)
            if p.is_alive():
                p.kill()
                p.join()
    return rows, ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", default="2,3,4")
    ap.add_argument("--sizes-mib", default="1,16,64,256")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--timeout-s", type=float, default=1800)
    ap.add_argument("--json")
    ap.add_argument("--op", default="allreduce", help="comma-separated: " + ",".join(OPS))
    ap.add_argument("--rank", type=int, help="be this one rank of --world-size (see above)")
    ap.add_argument("--world-size", type=int)
    ap.add_argument("--master-addr", default="127.0.0.1", help="rank 0's address (--rank)")
    ap.add_argument("--master-port", type=int, default=29500, help="rendezvous port (--rank)")
    ap.add_argument("--ifname", default="lo", help="GLOO_SOCKET_IFNAME (--rank)")
    args = ap.parse_args()
    args.sizes_mib = [int(x) for x in args.sizes_mib.split(",") if x]
    args.op = [x for x in args.op.split(",") if x]
    if not args.op or any(x not in OPS for x in args.op):
        ap.error(f"--op takes a comma-separated subset of {','.join(OPS)}")
    if args.rank is not None:
        if not args.world_size or not 0 <= args.rank < args.world_size:
            ap.error("--rank needs --world-size > rank")
        return run_rank(args)
    peers = [int(x) for x in args.peers.split(",") if x]
    deadline = time.monotonic() + args.timeout_s
    import torch
    if args.op == ["allreduce"]:
        print(f"gloo (torch {torch.__version__}) all-reduce, float32 sum, loopback, in place")
    else:
        print(f"gloo (torch {torch.__version__}) {','.join(args.op)}, float32 (sum), loopback; "
              "size = the op's total data")
    print(HEADER, flush=True)
    ctx = mp.get_context("spawn")  # no fork of a process that already imported torch
    rows, all_ok = [], True
    for n in peers:
        r, ok = run_group(ctx, n, args, deadline)
        rows += r
        all_ok = all_ok and ok
    if args.json:
        write_json(args.json, args, rows)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
