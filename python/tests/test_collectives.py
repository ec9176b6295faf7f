"""broadcast, all_gather, all_gather_v, reduce_scatter and barrier (and their _async forms)
from Python: torch and NumPy buffers, exact results, what the info reports (epoch, peers in
ring order, counts), errors raised on every peer alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qccl

from conftest import parallel, parallel_outcomes


@pytest.fixture
def trio(group_factory):
    return group_factory(3)


def test_broadcast_torch_and_numpy_from_every_root(trio):
    for root in trio:
        for make in (lambda: torch.zeros(1001, dtype=torch.float64),
                     lambda: np.zeros(1001, dtype=np.int16)):
            bufs = [make() for _ in trio]
            bufs[trio.index(root)][:] = 7
            infos = parallel([lambda c=c, b=b: c.broadcast(b, root=root.peer_id)
                              for c, b in zip(trio, bufs)])
            for b in bufs:
                assert (b == 7).all()
            assert {i.world_size for i in infos} == {3}
            assert all(i.peers == infos[0].peers and len(i.peers) == 3 for i in infos)
            assert all(i.epoch == infos[0].epoch > 0 for i in infos)


def test_all_gather_orders_blocks_by_info_peers(trio):
    outs = [torch.full((3, 4), -1, dtype=torch.int32) for _ in trio]
    infos = parallel([lambda c=c, o=o: c.all_gather(torch.full((4,), c.peer_id,
                                                               dtype=torch.int32), o)
                      for c, o in zip(trio, outs)])
    for o, info in zip(outs, infos):
        assert [int(row[0]) for row in o] == list(info.peers)
        assert (o == o[:, :1]).all()
    assert infos[0].peers == tuple(p.peer_id for p in trio[0].peers())


def test_all_gather_v_counts_with_an_empty_contribution(trio):
    sizes = {c.peer_id: n for c, n in zip(trio, (0, 5, 2))}
    outs = [np.full(10, -1.0, dtype=np.float32) for _ in trio]
    infos = parallel([lambda c=c, o=o: c.all_gather_v(
        np.full(sizes[c.peer_id], c.peer_id, dtype=np.float32), o) for c, o in zip(trio, outs)])
    for o, info in zip(outs, infos):
        assert info.counts == tuple(sizes[p] for p in info.peers)
        expect = np.concatenate([np.full(sizes[p], p, dtype=np.float32) for p in info.peers])
        np.testing.assert_array_equal(o[:7], expect)
        assert (o[7:] == -1).all()


def test_reduce_scatter_gives_ring_rank_r_block_r(trio):
    n = 3
    x = [torch.arange(10, dtype=torch.float32) * (i + 1) for i in range(n)]
    outs = [torch.zeros(4) for _ in trio]
    infos = parallel([lambda c=c, t=t, o=o: c.reduce_scatter(t, o)
                      for c, t, o in zip(trio, x, outs)])
    total = sum(x)
    blocks = torch.tensor_split(total, n)  # 4, 3, 3: the first 10 % 3 blocks one larger
    for c, o, info in zip(trio, outs, infos):
        r = info.peers.index(c.peer_id)
        assert torch.equal(o[:len(blocks[r])], blocks[r])


def test_reduce_scatter_quantized_matches_the_all_reduce_block(trio):
    q = qccl.Quantization(qccl.QuantAlgorithm.MIN_MAX, qccl.DataType.UINT8)
    gen = torch.Generator().manual_seed(5)
    x = [torch.randn(5000, generator=gen) for _ in trio]
    rs = [torch.zeros(1667) for _ in trio]
    infos = parallel([lambda c=c, t=t, o=o: c.reduce_scatter(t, o, quantization=q, tag=1)
                      for c, t, o in zip(trio, x, rs)])
    ar = [t.clone() for t in x]
    parallel([lambda c=c, t=t: c.all_reduce(t, quantization=q, tag=2) for c, t in zip(trio, ar)])
    for c, o, a, info in zip(trio, rs, ar, infos):
        r = info.peers.index(c.peer_id)
        block = torch.tensor_split(a, 3)[r]
        assert torch.equal(o[:len(block)], block)


def test_async_forms_and_barrier(trio):
    ops = []
    bufs = []
    for c in trio:
        b = torch.full((8,), float(c.peer_id))
        bufs.append(b)
        ops.append((c.broadcast_async(b, root=trio[0].peer_id, tag=1), c.barrier_async(tag=2)))
    for bop, barrier in ops:
        assert bop.wait().world_size == 3
        assert barrier.wait().world_size == 3
    for b in bufs:
        assert (b == trio[0].peer_id).all()


def test_errors_reach_every_peer_alike(trio):
    # A root that is not in the group.
    outs = parallel_outcomes([lambda c=c: c.broadcast(torch.ones(3), root=123456)
                              for c in trio])
    assert all(isinstance(o.error, qccl.InvalidArgumentError) for o in outs), outs
    # One peer's out is too small for the group.
    outs = parallel_outcomes([lambda c=c, i=i: c.all_gather(torch.ones(4),
                                                            torch.zeros(8 if i == 0 else 12))
                              for i, c in enumerate(trio)])
    assert all(isinstance(o.error, qccl.InvalidArgumentError) for o in outs), outs
    # Different kinds under one tag.
    outs = parallel_outcomes([lambda c=c, i=i: (c.barrier(tag=9) if i == 0 else
                                                 c.all_gather(torch.ones(1), torch.zeros(3),
                                                              tag=9))
                              for i, c in enumerate(trio)])
    assert all(isinstance(o.error, qccl.MismatchError) for o in outs), outs
    # The group goes on.
    assert [i.world_size for i in parallel([c.barrier for c in trio])] == [3, 3, 3]
    with pytest.raises(TypeError):
        trio[0].all_gather(torch.ones(1), None)
    with pytest.raises(TypeError):
        trio[0].all_gather(torch.ones(1, dtype=torch.int32), torch.zeros(3))


def test_run_multiple_with_retry_mixes_kinds(trio):
    results = []

    def one(c):
        ring = [p.peer_id for p in c.peers()]
        ar = torch.ones(100)
        bc = torch.full((10,), float(c.peer_id))
        gathered = torch.zeros(6, dtype=torch.int64)
        got_v = np.zeros(3, dtype=np.float64)
        counts = []
        rs = torch.zeros(34)
        info = c.run_multiple_with_retry([
            ("all_reduce", ar, {"tag": 1}),
            ("broadcast", bc, {"root": ring[2], "tag": 2}),
            ("all_gather", torch.full((2,), c.peer_id, dtype=torch.int64), gathered, {"tag": 3}),
            ("all_gather_v", np.ones(ring.index(c.peer_id)), got_v, {"tag": 4,
                                                                      "counts": counts}),
            ("reduce_scatter", torch.ones(100), rs, {"tag": 5}),
            ("barrier", {"tag": 6}),
        ], max_in_flight=2)
        block = len(torch.tensor_split(torch.ones(100), 3)[ring.index(c.peer_id)])
        results.append((ring, ar, bc, gathered, got_v, counts, rs[:block], info))

    parallel([lambda c=c: one(c) for c in trio])
    for ring, ar, bc, gathered, got_v, counts, rs, info in results:
        assert info.world_size == 3
        assert (ar == 3).all() and (bc == ring[2]).all()
        assert gathered.tolist() == [ring[0]] * 2 + [ring[1]] * 2 + [ring[2]] * 2
        assert counts == [0, 1, 2] and (got_v == 1).all()
        assert (rs == 3).all()
    with pytest.raises(TypeError, match="ops\\[0\\]"):
        trio[0].run_multiple_with_retry([("all_to_all", torch.ones(1))])
