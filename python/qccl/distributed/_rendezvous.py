"""Forming a qccl group for a torch process group through the torch store.

Rank 0 starts an embedded master (or uses the external one of ``Options.master_address``) and
publishes its address under ``qccl/master``; every rank connects and admits peers until the
group has ``world_size`` members; then each publishes its qccl peer id under
``qccl/peer/<rank>`` so that torch ranks map to peers (qccl orders peers by ring, not rank).
"""
from __future__ import annotations

import datetime
import threading
import time
import zlib
from dataclasses import dataclass
from typing import List, Optional

import torch.distributed as dist

from .._comm import Communicator
from .._enums import Result
from .._master import Master
from ._errors import QcclBackendError
from ._options import Options

_MASTER_KEY = "qccl/master"


@dataclass
class Group:
    comm: Communicator
    master: Optional[Master]  # the embedded master, on rank 0 only
    peer_of_rank: List[int]   # qccl peer id of each torch rank


def form_group(store: dist.Store, rank: int, world_size: int, timeout: datetime.timedelta,
               options: Options, group_name: str = "") -> Group:
    deadline = time.monotonic() + timeout.total_seconds()
    external = options.resolved_master_address()
    master: Optional[Master] = None
    if rank == 0:
        if external:
            address = external
        else:
            master = Master(options.master_listen, auth_token=options.auth_token).start()
            address = f"{options.resolved_master_host()}:{master.port}"
        store.set(_MASTER_KEY, address)
    else:
        address = store.get(_MASTER_KEY).decode()  # bounded by the store's timeout
    peer_group = options.peer_group
    if peer_group is None:
        # An external master may serve several torch groups: each gets its own qccl group.
        peer_group = zlib.crc32(group_name.encode()) & 0x7FFFFFFF if external else 0
    comm = Communicator(address, peer_group, options.connections_per_peer, options.auth_token,
                        listen_address=options.listen_address,
                        advertise_address=options.advertise_address,
                        auth_token_file=options.auth_token_file,
                        op_timeout=timeout.total_seconds())
    try:
        comm.connect(timeout=_left(deadline))
        comm.wait_for_world(world_size, timeout=_left(deadline))
        if comm.group_world_size != world_size:
            raise QcclBackendError(
                f"qccl: the group at {address} has {comm.group_world_size} peers, the torch "
                f"process group {world_size} (another run shares this master and peer group?)",
                Result.INVALID_USAGE)
        store.set(f"qccl/peer/{rank}", str(comm.peer_id))
        peers = [int(store.get(f"qccl/peer/{r}")) for r in range(world_size)]
    except BaseException:
        comm.close()
        if master is not None:
            master.close()
        raise
    return Group(comm, master, peers)


def leave_group(store: dist.Store, rank: int, world_size: int, master: Optional[Master],
                wait: bool = True, background: bool = True,
                grace: datetime.timedelta = datetime.timedelta(seconds=5)) -> None:
    """After this rank's communicator closed. Ranks > 0 say so in the store; rank 0 stops its
    embedded master once they all did (at most ``grace`` later: a rank that crashed never
    says), so that the others do not lose the master while they leave. Rank 0 waits on a
    background thread: its own shutdown returns at once (its process may then take up to
    ``grace`` to exit)."""
    if rank != 0:
        try:
            store.set(f"qccl/left/{rank}", "1")
        except Exception:  # noqa: BLE001 - the store is gone: nobody waits for us
            pass
        return
    if master is None:
        return
    if not wait or world_size == 1:
        master.close()
        return

    def stop() -> None:
        try:
            store.wait([f"qccl/left/{r}" for r in range(1, world_size)], grace)
        except Exception:  # noqa: BLE001 - the store is gone or the grace passed
            pass
        master.close()
    # Not a daemon: a daemon thread blocked in native code when the interpreter finalizes is
    # ended by pthread_exit, which C++ frames cannot unwind through (std::terminate). The
    # interpreter waits for this one at exit, at most ``grace``.
    if background:
        threading.Thread(target=stop, name="qccl-master-grace").start()
    else:  # at interpreter exit, where a thread started now would not be waited for
        stop()


def _left(deadline: float) -> float:
    return max(0.001, deadline - time.monotonic())
