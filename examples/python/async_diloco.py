#!/usr/bin/env python3
"""Async DiLoCo over qccl: the outer all-reduce overlaps the next round's inner steps.

Each peer is one process (no FSDP here; see diloco_fsdp.py for that). The outer all-reduce
of round t's pseudo-gradient is started with ``all_reduce_async`` and runs inside qccl's
threads (without the GIL) while this thread computes round t+1's inner steps; it is waited
for only after them, and applied then: a one-step delay, as in PCCL's async DiLoCo and
Streaming DiLoCo's overlapping outer step.

Bookkeeping. theta = outer parameters, m = outer momentum, k = iteration counter: the shared
state, identical on every peer. c_k = this peer's pseudo-gradient of round k. Iteration k
(every peer runs the same sequence of calls):

  A. membership: admit pending peers (votes need no op in flight: none is);
  B. sync_shared_state(theta, m, k); print the hash; if k > N: stop;
  C. start the all-reduce (SUM) of buf = [c_{k-1}, w] with w = 1; a peer without a previous
     round (iteration 0, a joiner) contributes zeros and w = 0;
  D. if k < N: round k, overlapping C: start from anchor_k = theta_k - c_{k-1} (theta_k
     minus my own round k-1, which is still in flight: I go on from where I stopped instead
     of going back to theta_k and redoing round k-1's work), H inner steps (AdamW), then
     c_k = anchor_k - phi. (k = N trains nothing: the last iteration only flushes c_{N-1}.)
  E. wait for C; theta <- Nesterov(theta, sum(c_{k-1}) / sum(w)) if sum(w) > 0; k += 1.

So the average of round k-1 is applied one iteration late (at the end of iteration k), and
until it arrives each peer uses its own c_{k-1} in its place (the next anchor,
theta_{k+1} - c_k, contains the average of round k-1 and no longer the peer's own part).
Going back to theta_k instead (plain delayed DiLoCo) makes rounds k-1 and k start from the
same point and push the same direction twice; with the outer momentum of 0.9 that diverges.
The w column makes the average exact when a joiner (or iteration 0) contributes nothing, where
Avg would divide by the whole world. c and w travel in one buffer, so a PeerLostError retry can
never mix world sizes between them.

Launcher mode (a master here, N peer processes; checks that every peer hashed equal after
every sync):

    PYTHONPATH=build/python python3 examples/python/async_diloco.py --peers 2

One peer by hand: ``async_diloco.py --master HOST:48148 --peer-id 0 --min-peers 2``.

Output: ``sync peer=0 step=3 rev=4 hash=...`` and ``outer peer=0 step=3 loss=0.05
contributors=2 world=2 tx=... wait_ms=0.4`` (``wait_ms``: how long step E blocked: about 0
when the all-reduce was hidden behind the inner steps).
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

TAG = 7  # one outer all-reduce in flight at a time; any fixed tag, the same on every peer


def load(params, flat: torch.Tensor) -> None:
    """Copies ``flat`` into the parameters. (torch's vector_to_parameters would make them
    views of ``flat``, and the inner optimizer would then write into theta.)"""
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        import qccl

        self.qccl, self.args, self.id = qccl, args, args.peer_id
        self.teacher = util.Teacher(args.d_in, args.d_out)
        self.model = util.student(args.d_in, args.d_hidden, args.d_out)
        self.params = list(self.model.parameters())
        self.inner_opt = torch.optim.AdamW(self.params, lr=args.inner_lr)
        # theta and m as flat vectors (one all-reduce, one momentum buffer)
        self.theta = torch.nn.utils.parameters_to_vector(self.params).detach().clone()
        self.momentum = torch.zeros_like(self.theta)
        self.k = torch.zeros(1, dtype=torch.int64)
        self.state = qccl.SharedState({"theta": self.theta, "momentum": self.momentum,
                                       "k": self.k})
        self.contribution: Optional[torch.Tensor] = None  # c of my previous round
        self.comm = qccl.Communicator(args.master)
        self.comm.connect(timeout=args.connect_timeout)
        self.started = False

    def sync(self) -> None:
        qccl = self.qccl
        strategy = qccl.SyncStrategy.ENFORCE_POPULAR
        if self.args.join and self.state.revision == 0:
            strategy = qccl.SyncStrategy.RECEIVE_ONLY  # my state is stale: never elect it
        self.state.revision += 1
        while True:
            try:
                info = self.comm.sync_shared_state(self.state, strategy=strategy)
                break
            except qccl.PeerLostError:
                continue
        util.say("sync", peer=self.id, step=int(self.k), rev=self.state.revision,
                 hash=util.state_hash(self.state.tensors), rx=info.rx_bytes, tx=info.tx_bytes,
                 world=self.comm.group_world_size, strategy=strategy.name)

    def eval_loss(self) -> float:
        model = util.student(self.args.d_in, self.args.d_hidden, self.args.d_out)
        load(model.parameters(), self.theta)
        x, y = util.batch(self.teacher, seed=999_999, step=0, n=256)
        with torch.no_grad():
            return F.mse_loss(model(x), y).item()

    def start_reduce(self):
        n = self.theta.numel()
        buf = torch.zeros(n + 1)
        if self.contribution is not None:
            buf[:n] = self.contribution
            buf[n] = 1.0
        # The op keeps `buf` alive until wait(); do not touch it before.
        return buf, self.comm.all_reduce_async(buf, op=self.qccl.ReduceOp.SUM, tag=TAG)

    def finish_reduce(self, buf: torch.Tensor, op):
        qccl = self.qccl
        try:
            return op.wait()
        except qccl.PeerLostError:
            pass  # failed on every peer; buf holds my input again: retry, now blocking
        while True:
            try:
                return self.comm.all_reduce(buf, op=qccl.ReduceOp.SUM, tag=TAG)
            except qccl.PeerLostError:
                continue
            except qccl.TooFewPeersError:
                return None  # alone now: buf (my own input) is the sum over the peers left

    def inner_steps(self, in_flight: Optional[torch.Tensor]) -> float:
        anchor = self.theta if in_flight is None else self.theta - in_flight
        load(self.params, anchor)  # phi <- anchor_k
        total = 0.0
        for i in range(self.args.inner_steps):
            x, y = util.batch(self.teacher, self.id, int(self.k) * self.args.inner_steps + i,
                              self.args.batch)
            loss = F.mse_loss(self.model(x), y)
            self.inner_opt.zero_grad()
            loss.backward()
            self.inner_opt.step()
            total += loss.item()
        with torch.no_grad():
            self.contribution = anchor - torch.nn.utils.parameters_to_vector(self.params)
        return total / self.args.inner_steps

    def run(self) -> None:
        n_rounds = self.args.outer_steps
        while True:
            util.admit_and_wait(self.comm, util.need_peers(
                self.started, self.args.min_peers, self.args.min_peers_from, int(self.k)),
                self.args.connect_timeout)
            self.sync()
            if self.id == 0 or self.args.join:
                util.say("eval", peer=self.id, step=int(self.k), loss=self.eval_loss())
            if int(self.k) > n_rounds:
                break
            buf, op = self.start_reduce()
            in_flight, self.contribution = self.contribution, None
            loss = float("nan")
            if int(self.k) < n_rounds:
                loss = self.inner_steps(in_flight)  # overlaps the all-reduce
            t0 = time.monotonic()
            info = self.finish_reduce(buf, op)
            wait_ms = (time.monotonic() - t0) * 1e3
            total, contributors = buf[:-1], buf[-1].item()
            if contributors > 0:
                with torch.no_grad():  # Nesterov SGD, = torch.optim.SGD(nesterov=True)
                    g = total / contributors
                    mu, lr = self.args.outer_momentum, self.args.outer_lr
                    self.momentum.mul_(mu).add_(g)
                    self.theta.sub_(g.add(self.momentum, alpha=mu), alpha=lr)
            self.k += 1
            self.started = True
            util.say("outer", peer=self.id, step=int(self.k), loss=loss,
                     contributors=int(contributors), world=info.world_size if info else 1,
                     tx=info.tx_bytes if info else 0, wait_ms=wait_ms)
        util.say("done", peer=self.id)
        self.comm.close()


def launch(args: argparse.Namespace) -> int:
    import qccl

    master = qccl.Master("127.0.0.1:0", peer_timeout_ms=args.peer_timeout_ms)
    master.start()
    lock = threading.Lock()
    hashes = []
    join_now = threading.Event()
    children: List[util.Child] = []
    me = os.path.abspath(__file__)

    def on_line(child: util.Child, line: str) -> None:
        event, f = util.parse_event(line)
        with lock:  # one relay thread per child: whole lines, one at a time
            util.emit(line)
            if event == "sync":
                hashes.append(((int(f["rev"]),), f["peer"], f["hash"]))
            if event == "outer" and args.join_after is not None and \
                    f["peer"] == "0" and int(f["step"]) == args.join_after:
                join_now.set()

    def start_peer(i: int, extra: List[str]) -> None:
        cmd = [sys.executable, me, "--master", master.address, "--peer-id", str(i),
               "--outer-steps", str(args.outer_steps), "--inner-steps", str(args.inner_steps),
               "--outer-lr", str(args.outer_lr), "--outer-momentum", str(args.outer_momentum),
               "--launched"] + extra
        if args.join_after is not None:
            cmd += ["--min-peers-from", f"{args.join_after}:{args.peers + 1}"]
        env = dict(os.environ, QCCL_LOG_LEVEL=os.environ.get("QCCL_LOG_LEVEL", "warn"))
        children.append(util.Child(f"peer{i}", cmd, env, on_line))

    deadline = time.monotonic() + args.deadline
    try:
        for i in range(args.peers):
            start_peer(i, ["--min-peers", str(args.peers)])
        util.emit(f"launcher: master {master.address}, {args.peers} peers")
        if args.join_after is not None:
            while not join_now.wait(0.1):
                if time.monotonic() > deadline or not children[0].alive():
                    raise RuntimeError("the run ended before the join was due")
            util.emit(f"launcher: peer {args.peers} joins")
            start_peer(args.peers, ["--join"])
        codes = util.wait_all(children, deadline)
        errors = [f"{name} exited with {code}" for name, code in codes.items() if code != 0]
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
    ap.add_argument("--join", action="store_true",
                    help="this peer joins a running job (first sync receive-only)")
    ap.add_argument("--min-peers", type=int, default=2, help="peers to wait for at the start")
    ap.add_argument("--min-peers-from", metavar="STEP:N",
                    help="from iteration STEP on, wait for N peers (launcher: late joiner)")
    ap.add_argument("--outer-steps", type=int, default=6, help="rounds of inner steps")
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--inner-lr", type=float, default=3e-3)
    ap.add_argument("--outer-lr", type=float, default=0.7)
    ap.add_argument("--outer-momentum", type=float, default=0.5,
                    help="0.5: with the one-step delay, DiLoCo's 0.9 oscillates on this task")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--launched", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--peers", type=int, default=2, help="launcher: peers at the start")
    ap.add_argument("--join-after", type=int, metavar="K",
                    help="launcher: one more peer starts once peer 0 finished iteration K")
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
