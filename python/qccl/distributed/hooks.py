"""DDP communication hooks that all-reduce gradient buckets with qccl's wire quantization.

    ddp = DistributedDataParallel(model)           # process group of the "qccl" backend
    ddp.register_comm_hook(None, qccl.distributed.hooks.minmax_uint8_hook)

``minmax_uint8_hook`` sends float32 gradients as 8-bit MinMax codes (4x less traffic);
``bf16_hook`` down-casts them to bfloat16 on the wire (2x less). Either way every rank gets
bit-identical averaged gradients. ``state`` is the process group (None: DDP's).
"""
from typing import Any, Optional

import torch
import torch.distributed as dist

from .._enums import DataType, QuantAlgorithm, Quantization
from ._errors import QcclBackendError
from ._process_group import ProcessGroupQccl

MINMAX_UINT8 = Quantization(QuantAlgorithm.MIN_MAX, DataType.UINT8)
BF16 = Quantization(QuantAlgorithm.NONE, DataType.BFLOAT16)


def quantized_hook(quantization: Quantization):
    """A DDP comm hook averaging each bucket with ``quantization`` on the wire."""

    # Real annotations (no `from __future__ import annotations`): DDP checks them.
    def hook(state: Optional[Any],
             bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        pg = state if state is not None else dist.group.WORLD
        if not isinstance(pg, ProcessGroupQccl):
            raise QcclBackendError(f"qccl comm hooks need a qccl process group, not "
                                   f"{type(pg).__name__}")
        work = pg.allreduce_quantized(bucket.buffer(), quantization, dist.ReduceOp.AVG)
        return work.get_future().then(lambda fut: fut.value()[0])

    hook.__name__ = f"qccl_{quantization.algorithm.name.lower()}_{quantization.dtype.name.lower()}_hook"
    return hook


minmax_uint8_hook = quantized_hook(MINMAX_UINT8)
bf16_hook = quantized_hook(BF16)
