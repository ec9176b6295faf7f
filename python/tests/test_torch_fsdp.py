"""FSDP2 (``torch.distributed.fsdp.fully_shard``) on the "qccl" torch.distributed backend.

One spawn per world size (2 and 3 processes, CPU); every rank runs every check. First an
in-place all_gather_into_tensor (FSDP2's form: the input is the rank's block of the output).
Then each rank wraps the same small model with ``fully_shard`` (every Linear, then the root),
trains a few SGD steps on its shard of a global batch and checks that the losses, the full
parameters (``DTensor.full_tensor()``) and the full state dict match a single-process
reference trained on the whole batch from the same seed. The ranks form their group through
a FileStore in the test's tmp_path: no port.

A child's failure is re-raised by ``ProcessContext.join`` with its traceback; on the deadline
the children are ended by pid, and they die with the test process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import time

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch")
dist = pytest.importorskip("torch.distributed", reason="needs torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)
fsdp = pytest.importorskip("torch.distributed.fsdp", reason="needs FSDP2")
if not hasattr(fsdp, "fully_shard"):
    pytest.skip("this torch has no FSDP2 fully_shard", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402

GLOBAL_BATCH = 12  # divisible by 2, 3 and 4: each rank's shard is the same size
STEPS = 4
# float32, and the two runs add the same numbers in different orders: the reference averages
# the gradient over the whole batch in one matmul, the sharded run averages per rank and then
# across ranks in qccl's ring order. That differs by a few ulps (~1e-7 of a gradient); SGD
# carries it linearly, so after 4 steps the parameters differ by ~1e-7 too (<= 1.2e-7
# measured). 1e-5 is far above that and far below one step (lr x gradient ~ 1e-2): a rank's
# contribution missing, doubled or misplaced fails (every rank on one shard: 8e-2 off).
ATOL, RTOL = 1e-5, 1e-5
DEADLINE = 75  # seconds for a world size's ranks; pytest-timeout's is 90, ctest's 240


def _model():
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 4))


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, GLOBAL_BATCH, 8, generator=g)
    y = torch.randn(STEPS, GLOBAL_BATCH, 4, generator=g)
    return x, y


def _train(model, x, y, rows):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[step, rows]), y[step, rows])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _die_with_parent() -> None:
    """A rank outlives no test process (a pytest-timeout exit included)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _worker(rank: int, world: int, store_path: str) -> None:
    """One rank: every check runs here; a failure raises (and reaches the test)."""
    _die_with_parent()
    torch.set_num_threads(1)  # several ranks on a small machine
    import qccl.distributed  # noqa: F401  (registers "qccl")
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor, Shard

    store = dist.FileStore(store_path, world)
    dist.init_process_group("qccl", store=store, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    try:
        assert dist.get_backend() == "qccl"
        ring = dist.group.WORLD.ring_order
        where = f"rank {rank} of {world} (ring order {ring})"

        # FSDP2's all-gather is in place: the input is this rank's block of the output.
        n = 5
        out = torch.full((world * n,), -1.0)
        out[rank * n:(rank + 1) * n] = float(rank)
        dist.all_gather_into_tensor(out, out[rank * n:(rank + 1) * n])
        assert out.tolist() == [float(r) for r in range(world) for _ in range(n)], (where, out)

        x, y = _data()
        initial = _model().state_dict()
        reference = _model()
        ref_losses = _train(reference, x, y, slice(None))

        model = _model()
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        for name, p in model.named_parameters():
            assert isinstance(p, DTensor) and p.placements == (Shard(0),), (where, name, p)
        per = GLOBAL_BATCH // world
        losses = _train(model, x, y, slice(rank * per, (rank + 1) * per))

        # The global batch's loss is the mean of the ranks' (equal shards).
        mean = torch.tensor(losses)
        dist.all_reduce(mean, op=dist.ReduceOp.AVG)
        torch.testing.assert_close(mean, torch.tensor(ref_losses), atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f"{where}: losses: {m}")

        ref = dict(reference.named_parameters())
        for name, p in model.named_parameters():
            full = p.full_tensor()  # functional all-gather, through the group's name
            torch.testing.assert_close(full, ref[name].detach(), atol=ATOL, rtol=RTOL,
                                       msg=lambda m, k=name: f"{where}: parameter {k}: {m}")
            assert not torch.allclose(full, initial[name], atol=1e-3), f"{name} did not train"

        sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
        ref_sd = reference.state_dict()
        assert sd.keys() == ref_sd.keys(), (where, sd.keys())
        for name, t in sd.items():
            torch.testing.assert_close(t, ref_sd[name], atol=ATOL, rtol=RTOL,
                                       msg=lambda m, k=name: f"{where}: state dict {k}: {m}")
    finally:
        dist.destroy_process_group()


# ~10 s a world size on an idle 2-core machine (mostly the ranks importing torch), ~30 s
# under a load of 10: the deadlines leave room for that.
@pytest.mark.timeout(90)
@pytest.mark.parametrize("world", [2, 3])
def test_fully_shard_matches_single_process(world, tmp_path):
    ctx = mp.start_processes(_worker, args=(world, str(tmp_path / "store")), nprocs=world,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise AssertionError(f"FSDP2 ranks did not finish within {DEADLINE} s: "
                                     f"alive {[p.pid for p in ctx.processes if p.is_alive()]}")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join(5)
