"""Package surface: version, enums, exceptions, Master, Communicator lifecycle, attributes,
topology calls, close/destruction in any order."""

from __future__ import annotations

import builtins
import gc
import pickle
import socket
import time

import pytest

import qccl
from qccl import _qccl as C

from conftest import admit, join, parallel, spawn, wait_until


# ---- version and constants ----

def test_version_is_the_c_librarys():
    code = C.version_code()
    assert qccl.__version__ == f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    assert code == C.HEADER_VERSION_CODE  # the extension was built against this library


@pytest.mark.parametrize("enum_cls, table", [
    (qccl.Result, C.RESULTS), (qccl.DataType, C.DATA_TYPES), (qccl.ReduceOp, C.REDUCE_OPS),
    (qccl.QuantAlgorithm, C.QUANT_ALGORITHMS), (qccl.SyncStrategy, C.SYNC_STRATEGIES),
    (qccl.Attribute, C.ATTRIBUTES)])
def test_enums_match_the_header(enum_cls, table):
    assert {m.name: int(m) for m in enum_cls} == table


def test_dtype_sizes():
    sizes = {d.name: d.itemsize for d in qccl.DataType}
    assert sizes == {"UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "UINT32": 4, "INT32": 4,
                     "UINT64": 8, "INT64": 8, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT32": 4,
                     "FLOAT64": 8}


def test_quantization_value():
    q = qccl.Quantization(qccl.QuantAlgorithm.MIN_MAX, qccl.DataType.UINT8)
    assert q == qccl.Quantization(1, 0)
    assert isinstance(q.algorithm, qccl.QuantAlgorithm) and isinstance(q.dtype, qccl.DataType)
    with pytest.raises(ValueError):
        qccl.Quantization(99, 0)


# ---- exceptions ----

ERRORS = {
    "INVALID_ARGUMENT": qccl.InvalidArgumentError, "INVALID_USAGE": qccl.InvalidUsageError,
    "MASTER_UNREACHABLE": qccl.MasterUnreachableError, "PEER_LOST": qccl.PeerLostError,
    "TOO_FEW_PEERS": qccl.TooFewPeersError, "TIMEOUT": qccl.TimeoutError,
    "KICKED": qccl.KickedError, "MISMATCH": qccl.MismatchError,
    "AUTH_FAILED": qccl.AuthFailedError, "ABORTED": qccl.AbortedError,
    "INTERNAL_ERROR": qccl.InternalError}


def test_every_error_code_has_its_class():
    assert set(ERRORS) | {"SUCCESS"} == set(C.RESULTS)
    for name, cls in ERRORS.items():
        assert issubclass(cls, qccl.QcclError)
        e = cls("why")
        assert e.code == qccl.Result[name] and str(e) == "why"
        assert qccl._errors.error_class(C.RESULTS[name]) is cls
        again = pickle.loads(pickle.dumps(e))
        assert type(again) is cls and again.code == e.code and str(again) == "why"


def test_errors_are_also_the_matching_builtins():
    assert issubclass(qccl.InvalidArgumentError, ValueError)
    assert issubclass(qccl.TimeoutError, builtins.TimeoutError)
    assert qccl.TimeoutError is not builtins.TimeoutError
    assert qccl.PeerLostError.__module__ == "qccl"


def test_c_error_carries_code_and_last_error_message():
    with pytest.raises(qccl.InvalidArgumentError) as ei:
        qccl.Communicator("no port here")
    assert ei.value.code == qccl.Result.INVALID_ARGUMENT
    assert "qcclCommCreate" in str(ei.value) and "no port here" in str(ei.value)


# ---- master ----

def test_master_start_port_stop_close():
    m = qccl.Master("127.0.0.1:0")
    assert m.start() is m
    assert 0 < m.port < 65536
    assert m.address == f"127.0.0.1:{m.port}"
    with pytest.raises(qccl.InvalidUsageError):
        m.start()
    m.stop()
    m.wait()
    m.close()
    m.close()  # idempotent
    assert m.closed
    with pytest.raises(qccl.InvalidUsageError):
        m.port


def test_master_wait_releases_the_gil_and_stop_ends_it():
    with qccl.Master("127.0.0.1:0") as m:
        m.start()
        t, out = spawn(m.wait)
        counter = 0
        while counter < 10000:  # runs only if wait() released the GIL
            counter += 1
        assert not out.done.is_set()
        m.stop()
        join([(t, out)], 10)[0].get()


def test_master_close_ends_a_wait_in_another_thread():
    m = qccl.Master("127.0.0.1:0").start()
    t, out = spawn(m.wait)
    m.close()
    join([(t, out)], 10)[0].get()


