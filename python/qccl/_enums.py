"""Enumerations and small value types of the qccl API.

Every enum value is read from the C header through the extension (``_qccl``), so the
Python names can never drift from ``include/qccl/qccl.h``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

from . import _qccl as _C

__all__ = [
    "Result",
    "DataType",
    "ReduceOp",
    "QuantAlgorithm",
    "SyncStrategy",
    "Attribute",
    "PeerInfo",
    "Stats",
    "Quantization",
    "ReduceInfo",
    "SyncInfo",
]


class Result(enum.IntEnum):
    """``qcclResult_t``: the code carried by every :class:`qccl.QcclError` as ``.code``."""

    SUCCESS = _C.RESULTS["SUCCESS"]
    INVALID_ARGUMENT = _C.RESULTS["INVALID_ARGUMENT"]
    INVALID_USAGE = _C.RESULTS["INVALID_USAGE"]
    MASTER_UNREACHABLE = _C.RESULTS["MASTER_UNREACHABLE"]
    PEER_LOST = _C.RESULTS["PEER_LOST"]
    TOO_FEW_PEERS = _C.RESULTS["TOO_FEW_PEERS"]
    TIMEOUT = _C.RESULTS["TIMEOUT"]
    KICKED = _C.RESULTS["KICKED"]
    MISMATCH = _C.RESULTS["MISMATCH"]
    AUTH_FAILED = _C.RESULTS["AUTH_FAILED"]
    ABORTED = _C.RESULTS["ABORTED"]
    INTERNAL_ERROR = _C.RESULTS["INTERNAL_ERROR"]


class DataType(enum.IntEnum):
    """``qcclDataType_t``: element types of buffers and of quantized payloads."""

    UINT8 = _C.DATA_TYPES["UINT8"]
    INT8 = _C.DATA_TYPES["INT8"]
    UINT16 = _C.DATA_TYPES["UINT16"]
    INT16 = _C.DATA_TYPES["INT16"]
    UINT32 = _C.DATA_TYPES["UINT32"]
    INT32 = _C.DATA_TYPES["INT32"]
    UINT64 = _C.DATA_TYPES["UINT64"]
    INT64 = _C.DATA_TYPES["INT64"]
    FLOAT16 = _C.DATA_TYPES["FLOAT16"]
    BFLOAT16 = _C.DATA_TYPES["BFLOAT16"]
    FLOAT32 = _C.DATA_TYPES["FLOAT32"]
    FLOAT64 = _C.DATA_TYPES["FLOAT64"]

    @property
    def itemsize(self) -> int:
        """Size of one element in bytes."""
        return _ITEMSIZE[self]


_ITEMSIZE = {
    DataType.UINT8: 1,
    DataType.INT8: 1,
    DataType.UINT16: 2,
    DataType.INT16: 2,
    DataType.UINT32: 4,
    DataType.INT32: 4,
    DataType.UINT64: 8,
    DataType.INT64: 8,
    DataType.FLOAT16: 2,
    DataType.BFLOAT16: 2,
    DataType.FLOAT32: 4,
    DataType.FLOAT64: 8,
}


class ReduceOp(enum.IntEnum):
    """``qcclRedOp_t``. ``AVG`` divides by the world size of the operation."""

    SUM = _C.REDUCE_OPS["SUM"]
    AVG = _C.REDUCE_OPS["AVG"]
    PROD = _C.REDUCE_OPS["PROD"]
    MAX = _C.REDUCE_OPS["MAX"]
    MIN = _C.REDUCE_OPS["MIN"]


class QuantAlgorithm(enum.IntEnum):
    """``qcclQuantAlgorithm_t`` (docs/quantization.md)."""

    NONE = _C.QUANT_ALGORITHMS["NONE"]
    MIN_MAX = _C.QUANT_ALGORITHMS["MIN_MAX"]
    ZERO_POINT_SCALE = _C.QUANT_ALGORITHMS["ZERO_POINT_SCALE"]


class SyncStrategy(enum.IntEnum):
    """``qcclSyncStrategy_t`` (docs/shared-state.md)."""

    ENFORCE_POPULAR = _C.SYNC_STRATEGIES["ENFORCE_POPULAR"]
    RECEIVE_ONLY = _C.SYNC_STRATEGIES["RECEIVE_ONLY"]
    SEND_ONLY = _C.SYNC_STRATEGIES["SEND_ONLY"]


class Attribute(enum.IntEnum):
    """``qcclAttribute_t``: what :meth:`qccl.Communicator.get_attribute` can read."""

    GLOBAL_WORLD_SIZE = _C.ATTRIBUTES["GLOBAL_WORLD_SIZE"]
    GROUP_WORLD_SIZE = _C.ATTRIBUTES["GROUP_WORLD_SIZE"]
    NUM_GROUPS = _C.ATTRIBUTES["NUM_GROUPS"]
    LARGEST_GROUP_SIZE = _C.ATTRIBUTES["LARGEST_GROUP_SIZE"]
    RING_RANK = _C.ATTRIBUTES["RING_RANK"]
    EPOCH = _C.ATTRIBUTES["EPOCH"]
    PEER_ID = _C.ATTRIBUTES["PEER_ID"]


class PeerInfo(NamedTuple):
    """One peer of this peer's group, as :meth:`qccl.Communicator.peers` lists it
    (``qcclPeerInfo_t``)."""

    peer_id: int
    ring_rank: int
    address: str  # "host:port" the other peers dial it at


class Stats(NamedTuple):
    """Where this peer's operations spent their time (``qcclStats_t``, from
    :meth:`qccl.Communicator.stats`): sums over every operation that ended (committed or failed)
    since the communicator was created. Take one before and one after a run of operations and
    subtract (``after - before``). Times in nanoseconds; an operation's wall time is
    ``wait_ring_ns + data_ns + commit_ns`` (docs/performance.md, "Where the time goes")."""

    ops: int  # operations that ended
    wait_ring_ns: int  # started -> this peer's lanes of the op's group epoch were up
    data_ns: int  # lanes up -> every frame received and sent
    commit_ns: int  # frames done -> the master's verdict (all or nothing)
    frame_work_ns: int  # within data_ns: taking frames in (reduce, decode, forward)
    thread_cpu_ns: int  # CPU time (user + system) of the communicator's I/O thread
    tx_bytes: int  # data bytes sent by those operations
    rx_bytes: int  # data bytes received by those operations

    def __sub__(self, other: "Stats") -> "Stats":
        """The counts of the operations that ended between ``other`` and ``self``."""
        return Stats(*(a - b for a, b in zip(self, other)))


@dataclass(frozen=True)
class Quantization:
    """How an all-reduce payload travels (``qcclQuantization_t``).

    ``Quantization(QuantAlgorithm.MIN_MAX, DataType.UINT8)`` quantizes a floating-point
    buffer to 8 bits per element on the wire; ``Quantization(QuantAlgorithm.NONE,
    DataType.BFLOAT16)`` down-casts float32 to bfloat16 on the wire. Every peer must pass the
    same quantization for the same tag (else :class:`qccl.MismatchError`). Results are
    bit-identical on every peer either way. See docs/quantization.md for what is supported.
    """

    algorithm: QuantAlgorithm
    dtype: DataType

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", QuantAlgorithm(self.algorithm))
        object.__setattr__(self, "dtype", DataType(self.dtype))


@dataclass(frozen=True)
class ReduceInfo:
    """What a collective operation covered (``qcclOpInfo_t``).

    ``world_size``: peers that took part (whose contributions are in the result).
    ``tx_bytes`` / ``rx_bytes``: bytes this peer sent / received for the operation (for
    ``all_reduce_multiple_with_retry``: summed over the ops, world size of the last op).
    ``epoch``: the group epoch it ran in; ``peers``: the participants' peer ids in ring order
    (the order of an all-gather's blocks; ring rank r received block r of a reduce-scatter);
    both empty for ``all_reduce_multiple_with_retry``. ``counts``: for ``all_gather_v``, each
    peer's contribution in elements, in the same order.
    """

    world_size: int
    tx_bytes: int
    rx_bytes: int
    epoch: int = 0
    peers: Tuple[int, ...] = ()
    counts: Tuple[int, ...] = ()


OpInfo = ReduceInfo  # the C API's name (qcclOpInfo_t)


@dataclass(frozen=True)
class SyncInfo:
    """What a shared-state sync did (``qcclSyncInfo_t`` plus the elected revision).

    ``tx_bytes`` / ``rx_bytes``: tensor bytes this peer served to / downloaded from other
    peers in this call (0 and 0 when its state already matched and nobody needed it).
    """

    revision: int
    tx_bytes: int
    rx_bytes: int


def _quantization_args(quantization: Optional[Quantization], dtype: DataType) -> "tuple[int, int]":
    """(algorithm, quantized dtype) for the C descriptor; None sends the source type."""
    if quantization is None:
        return int(QuantAlgorithm.NONE), int(dtype)
    if not isinstance(quantization, Quantization):
        raise TypeError(
            f"quantization must be a qccl.Quantization or None, not {type(quantization).__name__}"
        )
    return int(quantization.algorithm), int(quantization.dtype)


def encryption_setting(encryption: Optional[bool]) -> int:
    """None / True / False -> QCCL_ENCRYPTION_DEFAULT / _ON / _OFF (docs/security.md)."""
    if encryption is None:
        return 0
    if not isinstance(encryption, bool):
        raise TypeError(f"encryption must be True, False or None, not {type(encryption).__name__}")
    return 1 if encryption else 2
