"""Helpers shared by the Python examples (not an example itself).

- ``Child``: a subprocess whose stdout lines are relayed and parsed by a thread, ended by pid.
- ``free_port()``: a TCP port that was free a moment ago (bound to port 0, then released).
- ``die_with_parent()``: a launched worker dies with its launcher (PR_SET_PDEATHSIG), so a
  killed launcher leaves no process behind.
- ``Teacher`` / ``batch()``: the synthetic task (regress a fixed random MLP), deterministic.
- ``state_hash()``: a short digest of the bytes of some tensors, printed after every sync so
  the launcher can check that the peers of a group hold byte-identical state.
- ``quantization()``: ``--quantize`` names -> ``qccl.Quantization``.
- ``parse_event()`` / ``check_hashes()``: the workers' ``EVENT key=value ...`` lines.

Workers report on stdout, one line per event, ``EVENT key=value key=value ...`` (flushed), so
that a launcher or a test can follow a run by reading lines instead of sleeping.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import nn


def die_with_parent() -> None:
    """Ends this process with SIGKILL when its parent (the launcher) exits (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out for port 0. It is released before returning, so
    another process could take it first; fine for a local launcher (no fixed ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_emit_lock = threading.Lock()


def emit(line: str) -> None:
    """Writes one whole line to stdout and flushes it. Thread-safe, unlike print(), which
    writes the text and its newline separately, so that a launcher's own lines and the lines
    it relays from its children (on other threads) could interleave mid-line."""
    with _emit_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def say(event: str, **fields: object) -> None:
    """Prints one ``EVENT key=value ...`` line and flushes it."""
    words = [event] + [f"{k}={_fmt(v)}" for k, v in fields.items()]
    emit(" ".join(words))


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v).replace(" ", "_")


def parse_event(line: str) -> Tuple[str, Dict[str, str]]:
    """``"sync step=2 hash=ab"`` -> ``("sync", {"step": "2", "hash": "ab"})``."""
    words = line.split()
    if not words:
        return "", {}
    fields = {}
    for w in words[1:]:
        k, sep, v = w.partition("=")
        if sep:
            fields[k] = v
    return words[0], fields


class Child:
    """A worker subprocess. A thread reads its stdout: every line goes to ``on_line(child,
    line)`` (which may print or parse it) and to a queue for ``expect()``; stderr is kept for
    error reports (and relayed when ``relay_stderr``). With ``stdin=True``, :meth:`send`
    writes lines to it."""

    def __init__(self, name: str, args: List[str], env: Optional[Mapping[str, str]] = None,
                 on_line: Optional[Callable[["Child", str], None]] = None,
                 relay_stderr: bool = True, stdin: bool = False) -> None:
        self.name = name
        self.on_line = on_line
        self.relay_stderr = relay_stderr
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.err: List[str] = []
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1,
                                  env=dict(env) if env is not None else None)
        self.pid = self.p.pid
        self._threads = [threading.Thread(target=self._pump_out, daemon=True),
                         threading.Thread(target=self._pump_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _pump_out(self) -> None:
        for line in self.p.stdout:
            line = line.rstrip("\n")
            if self.on_line is not None:
                self.on_line(self, line)
            self.lines.put(line)

    def _pump_err(self) -> None:
        for line in self.p.stderr:
            line = line.rstrip("\n")
            self.err.append(line)
            if self.relay_stderr:
                print(f"[{self.name} stderr] {line}", file=sys.stderr, flush=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def send(self, line: str) -> None:
        """One line to its stdin (``stdin=True``); nothing if it exited already."""
        try:
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, ValueError, AttributeError):
            pass

    def kill(self) -> None:
        """SIGKILL by pid (if still running) and reap."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def wait(self, timeout: float) -> Optional[int]:
        """Exit code, or None if still running after ``timeout`` seconds; output drained."""
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._threads:
            t.join(5)
        return code


def wait_all(children: Iterable[Child], deadline: float) -> Dict[str, Optional[int]]:
    """Waits until every child exited or the monotonic ``deadline`` passed."""
    codes = {}
    for c in children:
        codes[c.name] = c.wait(max(0.01, deadline - time.monotonic()))
    return codes


# ---- membership (one peer per process: DDP, async DiLoCo) ----

def admit_and_wait(comm, need: int, timeout: float) -> None:
    """The top of a training iteration: admit pending peers, and return once the group has
    at least ``need`` peers (``qccl.TimeoutError`` after ``timeout`` seconds).

    ``admit_pending`` is the right first call for every peer, a newly admitted one too
    (docs/call-order.md); ``wait_for_world`` keeps admitting until the group is large enough.
    ``need`` must be the same number on every peer (derive it from shared state, not from
    per-peer facts), or some go on while others vote.
    """
    import qccl

    while True:
        try:
            comm.admit_pending()
            comm.wait_for_world(need, timeout=timeout)
            return
        except qccl.PeerLostError:
            continue  # the new ring did not come up: vote again


def need_peers(started: bool, min_peers: int, min_peers_from: Optional[str], step: int) -> int:
    """Peers to wait for: ``min_peers`` before this peer's first step, then 2; ``STEP:N``
    from ``min_peers_from`` raises it to N from step STEP on."""
    need = 2 if started else max(2, min_peers)
    if min_peers_from:
        at, n = (int(v) for v in min_peers_from.split(":"))
        if step >= at:
            need = max(need, n)
    return need


# ---- the synthetic task ----

class Teacher(nn.Module):
    """A fixed random 2-layer network; the students learn to reproduce it."""

    def __init__(self, d_in: int, d_out: int, seed: int = 1234) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(d_in, 32, generator=g) / d_in ** 0.5
        self.w2 = torch.randn(32, d_out, generator=g) / 32 ** 0.5
        self.d_in = d_in

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w1) @ self.w2


def batch(teacher: Teacher, seed: int, step: int, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Batch ``step`` of data stream ``seed``: inputs and the teacher's targets. Each worker
    uses its own stream, so workers see different data (that is what averaging is for)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    x = torch.randn(n, teacher.d_in, generator=g)
    return x, teacher(x)


def student(d_in: int, d_hidden: int, d_out: int, seed: int = 0) -> nn.Sequential:
    """The model every peer trains: the same initial weights everywhere (seeded)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(),
                         nn.Linear(d_hidden, d_hidden), nn.GELU(),
                         nn.Linear(d_hidden, d_out))


# ---- hashing and checks ----

def state_hash(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the raw bytes of the tensors, in name order (first 16 hex digits)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def check_hashes(records: Iterable[Tuple[Tuple, str, str]]) -> Tuple[int, List[str]]:
    """``records``: (key, who, hash), where the peers that must agree share ``key`` (e.g.
    (group, step)). Returns (number of keys, error messages)."""
    by_key: Dict[Tuple, Dict[str, str]] = {}
    for key, who, digest in records:
        by_key.setdefault(key, {})[who] = digest
    errors = []
    for key, seen in sorted(by_key.items()):
        if len(set(seen.values())) != 1:
            errors.append(f"hashes differ at {key}: {seen}")
    return len(by_key), errors


def quantization(name: str):
    """``--quantize`` choice -> ``qccl.Quantization`` (None for "none")."""
    import qccl

    table = {
        "none": None,
        "minmax-uint8": (qccl.QuantAlgorithm.MIN_MAX, qccl.DataType.UINT8),
        "minmax-uint16": (qccl.QuantAlgorithm.MIN_MAX, qccl.DataType.UINT16),
        "zps-uint8": (qccl.QuantAlgorithm.ZERO_POINT_SCALE, qccl.DataType.UINT8),
        "bf16": (qccl.QuantAlgorithm.NONE, qccl.DataType.BFLOAT16),
        "fp16": (qccl.QuantAlgorithm.NONE, qccl.DataType.FLOAT16),
    }
    spec = table[name]
    return None if spec is None else qccl.Quantization(*spec)


QUANTIZE_CHOICES = ["none", "minmax-uint8", "minmax-uint16", "zps-uint8", "bf16", "fp16"]
