"""all_reduce / all_reduce_async / all_reduce_multiple_with_retry from Python: torch and NumPy
inputs of every dtype, other buffers, argument errors, C error mapping, quantization, GIL
release, async lifetimes, close with ops in flight, CUDA staging."""

from __future__ import annotations

import array
import gc
import threading
import weakref

import numpy as np
import pytest
import torch

import qccl

from conftest import join, parallel, parallel_outcomes, spawn, wait_until

TORCH_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                torch.bfloat16, torch.float32, torch.float64]
TORCH_DTYPES += [getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)]
NUMPY_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
                np.float16, np.float32, np.float64]


def reduce_all(comms, make, **kwargs):
    """Every peer i all-reduces make(i) (in place unless kwargs has out); returns
    (buffers, infos)."""
    bufs = [make(i) for i in range(len(comms))]
    infos = parallel([lambda c=c, b=b: c.all_reduce(b, **kwargs) for c, b in zip(comms, bufs)])
    return bufs, infos


# ---- every dtype ----

@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_torch_every_dtype_in_place(pair, dtype):
    bufs, infos = reduce_all(pair, lambda i: torch.full((3, 5), 1 + 2 * i, dtype=dtype))
    for b in bufs:
        assert b.dtype == dtype and b.shape == (3, 5)
        assert torch.equal(b, torch.full((3, 5), 4, dtype=dtype))
    for info in infos:
        assert info.world_size == 2 and info.tx_bytes > 0 and info.rx_bytes > 0


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=lambda d: np.dtype(d).name)
def test_numpy_every_dtype_in_place(pair, dtype):
    bufs, _ = reduce_all(pair, lambda i: np.full(7, 1 + 2 * i, dtype=dtype))
    for b in bufs:
        assert b.dtype == dtype
        np.testing.assert_array_equal(b, np.full(7, 4, dtype=dtype))


@pytest.mark.parametrize("op, expect", [
    (qccl.ReduceOp.SUM, [5.0, 3.0]), (qccl.ReduceOp.AVG, [2.5, 1.5]),
    (qccl.ReduceOp.PROD, [6.0, 2.0]), (qccl.ReduceOp.MAX, [3.0, 2.0]),
    (qccl.ReduceOp.MIN, [2.0, 1.0])])
def test_every_op(pair, op, expect):
    vals = [[2.0, 1.0], [3.0, 2.0]]
    bufs, _ = reduce_all(pair, lambda i: torch.tensor(vals[i], dtype=torch.float32), op=op)
    for b in bufs:
        assert b.tolist() == expect


def test_other_buffer_types(pair):
    bufs, _ = reduce_all(pair, lambda i: bytearray([i + 1] * 5))
    assert [list(b) for b in bufs] == [[3] * 5] * 2
    bufs, _ = reduce_all(pair, lambda i: array.array("d", [0.5 * (i + 1)] * 3))
    assert [list(b) for b in bufs] == [[1.5] * 3] * 2
    bufs, _ = reduce_all(pair, lambda i: memoryview(np.full((2, 2), i + 1, dtype=np.int32)))
    assert [b.tolist() for b in bufs] == [[[3, 3], [3, 3]]] * 2


def test_stats_account_for_each_operation(pair):
    before = [c.stats() for c in pair]
    n = 64 * 1024
    bufs, first = reduce_all(pair, lambda i: torch.full((n,), float(i + 1)))
    assert all(torch.equal(b, torch.full((n,), 3.0)) for b in bufs)
    _, second = reduce_all(pair, lambda i: torch.ones(n))
    for c, b, i1, i2 in zip(pair, before, first, second):
        d = c.stats() - b
        assert isinstance(d, qccl.Stats) and d.ops == 2
        assert d.tx_bytes == i1.tx_bytes + i2.tx_bytes and d.rx_bytes == i1.rx_bytes + i2.rx_bytes
        assert d.data_ns > 0 and d.commit_ns > 0 and d.thread_cpu_ns > 0
        assert 0 <= d.frame_work_ns <= d.data_ns


