"""A standard DDP training script, as PyTorch's DDP tutorial writes it, on the qccl backend.

    torchrun --nproc-per-node 3 examples/python/torch_ddp.py --backend qccl

The only qccl-specific lines are the import and the backend name (run it with
``--backend gloo`` to compare). ``--hook minmax_uint8`` or ``--hook bf16`` registers one of
qccl's quantizing DDP communication hooks. Each rank prints one line per step: the loss and a
hash of its parameters (identical on every rank), and writes them as JSON to ``--out`` if
given (the tests compare ranks and backends with it).
"""
import argparse
import hashlib
import json

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.optim as optim
from torch.nn.parallel import DistributedDataParallel as DDP

import qccl.distributed  # registers the "qccl" backend


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net1 = nn.Linear(10, 64)
        self.relu = nn.ReLU()
        self.net2 = nn.Linear(64, 5)

    def forward(self, x):
        return self.net2(self.relu(self.net1(x)))


def param_hash(model):
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()[:16]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="qccl")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hook", choices=["none", "minmax_uint8", "bf16"], default="none")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    dist.init_process_group(args.backend)  # env:// under torchrun
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same initial model on every rank (DDP also broadcasts it)
    model = ToyModel()
    ddp_model = DDP(model)
    if args.hook != "none":
        ddp_model.register_comm_hook(None, getattr(qccl.distributed.hooks, f"{args.hook}_hook"))
    loss_fn = nn.MSELoss()
    optimizer = optim.SGD(ddp_model.parameters(), lr=0.05)

    data = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard
    w_true = torch.randn(10, 5, generator=torch.Generator().manual_seed(7))
    log = []
    for step in range(args.steps):
        x = torch.randn(32, 10, generator=data)
        y = x @ w_true
        optimizer.zero_grad()
        loss = loss_fn(ddp_model(x), y)
        loss.backward()
        optimizer.step()
        log.append({"step": step, "loss": loss.item(), "params": param_hash(model)})
        print(f"rank {rank} step {step} loss {loss.item():.6f} params {log[-1]['params']}",
              flush=True)
    if args.out:
        with open(f"{args.out}.{rank}.json", "w") as f:
            json.dump(log, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
