"""One rank of the torch.distributed backend tests (test_torch_backend.py).

    python torch_worker.py SCENARIO RANK WORLD STORE_PORT

Joins the "qccl" process group through the test's TCPStore and runs SCENARIO; prints
"READY", progress lines and finally "OK". An assertion failure exits non-zero with its
traceback on stderr.
"""
import datetime
import os
import sys
import threading
import time

import torch
import torch.distributed as dist

import qccl
import qccl.distributed
from qccl.distributed import QcclBackendError

R = dist.ReduceOp
# Every dtype torch has on the CPU (float8 types only move data; see docs/torch.md).
REDUCIBLE = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
             torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32,
             torch.uint64, torch.complex64, torch.complex128]
MOVABLE = REDUCIBLE + [torch.bool, torch.float8_e4m3fn, torch.float8_e5m2]


def say(*args):
    print(*args, flush=True)


def ints(values, dtype):
    return torch.tensor(values, dtype=torch.int64).to(dtype)


def same(a, b, what):
    assert a.dtype == b.dtype and torch.equal(a.to(torch.float64) if not a.is_complex() else a,
                                              b.to(torch.float64) if not b.is_complex() else b), \
        f"{what}: got {a.tolist() if a.dtype not in (torch.float8_e4m3fn, torch.float8_e5m2) else a}, want {b}"


