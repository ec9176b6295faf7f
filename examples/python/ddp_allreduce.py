#!/usr/bin/env python3
"""Data-parallel training over qccl: every step's gradients are all-reduced (Avg).

Each peer is one process training the same small MLP on its own synthetic data. Each step:
  1. membership: if peers wait (``are_peers_pending``), admit them (``update_topology``);
  2. ``sync_shared_state`` of the weights, the AdamW state and the step counter: a joiner
     downloads them from every other peer; the others transfer nothing (``rx=0``), because
     they apply the same update to the same bytes;
  3. forward/backward on this peer's batch, then ``all_reduce_multiple_with_retry`` over the
     parameter gradients (Avg; a lost peer makes the survivors retry without it);
  4. AdamW step (the same on every peer: the averaged gradients are bit-identical).

Peers may die (SIGKILL) or join at any step. Launcher mode (a master in this process, N peer
processes, optionally one SIGKILLed by pid after it reported step S, optionally one more
joining after step J; checks at the end that the peers hashed equal after every sync):

    PYTHONPATH=build/python python3 examples/python/ddp_allreduce.py --peers 3 --kill-at 3

One peer by hand (real multi-host use; a master runs elsewhere, ``qccl-master``):

    python3 examples/python/ddp_allreduce.py --master HOST:48148 --peer-id 0 --min-peers 2

Output: ``sync peer=1 step=4 rev=5 hash=... rx=0 tx=0 world=2`` after every sync and
``step peer=1 step=5 loss=0.061 world=2 tx=... rx=...`` after every step.

Pitfalls: every peer decides from the same values: the
world size after the same vote, the step counter after the same sync. ``--min-peers`` only
holds back the *start* (before the first step); afterwards a run goes on with 2 or more
peers, and a peer left alone waits for company.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import List, Optional

import torch
import torch.nn.functional as F

import example_util as util


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        import qccl

        self.qccl, self.args, self.id = qccl, args, args.peer_id
        self.teacher = util.Teacher(args.d_in, args.d_out)
        self.model = util.student(args.d_in, args.d_hidden, args.d_out)
        self.params = list(self.model.named_parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr)
        # AdamW creates its state at the first step; create it now (the same layout torch
        # uses, updated in place by every step) so that the shared state can point at it.
        for _, p in self.params:
            self.opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                 "exp_avg_sq": torch.zeros_like(p)}
        self.step = torch.zeros(1, dtype=torch.int64)
        tensors = {"step": self.step}
        for n, p in self.params:
            st = self.opt.state[p]
            tensors[f"w/{n}"] = p.detach()  # same storage
            tensors[f"adam_m/{n}"] = st["exp_avg"]
            tensors[f"adam_v/{n}"] = st["exp_avg_sq"]
            tensors[f"adam_t/{n}"] = st["step"]
        self.state = qccl.SharedState(tensors)
        self.tensors = tensors
        self.comm = qccl.Communicator(args.master)
        self.comm.connect(timeout=args.connect_timeout)
        self.started = False

    def membership(self) -> None:
        util.admit_and_wait(self.comm, util.need_peers(
            self.started, self.args.min_peers, self.args.min_peers_from, int(self.step)),
            self.args.connect_timeout)

    def sync(self) -> None:
        qccl = self.qccl
        self.state.revision += 1
        while True:
            try:
                info = self.comm.sync_shared_state(self.state)
                break
            except qccl.PeerLostError:
                continue
        util.say("sync", peer=self.id, step=int(self.step), rev=self.state.revision,
                 hash=util.state_hash(self.tensors), rx=info.rx_bytes, tx=info.tx_bytes,
                 world=self.comm.group_world_size)

    def train_step(self) -> None:
        qccl = self.qccl
        x, y = util.batch(self.teacher, self.id, int(self.step), self.args.batch)
        loss = F.mse_loss(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        grads = [p.grad for _, p in self.params]
        try:
            info = self.comm.all_reduce_multiple_with_retry(
                [(g, None, {"op": qccl.ReduceOp.AVG}) for g in grads])  # tags: 0, 1, ...
        except qccl.TooFewPeersError:
            return  # everyone else left during the retries: redo this step once peers come
        self.opt.step()
        for n, p in self.params:  # the shared state must still point at the live tensors
            st = self.opt.state[p]
            if not (st["exp_avg"] is self.tensors[f"adam_m/{n}"]
                    and st["exp_avg_sq"] is self.tensors[f"adam_v/{n}"]
                    and st["step"] is self.tensors[f"adam_t/{n}"]):
                raise RuntimeError("torch replaced AdamW's state tensors: the shared state "
                                   "would go stale")
        self.step += 1
        self.started = True
        util.say("step", peer=self.id, step=int(self.step), loss=loss.item(),
                 world=info.world_size, tx=info.tx_bytes, rx=info.rx_bytes)

    def run(self) -> None:
        while True:
            self.membership()
            self.sync()
            if int(self.step) >= self.args.steps:
                break
            self.train_step()
        util.say("done", peer=self.id)
        self.comm.close()


def launch(args: argparse.Namespace) -> int:
    import qccl

    master = qccl.Master("127.0.0.1:0", peer_timeout_ms=args.peer_timeout_ms)
    master.start()
    lock = threading.Lock()
    hashes = []
    synced = set()
    kill_now, join_now = threading.Event(), threading.Event()
    children: List[util.Child] = []
    me = os.path.abspath(__file__)
    victim = args.peers - 1

    def on_line(child: util.Child, line: str) -> None:
        event, f = util.parse_event(line)
        with lock:  # one relay thread per child: whole lines, one at a time
            util.emit(line)
            if event == "sync":
                hashes.append(((int(f["rev"]),), f["peer"], f["hash"]))
                synced.add(f["peer"])
            if event == "step" and args.kill_at is not None and \
                    f["peer"] == str(victim) and int(f["step"]) == args.kill_at:
                kill_now.set()
            if event == "step" and args.join_after is not None and \
                    f["peer"] == "0" and int(f["step"]) == args.join_after:
                join_now.set()

    def start_peer(i: int, min_peers: int) -> None:
        cmd = [sys.executable, me, "--master", master.address, "--peer-id", str(i),
               "--min-peers", str(min_peers), "--steps", str(args.steps), "--launched"]
        env = dict(os.environ, QCCL_LOG_LEVEL=os.environ.get("QCCL_LOG_LEVEL", "warn"))
        if args.join_after is not None:
            survivors = args.peers - (1 if args.kill_at is not None else 0)
            cmd += ["--min-peers-from", f"{args.join_after}:{survivors + 1}"]
        children.append(util.Child(f"peer{i}", cmd, env, on_line))

    deadline = time.monotonic() + args.deadline
    try:
        for i in range(args.peers):
            start_peer(i, args.peers)
        util.emit(f"launcher: master {master.address}, {args.peers} peers")
        waits = [(kill_now, "kill")] if args.kill_at is not None else []
        waits += [(join_now, "join")] if args.join_after is not None else []
        for event, what in sorted(waits, key=lambda w: (args.kill_at if w[1] == "kill"
                                                        else args.join_after)):
            while not event.wait(0.1):
                if time.monotonic() > deadline or not children[0].alive():
                    raise RuntimeError(f"the run ended before the {what} was due")
            if what == "kill":
                util.emit(f"launcher: SIGKILL peer {victim} (pid {children[victim].pid})")
                children[victim].kill()
            else:
                util.emit(f"launcher: peer {args.peers} joins")
                start_peer(args.peers, 2)
        codes = util.wait_all(children, deadline)
        errors = [f"{name} exited with {code}" for name, code in codes.items()
                  if code != 0 and not (args.kill_at is not None and name == f"peer{victim}")]
        n, hash_errors = util.check_hashes(hashes)
        errors += hash_errors
        if errors:
            for e in errors:
                util.emit(f"launcher: FAILED {e}")
            return 1
        util.emit(f"launcher: ok, {n} syncs, every peer's hash equal in each")
        return 0
    finally:
        for c in children:
            c.kill()
        master.close()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--master", help="host:port of a qccl master (else: launcher mode)")
    ap.add_argument("--peer-id", type=int, default=0, help="this peer's number (its data)")
    ap.add_argument("--min-peers", type=int, default=2, help="peers to wait for at the start")
    ap.add_argument("--min-peers-from", metavar="STEP:N",
                    help="from step STEP on, wait for N peers (the launcher uses it to let a "
                    "late peer in at a known step)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--launched", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--peers", type=int, default=3, help="launcher: peers at the start")
    ap.add_argument("--kill-at", type=int, metavar="S",
                    help="launcher: SIGKILL the last peer once it reported step S")
    ap.add_argument("--join-after", type=int, metavar="J",
                    help="launcher: one more peer starts once peer 0 reported step J")
    ap.add_argument("--peer-timeout-ms", type=int, default=5000, help="launcher: master's")
    ap.add_argument("--deadline", type=float, default=300.0, help="launcher: seconds")
    args = ap.parse_args(argv)
    args.d_in, args.d_hidden, args.d_out = 16, 64, 8
    if args.master is None:
        return launch(args)
    if args.launched:
        util.die_with_parent()
    torch.set_num_threads(1)
    Peer(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
