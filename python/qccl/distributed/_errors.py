"""The error a qccl collective raises through torch: a ``torch.distributed.DistBackendError``
(so a ``RuntimeError``) that carries qccl's result code."""
from __future__ import annotations

from typing import Optional

import torch.distributed as dist

from .._enums import Result
from .._errors import QcclError


class QcclBackendError(dist.DistBackendError):
    """A collective of the ``"qccl"`` backend failed. ``code`` is the :class:`qccl.Result`
    (e.g. ``Result.PEER_LOST``, ``Result.TIMEOUT``, ``Result.ABORTED``); ``__cause__`` is the
    :class:`qccl.QcclError` when qccl raised one."""

    def __init__(self, message: str, code: Result = Result.INTERNAL_ERROR) -> None:
        super().__init__(message)
        self.code = Result(code)

    @classmethod
    def of(cls, call: str, error: BaseException) -> "QcclBackendError":
        if isinstance(error, QcclBackendError):
            return error
        code = error.code if isinstance(error, QcclError) else Result.INTERNAL_ERROR
        e = cls(f"qccl {call}: {error}", code)
        e.__cause__ = error
        return e


def unsupported(call: str, why: str = "") -> QcclBackendError:
    """The error of a torch.distributed call that qccl does not implement."""
    return QcclBackendError(
        f"the qccl backend does not support {call}{': ' + why if why else ''} (supported: "
        f"all_reduce, all_reduce_coalesced, broadcast, all_gather, all_gather_into_tensor, "
        f"reduce_scatter, reduce_scatter_tensor, barrier; see docs/torch.md)",
        Result.INVALID_USAGE)


def broken(reason: Optional[BaseException]) -> QcclBackendError:
    code = getattr(reason, "code", Result.PEER_LOST)
    return QcclBackendError(
        f"qccl process group is unusable after an earlier failure ({reason}); a torch process "
        f"group has a fixed world: destroy and re-create it (or use qccl.torchft)", code)
