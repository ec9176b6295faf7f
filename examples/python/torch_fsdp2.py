"""A standard FSDP2 (``fully_shard``) training script on the qccl backend, on CPU.

    torchrun --standalone --nproc-per-node 2 examples/python/torch_fsdp2.py

The only qccl-specific lines are the import and the backend name (``--backend gloo`` runs the
same script on gloo). Each rank trains on its own data; every step prints the loss, and at the
end rank 0 prints a hash of the full (unsharded) parameters.
"""
import argparse
import hashlib

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

import qccl.distributed  # noqa: F401  (registers the "qccl" backend)


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(),
                                nn.Linear(4 * dim, dim))

    def forward(self, x):
        return x + self.ff(x)


class Model(nn.Module):
    def __init__(self, dim=32, layers=4):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim) for _ in range(layers))
        self.head = nn.Linear(dim, 1)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="qccl")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    dist.init_process_group(args.backend)  # env:// under torchrun
    rank = dist.get_rank()
    torch.manual_seed(0)  # FSDP2 shards the model as it is: the same on every rank
    model = Model()
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    data = torch.Generator().manual_seed(1000 + rank)  # each rank its own batches
    for step in range(args.steps):
        x = torch.randn(16, 32, generator=data)
        y = x.sum(dim=1, keepdim=True).sin()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print(f"rank {rank} step {step} loss {loss.item():.6f}", flush=True)

    # Full parameters on every rank (a collective), e.g. to save a checkpoint from rank 0.
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    if rank == 0:
        h = hashlib.sha256(b"".join(t.numpy().tobytes() for t in state.values()))
        print(f"full parameters: {sum(t.numel() for t in state.values())} values, "
              f"sha256 {h.hexdigest()[:16]}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
