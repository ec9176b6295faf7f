"""Three peer processes all-reduce torch tensors through a master process started with
``python -m qccl.master``; one peer is SIGKILLed (by pid) while the others are inside an
all-reduce with it: they get PeerLostError, retry at once and go on with the right sums
(peer i contributes 2**i, so a sum names the peers in it)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import List

import pytest

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_helper.py")


class Proc:
    """A child process whose stdout lines are read by a thread into a queue."""

    def __init__(self, args: List[str], name: str) -> None:
        self.name = name
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.err: List[str] = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.err.append),
                         daemon=True).start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 30.0) -> List[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, left))
            except queue.Empty:
                line = None
            if line is not None and line.startswith(prefix):
                return line.split()
            if line is not None and line.startswith("error"):
                raise AssertionError(f"{self.name}: {line}")
            if left <= 0 or (line is None and self.p.poll() is not None):
                raise AssertionError(f"{self.name}: no '{prefix}' line within {timeout}s "
                                     f"(exit {self.p.poll()}); stderr:\n" + "\n".join(self.err))

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def kill(self) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait(10)

    def finish(self, timeout: float = 20.0) -> int:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit; stderr:\n" + "\n".join(self.err))


@pytest.mark.timeout(180)
def test_three_peers_one_sigkilled_survivors_retry_and_continue():
    env = dict(os.environ, QCCL_LOG_LEVEL="warn")
    procs: List[Proc] = []
    master = Proc([sys.executable, "-m", "qccl.master", "--listen", "127.0.0.1:0",
                   "--peer-timeout-ms", "3000", "--log-level", "warn"], "master")
    try:
        words = master.expect("qccl-master listening on", 30)
        address = words[-1]
        for i in range(3):
            procs.append(Proc([sys.executable, HELPER, address, str(i), "3"], f"peer{i}"))
        for p in procs:
            p.expect("ready", 90)

        n = 65536
        for _ in range(2):  # all three: 1 + 2 + 4
            for p in procs:
                p.send(f"reduce {n}")
            for p in procs:
                _, total, world, lost = p.expect("result")
                assert (float(total), int(world), int(lost)) == (7.0, 3, 0)

        # Peers 0 and 1 enter an all-reduce that peer 2 never joins; peer 2 is killed.
        survivors, victim = procs[:2], procs[2]
        for p in survivors:
            p.send(f"reduce {n}")
        for p in survivors:
            p.expect("entering")
        victim.kill()
        lost_counts = []
        for p in survivors:
            _, total, world, lost = p.expect("result", 30)
            assert (float(total), int(world)) == (3.0, 2), p.name  # exactly peers 0 and 1
            lost_counts.append(int(lost))
        # Blocked in the op with the victim, each survivor saw the failure and retried.
        assert all(k >= 1 for k in lost_counts), lost_counts

        for _ in range(2):  # and they go on
            for p in survivors:
                p.send(f"reduce {n}")
            for p in survivors:
                _, total, world, lost = p.expect("result")
                assert (float(total), int(world), int(lost)) == (3.0, 2, 0)
        for p in survivors:
            p.send("quit")
        for p in survivors:
            p.expect("bye")
            assert p.finish() == 0, "\n".join(p.err)
        os.kill(master.p.pid, signal.SIGTERM)
        assert master.finish() == 0
    finally:
        for p in procs + [master]:
            p.kill()
