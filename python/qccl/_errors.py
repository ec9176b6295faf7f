"""Exception classes: one per error result code of the C API, all subclasses of QcclError.

The extension raises these directly (they are registered with it at import), with the
message of ``qcclGetLastError()`` for the failed call. docs/errors.md says what each code
means and what state the communicator is in afterwards.
"""

from __future__ import annotations

import builtins
from typing import Dict, Optional, Type

from . import _qccl as _C
from ._enums import Result

__all__ = [
    "QcclError",
    "InvalidArgumentError",
    "InvalidUsageError",
    "MasterUnreachableError",
    "PeerLostError",
    "TooFewPeersError",
    "TimeoutError",
    "KickedError",
    "MismatchError",
    "AuthFailedError",
    "AbortedError",
    "InternalError",
]


class QcclError(Exception):
    """A qccl call failed. ``code`` is the :class:`qccl.Result`; ``str(e)`` says why."""

    #: The result code of this class (subclasses set it).
    _code: Result = Result.INTERNAL_ERROR

    def __init__(self, message: str = "", code: Optional[int] = None) -> None:
        super().__init__(message)
        self.code: Result = Result(code) if code is not None else type(self)._code

    def __reduce__(self):  # picklable (e.g. across multiprocessing)
        return (type(self), (str(self), int(self.code)))


class InvalidArgumentError(QcclError, ValueError):
    """A bad argument: NULL, bad enum, bad size, malformed address, unsupported combination."""

    _code = Result.INVALID_ARGUMENT


class InvalidUsageError(QcclError):
    """The call is not legal now: not connected, ops in flight, closed, already started."""

    _code = Result.INVALID_USAGE


class MasterUnreachableError(QcclError):
    """The master cannot be reached, or the connection to it was lost."""

    _code = Result.MASTER_UNREACHABLE


class PeerLostError(QcclError):
    """A peer left or failed during the operation; it failed on every survivor. Retry at once."""

    _code = Result.PEER_LOST


class TooFewPeersError(QcclError):
    """The peer group has fewer than 2 accepted peers."""

    _code = Result.TOO_FEW_PEERS


class TimeoutError(QcclError, builtins.TimeoutError):  # noqa: A001 (shadows the builtin on purpose)
    """A documented deadline passed (e.g. ``connect(timeout=...)``).

    Also a :class:`builtins.TimeoutError`, so ``except TimeoutError`` catches it either way.
    """

    _code = Result.TIMEOUT


class KickedError(QcclError):
    """The master expelled this peer; the message says why. The communicator is unusable."""

    _code = Result.KICKED


class MismatchError(QcclError):
    """Peers disagreed about the operation (count, dtype, op, quantization, shared-state keys).

    Rejected on every peer; nothing was changed.
    """

    _code = Result.MISMATCH


class AuthFailedError(QcclError):
    """Wrong or missing shared secret."""

    _code = Result.AUTH_FAILED


class AbortedError(QcclError):
    """Cancelled locally, e.g. the communicator was closed while the operation was in flight."""

    _code = Result.ABORTED


class InternalError(QcclError):
    """A bug in qccl; the message says where."""

    _code = Result.INTERNAL_ERROR


_BY_CODE: Dict[int, Type[QcclError]] = {
    cls._code: cls
    for cls in (
        InvalidArgumentError,
        InvalidUsageError,
        MasterUnreachableError,
        PeerLostError,
        TooFewPeersError,
        TimeoutError,
        KickedError,
        MismatchError,
        AuthFailedError,
        AbortedError,
        InternalError,
    )
}


def _register() -> None:
    for cls in (QcclError, *_BY_CODE.values()):
        cls.__module__ = "qccl"  # shown as qccl.PeerLostError in tracebacks
    for code in range(1, _C.NUM_RESULTS):
        if code not in _BY_CODE:
            # A code appended to the C API after this file was written: still a QcclError.
            _BY_CODE[code] = type(f"QcclError{code}", (QcclError,), {"_code": code})
    _C.set_error_classes({int(k): v for k, v in _BY_CODE.items()})


def error_class(code: int) -> Type[QcclError]:
    """The exception class raised for a result code."""
    return _BY_CODE.get(int(code), QcclError)


_register()
