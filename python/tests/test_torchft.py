"""qccl.torchft.ProcessGroupQccl against torchft 0.2.0 (issue 20).

(a) torchft's own process-group tests, imported from the installed ``torchft`` package
    (``torchft/process_group_test.py``): ``MultiPgBaseTest``'s ``_run_parallel`` (every
    collective on 3 ranks, threads of this process) and ``_run_with_resiliency``
    (reconfigure, run, the last rank shuts down, the others see the collective fail and
    ``errored()``) with our group in place of torchft's gloo one, and ``_test_pg`` on one rank
    (a group of 1 computes its collectives locally). What qccl does not offer is skipped, as
    torchft skips it for gloo: all-to-all and send/recv. Plus abort/configure and the
    configure timeout, as the Manager uses them.
(b) torchft's Manager + DDP, and Manager + DiLoCo, with 3 replica processes, one SIGKILLed
    and restarted (examples/python/torchft_ddp.py's launcher mode): the others train on
    without it, it heals and trains with them again, every committed step left all replicas
    with the same parameters, and all end with identical parameters and optimizer state
    (DiLoCo: the outer optimizer's; the inner one is local by design).

torchft is an optional dependency (scripts/install_deps.sh installs it for the tests); without
it these tests report a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Dict, List, Tuple

import pytest

pytest.importorskip("torch", reason="torchft needs PyTorch")
pytest.importorskip("torchft", reason="torchft is not installed (scripts/install_deps.sh)")

import torch  # noqa: E402
import torchft.process_group_test as tft  # noqa: E402  (torchft's own tests)
from parameterized import parameterized  # noqa: E402  (what torchft's tests use)
from torch import nn  # noqa: E402
from torch.distributed import TCPStore  # noqa: E402

from qccl import Result  # noqa: E402
from qccl.distributed import QcclBackendError  # noqa: E402
from qccl.torchft import ProcessGroupQccl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.environ.get("QCCL_SOURCE_DIR", os.path.join(HERE, "..", "..")),
                       "examples", "python", "torchft_ddp.py")

# What qccl has no collective for (torchft skips all-to-all and reduce-scatter for gloo).
UNSUPPORTED = ["alltoall_base", "send/recv"]

def _store() -> Tuple[TCPStore, str]:
    store = TCPStore(host_name="127.0.0.1", port=0, is_master=True, wait_for_workers=False)
    return store, f"127.0.0.1:{store.port}"


@pytest.mark.timeout(30)
def test_constructor_is_keyword_only_and_names_the_backend():
    pg = ProcessGroupQccl()
    assert pg.getBackendName() == "torchft-qccl"
    assert pg.errored() is None
    with pytest.raises(TypeError):
        ProcessGroupQccl(timedelta(seconds=1))  # positional
    with pytest.raises(TypeError):
        ProcessGroupQccl(timeout=5)
    ProcessGroupQccl(timeout=timedelta(seconds=5), options=None).shutdown()  # no group: no-op


@pytest.mark.timeout(30)
def test_configure_times_out_without_the_other_ranks():
    # torchft's test_gloo_timeout: a world of 2 with only one rank configuring.
    store, addr = _store()
    pg = ProcessGroupQccl(timeout=timedelta(seconds=0.5))
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, RuntimeError)):  # qccl.TimeoutError for now
        pg.configure(f"{addr}/prefix", "0", 0, 2)
    assert time.monotonic() - t0 < 10


@pytest.mark.timeout(60)
def test_abort_then_reconfigure():
    # What the Manager relies on: abort() ends the group (errored() says so, collectives fail
    # at once), and configure() on a new prefix gives a working group again.
    store, addr = _store()
    pgs = [ProcessGroupQccl(timeout=timedelta(seconds=10)) for _ in range(2)]

    def run(fn):
        with ThreadPoolExecutor(2) as ex:
            return [f.result(timeout=30) for f in [ex.submit(fn, r) for r in range(2)]]

    def allreduce(r):
        t = torch.tensor([r + 1.0])
        pgs[r].allreduce([t], tft.ReduceOp.SUM).wait()
        return t.item()

    try:
        run(lambda r: pgs[r].configure(f"{addr}/q1", "0", r, 2))
        assert run(allreduce) == [3.0, 3.0]
        for pg in pgs:
            pg.abort()
            assert "aborted" in str(pg.errored())
        with pytest.raises(AssertionError, match="process group not initialized"):
            allreduce(0)
        run(lambda r: pgs[r].configure(f"{addr}/q2", "0", r, 2))
        assert all(pg.errored() is None for pg in pgs)
        assert run(allreduce) == [3.0, 3.0]
    finally:
        for pg in reversed(pgs):  # rank 0 last: it waits (bounded) for the others to leave
            pg.shutdown()


class QcclProcessGroupTest(tft.MultiPgBaseTest):
    """torchft's MultiPgBaseTest (3 ranks on threads sharing a TCPStore; every test runs one
    collective on all of them) with ProcessGroupQccl."""

    pytestmark = pytest.mark.timeout(60)
    BACKEND = "qccl"
    WORLD_SIZE = 3
    COLLECTIVES: List[str] = sorted(set(tft._ALL_COLLECTIVES) - set(UNSUPPORTED))

    @classmethod
    def _create_pg(cls, backend: str) -> ProcessGroupQccl:
        return ProcessGroupQccl(timeout=timedelta(seconds=10))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pg_pool.reverse()  # shut rank 0 down last: it waits (bounded) for the others
        super().tearDownClass()

    @parameterized.expand(COLLECTIVES)
    def test_collective(self, collective: str) -> None:
        self._run_parallel(collective, device="cpu")

    @parameterized.expand(COLLECTIVES)
    def test_collective_with_resiliency(self, collective: str) -> None:
        self._run_with_resiliency(collective, device="cpu")

    # torchft's _run_with_resiliency lists the errors it expects by backend ("We hardcode the
    # list of expected errors": gloo's and NCCL's messages) and wants errored() to say
    # "aborted" (NCCL's abort). qccl's error is added to them, by its code rather than its
    # message: a QcclBackendError with code PEER_LOST (the collective lost a peer; errored()
    # returns the same error).
    def assertRaisesRegex(self, expected_exception, expected_regex, *args, **kwargs):
        cm = super().assertRaisesRegex(expected_exception, expected_regex, *args, **kwargs)
        if expected_regex == "aborted" or str(expected_regex).startswith(
                "(Connection closed by peer|"):
            return _OrPeerLost(cm, expected_exception)
        return cm


class _OrPeerLost:
    """``assertRaisesRegex``'s context manager that also accepts a qccl lost-peer error."""

    def __init__(self, cm, expected_exception) -> None:
        self.cm, self.expected = cm, expected_exception

    def __enter__(self):
        return self.cm.__enter__()

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, QcclBackendError) and isinstance(exc, self.expected) and \
                exc.code == Result.PEER_LOST:
            return True
        return self.cm.__exit__(exc_type, exc, tb)


