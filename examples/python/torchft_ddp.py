#!/usr/bin/env python3
"""torchft DDP (or DiLoCo) over qccl: replicas survive a SIGKILL and a restart (torchft 0.2.0).

Each replica is one process (a replica group of one rank) training the same small MLP on its
own synthetic data with torchft: a ``torchft.Manager`` asks the lighthouse for a quorum every
step, ``torchft.DistributedDataParallel`` all-reduces the gradients through the Manager, and
the replicate-dimension process group is :class:`qccl.torchft.ProcessGroupQccl`, so the
gradients travel over qccl. When the quorum changes (a replica died, or came back), the
Manager reconfigures the qccl group; a replica that comes back heals (it downloads the model
and optimizer state from a live replica over torchft's HTTP transport) and trains on.
``--algo diloco`` trains with ``torchft.local_sgd.DiLoCo`` instead: local AdamW steps, and
every ``--sync-every`` steps an all-reduce of the pseudo-gradients over qccl and an outer
Nesterov step (a torchft step is one such sync).

Launcher mode (a torchft lighthouse in this process, N replica processes; one replica is
SIGKILLed by pid once every replica trained a few steps together, and restarted once the
others trained on without it; all stop at the same step, a few steps after the restarted one
trained with the others, and the launcher checks that every replica reported the same
parameters at every step and the same final model and optimizer state):

    PYTHONPATH=build/python python3 examples/python/torchft_ddp.py --replicas 3 --kill-after 3

One replica by hand (a lighthouse runs elsewhere: ``torchft_lighthouse --min_replicas 2``):

    python3 examples/python/torchft_ddp.py --lighthouse http://HOST:29510 --replica-id 0

Output: ``step replica=1 step=4 committed=1 participants=3 loss=0.061 hash=...`` after every
step (``step`` counts committed steps; ``hash`` digests the parameters), ``done replica=1
step=12 hash=...`` at the end (``hash`` digests parameters and optimizer state). A replica
stops once it reached ``--steps``, or, when launched, the step its launcher sends on stdin
(``stop S``), and then leaves once the launcher says ``exit`` (all are done).
"""

from __future__ import annotations

import argparse
import os
import queue
import select
import sys
import threading
import time
from datetime import timedelta
from typing import Dict, Iterator, List, Optional

import torch
import torch.nn.functional as F

import example_util as util


def replica(args: argparse.Namespace) -> None:
    import torch.distributed as dist
    from torchft import DistributedDataParallel, Manager, Optimizer
    from torchft.local_sgd import DiLoCo

    from qccl.torchft import ProcessGroupQccl

    me = args.replica_id
    teacher = util.Teacher(args.d_in, args.d_out)
    model = util.student(args.d_in, args.d_hidden, args.d_out)
    inner_opt = torch.optim.AdamW(model.parameters(), lr=args.lr)

    def state_dict() -> Dict[str, object]:
        return {"model": model.state_dict(), "optim": inner_opt.state_dict()}

    def load_state_dict(sd: Dict[str, object]) -> None:
        model.load_state_dict(sd["model"])
        inner_opt.load_state_dict(sd["optim"])

    # The store of this replica group (one rank here); torchft puts the qccl group's
    # rendezvous of each quorum under a prefix of one replica's store.
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    timeout = timedelta(seconds=args.timeout)
    pg = ProcessGroupQccl(timeout=timeout)
    diloco = args.algo == "diloco"
    manager = Manager(pg=pg, load_state_dict=None if diloco else load_state_dict,
                      state_dict=None if diloco else state_dict,
                      min_replica_size=args.min_replicas, replica_id=f"replica_{me}",
                      store_addr="127.0.0.1", store_port=store.port, rank=0, world_size=1,
                      lighthouse_addr=args.lighthouse, timeout=timeout,
                      quorum_timeout=timedelta(seconds=args.quorum_timeout),
                      connect_timeout=timeout, use_async_quorum=not diloco)
    try:
        if diloco:
            # DiLoCo: local AdamW steps; every --sync-every steps the replicas average their
            # pseudo-gradients over qccl and apply them with the outer optimizer (the
            # global model and the outer state are what torchft heals a replica with).
            outer_opt = torch.optim.SGD(model.parameters(), lr=0.7, momentum=0.9,
                                        nesterov=True)
            with DiLoCo(manager, [model], inner_opt, outer_opt, sync_every=args.sync_every):
                local = 0
                for before in steps(args, manager):
                    x, y = util.batch(teacher, me, local, args.batch)
                    inner_opt.zero_grad()
                    loss = F.mse_loss(model(x), y)
                    loss.backward()
                    inner_opt.step()  # a sync every --sync-every calls
                    local += 1
                    if local % args.sync_every == 0:
                        report(manager, me, before, loss, model)
            full = {f"w/{n}": p for n, p in model.named_parameters()}
            full.update(tensors_of(outer_opt, "outer"))
        else:
            ddp = DistributedDataParallel(manager, model)
            opt = Optimizer(manager, inner_opt)
            for before in steps(args, manager):
                x, y = util.batch(teacher, me, before, args.batch)
                opt.zero_grad()  # starts the quorum (reconfigures the qccl group if it changed)
                loss = F.mse_loss(ddp(x), y)
                loss.backward()  # the gradients are all-reduced over qccl
                opt.step()  # steps only if every replica in the quorum committed
                report(manager, me, before, loss, model)
            full = {f"w/{n}": p for n, p in model.named_parameters()}
            full.update(tensors_of(inner_opt, "adamw"))
        util.say("done", replica=me, step=manager.current_step(), hash=util.state_hash(full))
        if args.launched:
            # Leave only once every replica is done: one leaving at once could fail the
            # last step of another that is still finishing it.
            for line in sys.stdin:
                if line.strip() == "exit":
                    break
    finally:
        manager.shutdown(wait=False)
        pg.shutdown()