def collectives(rank, world):
    n = 6
    base = list(range(1, n + 1))
    for dtype in REDUCIBLE:
        name = str(dtype)
        for async_op in (False, True):
            t = ints([v + rank for v in base], dtype)
            w = dist.all_reduce(t, op=R.SUM, async_op=async_op)
            if async_op:
                assert w.wait() is True and w.is_completed()
                # (torch hands complex tensors over as their real view)
                got = w.get_future().value()[0]
                same(got, torch.view_as_real(t) if dtype.is_complex else t, f"future {name}")
            same(t, ints([world * v + world * (world - 1) // 2 for v in base], dtype),
                 f"all_reduce SUM {name} async={async_op}")
        if not dtype.is_complex:
            t = ints([v * (rank + 1) for v in base], dtype)
            dist.all_reduce(t, op=R.MAX)
            same(t, ints([v * world for v in base], dtype), f"all_reduce MAX {name}")
            t = ints([v * (rank + 1) for v in base], dtype)
            dist.all_reduce(t, op=R.MIN)
            same(t, ints(base, dtype), f"all_reduce MIN {name}")
            t = ints([2] * n, dtype) if rank < 2 else ints([1] * n, dtype)
            dist.all_reduce(t, op=R.PRODUCT)
            same(t, ints([4] * n, dtype), f"all_reduce PRODUCT {name}")
        if dtype.is_floating_point or dtype.is_complex:
            t = ints([3 * v for v in base], dtype)
            dist.all_reduce(t, op=R.AVG)
            same(t, ints([3 * v for v in base], dtype), f"all_reduce AVG {name}")
            t = ints(base, dtype)
            dist.all_reduce(t, op=dist._make_nccl_premul_sum(2.0))
            same(t, ints([2 * world * v for v in base], dtype), f"all_reduce PREMUL_SUM {name}")
        # reduce_scatter_tensor: block r of the SUM lands on rank r.
        inp = ints([10 * b + rank for b in range(world) for _ in range(2)], dtype)
        out = ints([0, 0], dtype)
        dist.reduce_scatter_tensor(out, inp)
        want = 10 * rank * world + world * (world - 1) // 2  # exact in bfloat16
        same(out, ints([want, want], dtype), f"reduce_scatter_tensor {name}")
        say(f"reduced {name}")
    for dtype in MOVABLE:
        name = str(dtype)
        src = ints([rank * 10 + i for i in range(4)], torch.int64)
        mine = src.to(dtype) if dtype != torch.bool else (src % 2 == 1)
        for root in range(world):
            t = mine.clone()
            w = dist.broadcast(t, src=root, async_op=True)
            w.wait()
            want = ints([root * 10 + i for i in range(4)], torch.int64)
            want = want.to(dtype) if dtype != torch.bool else (want % 2 == 1)
            same(t.view(torch.uint8), want.view(torch.uint8), f"broadcast {name} root {root}")
        outs = [torch.zeros(4, dtype=dtype) for _ in range(world)]
        dist.all_gather(outs, mine)
        for r in range(world):
            want = ints([r * 10 + i for i in range(4)], torch.int64)
            want = want.to(dtype) if dtype != torch.bool else (want % 2 == 1)
            same(outs[r].view(torch.uint8), want.view(torch.uint8), f"all_gather {name} [{r}]")
        out = torch.zeros(4 * world, dtype=dtype)
        dist.all_gather_into_tensor(out, mine)
        got = [out[4 * r:4 * r + 4].view(torch.uint8) for r in range(world)]
        same(torch.cat(got), torch.cat([o.view(torch.uint8) for o in outs]),
             f"all_gather_into_tensor {name}")
        say(f"moved {name}")

    # Uneven all_gather lists: rank r contributes r + 1 elements (rank 1's is non-contiguous).
    mine = torch.full((rank + 1, 2), float(rank))[:, 0]
    outs = [torch.empty(r + 1) for r in range(world)]
    dist.all_gather(outs, mine)
    assert [o.tolist() for o in outs] == [[float(r)] * (r + 1) for r in range(world)], outs
    # reduce_scatter_tensor with AVG, and the list form.
    inp = torch.arange(2 * world, dtype=torch.float32) * (rank + 1)
    out = torch.empty(2)
    dist.reduce_scatter_tensor(out, inp, op=R.AVG)
    scale = sum(range(1, world + 1)) / world
    assert out.tolist() == [2 * rank * scale, (2 * rank + 1) * scale], out
    out = torch.empty(3)
    dist.reduce_scatter(out, [torch.full((3,), float(10 * r + rank)) for r in range(world)])
    assert out.tolist() == [30.0 * rank + world * (world - 1) / 2] * 3, out
    # Coalesced (one non-contiguous); mixed dtypes through the process group itself.
    a = torch.ones(3, 4)[:, 1]
    b = torch.full((2,), float(rank))
    dist.all_reduce_coalesced([a, b])
    assert a.tolist() == [float(world)] * 3 and b.tolist() == [world * (world - 1) / 2] * 2
    c = torch.full((2,), rank, dtype=torch.int32)
    dist.group.WORLD.allreduce_coalesced([a, c]).wait()
    assert a.tolist() == [float(world * world)] * 3 and c.tolist() == [world * (world - 1) // 2] * 2
    flag = torch.tensor([rank == 0, False])
    dist.all_reduce(flag)  # SUM on bool is "or"
    assert flag.tolist() == [True, False], flag
    dist.barrier()
    w = dist.barrier(async_op=True)
    w.wait()
    # What qccl does not do: a clear error naming the call, and the group goes on.
    for call, fn in (("send", lambda: dist.send(torch.ones(1), dst=(rank + 1) % world)),
                     ("all_to_all", lambda: dist.all_to_all_single(torch.empty(world),
                                                                   torch.ones(world))),
                     ("BXOR", lambda: dist.all_reduce(torch.ones(2, dtype=torch.int32),
                                                      op=R.BXOR))):
        try:
            fn()
        except RuntimeError as e:
            assert call in str(e), (call, str(e))
        else:
            raise AssertionError(f"{call} did not raise")
    # A mismatched collective raises MISMATCH on every rank; the group goes on.
    try:
        dist.all_reduce(torch.ones(4 if rank == 0 else 5))
    except QcclBackendError as e:
        assert e.code == qccl.Result.MISMATCH, e
    else:
        raise AssertionError("a mismatched all_reduce returned")
    t = torch.ones(2)
    dist.all_reduce(t)
    assert t.tolist() == [float(world)] * 2


def kill(rank, world):
    """All-reduces until a peer dies (the test SIGKILLs the last rank)."""
    t = torch.ones(1 << 20)
    i = 0
    while True:
        try:
            dist.all_reduce(t, async_op=True).wait()
        except QcclBackendError as e:
            say(f"RAISED {e.code.name} {time.time():.3f}")
            try:
                dist.all_reduce(t)
            except QcclBackendError as e2:
                say(f"THEN {e2.code.name}")
            return
        i += 1
        if i == 3:
            say("RUNNING")


def abort(rank, world):
    """Rank 0 starts an all-reduce the others never join, then aborts it from a thread."""
    if rank != 0:
        sys.stdin.readline()  # until the test says so
        return
    pg = dist.group.WORLD
    t = torch.ones(8)
    w = dist.all_reduce(t, async_op=True)
    try:
        w.wait(timeout=datetime.timedelta(milliseconds=200))
    except QcclBackendError as e:
        assert e.code == qccl.Result.TIMEOUT, e
    else:
        raise AssertionError("wait(timeout) returned without the other ranks")
    assert not w.is_completed()
    started = time.monotonic()
    threading.Thread(target=pg.abort).start()
    try:
        w.wait()
    except QcclBackendError as e:
        say(f"ABORTED {e.code.name} {time.monotonic() - started:.3f}")
    else:
        raise AssertionError("wait() returned after abort()")
    assert pg.errored() is not None
    try:
        dist.all_reduce(t)
    except QcclBackendError as e:
        say(f"THEN {e.code.name}")


def routing(rank, world):
    """init_process_group(BACKEND) with a device map: CPU tensors go where it says."""
    spec = os.environ["QCCL_TEST_BACKEND"]
    want = "gloo" if "cpu:gloo" in spec else "qccl"
    pg = dist.group.WORLD
    assert pg.backend_of("cpu") == want, (spec, pg.backend_of("cpu"))
    if "cuda" in spec:
        assert pg.backend_of("cuda") == "qccl", spec
    else:  # as in torch: a device the map does not name has no backend
        try:
            pg.backend_of("cuda")
        except QcclBackendError as e:
            assert "no backend for cuda" in str(e), e
        else:
            raise AssertionError(f"{spec}: cuda has a backend")
    t = torch.full((4,), float(rank))
    dist.all_reduce(t)
    outs = [torch.empty(4) for _ in range(world)]
    dist.all_gather(outs, t)
    want_sum = float(world * (world - 1) // 2)
    assert t.tolist() == [want_sum] * 4 and all(o.tolist() == [want_sum] * 4 for o in outs)
    say(f"ROUTED cpu {want}")


def main():
    scenario, rank, world, port = sys.argv[1], *map(int, sys.argv[2:])
    store = dist.TCPStore("127.0.0.1", port, world, is_master=False,
                          timeout=datetime.timedelta(seconds=60))
    backend = os.environ.get("QCCL_TEST_BACKEND", "qccl")
    dist.init_process_group(backend, store=store, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    assert dist.get_backend() == backend, (dist.get_backend(), backend)
    say("READY")
    globals()[scenario](rank, world)
    say("OK")
    os._exit(0) if scenario == "kill" else dist.destroy_process_group()


if __name__ == "__main__":
    main()
