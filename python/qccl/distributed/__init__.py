"""qccl as a torch.distributed backend: ``import qccl.distributed`` registers ``"qccl"``.

    import torch.distributed as dist
    import qccl.distributed  # registers the backend
    dist.init_process_group("qccl")  # under torchrun; or init_method="tcp://...", or store=

Rank 0 of each group starts an embedded qccl master (or every rank joins the external one
named by :class:`Options`); the call returns once all ``world_size`` ranks are connected.
DDP, FSDP2 and the collectives of ``torch.distributed`` then run over qccl. See docs/torch.md.
This module needs torch; ``qccl`` itself never imports it.
"""
from __future__ import annotations

import datetime
from typing import Any, Optional

import torch.distributed as dist

from ._errors import QcclBackendError
from ._options import Options
from ._process_group import ProcessGroupQccl
from ._work import Work

__all__ = ["BACKEND", "Options", "ProcessGroupQccl", "QcclBackendError", "Work", "hooks"]

#: The backend's name, for ``dist.init_process_group(BACKEND)``.
BACKEND = "qccl"


def _create(backend_opts: Any, options: Optional[Options]) -> ProcessGroupQccl:
    """torch's creator (extended API): called by init_process_group / new_group."""
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"pg_options for the qccl backend must be qccl.distributed.Options, "
                        f"not {type(options).__name__}")
    timeout = backend_opts.timeout or datetime.timedelta(minutes=30)
    return ProcessGroupQccl(backend_opts.store, backend_opts.group_rank, backend_opts.group_size,
                            timeout, options, group_name=str(backend_opts.group_id))


if BACKEND.upper() not in dist.Backend._plugins:  # importing twice registers once
    dist.Backend.register_backend(BACKEND, _create, extended_api=True, devices=["cpu", "cuda"])

from . import hooks  # noqa: E402  (needs ProcessGroupQccl)