def report(manager, me: int, before: int, loss: torch.Tensor, model: torch.nn.Module) -> None:
    util.say("step", replica=me, step=manager.current_step(),
             committed=int(manager.current_step() > before),
             participants=manager.num_participants(), loss=loss.item(),
             hash=util.state_hash(dict(model.named_parameters())))


def tensors_of(opt: torch.optim.Optimizer, prefix: str) -> Dict[str, torch.Tensor]:
    return {f"{prefix}/{i}/{k}": v for i, st in enumerate(opt.state.values())
            for k, v in st.items() if torch.is_tensor(v)}


def steps(args: argparse.Namespace, manager) -> Iterator[int]:
    """The training loop's head: the manager's step, until ``--steps`` or the launcher's
    ``stop S`` is reached."""
    stop_at = args.steps
    while True:
        if args.launched:
            stop_at = read_stop(stop_at)
        if stop_at is not None and manager.current_step() >= stop_at:
            return
        yield manager.current_step()


def read_stop(stop_at: Optional[int]) -> Optional[int]:
    """The launcher's ``stop S`` lines on stdin (a non-blocking check, once per step)."""
    while select.select([sys.stdin], [], [], 0)[0]:
        line = sys.stdin.readline()
        if not line:
            break
        words = line.split()
        if len(words) == 2 and words[0] == "stop":
            stop_at = int(words[1])
    return stop_at


