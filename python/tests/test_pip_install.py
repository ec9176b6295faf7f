"""`pip install .` of the repository into a fresh virtual environment (with the system's
site-packages, so torch and numpy are visible), then: import qccl, the version, the
`qccl-master` console script and `python -m qccl.master`, and one all-reduce of torch tensors
between two peers.

It compiles the whole C++ core a second time (Release), which costs several minutes on a
2-core machine, so it runs only with QCCL_TEST_PIP_INSTALL=1 (docs/python.md#tests). pip's
build isolation fetches scikit-build-core and pybind11 from the configured package index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

SOURCE = os.environ.get("QCCL_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))

pytestmark = pytest.mark.skipif(
    os.environ.get("QCCL_TEST_PIP_INSTALL") != "1",
    reason="set QCCL_TEST_PIP_INSTALL=1 to run (builds the C++ core again: minutes)")

CHECK = textwrap.dedent("""
    import os, shutil, signal, subprocess, sys, threading
    import torch
    import qccl
    assert qccl.__file__.startswith(sys.prefix), (qccl.__file__, sys.prefix)
    print("version", qccl.__version__)
    master = qccl.Master("127.0.0.1:0").start()
    comms = [qccl.Communicator(master.address) for _ in range(2)]
    comms[0].connect(timeout=30)
    joining = threading.Thread(target=comms[1].connect, args=(30,))
    joining.start()
    comms[0].wait_for_world(2, timeout=30)
    joining.join()
    tensors = [torch.full((1000,), float(i + 1)) for i in range(2)]
    threads = [threading.Thread(target=c.all_reduce, args=(t,)) for c, t in zip(comms, tensors)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(t.tolist() == [3.0] * 1000 for t in tensors), tensors
    for c in comms:
        c.close()
    master.close()
    # The console script and python -m qccl.master run the bundled binary.
    script = shutil.which("qccl-master")
    assert script and script.startswith(sys.prefix), script
    for cmd in ([script], [sys.executable, "-m", "qccl.master"]):
        p = subprocess.Popen(cmd + ["--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        assert line.startswith("qccl-master listening on"), line
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(20) == 0
        p.stdout.close()
    print("ok")
""")


@pytest.mark.timeout(840)
def test_pip_install_into_a_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    py = str(venv / "bin" / "python")
    t0 = time.monotonic()
    r = subprocess.run([py, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                        SOURCE], capture_output=True, text=True, timeout=780)
    took = time.monotonic() - t0
    print(f"pip install . took {took:.0f}s")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", QCCL_LOG_LEVEL="warn")
    env.pop("PYTHONPATH", None)  # the installed package, not the build tree's
    r = subprocess.run([py, "-c", CHECK], capture_output=True, text=True, timeout=120, env=env,
                       cwd=str(tmp_path))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
