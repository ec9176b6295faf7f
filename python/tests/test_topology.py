"""Communicator.optimize_topology() and the Master's probe options from Python: loopback rings
of threads in one process (link probes, the solved ring, exact all-reduces before and after),
several groups, a single peer, misuse, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import qccl

from conftest import admit, join, make_group, parallel, spawn, wait_until

PROBE_MS = 50  # short probes: the test measures loopback links, not real ones


@pytest.fixture
def probing_master():
    with qccl.Master("127.0.0.1:0", peer_timeout_ms=5000, probe_ms=PROBE_MS) as m:
        m.start()
        yield m


@pytest.fixture
def comms_factory(probing_master):
    """make(n, peer_group=0) -> n connected communicators on probing_master, all closed after
    the test."""
    made = []

    def make(n, peer_group=0):
        comms = make_group(probing_master, n, peer_group)
        made.extend(comms)
        return comms

    yield make
    for c in made:
        c.close()


def sum_all(comms):
    """Peer i all-reduces (SUM) a float64 array of 1000 elements: element k = (i + 1) * k.
    Checks the result on every peer bit for bit."""
    n, count = len(comms), 1000
    bufs = [np.arange(count, dtype=np.float64) * (i + 1) for i in range(n)]
    infos = parallel([lambda c=c, b=b: c.all_reduce(b) for c, b in zip(comms, bufs)])
    expected = np.arange(count, dtype=np.float64) * (n * (n + 1) // 2)
    for i, (b, info) in enumerate(zip(bufs, infos)):
        np.testing.assert_array_equal(b, expected, err_msg=f"peer {i}")
        assert info.world_size == n


@pytest.mark.timeout(90)
def test_three_peers_get_a_ring_and_stay_exact(comms_factory):
    comms = comms_factory(3)
    sum_all(comms)

    parallel([c.optimize_topology for c in comms], timeout=60)
    ranks = [c.ring_rank for c in comms]
    assert sorted(ranks) == [0, 1, 2], ranks
    assert all(c.world_size == 3 and c.group_world_size == 3 for c in comms)
    sum_all(comms)

    # Every link now has a recent measurement: nothing is probed, the same ring is solved, and
    # the membership (epoch) does not change.
    epochs = [c.epoch for c in comms]
    parallel([c.optimize_topology for c in comms], timeout=60)
    assert [c.ring_rank for c in comms] == ranks
    assert [c.epoch for c in comms] == epochs
    sum_all(comms)


@pytest.mark.timeout(90)
def test_every_group_gets_its_own_ring(probing_master):
    # One admission sequence for all four peers (votes are of all accepted peers).
    comms = [qccl.Communicator(probing_master.address, peer_group=g) for g in (0, 1, 0, 1)]
    try:
        comms[0].connect(timeout=30)
        admit(comms[:1], comms[1:])
        parallel([c.optimize_topology for c in comms], timeout=60)
        for g in (0, 1):
            members = [c for c in comms if c.peer_group == g]
            assert sorted(c.ring_rank for c in members) == [0, 1]
            assert all(c.group_world_size == 2 for c in members)
            sum_all(members)
    finally:
        for c in comms:
            c.close()


def test_a_single_peer_returns_at_once(comms_factory):
    (c,) = comms_factory(1)
    c.optimize_topology()
    assert c.ring_rank == 0 and c.world_size == 1


def test_optimize_topology_releases_the_gil(comms_factory):
    a, b = comms_factory(2)
    ta = spawn(a.optimize_topology)
    # b's call is what a waits for: it can only start if a's call released the GIL.
    wait_until(lambda: a._c.active_calls == 1, what="a to be inside optimize_topology")
    b.optimize_topology()
    join([ta], 30)[0].get()
    assert sorted([a.ring_rank, b.ring_rank]) == [0, 1]


# ---- misuse ----

def test_unconnected_communicator_is_invalid_usage(probing_master):
    with qccl.Communicator(probing_master.address) as c:
        with pytest.raises(qccl.InvalidUsageError, match="not connected") as ei:
            c.optimize_topology()
        assert ei.value.code == qccl.Result.INVALID_USAGE


def test_closed_communicator_is_invalid_usage(probing_master):
    c = qccl.Communicator(probing_master.address)
    c.connect(timeout=30)
    c.close()
    with pytest.raises(qccl.InvalidUsageError, match="closed"):
        c.optimize_topology()
    never_connected = qccl.Communicator(probing_master.address)
    never_connected.close()
    with pytest.raises(qccl.InvalidUsageError, match="closed"):
        never_connected.optimize_topology()


def test_all_reduce_in_flight_is_invalid_usage(comms_factory):
    a, b = comms_factory(2)
    x, y = np.ones(64), np.full(64, 2.0)
    op = a.all_reduce_async(x)  # b has not joined it yet: it stays in flight
    with pytest.raises(qccl.InvalidUsageError):
        a.optimize_topology()
    b.all_reduce(y)
    op.wait()
    np.testing.assert_array_equal(x, np.full(64, 3.0))
    parallel([a.optimize_topology, b.optimize_topology], timeout=60)  # usable again


# ---- master options ----

def test_master_probe_options_are_checked():
    for name in ("probe_ms", "probe_max_age_ms"):
        with pytest.raises(ValueError):
            qccl.Master("127.0.0.1:0", **{name: -1})
        with pytest.raises(ValueError):
            qccl.Master("127.0.0.1:0", **{name: 2**32})
        with pytest.raises(TypeError):
            qccl.Master("127.0.0.1:0", **{name: "50"})
        with pytest.raises(TypeError):
            qccl.Master("127.0.0.1:0", **{name: True})
    # The C API's own limit: a probe is at most a minute.
    with pytest.raises(qccl.InvalidArgumentError, match="probe_ms"):
        qccl.Master("127.0.0.1:0", probe_ms=60001)
    for kwargs in ({"probe_ms": 60000}, {"probe_ms": 1, "probe_max_age_ms": 1},
                   {"probe_ms": 0, "probe_max_age_ms": 0}):
        qccl.Master("127.0.0.1:0", **kwargs).close()
