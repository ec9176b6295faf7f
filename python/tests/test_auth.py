"""Shared-secret authentication from Python: a master and peers with the same auth_token work
(all-reduce, shared state, link probes); a peer with another token, or none, gets
AuthFailedError at once; a peer with a token refuses a master without one; encryption (on
with a secret) must be set alike everywhere."""

from __future__ import annotations

import time

import numpy as np
import pytest

import qccl

from conftest import make_group, parallel

SECRET = "correct horse battery staple"


@pytest.fixture
def secret_master():
    with qccl.Master("127.0.0.1:0", peer_timeout_ms=5000, auth_token=SECRET, probe_ms=50) as m:
        m.start()
        yield m


@pytest.mark.timeout(90)
def test_peers_with_the_secret_use_every_connection(secret_master):
    comms = make_group(secret_master, 2, auth_token=SECRET)
    try:
        bufs = [np.full(1000, float(i + 1)) for i in range(2)]
        parallel([lambda c=c, b=b: c.all_reduce(b) for c, b in zip(comms, bufs)])
        for b in bufs:
            np.testing.assert_array_equal(b, np.full(1000, 3.0))
        states = [qccl.SharedState({"w": np.full(5000, 7.0 if i == 0 else 0.0)}, revision=1)
                  for i in range(2)]
        parallel([lambda c=c, s=s, i=i: c.sync_shared_state(
            s, strategy=qccl.SyncStrategy.SEND_ONLY if i == 0 else qccl.SyncStrategy.RECEIVE_ONLY)
            for i, (c, s) in enumerate(zip(comms, states))])
        np.testing.assert_array_equal(states[1]["w"], np.full(5000, 7.0))
        parallel([c.optimize_topology for c in comms], timeout=60)
    finally:
        for c in comms:
            c.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("token", [None, "wrong", SECRET + "!"])
def test_strangers_get_auth_failed_at_once(secret_master, token):
    with qccl.Communicator(secret_master.address, auth_token=token) as c:
        start = time.monotonic()
        with pytest.raises(qccl.AuthFailedError) as e:
            c.connect(timeout=20)
        assert time.monotonic() - start < 5
        assert "authentic" in str(e.value)
        assert SECRET not in str(e.value)


@pytest.mark.timeout(60)
def test_a_peer_with_a_secret_refuses_a_master_without(master):
    with qccl.Communicator(master.address, auth_token=SECRET) as c:
        with pytest.raises(qccl.AuthFailedError):
            c.connect(timeout=20)


@pytest.mark.timeout(60)
def test_encryption_settings_must_agree(secret_master):
    """The master encrypts (it has a secret): a peer that turns encryption off is refused at
    once; a bad setting is a TypeError before anything is sent."""
    with qccl.Communicator(secret_master.address, auth_token=SECRET, encryption=False) as c:
        start = time.monotonic()
        with pytest.raises(qccl.AuthFailedError) as e:
            c.connect(timeout=20)
        assert time.monotonic() - start < 5
        assert "encrypt" in str(e.value)
    with pytest.raises(TypeError):
        qccl.Communicator(secret_master.address, auth_token=SECRET, encryption="off")


@pytest.mark.timeout(60)
def test_authentication_only_when_every_side_turns_encryption_off():
    with qccl.Master("127.0.0.1:0", auth_token=SECRET, encryption=False) as m:
        m.start()
        comms = make_group(m, 2, auth_token=SECRET, encryption=False)
        try:
            bufs = [np.full(1000, float(i + 1)) for i in range(2)]
            parallel([lambda c=c, b=b: c.all_reduce(b) for c, b in zip(comms, bufs)])
            for b in bufs:
                np.testing.assert_array_equal(b, np.full(1000, 3.0))
        finally:
            for c in comms:
                c.close()