def test_zero_copy(pair):
    t = [torch.ones(4), torch.ones(4)]
    ptrs = [x.data_ptr() for x in t]
    parallel([lambda i=i: pair[i].all_reduce(t[i]) for i in range(2)])
    assert [x.data_ptr() for x in t] == ptrs and t[0].tolist() == [2.0] * 4
    a = [np.ones(4), np.ones(4)]
    views = [x[1:3] for x in a]  # contiguous slices: reduced in place in the parent array
    parallel([lambda i=i: pair[i].all_reduce(views[i]) for i in range(2)])
    assert a[0].tolist() == [1.0, 2.0, 2.0, 1.0]


def test_zero_elements(pair):
    bufs, infos = reduce_all(pair, lambda i: torch.empty(0))
    assert all(b.numel() == 0 for b in bufs)


def test_large_tensor(pair):
    n = 1 << 20
    bufs, infos = reduce_all(pair, lambda i: torch.full((n,), float(i + 1)))
    assert all(bool((b == 3).all()) for b in bufs)
    assert all(info.tx_bytes >= n * 4 // 2 for info in infos)


# ---- out-of-place ----

def test_out_of_place_torch_numpy_and_mixed(pair):
    sends = [torch.arange(6, dtype=torch.int32) * (i + 1) for i in range(2)]
    keep = [s.clone() for s in sends]
    outs = [torch.empty(6, dtype=torch.int32), np.empty(6, dtype=np.int32)]
    parallel([lambda i=i: pair[i].all_reduce(sends[i], out=outs[i]) for i in range(2)])
    assert [torch.equal(s, k) for s, k in zip(sends, keep)] == [True, True]  # send untouched
    assert outs[0].tolist() == [0, 3, 6, 9, 12, 15] and outs[1].tolist() == outs[0].tolist()


def test_read_only_send_with_out(pair):
    outs = [bytearray(3), bytearray(3)]
    parallel([lambda i=i: pair[i].all_reduce(bytes([1, 2, 3]), out=outs[i]) for i in range(2)])
    assert [list(o) for o in outs] == [[2, 4, 6]] * 2


def test_out_must_match(pair):
    c = pair[0]
    with pytest.raises(ValueError, match="shape"):
        c.all_reduce(torch.zeros(4), out=torch.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        c.all_reduce(torch.zeros(4), out=torch.zeros(2, 2))
    with pytest.raises(TypeError, match="dtype"):
        c.all_reduce(torch.zeros(4), out=torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="read-only"):
        c.all_reduce(torch.zeros(3, dtype=torch.uint8), out=bytes(3))


# ---- argument errors (raised before anything is sent) ----

def test_bad_buffers(pair):
    c = pair[0]
    with pytest.raises(ValueError, match="not contiguous"):
        c.all_reduce(torch.zeros(4, 4).t())
    with pytest.raises(ValueError, match="not C-contiguous"):
        c.all_reduce(np.zeros((4, 4))[:, ::2])
    with pytest.raises(TypeError, match="torch dtype torch.bool"):
        c.all_reduce(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="complex"):
        c.all_reduce(torch.zeros(4, dtype=torch.complex64))
    with pytest.raises(TypeError, match="no qccl dtype"):
        c.all_reduce(np.zeros(4, dtype=np.bool_))
    with pytest.raises(TypeError, match="no qccl dtype"):
        c.all_reduce(np.zeros(4, dtype=np.complex64))
    with pytest.raises(TypeError, match="byte order"):
        c.all_reduce(np.zeros(4, dtype=">f4"))
    with pytest.raises(TypeError, match="buffer protocol"):
        c.all_reduce([1.0, 2.0])
    with pytest.raises(ValueError, match="read-only"):
        c.all_reduce(b"abc")  # in place on bytes
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        c.all_reduce(ro)
    with pytest.raises(TypeError, match="layout"):
        c.all_reduce(torch.zeros(4).to_sparse())
    with pytest.raises(ValueError, match="device"):
        c.all_reduce(torch.zeros(4, device="meta"))


def test_bad_descriptor_arguments(pair):
    c = pair[0]
    t = torch.zeros(4)
    with pytest.raises(ValueError, match="op"):
        c.all_reduce(t, op=17)
    with pytest.raises(ValueError, match="tag"):
        c.all_reduce(t, tag=-1)
    with pytest.raises(TypeError, match="tag"):
        c.all_reduce(t, tag=1.5)
    with pytest.raises(TypeError, match="quantization"):
        c.all_reduce(t, quantization="uint8")


def test_c_invalid_argument_is_mapped(pair):
    c = pair[0]
    a = np.zeros(16, dtype=np.float32)
    with pytest.raises(qccl.InvalidArgumentError, match="overlap") as ei:
        c.all_reduce(a[0:8], out=a[4:12])  # partial overlap: refused by the C API
    assert isinstance(ei.value, ValueError) and ei.value.code == qccl.Result.INVALID_ARGUMENT
    # Quantizing integers is not supported (docs/quantization.md): refused on this peer alone.
    with pytest.raises(qccl.InvalidArgumentError):
        c.all_reduce(torch.zeros(8, dtype=torch.int32),
                     quantization=qccl.Quantization(qccl.QuantAlgorithm.MIN_MAX,
                                                    qccl.DataType.UINT8))


# ---- errors from the group ----

def test_mismatch_on_every_peer(pair):
    sizes = [10, 12]
    bufs = [torch.ones(n) for n in sizes]
    outs = parallel_outcomes([lambda i=i: pair[i].all_reduce(bufs[i]) for i in range(2)])
    for o in outs:
        assert isinstance(o.error, qccl.MismatchError), o.error
        assert o.error.code == qccl.Result.MISMATCH
    assert all(bool((b == 1).all()) for b in bufs)  # nothing changed
    # The communicators stay usable.
    bufs, _ = reduce_all(pair, lambda i: torch.ones(3))
    assert bufs[0].tolist() == [2.0] * 3


def test_mismatched_dtype_and_op(pair):
    outs = parallel_outcomes([lambda: pair[0].all_reduce(torch.ones(4, dtype=torch.float32)),
                              lambda: pair[1].all_reduce(torch.ones(4, dtype=torch.int32))])
    assert all(isinstance(o.error, qccl.MismatchError) for o in outs)
    outs = parallel_outcomes([lambda: pair[0].all_reduce(torch.ones(4), op=qccl.ReduceOp.MAX),
                              lambda: pair[1].all_reduce(torch.ones(4), op=qccl.ReduceOp.SUM)])
    assert all(isinstance(o.error, qccl.MismatchError) for o in outs)


# ---- quantization (docs/quantization.md) ----

def _quantized_round(pair, quantization):
    n = 8192
    gen = torch.Generator().manual_seed(7)
    data = [torch.randn(n, generator=gen) for _ in range(2)]
    exact = data[0] + data[1]
    plain = parallel([lambda i=i: pair[i].all_reduce(data[i].clone(), tag=1) for i in range(2)])
    bufs = [d.clone() for d in data]
    infos = parallel([lambda i=i: pair[i].all_reduce(bufs[i], tag=2, quantization=quantization)
                      for i in range(2)])
    return exact, bufs, plain, infos


@pytest.mark.parametrize("quantization", [
    qccl.Quantization(qccl.QuantAlgorithm.MIN_MAX, qccl.DataType.UINT8),
    qccl.Quantization(qccl.QuantAlgorithm.ZERO_POINT_SCALE, qccl.DataType.UINT8),
    qccl.Quantization(qccl.QuantAlgorithm.NONE, qccl.DataType.BFLOAT16)],
    ids=["minmax-u8", "zps-u8", "downcast-bf16"])
def test_quantized_all_reduce(pair, quantization):
    exact, bufs, plain, infos = _quantized_round(pair, quantization)
    # Bit parity: every peer holds byte-identical results.
    assert bufs[0].numpy().tobytes() == bufs[1].numpy().tobytes()
    # Fewer bytes on the wire than the float32 all-reduce.
    for p, q in zip(plain, infos):
        assert q.world_size == 2
        assert q.tx_bytes < p.tx_bytes and q.rx_bytes < p.rx_bytes
    # Close to the exact sum (8 bits over a range of about 8: well within 0.5).
    assert float((bufs[0] - exact).abs().max()) < 0.5


def test_quantization_mismatch(pair):
    q = qccl.Quantization(qccl.QuantAlgorithm.NONE, qccl.DataType.BFLOAT16)
    outs = parallel_outcomes([lambda: pair[0].all_reduce(torch.ones(8), quantization=q),
                              lambda: pair[1].all_reduce(torch.ones(8))])
    assert all(isinstance(o.error, qccl.MismatchError) for o in outs), [o.error for o in outs]


# ---- async ----

def test_async_wait_done_test_and_repeat_wait(pair):
    bufs = [torch.full((5,), float(i + 1)) for i in range(2)]
    op0 = pair[0].all_reduce_async(bufs[0], tag=3)
    assert isinstance(op0, qccl.AllReduceOp)
    assert op0.done() is False  # peer 1 has not started: cannot be done
    op1 = pair[1].all_reduce_async(bufs[1], tag=3)
    info = op0.wait()
    assert info == op0.wait()  # same info again
    assert op0.done() and op0.test() and "done" in repr(op0)
    assert op1.wait().world_size == 2
    assert bufs[0].tolist() == bufs[1].tolist() == [3.0] * 5


def test_async_several_tags_in_flight(pair):
    n = 4
    bufs = [[torch.full((100,), float(k + i)) for k in range(n)] for i in range(2)]
    ops = [[pair[i].all_reduce_async(bufs[i][k], tag=k) for k in range(n)] for i in range(2)]
    for i in range(2):
        for k in reversed(range(n)):
            ops[i][k].wait()
    for k in range(n):
        assert bufs[0][k].tolist() == [float(2 * k + 1)] * 100


def test_async_error_is_raised_by_wait_every_time(pair):
    ops = [pair[0].all_reduce_async(torch.ones(4)), pair[1].all_reduce_async(torch.ones(6))]
    for op in ops:
        for _ in range(2):
            with pytest.raises(qccl.MismatchError):
                op.wait()


def test_async_same_tag_in_flight_is_invalid_usage(pair):
    op = pair[0].all_reduce_async(torch.ones(4), tag=9)
    with pytest.raises(qccl.InvalidUsageError):
        pair[0].all_reduce_async(torch.ones(4), tag=9)
    pair[1].all_reduce(torch.ones(4), tag=9)
    op.wait()


def test_async_keeps_tensors_alive_until_waited(pair):
    send = torch.full((1000,), 1.0)
    out = torch.empty(1000)
    ref = weakref.ref(send)
    op = pair[0].all_reduce_async(send, out=out, tag=1)
    del send
    gc.collect()
    assert ref() is not None  # held by the op
    other = pair[1].all_reduce_async(torch.full((1000,), 2.0), tag=1)
    op.wait()
    other.wait()
    assert out.tolist() == [3.0] * 1000
    del op
    gc.collect()
    assert ref() is None  # released once waited and dropped


def test_async_in_place_tensor_dropped_by_caller(pair):
    ops = [pair[i].all_reduce_async(torch.full((4096,), float(i + 1))) for i in range(2)]
    gc.collect()  # the caller holds no tensor at all now
    assert all(op.wait().world_size == 2 for op in ops)


def test_async_op_dropped_without_wait(pair):
    buf = np.zeros(64, dtype=np.int64)
    pair[0].all_reduce_async(np.ones(64, dtype=np.int64), out=buf, tag=5)  # dropped at once
    gc.collect()  # does not block: a background thread waits for the op
    pair[1].all_reduce(np.ones(64, dtype=np.int64), tag=5)
    wait_until(lambda: buf.tolist() == [2] * 64, what="the dropped op to complete")


def test_close_with_ops_in_flight_makes_wait_raise(pair):
    a, b = pair
    op = a.all_reduce_async(torch.ones(16), tag=2)  # b never joins it
    assert not op.done()
    a.close()
    with pytest.raises((qccl.AbortedError, qccl.PeerLostError, qccl.TooFewPeersError)) as ei:
        op.wait()
    assert ei.value.code in (qccl.Result.ABORTED, qccl.Result.PEER_LOST,
                             qccl.Result.TOO_FEW_PEERS)
    with pytest.raises(qccl.InvalidUsageError):
        a.all_reduce_async(torch.ones(16))


def test_close_waits_for_a_blocking_call_in_another_thread(pair):
    a, b = pair
    t_red, red = spawn(lambda: a.all_reduce(torch.ones(8), tag=4))
    wait_until(lambda: a._c.active_calls == 1, what="a's all-reduce to start")
    t_close, closing = spawn(a.close)
    wait_until(lambda: a._c.closed, what="close() to start")
    assert not closing.done.is_set() and not red.done.is_set()
    # close() must not free the handle under the running call: it waits for it...
    b.all_reduce(torch.ones(8), tag=4)  # ...which now completes
    assert join([(t_red, red)])[0].get().world_size == 2
    join([(t_close, closing)])[0].get()
    assert a.closed


# ---- GIL ----

def test_blocking_all_reduce_releases_the_gil(pair):
    """A thread blocked in all_reduce (waiting for a peer that only starts once Python code
    made progress on another thread) must not hold the GIL."""
    a, b = pair
    entered = threading.Event()

    def blocked():
        entered.set()
        return a.all_reduce(torch.ones(32), tag=6)

    t, out = spawn(blocked)
    entered.wait(10)
    counter = 0
    while counter < 200000:  # pure Python: runs only while the other thread is off the GIL
        counter += 1
    assert not out.done.is_set()  # it cannot finish before b joins
    b.all_reduce(torch.ones(32), tag=6)
    assert join([(t, out)])[0].get().world_size == 2


def test_async_wait_releases_the_gil(pair):
    a, b = pair
    op = a.all_reduce_async(torch.ones(32), tag=8)
    t, out = spawn(op.wait)
    counter = 0
    while counter < 100000:
        counter += 1
    assert not out.done.is_set()
    b.all_reduce(torch.ones(32), tag=8)
    join([(t, out)])[0].get()


# ---- all_reduce_multiple_with_retry ----

def test_multiple_with_retry(pair):
    def ops_for(i):
        return [
            (torch.full((10,), float(i + 1)), None),
            (np.full(5, i + 1, dtype=np.int64), np.zeros(5, dtype=np.int64), {"tag": 7}),
            (torch.full((3,), float(i + 2), dtype=torch.bfloat16), None,
             {"op": qccl.ReduceOp.MAX, "tag": 8}),
        ]
    ops = [ops_for(i) for i in range(2)]
    infos = parallel([lambda i=i: pair[i].all_reduce_multiple_with_retry(ops[i], max_in_flight=2)
                      for i in range(2)])
    for i in range(2):
        assert ops[i][0][0].tolist() == [3.0] * 10
        assert ops[i][1][1].tolist() == [3] * 5
        assert ops[i][2][0].tolist() == [3.0] * 3
        assert infos[i].world_size == 2 and infos[i].tx_bytes > 0


def test_multiple_with_retry_argument_errors(pair):
    c = pair[0]
    with pytest.raises(ValueError):
        c.all_reduce_multiple_with_retry([(torch.ones(2), None)], max_in_flight=0)
    with pytest.raises(TypeError):
        c.all_reduce_multiple_with_retry([torch.ones(2)])
    with pytest.raises(TypeError, match="unknown descriptor keys"):
        c.all_reduce_multiple_with_retry([(torch.ones(2), None, {"count": 2})])
    with pytest.raises(qccl.InvalidArgumentError, match="tag"):
        c.all_reduce_multiple_with_retry([(torch.ones(2), None, {"tag": 1}),
                                          (torch.ones(2), None, {"tag": 1})])
    assert c.all_reduce_multiple_with_retry([]).world_size >= 0


# ---- CUDA ----

@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device here: the CUDA staging path is tested where a GPU exists")
def test_cuda_tensors_are_staged_through_host_memory(pair):
    bufs, _ = reduce_all(pair, lambda i: torch.full((1000,), float(i + 1), device="cuda"))
    assert all(b.is_cuda and bool((b == 3).all()) for b in bufs)
    sends = [torch.full((10,), float(i + 1), device="cuda") for i in range(2)]
    outs = [torch.empty(10, device="cuda"), torch.empty(10)]
    parallel([lambda i=i: pair[i].all_reduce(sends[i], out=outs[i]) for i in range(2)])
    assert outs[0].is_cuda and outs[0].tolist() == outs[1].tolist() == [3.0] * 10
    ops = [pair[i].all_reduce_async(torch.ones(8, device="cuda") * (i + 1), tag=3)
           for i in range(2)]
    assert all(op.wait().world_size == 2 for op in ops)
