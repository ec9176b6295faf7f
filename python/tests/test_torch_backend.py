"""The "qccl" torch.distributed backend (qccl.distributed), end to end: real processes, one
per rank, joined through a TCPStore this test owns. torch_worker.py is the rank's side."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from typing import List

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

WORKER = os.path.join(os.path.dirname(__file__), "torch_worker.py")


class Ranks:
    """WORLD worker processes of one scenario; killed by pid at the end."""

    def __init__(self, scenario: str, world: int, backend: str = "qccl") -> None:
        self.store = dist.TCPStore("127.0.0.1", 0, world + 1, is_master=True,
                                   timeout=datetime.timedelta(seconds=60),
                                   wait_for_workers=False)
        self.procs: List[subprocess.Popen] = [
            subprocess.Popen([sys.executable, WORKER, scenario, str(r), str(world),
                              str(self.store.port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, QCCL_TEST_BACKEND=backend))
            for r in range(world)]

    def expect(self, rank: int, prefix: str, timeout: float = 60.0) -> str:
        """The next stdout line of RANK starting with PREFIX (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        p = self.procs[rank]
        while time.monotonic() < deadline:
            line = p.stdout.readline()  # bounded: the worker prints or exits
            if not line:
                raise AssertionError(f"rank {rank} exited ({p.wait()}) before '{prefix}'")
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"rank {rank}: no '{prefix}' within {timeout} s")

    def finish(self, rank: int, timeout: float = 30.0) -> int:
        return self.procs[rank].wait(timeout)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout):
                if f:
                    f.close()


@pytest.fixture
def ranks():
    made: List[Ranks] = []

    def make(scenario: str, world: int, backend: str = "qccl") -> Ranks:
        made.append(Ranks(scenario, world, backend))
        return made[-1]
    yield make
    for r in made:
        r.close()


@pytest.mark.timeout(150)
def test_every_collective_every_dtype(ranks):
    """all_reduce (every op, async and blocking), broadcast from every root, all_gather (even
    and uneven), all_gather_into_tensor, reduce_scatter(_tensor) (SUM, AVG), coalesced,
    barrier, over every CPU dtype torch has; unsupported calls raise naming the call."""
    r = ranks("collectives", 3)
    for rank in range(3):
        r.expect(rank, "OK", timeout=120)
    assert [r.finish(rank) for rank in range(3)] == [0, 0, 0]


@pytest.mark.timeout(90)
def test_sigkill_of_a_rank_raises_on_the_survivors(ranks):
    r = ranks("kill", 3)
    for rank in range(3):
        r.expect(rank, "RUNNING")
    killed_at = time.time()
    r.procs[2].kill()
    for rank in (0, 1):
        line = r.expect(rank, "RAISED", timeout=30)
        _, code, at = line.split()
        assert code in ("PEER_LOST", "ABORTED"), line
        late = float(at) - killed_at
        print(f"rank {rank} raised {code} {late:.3f} s after the kill")
        assert late < 15.0, f"rank {rank} raised {late:.1f} s after the kill"
        # Later calls fail at once: the torch world is fixed, the group is now short.
        assert r.expect(rank, "THEN").split()[1] == "PEER_LOST"
        assert r.finish(rank) == 0


@pytest.mark.timeout(90)
def test_abort_ends_a_blocked_collective(ranks):
    r = ranks("abort", 3)
    line = r.expect(0, "ABORTED")
    _, code, seconds = line.split()
    print(f"abort ended the wait in {seconds} s")
    assert code == "ABORTED" and float(seconds) < 1.0, line
    assert r.expect(0, "THEN").split()[1] == "ABORTED"
    for rank in (1, 2):
        r.procs[rank].stdin.write("exit\n")
        r.procs[rank].stdin.flush()
    assert [r.finish(rank) for rank in range(3)] == [0, 0, 0]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("spec", ["cpu:qccl", "cpu:gloo,cuda:qccl"])
def test_per_device_routing(ranks, spec):
    r = ranks("routing", 2, spec)
    want = "gloo" if "cpu:gloo" in spec else "qccl"
    for rank in range(2):
        assert r.expect(rank, "ROUTED") == f"ROUTED cpu {want}"
    assert [r.finish(rank) for rank in range(2)] == [0, 0]
