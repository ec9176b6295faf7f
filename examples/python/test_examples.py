"""The Python examples run end to end (ctest label ``examples``; examples/python/CMakeLists.txt).

Each test runs an example's launcher mode (a master + peer processes on 127.0.0.1, ephemeral
ports only) as a subprocess, reads its stdout lines (the workers' ``EVENT key=value`` lines,
relayed) and checks them itself: every peer of a group hashed equal after every sync, the
loss went down, joins and kills did what they should. Every test has a deadline (the launcher's
``--deadline``, below the test's own, below pytest-timeout's); the launcher is ended by pid
in any case, and its workers die with it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from typing import Dict, List, Tuple

import pytest

pytest.importorskip("torch", reason="the examples need PyTorch")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import example_util as util  # noqa: E402


Event = Tuple[str, Dict[str, str]]


def run(script: str, args: List[str], deadline: float) -> Tuple[List[Event], List[str]]:
    """Runs an example's launcher to completion within ``deadline`` seconds; returns its
    events and raw lines. Fails (after killing it) if it overruns or exits non-zero."""
    env = dict(os.environ, QCCL_LOG_LEVEL=os.environ.get("QCCL_LOG_LEVEL", "warn"))
    child = util.Child(script, [sys.executable, os.path.join(HERE, script), *args,
                                "--deadline", str(deadline - 10)], env, relay_stderr=False)
    try:
        code = child.wait(deadline)
        lines = []
        while not child.lines.empty():
            lines.append(child.lines.get())
        print("\n".join(lines))  # shown by pytest when the test fails
        tail = "\n".join(lines[-40:] + ["--- stderr ---"] + child.err[-40:])
        assert code is not None, f"{script} did not finish within {deadline}s:\n{tail}"
        assert code == 0, f"{script} exited with {code}:\n{tail}"
        assert any(line.startswith("launcher: ok") for line in lines), tail
        return [util.parse_event(line) for line in lines], lines
    finally:
        child.kill()


def hashes_by_sync(events: List[Event], key_fields: Tuple[str, ...], who: str):
    """{(key...): {who: hash}} over the sync events; asserts nobody synced a key twice."""
    table: Dict[tuple, Dict[str, str]] = defaultdict(dict)
    for name, f in events:
        if name == "sync":
            key = tuple(int(f[k]) for k in key_fields)
            peer = tuple(f[w] for w in who.split(","))
            assert peer not in table[key], f"{peer} synced {key} twice"
            table[key][peer] = f["hash"]
    return table


def eval_losses(events: List[Event], who: str, me: str) -> List[float]:
    return [float(f["loss"]) for name, f in events if name == "eval" and f[who] == me]


@pytest.mark.timeout(240)
def test_diloco_fsdp_two_machines_and_a_late_joiner():
    t0 = time.monotonic()
    events, lines = run("diloco_fsdp.py", ["--machines", "2", "--late-machine-after", "2",
                                           "--outer-steps", "5", "--inner-steps", "10",
                                           "--quantize", "minmax-uint8"], deadline=200)
    print(f"diloco_fsdp ran in {time.monotonic() - t0:.1f}s")
    table = hashes_by_sync(events, ("group", "rev"), "machine,rank")
    # 6 syncs (after outer steps 0..5) x 2 groups; equal hashes within each.
    assert len(table) == 12, sorted(table)
    for key, seen in table.items():
        assert len(set(seen.values())) == 1, f"group/revision {key}: {seen}"
    # The late machine synced from outer step 2 on, with both of its ranks, and every sync
    # from then on had all three machines in it.
    steps_of = defaultdict(set)
    for name, f in events:
        if name == "sync":
            steps_of[(f["machine"], f["rank"])].add(int(f["step"]))
            if int(f["step"]) >= 2:
                assert f["machines"] == "3", f
    assert steps_of[("0", "0")] == steps_of[("1", "1")] == set(range(6))
    assert steps_of[("2", "0")] == steps_of[("2", "1")] == {2, 3, 4, 5}
    # It downloaded its shard from the others (receive-only); after that, and on the
    # machines that were there all along after their first sync, syncs move nothing: the
    # quantized all-reduce gives bit-identical results and Nesterov is deterministic.
    syncs = [f for name, f in events if name == "sync"]
    for f in syncs:
        if f["machine"] == "2" and f["step"] == "2":
            assert f["strategy"] == "RECEIVE_ONLY" and int(f["rx"]) > 0, f
        elif int(f["rev"]) > 1 or f["machine"] != "2":
            assert f["rx"] == "0", f
    # Outer steps 3..5 were averaged over 3 machines, 1..2 over 2.
    for name, f in events:
        if name == "outer":
            assert f["group_world"] == ("3" if int(f["step"]) >= 3 else "2"), f
    losses = eval_losses(events, "machine", "0")
    assert len(losses) == 6
    assert losses[-1] < 0.5 * losses[0], losses
    assert eval_losses(events, "machine", "2") == losses[2:]  # the same outer model


@pytest.mark.timeout(180)
def test_ddp_three_peers_one_sigkilled():
    events, lines = run("ddp_allreduce.py", ["--peers", "3", "--kill-at", "3", "--steps", "8"],
                        deadline=150)
    assert any(line.startswith("launcher: SIGKILL peer 2") for line in lines)
    table = hashes_by_sync(events, ("rev",), "peer")
    for key, seen in table.items():
        assert len(set(seen.values())) == 1, f"revision {key}: {seen}"
    assert len(table) == 9  # before steps 1..8 and after step 8
    assert all(len(seen) == 3 for (rev,), seen in table.items() if rev <= 3)
    assert all(set(seen) == {("0",), ("1",)} for (rev,), seen in table.items() if rev >= 5)
    steps = defaultdict(dict)
    for name, f in events:
        if name == "step":
            steps[f["peer"]][int(f["step"])] = f
    assert set(steps["0"]) == set(steps["1"]) == set(range(1, 9))
    for peer in ("0", "1"):  # the survivors went on with two peers after the kill
        assert steps[peer][8]["world"] == "2"
    assert max(steps["2"]) <= 4
    first = [float(steps[p][1]["loss"]) for p in ("0", "1")]
    last = [float(steps[p][8]["loss"]) for p in ("0", "1")]
    assert sum(last) < 0.7 * sum(first), (first, last)
    assert {f["peer"] for name, f in events if name == "done"} == {"0", "1"}


@pytest.mark.timeout(150)
def test_async_diloco_two_peers():
    events, _ = run("async_diloco.py", ["--peers", "2", "--outer-steps", "5"], deadline=120)
    table = hashes_by_sync(events, ("rev",), "peer")
    assert len(table) == 7  # iterations 0..6 (5 rounds, a flush, the final sync)
    for key, seen in table.items():
        assert len(seen) == 2 and len(set(seen.values())) == 1, f"revision {key}: {seen}"
    outer = [f for name, f in events if name == "outer"]
    # iteration 0 has nothing to reduce; every later one averages both peers' rounds
    assert {f["contributors"] for f in outer if f["step"] == "1"} == {"0"}
    assert {f["contributors"] for f in outer if f["step"] != "1"} == {"2"}
    syncs = [f for name, f in events if name == "sync"]
    assert all(f["rx"] == "0" for f in syncs), syncs  # bit-identical outer updates
    losses = eval_losses(events, "peer", "0")
    assert len(losses) == 7
    assert losses[-1] < 0.5 * losses[0], losses


# What torch 2.13 prints when a Gloo rank aborts at interpreter exit, after all its steps and
# destroy_process_group(): in 3 of 20 runs of torch_ddp.py --backend gloo on this 2-core machine
# with the qccl import removed, 5 of 20 with it (pytorch/pytorch#190489: Gloo's threads at exit).
GLOO_EXIT_ABORT = "terminate called without an active exception"


def torchrun(script: str, args: List[str], out: str, deadline: float,
             gloo_exit_abort_ok: bool = False) -> List[List[dict]]:
    """``torchrun --standalone --nproc-per-node 3 SCRIPT ARGS --out OUT``; returns each rank's
    JSON log. torchrun runs in its own session, ended (with its workers) by its pid.
    ``gloo_exit_abort_ok``: for a Gloo reference run, a rank aborting with GLOO_EXIT_ABORT at
    exit is not a failure if every rank wrote its whole log (written before the teardown)."""
    import json
    import signal
    import subprocess

    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "3", os.path.join(HERE, script), *args,
                          "--out", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    try:
        output, _ = p.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        output, _ = p.communicate()
        raise AssertionError(f"{script} {args} overran {deadline}s:\n{output[-4000:]}")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    logs = []
    for rank in range(3):
        if p.returncode != 0 and not os.path.exists(f"{out}.{rank}.json"):
            break
        with open(f"{out}.{rank}.json") as f:
            logs.append(json.load(f))
    steps = int(args[args.index("--steps") + 1]) if "--steps" in args else None
    teardown_abort = (gloo_exit_abort_ok and GLOO_EXIT_ABORT in output and len(logs) == 3
                      and all(len(log) == steps for log in logs))
    assert p.returncode == 0 or teardown_abort, (
        f"{script} {args} exited with {p.returncode}:\n{output[-4000:]}")
    return logs


@pytest.mark.timeout(150)
def test_torch_ddp_on_qccl_matches_gloo(tmp_path):
    """The tutorial DDP script, unchanged but for the backend name: with "qccl" every rank
    holds the same parameters after every step and the losses match gloo's; with qccl's
    8-bit quantizing comm hook the loss still falls."""
    steps = ["--steps", "12"]
    gloo = torchrun("torch_ddp.py", ["--backend", "gloo", *steps], str(tmp_path / "g"), 40,
                    gloo_exit_abort_ok=True)
    qccl = torchrun("torch_ddp.py", ["--backend", "qccl", *steps], str(tmp_path / "q"), 40)
    for step in range(12):
        assert len({log[step]["params"] for log in qccl}) == 1, f"ranks differ at step {step}"
        for rank in range(3):
            assert qccl[rank][step]["loss"] == pytest.approx(gloo[rank][step]["loss"],
                                                             rel=1e-5, abs=1e-6)
    hooked = torchrun("torch_ddp.py", ["--backend", "qccl", "--hook", "minmax_uint8", *steps],
                      str(tmp_path / "h"), 40)
    for step in range(12):
        assert len({log[step]["params"] for log in hooked}) == 1, f"ranks differ at step {step}"
    first = sum(log[0]["loss"] for log in hooked)
    last = sum(log[-1]["loss"] for log in hooked)
    exact = sum(log[-1]["loss"] for log in gloo)
    print(f"summed loss: step 0 {first:.4f}, step 11 {last:.4f} (8-bit hook), {exact:.4f} (gloo)")
    assert last < 0.9 * first and last == pytest.approx(exact, rel=0.05), (first, last, exact)