def launch(args: argparse.Namespace) -> int:
    os.environ.setdefault("RUST_LOG", "warn")  # the lighthouse logs every quorum at info
    from torchft.coordination import LighthouseServer

    lighthouse = LighthouseServer(bind="[::]:0", min_replicas=args.min_replicas,
                                  join_timeout_ms=args.join_timeout_ms,
                                  heartbeat_timeout_ms=args.heartbeat_timeout_ms)
    n, victim = args.replicas, args.kill_replica
    events: "queue.Queue[tuple]" = queue.Queue()
    lock = threading.Lock()
    me = os.path.abspath(__file__)
    replicas: Dict[int, util.Child] = {}
    everyone: List[util.Child] = []

    def on_line(child: util.Child, line: str) -> None:
        with lock:
            util.emit(line)
        event, f = util.parse_event(line)
        if event in ("step", "done"):
            events.put((child, event, f))

    def start(i: int) -> None:
        cmd = [sys.executable, me, "--lighthouse", lighthouse.address(), "--replica-id",
               str(i), "--min-replicas", str(args.min_replicas), "--timeout",
               str(args.timeout), "--algo", args.algo, "--sync-every", str(args.sync_every),
               "--launched"]
        replicas[i] = util.Child(f"replica{i}", cmd, on_line=on_line, relay_stderr=False,
                                 stdin=True)
        everyone.append(replicas[i])

    deadline = time.monotonic() + args.deadline
    step_hashes = []
    done: Dict[str, Dict[str, str]] = {}
    errors: List[str] = []
    try:
        for i in range(n):
            start(i)
        util.emit(f"launcher: lighthouse {lighthouse.address()}, {n} replicas")
        # phases: "together" (kill the victim once all trained together kill_after steps),
        # "degraded" (restart it once the others committed a step without it), "rejoin"
        # (tell all to stop a few steps after it committed one with all), "finish".
        phase = "together" if args.kill_after is not None else "finish"
        stop_at = None if args.kill_after is not None else args.steps
        if stop_at is not None:
            for r in everyone:
                r.send(f"stop {stop_at}")
        max_step = 0
        while len(done) < n:
            try:
                child, event, f = events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"deadline passed in phase {phase}") from None
            if event == "done":
                done[f["replica"]] = f
                if len(done) == n:
                    for r in replicas.values():
                        r.send("exit")
                continue
            step, parts = int(f["step"]), int(f["participants"])
            committed = f["committed"] == "1"
            max_step = max(max_step, step)
            if committed:
                step_hashes.append(((step,), f["replica"], f["hash"]))
            if not committed or child is not replicas[int(f["replica"])]:
                continue
            if phase == "together" and int(f["replica"]) == victim and parts == n and \
                    step >= args.kill_after:
                util.emit(f"launcher: SIGKILL replica {victim} (pid {child.pid}) after step "
                          f"{step}")
                child.kill()
                phase = "degraded"
            elif phase == "degraded" and parts == n - 1:
                util.emit(f"launcher: the others trained on without it (step {step}); "
                          f"restarting replica {victim}")
                start(victim)
                phase = "rejoin"
            elif phase == "rejoin" and int(f["replica"]) == victim and parts == n:
                stop_at = max(args.steps, max_step + args.tail)
                util.emit(f"launcher: replica {victim} trains with all again (step {step}); "
                          f"all stop at step {stop_at}")
                for i, r in replicas.items():
                    r.send(f"stop {stop_at}")
                phase = "finish"
        for i, r in replicas.items():
            code = r.wait(deadline - time.monotonic())
            if code != 0:
                errors.append(f"replica{i} exited with {code}: " + "\n".join(r.err[-30:]))
        if {f["step"] for f in done.values()} != {str(stop_at)}:
            errors.append(f"not all stopped at step {stop_at}: {done}")
        if len({f["hash"] for f in done.values()}) != 1:
            errors.append(f"final states differ: {done}")
        steps, hash_errors = util.check_hashes(step_hashes)
        errors += hash_errors
        if errors:
            for e in errors:
                util.emit(f"launcher: FAILED {e}")
            return 1
        util.emit(f"launcher: ok, {n} replicas equal at each of {steps} steps and at the end")
        return 0
    except BaseException:
        for r in everyone:  # what the replicas said, for the post-mortem
            util.emit(f"launcher: {r.name} (pid {r.pid}) stderr tail:\n" + "\n".join(r.err[-40:]))
        raise
    finally:
        for r in everyone:
            r.kill()
        lighthouse.shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lighthouse", help="a torchft lighthouse's address (else: launcher mode)")
    ap.add_argument("--replica-id", type=int, default=0, help="this replica's number (its data)")
    ap.add_argument("--min-replicas", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None,
                    help="stop at this step (launcher: at least this step; default 10)")
    ap.add_argument("--algo", choices=["ddp", "diloco"], default="ddp",
                    help="torchft DistributedDataParallel, or DiLoCo (local steps, outer syncs)")
    ap.add_argument("--sync-every", type=int, default=4, help="diloco: local steps per sync")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds: the qccl group's and the Manager's timeouts")
    ap.add_argument("--quorum-timeout", type=float, default=60.0)
    ap.add_argument("--launched", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--replicas", type=int, default=3, help="launcher: replica processes")
    ap.add_argument("--kill-after", type=int, metavar="S",
                    help="launcher: SIGKILL --kill-replica once it committed step S with all")
    ap.add_argument("--kill-replica", type=int, default=None,
                    help="launcher: which replica (default: the last)")
    ap.add_argument("--tail", type=int, default=20,
                    help="launcher: steps all train together after the restart")
    ap.add_argument("--join-timeout-ms", type=int, default=10000, help="launcher: lighthouse's")
    ap.add_argument("--heartbeat-timeout-ms", type=int, default=1000,
                    help="launcher: lighthouse's (how soon a dead replica leaves the quorum)")
    ap.add_argument("--deadline", type=float, default=300.0, help="launcher: seconds")
    args = ap.parse_args(argv)
    args.d_in, args.d_hidden, args.d_out = 16, 64, 8
    if args.lighthouse is None:
        if args.steps is None:
            args.steps = 10
        if args.kill_replica is None:
            args.kill_replica = args.replicas - 1
        return launch(args)
    if args.launched:
        util.die_with_parent()
    elif args.steps is None:
        args.steps = 10
    torch.set_num_threads(1)
    replica(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
