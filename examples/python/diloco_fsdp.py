#!/usr/bin/env python3
"""DiLoCo across machines with qccl, FSDP2 inside each machine.

Every "machine" is one qccl peer per FSDP rank: FSDP2 (``fully_shard``, gloo, CPU) shards a
small MLP over the machine's processes, and each process has its own qccl communicator with
``peer_group = FSDP rank``. Rank r of every machine holds the same shard r, so the shards
with the same index form one qccl group, with its own ring and its own shared state.

Each outer step (DiLoCo, Douillard et al. 2023):
  1. membership: admit machines that wait (``are_peers_pending`` / ``update_topology``) and
     wait until every admitted machine has all of its ranks in (the "grid" is complete);
  2. ``sync_shared_state`` of the outer parameters' local shard, the outer optimizer's
     momentum and the step counter: identical everywhere (a joiner downloads them here);
  3. local params <- outer params; H inner steps with AdamW on this machine's own data;
  4. pseudo-gradient = outer - local, all-reduced (Avg, optionally quantized) in the group;
  5. Nesterov SGD (lr 0.7, momentum 0.9) on the outer parameters with the averaged
     pseudo-gradient. Every peer computes it from bit-identical inputs, so the next sync
     transfers nothing (``rx=0``), which the output shows.

Run it on one computer (launcher mode: a qccl master in this process, M machines x 2 FSDP
ranks as subprocesses over 127.0.0.1, a late machine joining after K outer steps; it relays
the progress lines and checks at the end that every group's peers hashed equal after every
sync; exit status 0 if so):

    PYTHONPATH=build/python python3 examples/python/diloco_fsdp.py \
        --machines 2 --late-machine-after 2   # add --quantize minmax-uint8 to quantize

Run it on real machines: start a master (``qccl-master --listen 0.0.0.0:48148``), then on each
machine its FSDP ranks with torchrun (any launcher that sets RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT works; the torch.distributed group is local to the machine):

    torchrun --nproc-per-node 2 examples/python/diloco_fsdp.py \\
        --master MASTER_HOST:48148 --machine-id 0 --min-machines 2
    # on a machine that joins a running job later: --machine-id 2 --join

Output: one ``EVENT key=value ...`` line per event, e.g.
    sync machine=1 rank=0 group=0 step=3 rev=4 hash=5f0c... rx=0 tx=0 machines=3
    eval machine=1 step=3 loss=0.0412
    outer machine=1 rank=0 step=3 loss=0.0487 world=6 group_world=3 tx=1536 rx=1536

Pitfalls (each handled below, where it happens):
- Votes (``are_peers_pending``, ``update_topology``) are global over every accepted peer of
  every group, so every FSDP rank of every machine calls them at the same point of the loop.
- A machine's ranks connect independently, so a machine can be half admitted (rank 0 in,
  rank 1 still pending). No group collective may run until every admitted machine has all of
  its ranks in: membership() loops the votes until ``world_size == fsdp_size x
  largest_group_size``, the same test on every peer (both are global attributes).
- All FSDP ranks of a machine must take the same decisions (go on or vote again; keep or
  drop an outer step), or they end up in different collectives and hang in gloo. Once the
  machine is complete, rank 0 decides and broadcasts over the FSDP process group. Before
  that (the first membership phase) a rank may still be blocked in ``connect``, so the ranks
  decide on their own from the global attributes, which every peer reads the same after a
  round of ``admit_pending`` that admitted nobody (after an admitting round, one group may
  get ``PeerLostError`` while the others go on: deciding then splits the groups).
- A peer admitted by ``update_topology`` returns from ``connect`` at that moment, while the
  others go on; ``admit_pending`` is still its right first call (docs/call-order.md).
- ``PeerLostError``: retried (``all_reduce_multiple_with_retry`` does it for the outer
  all-reduce; the sync and ``update_topology`` are retried here). ``TooFewPeersError``: every
  other machine left; the machine drops that outer step (all its ranks, agreed over FSDP) and
  waits for machines in membership().
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import example_util as util

OUTER_LR = 0.7
OUTER_MOMENTUM = 0.9


# ------------------------------------------------------------------------------------------
# Worker: one FSDP rank of one machine = one qccl peer
# ------------------------------------------------------------------------------------------

class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        import qccl
        from torch.distributed.fsdp import fully_shard

        self.qccl = qccl
        self.args = args
        dist.init_process_group("gloo")  # env://: this machine's ranks only
        self.rank, self.fsdp = dist.get_rank(), dist.get_world_size()
        self.machine = args.machine_id
        self.teacher = util.Teacher(args.d_in, args.d_out)
        self.model = util.student(args.d_in, args.d_hidden, args.d_out)
        for layer in self.model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        fully_shard(self.model)
        self.params = list(self.model.named_parameters())  # DTensors sharded on dim 0
        self.inner_opt = torch.optim.AdamW(self.model.parameters(), lr=args.inner_lr,
                                           weight_decay=0.0)

        # The outer state of this shard: what the shared state keeps identical in the group.
        with torch.no_grad():
            self.outer = {n: p.to_local().detach().clone() for n, p in self.params}
        self.momentum = {n: torch.zeros_like(t) for n, t in self.outer.items()}
        self.step = torch.zeros(1, dtype=torch.int64)  # outer steps done
        tensors: Dict[str, torch.Tensor] = {"outer_step": self.step}
        tensors.update({f"outer/{n}": t for n, t in self.outer.items()})
        tensors.update({f"momentum/{n}": t for n, t in self.momentum.items()})
        self.state = qccl.SharedState(tensors)
        self.quant = util.quantization(args.quantize)

        self.comm = qccl.Communicator(args.master, peer_group=self.rank)
        self.comm.connect(timeout=args.connect_timeout)
        self.complete_once = False  # the machine has been complete (all ranks admitted)

    # ---- membership ----

    def needed_machines(self) -> int:
        need = self.args.min_machines
        if self.args.min_machines_from:
            at, n = (int(v) for v in self.args.min_machines_from.split(":"))
            if int(self.step) >= at:
                need = max(need, n)
        return need

    def decide(self, value: int) -> int:
        """Rank 0's value, on every rank of this machine (once all of them are admitted)."""
        if not self.complete_once:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.broadcast(t, src=0)
        return int(t.item())

    def membership(self) -> int:
        """Votes until the grid is complete with enough machines; returns the machine count."""
        qccl = self.qccl
        while True:
            try:
                pending = self.comm.admit_pending()  # same answer on every peer
            except qccl.PeerLostError:
                continue  # the new rings did not come up: vote again
            if pending:
                # Decide only in a round that admitted nobody. After an admission, one group's
                # new ring may fail to come up (PeerLostError above) while the others' succeed:
                # deciding now would let those groups leave the loop one round ahead of it. A
                # round with nobody pending changes nothing, so every peer of every group
                # leaves it with the same view and the same decision.
                continue
            world = self.comm.world_size
            machines = self.comm.get_attribute(qccl.Attribute.LARGEST_GROUP_SIZE)
            # world == fsdp x largest group <=> every group has `machines` peers: no machine
            # is half admitted (or half gone).
            go = int(world == self.fsdp * machines and machines >= self.needed_machines())
            if self.decide(go):
                self.complete_once = True
                return machines
            time.sleep(0.005)  # pacing of the poll (nobody is waiting to be admitted yet)

    # ---- the loop ----

    def shard_views(self) -> List[torch.Tensor]:
        return [p.to_local() for _, p in self.params]

    def eval_loss(self) -> float:
        x, y = util.batch(self.teacher, seed=999_999, step=0, n=256)  # the same everywhere
        with torch.no_grad():
            return F.mse_loss(self.model(x), y).item()

    def sync(self, machines: int) -> None:
        qccl = self.qccl
        strategy = qccl.SyncStrategy.ENFORCE_POPULAR
        if self.args.join and int(self.state.revision) == 0:
            # A late machine says its state is stale. Without it the revision rule would make
            # it receive anyway (its revision is behind), but this cannot be elected by mistake.
            strategy = qccl.SyncStrategy.RECEIVE_ONLY
        self.state.revision += 1
        while True:
            try:
                info = self.comm.sync_shared_state(self.state, strategy=strategy)
                break
            except qccl.PeerLostError:
                continue  # a donor left mid-transfer: the survivors serve the retry
        with torch.no_grad():
            for (n, _), view in zip(self.params, self.shard_views()):
                view.copy_(self.outer[n])  # every round starts from the outer parameters
        util.say("sync", machine=self.machine, rank=self.rank, group=self.rank,
                 step=int(self.step), rev=self.state.revision,
                 hash=util.state_hash(self.state.tensors), rx=info.rx_bytes, tx=info.tx_bytes,
                 machines=machines, strategy=strategy.name)

    def inner_steps(self) -> float:
        total = 0.0
        seed = self.machine * 1000 + self.rank  # every rank of every machine: its own data
        for i in range(self.args.inner_steps):
            x, y = util.batch(self.teacher, seed, int(self.step) * self.args.inner_steps + i,
                              self.args.batch)
            loss = F.mse_loss(self.model(x), y)
            loss.backward()
            self.inner_opt.step()
            self.inner_opt.zero_grad()
            total += loss.item()
        mean = torch.tensor([total / self.args.inner_steps])
        dist.all_reduce(mean)  # machine-wide mean (every rank trained on its own batches)
        return mean.item() / self.fsdp

    def outer_step(self, machines: int, inner_loss: float) -> None:
        qccl = self.qccl
        with torch.no_grad():
            grads = {n: self.outer[n] - view for (n, _), view in zip(self.params,
                                                                      self.shard_views())}
        ok, info = 1, None
        if machines > 1:
            ops = [(g, None, {"op": qccl.ReduceOp.AVG, "tag": i, "quantization": self.quant})
                   for i, g in enumerate(grads.values())]
            try:
                info = self.comm.all_reduce_multiple_with_retry(ops)  # retries PeerLostError
            except qccl.TooFewPeersError:
                ok = 0  # every other machine left: drop this outer step
        # Keep or drop the step on every rank of the machine alike: in one group the op may
        # have committed while another group's fell below 2 peers.
        flag = torch.tensor([ok], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if not flag.item():
            util.say("dropped", machine=self.machine, rank=self.rank, step=int(self.step))
            return
        with torch.no_grad():
            for n, g in grads.items():  # Nesterov SGD, = torch.optim.SGD(nesterov=True)
                buf = self.momentum[n]
                buf.mul_(OUTER_MOMENTUM).add_(g)
                self.outer[n].sub_(g.add(buf, alpha=OUTER_MOMENTUM), alpha=OUTER_LR)
        self.step += 1
        util.say("outer", machine=self.machine, rank=self.rank, step=int(self.step),
                 loss=inner_loss, world=self.comm.world_size,
                 group_world=info.world_size if info else 1,
                 tx=info.tx_bytes if info else 0, rx=info.rx_bytes if info else 0,
                 quantize=self.args.quantize)

    def run(self) -> None:
        while True:
            machines = self.membership()
            self.sync(machines)
            loss = self.eval_loss()
            if self.rank == 0:
                util.say("eval", machine=self.machine, step=int(self.step), loss=loss)
            if int(self.step) >= self.args.outer_steps:  # the same on every peer (synced)
                break
            inner = self.inner_steps()
            self.outer_step(machines, inner)
        util.say("done", machine=self.machine, rank=self.rank)
        self.comm.close()
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------
# Launcher: a master + M machines x FSDP ranks on this computer
# ------------------------------------------------------------------------------------------

def launch(args: argparse.Namespace) -> int:
    import qccl

    master = qccl.Master("127.0.0.1:0", peer_timeout_ms=args.peer_timeout_ms)
    master.start()
    lock = threading.Lock()
    hashes = []            # ((group, revision), machine, hash)
    synced = set()         # (machine, rank) that completed a sync
    late_go = threading.Event()
    children: List[util.Child] = []
    me = os.path.abspath(__file__)
    total_machines = args.machines + (1 if args.late_machine_after is not None else 0)

    def on_line(child: util.Child, line: str) -> None:
        event, f = util.parse_event(line)
        with lock:  # one relay thread per child: whole lines, one at a time
            util.emit(line)
            if event == "sync":
                hashes.append(((int(f["group"]), int(f["rev"])), f["machine"], f["hash"]))
                synced.add((f["machine"], f["rank"]))
            if (event == "outer" and f.get("machine") == "0" and f.get("rank") == "0"
                    and args.late_machine_after is not None
                    and int(f["step"]) == args.late_machine_after):
                late_go.set()

    def start_machine(m: int, extra: List[str]) -> None:
        port = util.free_port()  # this machine's torch.distributed rendezvous
        for r in range(args.fsdp_size):
            env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(args.fsdp_size),
                       LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                       QCCL_LOG_LEVEL=os.environ.get("QCCL_LOG_LEVEL", "warn"))
            cmd = [sys.executable, me, "--master", master.address, "--machine-id", str(m),
                   "--launched"] + worker_flags(args) + extra
            children.append(util.Child(f"m{m}r{r}", cmd, env, on_line))

    deadline = time.monotonic() + args.deadline
    try:
        initial = ["--min-machines", str(args.machines)]
        if args.late_machine_after is not None:
            initial += ["--min-machines-from", f"{args.late_machine_after}:{total_machines}"]
        for m in range(args.machines):
            start_machine(m, initial)
        util.emit(f"launcher: master {master.address}, {args.machines} machines x "
                  f"{args.fsdp_size} FSDP ranks")
        if args.late_machine_after is not None:
            while not late_go.wait(0.1):
                if time.monotonic() > deadline or any(not c.alive() for c in children):
                    raise RuntimeError("the run ended before the late machine was due")
            util.emit(f"launcher: machine {args.machines} joins after outer step "
                      f"{args.late_machine_after}")
            start_machine(args.machines, ["--join", "--min-machines", str(total_machines)])
        codes = util.wait_all(children, deadline)
        errors = [f"{name} exited with {code}" for name, code in codes.items() if code != 0]
        n, hash_errors = util.check_hashes(hashes)
        errors += hash_errors
        missing = {(str(m), str(r)) for m in range(total_machines)
                   for r in range(args.fsdp_size)} - synced
        if missing:
            errors.append(f"never synced: {sorted(missing)}")
        if errors:
            for e in errors:
                util.emit(f"launcher: FAILED {e}")
            return 1
        util.emit(f"launcher: ok, {n} (group, revision) syncs, every peer's hash equal in "
                  "each")
        return 0
    finally:
        for c in children:
            c.kill()
        master.close()


