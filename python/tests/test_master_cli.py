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
