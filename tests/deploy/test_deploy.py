"""The deployment files of docs/deployment.md, checked without root or a running systemd.

deploy/qccl-master.service:
  - `systemd-analyze verify` accepts it (its ExecStart binary pointed at this build's
    qccl-master, since /usr/local/bin/qccl-master need not exist here); skipped with the
    reason when systemd-analyze is not installed;
  - its ExecStart line, run as systemd would run it (%d = a credentials directory holding a
    0600 token file; the port replaced by 0, so that no fixed port is taken), starts a master
    that a peer with QCCL_AUTH_TOKEN_FILE = the same file joins, that a peer with another
    secret cannot join (qcclAuthFailed), and that stops with exit status 0 on SIGTERM
    (`systemctl stop`), which Restart=on-failure does not restart;
  - without the token file the same line exits 2, which RestartPreventExitStatus keeps from
    being restarted in a loop (as 243, systemd's own status when LoadCredential's file is
    missing).

Environment (the ctest deploy_test sets them): QCCL_DEPLOY_SOURCE_DIR (the repository),
QCCL_MASTER_BIN (the build's qccl-master), QCCL_HOSTS_PEER_BIN (tests/netns/hosts_peer.cpp).
Every process started here is ended by its pid (SIGKILL after its deadline).
"""

from __future__ import annotations

import os
import pathlib
import re
import select
import shlex
import shutil
import signal
import subprocess
import time

import pytest

SOURCE = pathlib.Path(os.environ.get("QCCL_DEPLOY_SOURCE_DIR",
                                     pathlib.Path(__file__).resolve().parents[2]))
UNIT = SOURCE / "deploy" / "qccl-master.service"
MASTER_BIN = os.environ.get("QCCL_MASTER_BIN", "")
PEER_BIN = os.environ.get("QCCL_HOSTS_PEER_BIN", "")


def unit_settings(path: pathlib.Path) -> dict[str, dict[str, list[str]]]:
    """[Section] -> key -> values, in file order (systemd's syntax: comments, key=value)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path}: {line!r} outside a section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


SETTINGS = unit_settings(UNIT)
SERVICE = SETTINGS["Service"]


def exec_start_argv(credentials: pathlib.Path) -> list[str]:
    """ExecStart as systemd runs it here: %d expanded, this build's binary, port 0."""
    (line,) = SERVICE["ExecStart"]
    argv = shlex.split(line.replace("%d", str(credentials)))
    assert argv[0] == "/usr/local/bin/qccl-master", argv
    argv[0] = MASTER_BIN
    i = argv.index("--listen")
    argv[i + 1] = re.sub(r":\d+$", ":0", argv[i + 1])
    return argv


def credential(tmp_path: pathlib.Path, name: str, secret: str) -> pathlib.Path:
    """A credentials directory holding `name` = secret + newline, mode 0600 (as LoadCredential
    gives the service)."""
    d = tmp_path / "credentials"
    d.mkdir(parents=True, exist_ok=True)
    f = d / name
    f.write_text(secret + "\n")
    f.chmod(0o600)
    return d


class Process:
    def __init__(self, argv, env=None, stdin=subprocess.DEVNULL):
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)

    def line(self, timeout: float) -> str:
        """The next stdout line ("" at EOF or the deadline)."""
        out = b""
        deadline = time.monotonic() + timeout
        while not out.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                break
            c = os.read(self.p.stdout.fileno(), 1)
            if not c:
                break
            out += c
        return out.decode(errors="replace").strip()

    def end(self):
        if self.p.poll() is None:
            self.p.kill()  # by pid
        self.p.wait()


@pytest.fixture
def procs():
    started: list[Process] = []
    yield started
    for p in started:
        p.end()


def test_the_unit_has_the_documented_policy():
    assert SERVICE["DynamicUser"] == ["yes"], "a dedicated user"
    assert SERVICE["LoadCredential"] == ["token:/etc/qccl/token"]
    assert SERVICE["Restart"] == ["on-failure"]
    assert SERVICE["RestartPreventExitStatus"] == ["2 243"]  # bad usage, no credential
    assert SERVICE["StandardError"] == ["journal"]
    assert "--auth-token-file %d/token" in SERVICE["ExecStart"][0]


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    unit = tmp_path / "qccl-master.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/qccl-master", MASTER_BIN))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"systemd-analyze verify: {r.stdout}{r.stderr}"
    assert "qccl-master.service" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_exec_start_serves_peers_with_the_secret_and_stops_cleanly(tmp_path, procs):
    creds = credential(tmp_path, "token", "correct horse battery staple")
    master = Process(exec_start_argv(creds))
    procs.append(master)
    first = master.line(20)
    m = re.match(r"qccl-master listening on 0\.0\.0\.0:(\d+)$", first)
    assert m, f"no 'listening on' line: {first!r}; stderr: {master.p.stderr.read1(4096)!r}"
    address = f"127.0.0.1:{m.group(1)}"

    def peer(token_file: pathlib.Path) -> Process:
        env = dict(os.environ, QCCL_AUTH_TOKEN_FILE=str(token_file), QCCL_LOG_LEVEL="warn")
        p = Process([PEER_BIN, "--master", address, "--index", "0", "--connect-timeout-ms",
                     "10000", "--state-mib", "1"], env=env, stdin=subprocess.PIPE)
        procs.append(p)
        return p

    good = peer(creds / "token")
    line = good.line(20)
    assert line.startswith("connected "), line
    good.p.stdin.close()  # EOF: the peer leaves
    assert good.p.wait(timeout=20) == 0

    other = credential(tmp_path / "x", "token", "another secret")
    bad = peer(other / "token")
    line = bad.line(20)
    assert line.startswith("error connect ") and "qcclAuthFailed" in line, line
    assert bad.p.wait(timeout=20) == 3

    master.p.send_signal(signal.SIGTERM)  # systemctl stop
    assert master.p.wait(timeout=10) == 0, "exit 0: Restart=on-failure does not restart it"


def test_exec_start_without_the_credential_exits_2(tmp_path):
    empty = tmp_path / "credentials"
    empty.mkdir()
    r = subprocess.run(exec_start_argv(empty), capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr}"
    assert "--auth-token-file" in r.stderr, r.stderr