def test_master_bad_address_and_port_in_use():
    with pytest.raises(qccl.InvalidArgumentError):
        qccl.Master("not an address")
    with pytest.raises(TypeError):
        qccl.Master(1234)
    with pytest.raises(ValueError):
        qccl.Master("127.0.0.1:0", peer_timeout_ms=-1)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        with qccl.Master(f"127.0.0.1:{s.getsockname()[1]}") as m:
            with pytest.raises(qccl.InvalidArgumentError, match="bind|use"):
                m.start()
    finally:
        s.close()


# ---- communicator lifecycle ----

def test_communicator_argument_checks(master):
    with pytest.raises(TypeError):
        qccl.Communicator(None)
    with pytest.raises(ValueError):
        qccl.Communicator(master.address, peer_group=-1)
    with pytest.raises(TypeError):
        qccl.Communicator(master.address, connections_per_peer="4")
    with pytest.raises(TypeError):
        qccl.Communicator(master.address, auth_token=b"x")
    with qccl.Communicator(master.address) as c:
        with pytest.raises(ValueError):
            c.connect(timeout=0)
        with pytest.raises(TypeError):
            c.connect(timeout="1")


def test_calls_before_connect_are_invalid_usage(master):
    with qccl.Communicator(master.address) as c:
        assert "not connected" in repr(c)
        for call in (c.update_topology, c.are_peers_pending, lambda: c.world_size,
                     lambda: c.all_reduce(bytearray(4))):
            with pytest.raises(qccl.InvalidUsageError):
                call()


def test_single_peer_attributes_and_too_few_peers(master):
    with qccl.Communicator(master.address, peer_group=3) as c:
        c.connect()
        assert c.world_size == 1 and c.group_world_size == 1
        assert c.ring_rank == 0 and c.peer_group == 3
        assert c.get_attribute(qccl.Attribute.NUM_GROUPS) == 1
        assert c.get_attribute(qccl.Attribute.LARGEST_GROUP_SIZE) == 1
        assert c.epoch >= 1
        with pytest.raises(ValueError):
            c.get_attribute(42)
        with pytest.raises(qccl.TooFewPeersError) as ei:
            c.all_reduce(bytearray(8))
        assert ei.value.code == qccl.Result.TOO_FEW_PEERS
        assert str(ei.value).count("qcclAllReduce") == 1, str(ei.value)  # named once
        with pytest.raises(qccl.InvalidUsageError):
            c.connect()  # already connected


def test_connect_to_nothing_is_master_unreachable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    with qccl.Communicator(f"127.0.0.1:{port}") as c:
        with pytest.raises((qccl.MasterUnreachableError, qccl.TimeoutError)):
            c.connect(timeout=5)


def test_connect_timeout_then_retry_succeeds(master):
    first = qccl.Communicator(master.address)
    late = qccl.Communicator(master.address)
    try:
        first.connect()
        # Nobody calls update_topology: the late peer is never admitted.
        with pytest.raises(qccl.TimeoutError) as ei:
            late.connect(timeout=0.3)
        assert isinstance(ei.value, builtins.TimeoutError)
        admit([first], [late])
        assert first.world_size == late.world_size == 2
    finally:
        late.close()
        first.close()


def test_wait_for_world_and_admit_pending(master):
    first = qccl.Communicator(master.address)
    late = qccl.Communicator(master.address)
    try:
        first.connect()
        with pytest.raises(qccl.InvalidArgumentError):
            first.wait_for_world(0)
        assert first.admit_pending() is False  # alone, nobody waiting
        t0 = time.monotonic()
        with pytest.raises(qccl.TimeoutError) as ei:
            first.wait_for_world(2, timeout=0.3)  # nobody comes
        assert time.monotonic() - t0 < 5
        assert "qcclWaitForWorld: the group has 1 of the 2 peers" in str(ei.value)
        assert str(ei.value).count("qcclWaitForWorld") == 1  # the call is named once
        joining = spawn(late.connect)
        first.wait_for_world(2, timeout=30)  # admits the late peer once it has registered
        join([joining], 30)[0].get()
        late.wait_for_world(2, timeout=30)  # already there: returns at once, no vote
        assert first.world_size == late.world_size == 2
        # The same loop head on both: the newcomer's first admit_pending is an ordinary vote
        # here, since the other one votes too.
        assert parallel([first.admit_pending, late.admit_pending]) == [False, False]
    finally:
        late.close()
        first.close()