def worker_flags(args: argparse.Namespace) -> List[str]:
    return ["--outer-steps", str(args.outer_steps), "--inner-steps", str(args.inner_steps),
            "--inner-lr", str(args.inner_lr), "--batch", str(args.batch),
            "--quantize", args.quantize, "--d-hidden", str(args.d_hidden)]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--master", help="host:port of a qccl master: run this machine's ranks "
                    "(started by torchrun or the launcher); without it: launcher mode")
    ap.add_argument("--machine-id", type=int, default=0, help="this machine's number (data)")
    ap.add_argument("--join", action="store_true",
                    help="this machine joins a running job (first sync receive-only)")
    ap.add_argument("--min-machines", type=int, default=1,
                    help="outer steps wait until this many machines are in")
    ap.add_argument("--min-machines-from", metavar="STEP:N",
                    help="from outer step STEP on, wait for N machines (used by the launcher "
                    "to let a late machine in at a known step)")
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--launched", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--outer-steps", type=int, default=5)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--inner-lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--d-hidden", type=int, default=64)
    ap.add_argument("--quantize", default="none", choices=util.QUANTIZE_CHOICES,
                    help="how the pseudo-gradient travels")
    # launcher mode
    ap.add_argument("--machines", type=int, default=2, help="launcher: machines at the start")
    ap.add_argument("--fsdp-size", type=int, default=2, help="launcher: FSDP ranks per machine")
    ap.add_argument("--late-machine-after", type=int, metavar="K",
                    help="launcher: one more machine joins after outer step K")
    ap.add_argument("--peer-timeout-ms", type=int, default=5000, help="launcher: master's")
    ap.add_argument("--deadline", type=float, default=300.0, help="launcher: seconds")
    args = ap.parse_args(argv)
    args.d_in, args.d_out = 16, 8
    if args.master is None:
        return launch(args)
    if args.launched:
        util.die_with_parent()
    torch.set_num_threads(1)  # several ranks share the cores
    Worker(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