@pytest.mark.timeout(30)
def test_single_rank_apis_and_reconfigure():
    # torchft's test_gloo_apis verbatim, on a world of 1 (if qccl forms one), reconfigured.
    store, addr = _store()
    pg = ProcessGroupQccl(timeout=timedelta(seconds=10))
    try:
        for prefix in ("prefix", "prefix2"):
            pg.configure(f"{addr}/{prefix}", "0", 0, 1)
            assert pg.size() == 1
            tft._test_pg(pg, torch.tensor([2.0]), skip=UNSUPPORTED)
        m = torch.nn.parallel.DistributedDataParallel(nn.Linear(3, 4), process_group=pg)
        m(torch.rand(2, 3))
    finally:
        pg.shutdown()


# ---- (b) Manager + DDP, 3 replica processes, one SIGKILLed and restarted ----

def _events(lines: List[str]) -> List[Tuple[str, Dict[str, str]]]:
    out = []
    for line in lines:
        words = line.split()
        if words:
            out.append((words[0], dict(w.split("=", 1) for w in words[1:] if "=" in w)))
    return out


@pytest.mark.timeout(150)
@pytest.mark.parametrize("algo,victim", [
    ("ddp", 2),      # a replica that is not the qccl group's rank 0
    ("diloco", 0),   # rank 0: the embedded qccl master dies with it
])
def test_manager_three_replicas_one_sigkilled_and_restarted(algo, victim):
    env = dict(os.environ, QCCL_LOG_LEVEL=os.environ.get("QCCL_LOG_LEVEL", "warn"))
    deadline = 120
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, EXAMPLE, "--algo", algo, "--replicas", "3",
                          "--kill-replica", str(victim), "--kill-after", "3", "--steps", "8",
                          "--deadline", str(deadline - 10)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out, _ = p.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        pytest.fail(f"the launcher did not finish within {deadline}s:\n{out[-6000:]}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    print(out)  # shown when the test fails
    print(f"torchft_ddp --algo {algo} ran in {time.monotonic() - t0:.1f}s")
    lines = out.splitlines()
    assert p.returncode == 0, out[-6000:]
    assert any(line.startswith("launcher: ok") for line in lines), out[-6000:]
    assert any(line.startswith(f"launcher: SIGKILL replica {victim}") for line in lines)
    events = _events(lines)
    # The survivors trained on with 2 participants; afterwards all 3 again, the restarted
    # replica too (it healed: its first committed step is past the kill).
    kill_line = next(i for i, line in enumerate(lines) if line.startswith("launcher: SIGKILL"))
    after = [f for name, f in _events(lines[kill_line:]) if name == "step"
             and f.get("committed") == "1"]
    assert any(f["participants"] == "2" for f in after if f["replica"] != str(victim))
    restarted = [f for f in after if f["replica"] == str(victim)]
    assert restarted and any(f["participants"] == "3" for f in restarted)
    assert int(restarted[0]["step"]) > 3
    # Every replica's parameters after each committed step are the others' (the launcher
    # checked the hashes: "equal at each of N steps"), and so is the final state.
    done = {f["replica"]: f for name, f in events if name == "done"}
    assert set(done) == {"0", "1", "2"}
    assert len({f["hash"] for f in done.values()}) == 1, done
    assert len({f["step"] for f in done.values()}) == 1, done
    assert int(done["0"]["step"]) >= 8
