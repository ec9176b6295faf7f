"""qccl.SharedState + Communicator.sync_shared_state: identical states, divergent states, a
late joiner downloading the state, allow_content_inequality, mismatch and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qccl

from conftest import admit, parallel, parallel_outcomes


def model(seed: int):
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(64, 32, generator=g),
        "w_bf16": torch.randn(100, generator=g).to(torch.bfloat16),
        "step": np.array([seed], dtype=np.int64),
        "bytes": bytearray(range(16)),
    }


def same(a, b) -> bool:
    return bytes(memoryview(np.asarray(a) if not isinstance(a, torch.Tensor)
                            else a.view(torch.uint8).numpy())) == \
        bytes(memoryview(np.asarray(b) if not isinstance(b, torch.Tensor)
                         else b.view(torch.uint8).numpy()))


def sync_all(comms, states, strategies=None):
    strategies = strategies or [qccl.SyncStrategy.ENFORCE_POPULAR] * len(comms)
    return parallel([lambda c=c, s=s, k=k: c.sync_shared_state(s, strategy=k)
                     for c, s, k in zip(comms, states, strategies)])


def test_identical_states_transfer_nothing(pair):
    states = [qccl.SharedState(model(1), revision=5) for _ in pair]
    infos = sync_all(pair, states)
    for st, info in zip(states, infos):
        assert st.revision == 5 == info.revision
        assert (info.tx_bytes, info.rx_bytes) == (0, 0)
    # Next sync: exactly one revision further.
    for st in states:
        st.revision += 1
    infos = sync_all(pair, states)
    assert [i.revision for i in infos] == [6, 6]


def test_divergent_content_converges(pair):
    states = [qccl.SharedState(model(1)), qccl.SharedState(model(2))]
    infos = sync_all(pair, states)
    for name in states[0].tensors:
        assert same(states[0][name], states[1][name]), name
    # One peer downloaded what the other served (tie: the longest-running peer wins).
    assert sorted([infos[0].rx_bytes, infos[1].rx_bytes])[0] == 0
    assert infos[0].tx_bytes + infos[1].tx_bytes == infos[0].rx_bytes + infos[1].rx_bytes > 0


def test_joiner_receives_the_state(master, group_factory):
    comms = group_factory(2)
    truth = model(3)
    states = [qccl.SharedState({k: (v.clone() if isinstance(v, torch.Tensor) else v.copy())
                                for k, v in truth.items()}, revision=10) for _ in comms]
    sync_all(comms, states)
    # A late peer with a blank state joins, then everyone syncs: it downloads the state.
    late = qccl.Communicator(master.address)
    try:
        admit(comms, [late])
        blank = qccl.SharedState({
            "w": torch.zeros(64, 32), "w_bf16": torch.zeros(100, dtype=torch.bfloat16),
            "step": np.zeros(1, dtype=np.int64), "bytes": bytearray(16)})
        for st in states:
            st.revision += 1
        infos = sync_all(comms + [late], states + [blank],
                         [qccl.SyncStrategy.ENFORCE_POPULAR] * 2 + [qccl.SyncStrategy.RECEIVE_ONLY])
        assert blank.revision == 11 and all(st.revision == 11 for st in states)
        for name in truth:
            assert same(blank[name], truth[name]), name
        expected = 64 * 32 * 4 + 100 * 2 + 8 + 16
        assert infos[2].rx_bytes == expected and infos[2].tx_bytes == 0
        assert infos[0].tx_bytes + infos[1].tx_bytes == expected
    finally:
        late.close()


def test_allow_content_inequality(pair):
    states = []
    for i in range(2):
        st = qccl.SharedState({"w": torch.full((8,), 1.0), "rng": torch.full((4,), float(i))},
                              allow_content_inequality={"rng"})
        states.append(st)
    assert states[0].allow_content_inequality == frozenset({"rng"})
    infos = sync_all(pair, states)
    assert [s["rng"][0].item() for s in states] == [0.0, 1.0]  # never compared nor transferred
    assert all((i.tx_bytes, i.rx_bytes) == (0, 0) for i in infos)
    states[0].set_allow_content_inequality("rng", False)
    assert states[0].allow_content_inequality == frozenset()
    with pytest.raises(KeyError):
        states[0].set_allow_content_inequality("nope")


def test_key_set_mismatch_changes_nothing(pair):
    states = [qccl.SharedState({"a": torch.ones(4)}), qccl.SharedState({"b": torch.zeros(4)})]
    outs = parallel_outcomes([lambda c=c, s=s: c.sync_shared_state(s)
                              for c, s in zip(pair, states)])
    assert all(isinstance(o.error, qccl.MismatchError) for o in outs), [o.error for o in outs]
    assert states[0]["a"].tolist() == [1.0] * 4 and states[1]["b"].tolist() == [0.0] * 4


def test_count_mismatch(pair):
    states = [qccl.SharedState({"a": torch.ones(4)}), qccl.SharedState({"a": torch.ones(5)})]
    outs = parallel_outcomes([lambda c=c, s=s: c.sync_shared_state(s)
                              for c, s in zip(pair, states)])
    assert all(isinstance(o.error, qccl.MismatchError) for o in outs)


def test_sync_with_ops_in_flight_is_invalid_usage(pair):
    a, b = pair
    op = a.all_reduce_async(torch.ones(4), tag=1)
    with pytest.raises(qccl.InvalidUsageError):
        a.sync_shared_state(qccl.SharedState({"x": torch.ones(2)}))
    b.all_reduce(torch.ones(4), tag=1)
    op.wait()


def test_shared_state_argument_errors(pair):
    c = pair[0]
    with pytest.raises(TypeError):
        qccl.SharedState([torch.ones(2)])
    with pytest.raises(TypeError):
        qccl.SharedState({1: torch.ones(2)})
    with pytest.raises(ValueError):
        qccl.SharedState({"a": torch.ones(2)}, revision=-1)
    with pytest.raises(ValueError, match="unknown"):
        qccl.SharedState({"a": torch.ones(2)}, allow_content_inequality=["b"])
    with pytest.raises(TypeError):
        c.sync_shared_state({"a": torch.ones(2)})
    with pytest.raises(ValueError):
        c.sync_shared_state(qccl.SharedState({"a": torch.ones(2)}), strategy=9)
    with pytest.raises(ValueError, match="not contiguous"):
        c.sync_shared_state(qccl.SharedState({"a": torch.ones(4, 4).t()}))
    with pytest.raises(ValueError, match="read-only"):
        c.sync_shared_state(qccl.SharedState({"a": b"abc"}))
    st = qccl.SharedState({"a": torch.ones(2)}, revision=3)
    assert len(st) == 1 and "revision=3" in repr(st)


def test_send_only_loser_is_kicked(pair):
    # Both assert they hold the truth with different contents: the tie goes to the
    # longest-running peer, the other is expelled (KickedError) and its communicator is done.
    states = [qccl.SharedState({"w": torch.full((16,), float(i))}, revision=1) for i in range(2)]
    outs = parallel_outcomes([lambda c=c, s=s: c.sync_shared_state(
        s, strategy=qccl.SyncStrategy.SEND_ONLY) for c, s in zip(pair, states)])
    kicked = [o for o in outs if o.error is not None]
    assert len(kicked) == 1, [o.error for o in outs]
    assert isinstance(kicked[0].error, qccl.KickedError)
    assert kicked[0].error.code == qccl.Result.KICKED
    loser = pair[[o.error is not None for o in outs].index(True)]
    with pytest.raises(qccl.QcclError):
        loser.all_reduce(torch.ones(2))
