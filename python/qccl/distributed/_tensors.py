"""How torch tensors, dtypes and reduce ops become qccl buffers and ops."""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch
import torch.distributed as dist

from .._buffers import _torch_dtypes
from .._enums import ReduceOp, Result
from ._errors import QcclBackendError, unsupported

_R = dist.ReduceOp.RedOpType
_OPS = {_R.SUM: ReduceOp.SUM, _R.AVG: ReduceOp.AVG, _R.PRODUCT: ReduceOp.PROD,
        _R.MIN: ReduceOp.MIN, _R.MAX: ReduceOp.MAX, _R.PREMUL_SUM: ReduceOp.SUM}
# bool is reduced as uint8 0/1: sum and max are "or", product and min are "and".
_BOOL_OPS = {_R.SUM: ReduceOp.MAX, _R.MAX: ReduceOp.MAX, _R.BOR: ReduceOp.MAX,
             _R.MIN: ReduceOp.MIN, _R.PRODUCT: ReduceOp.MIN, _R.BAND: ReduceOp.MIN}


def op_type(op: Any) -> "dist.ReduceOp.RedOpType":
    """The RedOpType of a dist.ReduceOp, a RedOpType, or an AllreduceOptions' reduceOp."""
    kind = getattr(op, "op", op)  # a ReduceOp object has .op; ReduceOp.SUM is a RedOpType
    if not isinstance(kind, _R):
        raise QcclBackendError(f"qccl: {op!r} is not a torch.distributed.ReduceOp",
                               Result.INVALID_ARGUMENT)
    return kind


def premul_factor(op: Any) -> Optional[float]:
    """PREMUL_SUM's factor (a float, or a 1-element tensor), else None."""
    if getattr(op, "op", None) != _R.PREMUL_SUM:
        return None
    f = op.factor
    return float(f.item()) if isinstance(f, torch.Tensor) else float(f)


def contiguous(t: torch.Tensor) -> Tuple[torch.Tensor, Callable[[], None]]:
    """``t`` itself when contiguous, else a contiguous copy and the step that writes it back."""
    if t.is_contiguous() and (t.dim() == 0 or t.stride(-1) == 1):  # (size-1 dims may
        return t, _nothing                                          # have any stride)
    c = t.clone(memory_format=torch.contiguous_format)
    return c, lambda: t.copy_(c)


def flat_bytes(t: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor's memory as a 1-D uint8 tensor (any dtype: for moving data)."""
    return t.reshape(-1).view(torch.uint8)


def reducible(t: torch.Tensor, op: Any, call: str) -> Tuple[torch.Tensor, ReduceOp]:
    """A view of contiguous ``t`` that qccl reduces, and qccl's op for torch's ``op``."""
    kind = op_type(op)
    if t.dtype == torch.bool:
        if kind not in _BOOL_OPS:
            raise unsupported(f"{call} with {kind.name} on bool tensors")
        return t.view(torch.uint8), _BOOL_OPS[kind]
    if kind not in _OPS:
        raise unsupported(f"{call} with ReduceOp.{kind.name}")
    if t.is_complex():
        if kind not in (_R.SUM, _R.AVG, _R.PREMUL_SUM):
            raise unsupported(f"{call} with {kind.name} on complex tensors")
        t = torch.view_as_real(t)
    if t.dtype not in _torch_dtypes(torch):
        raise unsupported(f"{call} on {t.dtype} tensors")
    return t, _OPS[kind]


def same_numel(tensors: List[torch.Tensor]) -> bool:
    return len({x.numel() for x in tensors}) <= 1


def check_device(tensors: List[torch.Tensor], call: str) -> None:
    for x in tensors:
        if not isinstance(x, torch.Tensor):
            raise QcclBackendError(f"qccl {call}: expected tensors, got {type(x).__name__}")
        if x.device.type not in ("cpu", "cuda"):
            raise unsupported(f"{call} on {x.device} tensors", "CPU tensors are used in place "
                              "and CUDA tensors are staged through host memory")


def _nothing() -> None:
    pass
