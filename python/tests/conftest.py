"""Shared fixtures and helpers of the Python tests.

Rules (STYLE.md §11): ephemeral ports only; no sleep as synchronisation (waits are on real
conditions, polled with a deadline); every test has a deadline (pytest-timeout, or the
faulthandler fallback below); processes a test starts are ended by that test, by pid.
"""

from __future__ import annotations

import faulthandler
import os
import threading
import time
from typing import Any, Callable, List, Optional, Sequence

import pytest

os.environ.setdefault("QCCL_LOG_LEVEL", "warn")  # before the library is loaded

import qccl  # noqa: E402

try:
    import pytest_timeout  # noqa: F401

    HAVE_PYTEST_TIMEOUT = True
except ImportError:  # fallback: the same per-test deadline, ending the whole run
    HAVE_PYTEST_TIMEOUT = False

DEFAULT_TIMEOUT = 60


@pytest.fixture(autouse=True)
def _deadline(request):
    if HAVE_PYTEST_TIMEOUT:
        yield
        return
    marker = request.node.get_closest_marker("timeout")
    seconds = marker.args[0] if marker and marker.args else DEFAULT_TIMEOUT
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
               poll: float = 0.002) -> Any:
    """Polls cond() until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)  # pacing of the poll, not synchronisation


class Outcome:
    """Result or exception of a call run on a thread."""

    def __init__(self) -> None:
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.done = threading.Event()

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def spawn(fn: Callable[..., Any], *args: Any) -> "tuple[threading.Thread, Outcome]":
    out = Outcome()

    def body() -> None:
        try:
            out.value = fn(*args)
        except BaseException as e:  # noqa: BLE001 (reported to the test)
            out.error = e
        finally:
            out.done.set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def join(threads_outcomes: Sequence["tuple[threading.Thread, Outcome]"],
         timeout: float = 30.0) -> List[Outcome]:
    deadline = time.monotonic() + timeout
    outs = []
    for t, o in threads_outcomes:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            raise AssertionError(f"a peer thread did not finish within {timeout}s")
        outs.append(o)
    return outs


def parallel(fns: Sequence[Callable[[], Any]], timeout: float = 30.0) -> List[Any]:
    """Runs the callables concurrently (one thread each); returns their results, raising the
    first exception."""
    outs = join([spawn(f) for f in fns], timeout)
    return [o.get() for o in outs]


def parallel_outcomes(fns: Sequence[Callable[[], Any]], timeout: float = 30.0) -> List[Outcome]:
    return join([spawn(f) for f in fns], timeout)


def admit(accepted: Sequence[qccl.Communicator], joiners: Sequence[qccl.Communicator],
          timeout: float = 30.0) -> None:
    """Connects `joiners` one at a time (each on a thread) and has every accepted peer admit
    it (are_peers_pending + update_topology are collectives of all accepted peers, so the
    set of voters must be exact: hence one joiner per round)."""
    if not accepted:
        raise ValueError("admit() needs at least one accepted peer")
    members = list(accepted)
    for j in joiners:
        pending = spawn(j.connect)
        deadline = time.monotonic() + timeout
        while not all(parallel([c.are_peers_pending for c in members], timeout)):
            if time.monotonic() > deadline:
                raise AssertionError("the joiner never became pending")
            if pending[1].done.is_set():
                pending[1].get()  # connect failed: report why
            time.sleep(0.002)  # pacing of the poll
        parallel([c.update_topology for c in members], timeout)
        join([pending], timeout)[0].get()
        members.append(j)
    n = len(members)
    assert all(c.world_size == n for c in members), [c.world_size for c in members]


def make_group(master: qccl.Master, n: int, peer_group: int = 0,
               **kwargs: Any) -> List[qccl.Communicator]:
    """n connected communicators of one group, in ring-independent creation order."""
    comms = [qccl.Communicator(master.address, peer_group=peer_group, **kwargs) for _ in range(n)]
    comms[0].connect(timeout=30)
    if n > 1:
        admit(comms[:1], comms[1:])
    return comms


@pytest.fixture
def master():
    with qccl.Master("127.0.0.1:0", peer_timeout_ms=5000) as m:
        m.start()
        yield m


@pytest.fixture
def group_factory(master):
    """make(n, peer_group=0) -> n connected communicators, all closed after the test."""
    made: List[qccl.Communicator] = []

    def make(n: int, peer_group: int = 0, **kwargs: Any) -> List[qccl.Communicator]:
        comms = make_group(master, n, peer_group, **kwargs)
        made.extend(comms)
        return comms

    yield make
    for c in made:
        c.close()


@pytest.fixture
def pair(group_factory):
    return group_factory(2)