def test_addressing_keywords_peers_and_peer_id(master, tmp_path, monkeypatch):
    a = qccl.Communicator(master.address, listen_address="127.0.0.1:0")
    b = qccl.Communicator(master.address, advertise_address="127.0.0.2")
    monkeypatch.setenv("QCCL_ADVERTISE_ADDRESS", "127.0.0.3")
    c = qccl.Communicator(master.address)  # from the environment
    monkeypatch.delenv("QCCL_ADVERTISE_ADDRESS")
    try:
        with pytest.raises(qccl.InvalidArgumentError, match="malformed listen address"):
            qccl.Communicator(master.address, listen_address="127.0.0.1")
        with pytest.raises(TypeError):
            qccl.Communicator(master.address, advertise_address=5)
        token = tmp_path / "token"
        token.write_text("secret\n")
        with pytest.raises(qccl.InvalidArgumentError, match="both set"):
            qccl.Communicator(master.address, auth_token="x", auth_token_file=str(token))
        a.connect()
        # Every accepted peer takes part in the admission votes: each waits for the world.
        joining = [spawn(lambda k=k: (k.connect(), k.wait_for_world(3, timeout=30)))
                   for k in (b, c)]
        a.wait_for_world(3, timeout=30)
        [o.get() for o in join(joining, 30)]
        peers = a.peers()
        assert [p.ring_rank for p in peers] == [0, 1, 2]
        assert all(isinstance(p, qccl.PeerInfo) for p in peers)
        hosts = {p.peer_id: p.address.rsplit(":", 1)[0] for p in peers}
        assert hosts == {a.peer_id: "127.0.0.1", b.peer_id: "127.0.0.2", c.peer_id: "127.0.0.3"}
        assert peers[a.ring_rank].peer_id == a.peer_id
        assert b.peers() == peers
        xs = [bytearray(b"\x01\x00\x00\x00"), bytearray(b"\x02\x00\x00\x00"),
              bytearray(b"\x04\x00\x00\x00")]
        parallel([lambda x=x, k=k: k.all_reduce(memoryview(x).cast("i")) for x, k in
                  zip(xs, (a, b, c))])
        assert all(int.from_bytes(x, "little") == 7 for x in xs)
    finally:
        for x in (a, b, c):
            x.close()


def test_admission_topology_and_groups(master):
    a = qccl.Communicator(master.address, peer_group=0)
    b = qccl.Communicator(master.address, peer_group=1)
    c = qccl.Communicator(master.address, peer_group=1)
    try:
        a.connect()
        e0 = a.epoch
        admit([a], [b, c])
        assert a.epoch > e0
        assert [x.world_size for x in (a, b, c)] == [3, 3, 3]
        assert [x.group_world_size for x in (a, b, c)] == [1, 2, 2]
        assert all(x.get_attribute(qccl.Attribute.NUM_GROUPS) == 2 for x in (a, b, c))
        assert all(x.get_attribute(qccl.Attribute.LARGEST_GROUP_SIZE) == 2 for x in (a, b, c))
        assert sorted([b.ring_rank, c.ring_rank]) == [0, 1]
        assert parallel([a.are_peers_pending, b.are_peers_pending, c.are_peers_pending]) == \
            [False, False, False]
        parallel([a.update_topology, b.update_topology, c.update_topology])
    finally:
        for x in (a, b, c):
            x.close()


def test_closed_communicator_refuses_calls(master):
    c = qccl.Communicator(master.address)
    c.connect()
    c.close()
    c.close()
    assert c.closed and "closed" in repr(c)
    for call in (c.connect, c.update_topology, lambda: c.epoch,
                 lambda: c.all_reduce(bytearray(4))):
        with pytest.raises(qccl.InvalidUsageError, match="closed"):
            call()


def test_other_peers_see_a_closed_peer_leave(pair):
    a, b = pair
    b.close()
    # The group shrinks (graceful leave): a's next collective fails fast instead of hanging.
    with pytest.raises((qccl.TooFewPeersError, qccl.PeerLostError)):
        for _ in range(3):
            a.all_reduce(bytearray(8))
    wait_until(lambda: a.world_size == 1, what="the leave to be seen")


def test_destruction_in_any_order_is_safe():
    m = qccl.Master("127.0.0.1:0").start()
    # Not resuming: the op in flight ends as soon as the master is gone (resuming, it would
    # wait for a new master, bounded by master_reconnect).
    comms = [qccl.Communicator(m.address, master_reconnect=0) for _ in range(2)]
    comms[0].connect()
    admit(comms[:1], comms[1:])
    op = comms[0].all_reduce_async(bytearray(16))  # in flight, never matched
    m.close()  # master first
    del m
    gc.collect()
    with pytest.raises(qccl.QcclError):
        op.wait()  # aborted or master lost: an error, never a crash
    del comms[1]  # dropped without close(): __del__ closes, never raises
    gc.collect()
    comms[0].close()
    del op
    gc.collect()


def test_unclosed_objects_are_closed_by_gc_without_raising(master):
    c = qccl.Communicator(master.address)
    c.connect()
    del c
    gc.collect()
    # The dropped peer left: a new one is the first of the run again, admitted at once.
    with qccl.Communicator(master.address) as d:
        d.connect(timeout=10)
        assert d.world_size == 1
