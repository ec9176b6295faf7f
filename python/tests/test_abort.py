"""Communicator.abort() and op deadlines (op_timeout) from Python: abort() from one thread ends
an all_reduce blocked in another with AbortedError, after which close() returns at once (the
aborted call's use of the handle has ended); an operation that one peer skips raises
qccl.TimeoutError on every peer, the late one included, and the group goes on."""

from __future__ import annotations

import time

import numpy as np
import pytest

import qccl

from conftest import parallel, spawn, wait_until


@pytest.mark.timeout(60)
def test_abort_ends_a_blocked_all_reduce_and_close_does_not_wait(group_factory):
    a, b = group_factory(2)
    buf = np.arange(1000, dtype=np.float32)
    before = buf.copy()
    t, out = spawn(a.all_reduce, buf)  # b never calls: blocked until aborted
    wait_until(lambda: a._c.active_calls == 1, timeout=5, what="the all_reduce to be in progress")
    assert not out.done.wait(0.3), "all_reduce returned before the abort"
    t0 = time.monotonic()
    a.abort()
    assert out.done.wait(10), "abort() did not end the blocked all_reduce"
    latency = time.monotonic() - t0
    with pytest.raises(qccl.AbortedError, match="the communicator was aborted"):
        out.get()
    assert latency < 2.0, latency
    np.testing.assert_array_equal(buf, before)  # in place: the input again
    wait_until(lambda: a._c.active_calls == 0, timeout=5, what="the aborted call's use to end")
    with pytest.raises(qccl.AbortedError):
        a.all_reduce(buf)  # every later call, at once
    a.abort()  # idempotent
    t0 = time.monotonic()
    a.close()
    assert time.monotonic() - t0 < 2.0
    a.abort()  # after close: a no-op
    t.join(5)
    # b saw a leave (gracefully: long before the 5 s peer timeout of the fixture's master).
    wait_until(lambda: b.world_size == 1, timeout=4, what="the aborted peer to leave")


@pytest.mark.timeout(60)
def test_abort_while_close_waits_for_a_blocked_call(group_factory):
    a, _ = group_factory(2)
    t, out = spawn(a.all_reduce, bytearray(64))
    assert not out.done.wait(0.3)
    closer, closed = spawn(a.close)  # waits for the blocked call's use to end
    assert not closed.done.wait(0.2)
    a.abort()
    assert closed.done.wait(10), "close() still waiting after abort()"
    closed.get()
    with pytest.raises(qccl.AbortedError):
        out.get()
    t.join(5)
    closer.join(5)


@pytest.mark.timeout(60)
def test_op_timeout_raises_timeout_error_on_every_peer_and_the_group_goes_on(group_factory):
    comms = group_factory(3, op_timeout=0.3)
    assert all(c.op_timeout == pytest.approx(0.3) for c in comms)
    bufs = [np.full(1000, i + 1, dtype=np.int64) for i in range(3)]

    def timed(c, b):
        t0 = time.monotonic()
        with pytest.raises(qccl.TimeoutError):
            c.all_reduce(b, tag=3)
        return t0, time.monotonic()

    # The deadline counts from the first start: each returns 0.3 s or more after the first call.
    times = parallel([lambda: timed(comms[0], bufs[0]), lambda: timed(comms[1], bufs[1])])
    first = min(t0 for t0, _ in times)
    assert all(0.3 <= end - first and end - t0 < 5.0 for t0, end in times), times
    with pytest.raises(TimeoutError):  # also the builtin; the late peer fails the same way
        comms[2].all_reduce(bufs[2], tag=3)
    for i, b in enumerate(bufs):
        np.testing.assert_array_equal(b, np.full(1000, i + 1, dtype=np.int64))
    infos = parallel([lambda c=c, b=b: c.all_reduce(b, tag=3) for c, b in zip(comms, bufs)])
    assert all(info.world_size == 3 for info in infos)
    for b in bufs:
        np.testing.assert_array_equal(b, np.full(1000, 6, dtype=np.int64))
    comms[0].op_timeout = None
    assert comms[0].op_timeout is None
    comms[0].op_timeout = 2.5
    assert comms[0].op_timeout == pytest.approx(2.5)
