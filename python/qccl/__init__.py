"""qccl: fault-tolerant collective communication over ordinary IP networks.

Peers all-reduce over TCP rings and keep shared state identical while peers join, leave or
crash; a small master admits peers and rebuilds the rings. This package binds the C API
(``qccl/qccl.h``) for Python: PyTorch tensors (CPU, zero-copy; CUDA, staged through host
memory), NumPy arrays and any C-contiguous buffer.

    import qccl, torch
    with qccl.Communicator("127.0.0.1:48148") as comm:
        comm.connect()
        comm.wait_for_world(2, timeout=60)   # until 2 peers are in the run
        grad = torch.ones(1024)
        comm.admit_pending()                 # the loop head: lets later peers in
        info = comm.all_reduce(grad, op=qccl.ReduceOp.AVG)   # in place

See docs/python.md for the whole API, errors, threading and lifetimes.
"""

from __future__ import annotations

import atexit as _atexit

from . import _errors, _qccl
from ._comm import AllReduceOp, Communicator, Op, SharedState
from ._comm import _close_all as _close_all_comms
from ._enums import (Attribute, DataType, OpInfo, PeerInfo, QuantAlgorithm, Quantization,
                     ReduceInfo, ReduceOp, Result, Stats, SyncInfo, SyncStrategy)
from ._errors import (AbortedError, AuthFailedError, InternalError, InvalidArgumentError,
                      InvalidUsageError, KickedError, MasterUnreachableError, MismatchError,
                      PeerLostError, QcclError, TimeoutError, TooFewPeersError)
from ._master import Master
from ._master import _close_all as _close_all_masters

#: The version of the C library actually loaded (qcclGetVersion), e.g. "0.1.0".
__version__: str = _qccl.version_string()

__all__ = [
    "__version__",
    # objects
    "Master",
    "Communicator",
    "AllReduceOp",
    "Op",
    "SharedState",
    # enums and values
    "Attribute",
    "DataType",
    "OpInfo",
    "PeerInfo",
    "QuantAlgorithm",
    "Quantization",
    "ReduceInfo",
    "ReduceOp",
    "Result",
    "Stats",
    "SyncInfo",
    "SyncStrategy",
    # errors
    *_errors.__all__,
]


@_atexit.register
def _close_everything() -> None:
    # Leave the run gracefully (the other peers see the group shrink at once instead of a
    # peer timeout), then stop embedded masters, while the interpreter is still whole.
    _close_all_comms()
    _close_all_masters()
