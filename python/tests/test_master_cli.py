"""``python -m qccl.master``: the same flags, output and exit codes as qccl-master (README.md,
"The master"): it execs the binary shipped in the package."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

import qccl
import qccl.master

CMD = [sys.executable, "-m", "qccl.master"]


def run(args, timeout=30):
    return subprocess.run(CMD + args, capture_output=True, text=True, timeout=timeout)


def test_binary_is_in_the_package():
    path = qccl.master.binary_path()
    assert os.access(path, os.X_OK), path
    assert os.path.dirname(os.path.dirname(path)) == os.path.dirname(qccl.__file__)


def test_help_lists_every_flag_and_exits_0():
    r = run(["--help"])
    assert r.returncode == 0, r.stderr
    for flag in ("--listen", "--log-level", "--heartbeat-ms", "--peer-timeout-ms",
                 "--vote-timeout-ms", "--auth-token-file"):
        assert flag in r.stdout, flag


def test_version_is_the_packages():
    r = run(["--version"])
    assert r.returncode == 0 and r.stdout.split() == ["qccl-master", qccl.__version__]


@pytest.mark.parametrize("args", [["--no-such-flag"], ["--heartbeat-ms", "abc"],
                                  ["--listen", "nonsense"], ["--log-level", "loud"]])
def test_bad_command_line_exits_2(args):
    r = run(args)
    assert r.returncode == 2, (r.stdout, r.stderr)


def test_port_in_use_exits_1():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        r = run(["--listen", f"127.0.0.1:{s.getsockname()[1]}"])
    finally:
        s.close()
    assert r.returncode == 1
    assert "cannot listen on" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_peers_then_exits_0_on_signal(sig):
    p = subprocess.Popen(CMD + ["--listen", "127.0.0.1:0", "--log-level", "warn"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()  # blocks until the master printed it (or exited)
        assert line.startswith("qccl-master listening on 127.0.0.1:"), (line, p.poll())
        address = line.split()[-1]
        with qccl.Communicator(address) as c:
            c.connect(timeout=10)
            assert c.world_size == 1
        os.kill(p.pid, sig)  # the exec'd master itself gets the signal
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        p.stdout.close()
        p.stderr.close()


def test_missing_binary_is_reported(tmp_path):
    env = dict(os.environ, QCCL_MASTER_BIN=str(tmp_path / "nope"))
    r = subprocess.run(CMD + ["--help"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 1 and "missing" in r.stderr


def _start_master(listen):
    p = subprocess.Popen(CMD + ["--listen", listen, "--log-level", "warn"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()  # blocks until the master printed it (or exited)
    assert line.startswith("qccl-master listening on 127.0.0.1:"), (line, p.poll())
    return p, line.split()[-1]


def _end(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    p.stdout.close()
    p.stderr.close()


def test_peers_resume_with_a_master_restarted_on_the_same_address():
    """master_reconnect (docs/reliability.md §8): the master process is killed and a new
    one started on its address; the peers keep their communicators and go on."""
    import numpy as np
    from conftest import admit, parallel

    first, address = _start_master("127.0.0.1:0")
    second = None
    comms = [qccl.Communicator(address, master_reconnect=20) for _ in range(2)]
    try:
        comms[0].connect(timeout=10)
        admit(comms[:1], comms[1:])
        bufs = [np.full(1000, i + 1, dtype=np.float32) for i in range(2)]
        parallel([lambda c=c, b=b: c.all_reduce(b) for c, b in zip(comms, bufs)])
        epoch = comms[0].epoch
        ids = [c.peer_id for c in comms]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        second, again = _start_master(address)
        assert again == address
        bufs = [np.full(1000, i + 1, dtype=np.float32) for i in range(2)]
        parallel([lambda c=c, b=b: c.all_reduce(b) for c, b in zip(comms, bufs)])
        for b in bufs:
            np.testing.assert_array_equal(b, np.full(1000, 3, dtype=np.float32))
        assert [c.peer_id for c in comms] == ids  # not admitted again
        assert comms[0].epoch > epoch
        assert all(c.world_size == 2 for c in comms)
    finally:
        for c in comms:
            c.close()
        _end(first)
        if second is not None:
            _end(second)
