"""qccl.distributed.Options: what a qccl process group is built with."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from .._enums import Quantization


@dataclasses.dataclass
class Options:
    """Options of the ``"qccl"`` backend; pass one as ``init_process_group(..., pg_options=)``
    (or to :class:`ProcessGroupQccl`). Every field is optional.

    ``master_address``: an external ``qccl-master`` ("host:port") every rank joins; None
    (default, or ``$QCCL_MASTER_ADDRESS``) makes rank 0 of each group start an embedded
    master bound to ``master_listen`` and publish ``master_host:port`` through the store.
    ``master_host`` defaults to ``$MASTER_ADDR`` (set by torchrun) else 127.0.0.1.
    ``peer_group`` (external master only): the qccl peer group of this process group; None
    derives one from the torch group's name, so two groups never share a ring.
    ``connections_per_peer``, ``auth_token``/``auth_token_file``, ``listen_address``,
    ``advertise_address``: as :class:`qccl.Communicator` (the ``QCCL_*`` variables still
    apply when unset). ``quantization``: applied to every SUM/AVG all-reduce and
    reduce-scatter of floating-point tensors (None: exact; see also :mod:`qccl.distributed.hooks`).
    """

    master_address: Optional[str] = None
    master_listen: str = "0.0.0.0:0"
    master_host: Optional[str] = None
    peer_group: Optional[int] = None
    connections_per_peer: int = 0
    auth_token: Optional[str] = None
    auth_token_file: Optional[str] = None
    listen_address: Optional[str] = None
    advertise_address: Optional[str] = None
    quantization: Optional[Quantization] = None

    def resolved_master_address(self) -> Optional[str]:
        return self.master_address or os.environ.get("QCCL_MASTER_ADDRESS") or None

    def resolved_master_host(self) -> str:
        return self.master_host or os.environ.get("MASTER_ADDR") or "127.0.0.1"
