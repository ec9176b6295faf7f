"""Turns user buffers into (address, element count, qccl dtype), zero-copy.

Accepted:
  * ``torch.Tensor`` on the CPU, contiguous, of a dtype qccl has (bfloat16 included): read
    through ``data_ptr()`` / ``numel()`` / ``dtype``, never through the buffer protocol. torch
    is never imported here: a tensor can only exist if the caller imported torch already.
  * ``torch.Tensor`` on a CUDA device: staged through a pinned host copy (copied in before
    the operation, and back after it succeeded, for buffers the operation writes).
  * Any C-contiguous object with the buffer protocol (NumPy arrays, ``bytearray``, ``array``,
    ``memoryview``, ``mmap``...), its element type taken from the buffer's struct format. The
    export is held open (``_qccl.BufferView``) until the operation ended, so the exporter
    cannot resize or free the memory meanwhile.
"""

from __future__ import annotations

import sys
from typing import Any, List, Optional, Sequence, Tuple

from . import _qccl as _C
from ._enums import DataType

_SIGNED = {1: DataType.INT8, 2: DataType.INT16, 4: DataType.INT32, 8: DataType.INT64}
_UNSIGNED = {1: DataType.UINT8, 2: DataType.UINT16, 4: DataType.UINT32, 8: DataType.UINT64}
_FLOATS = {"e": (2, DataType.FLOAT16), "f": (4, DataType.FLOAT32), "d": (8, DataType.FLOAT64)}
_NATIVE_ORDER = ("@", "=", "<" if sys.byteorder == "little" else ">")

_TORCH_DTYPES: Optional[dict] = None


def _torch():
    """The torch module if the caller imported it (never imports it)."""
    return sys.modules.get("torch")


def _torch_dtypes(torch) -> dict:
    global _TORCH_DTYPES
    if _TORCH_DTYPES is None:
        names = {
            "uint8": DataType.UINT8,
            "int8": DataType.INT8,
            "uint16": DataType.UINT16,  # torch >= 2.3 (limited support in torch itself)
            "int16": DataType.INT16,
            "uint32": DataType.UINT32,
            "int32": DataType.INT32,
            "uint64": DataType.UINT64,
            "int64": DataType.INT64,
            "float16": DataType.FLOAT16,
            "bfloat16": DataType.BFLOAT16,
            "float32": DataType.FLOAT32,
            "float64": DataType.FLOAT64,
        }
        _TORCH_DTYPES = {getattr(torch, n): d for n, d in names.items() if hasattr(torch, n)}
    return _TORCH_DTYPES


def is_torch_tensor(obj: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def dtype_of_format(fmt: str, itemsize: int, what: str) -> DataType:
    """qccl dtype of a buffer-protocol struct format ('f', '<i8', 'e', ...)."""
    code = fmt
    if code and code[0] in "@=<>!":
        if code[0] not in _NATIVE_ORDER:
            raise TypeError(f"{what}: byte order '{code[0]}' is not native; qccl reduces "
                            f"native-endian data (e.g. numpy's .astype(x.dtype.newbyteorder('=')))")
        code = code[1:]
    if len(code) == 1:
        if code in "bhilqn":
            d = _SIGNED.get(itemsize)
            if d is not None:
                return d
        elif code in "BHILQNc":
            d = _UNSIGNED.get(itemsize)
            if d is not None:
                return d
        elif code in _FLOATS and _FLOATS[code][0] == itemsize:
            return _FLOATS[code][1]
    raise TypeError(f"{what}: element format '{fmt}' (itemsize {itemsize}) has no qccl dtype; "
                    f"qccl reduces uint8/16/32/64, int8/16/32/64, float16/32/64 and (torch) "
                    f"bfloat16")


class Buffer:
    """One resolved buffer. Keep it alive until the operation that uses it ended."""

    __slots__ = ("ptr", "count", "dtype", "shape", "keep", "device_tensor", "host")

    def __init__(self, ptr: int, count: int, dtype: DataType, shape: Tuple[int, ...], keep: Any,
                 device_tensor: Any = None, host: Any = None) -> None:
        self.ptr = ptr
        self.count = count
        self.dtype = dtype
        self.shape = shape
        self.keep = keep
        self.device_tensor = device_tensor  # a CUDA tensor staged through `host`
        self.host = host

    def copy_back(self) -> None:
        """After success: a staged CUDA tensor receives the host result."""
        if self.device_tensor is not None:
            self.device_tensor.copy_(self.host)


def _torch_buffer(t: Any, writable: bool, copy_in: bool, what: str) -> Buffer:
    torch = _torch()
    dtype = _torch_dtypes(torch).get(t.dtype)
    if dtype is None:
        supported = ", ".join(str(k).replace("torch.", "") for k in _torch_dtypes(torch))
        raise TypeError(f"{what}: torch dtype {t.dtype} is not supported by qccl "
                        f"(supported: {supported})")
    if t.layout != torch.strided:
        raise TypeError(f"{what}: torch layout {t.layout} is not supported (dense tensors only)")
    if not t.is_contiguous():
        raise ValueError(f"{what} is not contiguous (shape {tuple(t.shape)}, strides "
                         f"{t.stride()}): qccl works in place on the tensor's memory; pass "
                         f"t.contiguous() and use its result")
    shape = tuple(t.shape)
    if t.device.type == "cpu":
        return Buffer(t.data_ptr(), t.numel(), dtype, shape, t)
    if t.device.type == "cuda":
        # Staged: one pinned host copy, written back after success if the op writes it.
        pin = bool(torch.cuda.is_available())
        host = torch.empty(shape, dtype=t.dtype, device="cpu", pin_memory=pin)
        if copy_in:
            host.copy_(t)
        return Buffer(host.data_ptr(), host.numel(), dtype, shape, (t, host),
                      device_tensor=t if writable else None, host=host)
    raise ValueError(f"{what}: tensors on device '{t.device}' are not supported (CPU tensors "
                     f"are used in place, CUDA tensors are staged through host memory)")


def resolve(obj: Any, *, writable: bool, what: str, copy_in: bool = True) -> Buffer:
    """Resolves one buffer. ``writable``: the operation writes it; ``copy_in``: it reads it."""
    if is_torch_tensor(obj):
        return _torch_buffer(obj, writable, copy_in, what)
    try:
        view = _C.BufferView(obj, writable)
    except TypeError:
        raise TypeError(f"{what}: expected a torch.Tensor, a NumPy array or a C-contiguous "
                        f"object with the buffer protocol, not {type(obj).__name__}") from None
    except BufferError as e:
        if writable:
            try:
                _C.BufferView(obj, False)
            except BufferError:
                pass
            else:
                raise ValueError(f"{what} is read-only but the operation writes it (pass a "
                                 f"writable buffer, or out=... for an out-of-place "
                                 f"all-reduce)") from None
        raise ValueError(f"{what}: cannot access the buffer: {e}") from None
    if not view.c_contiguous:
        raise ValueError(f"{what} is not C-contiguous (shape {tuple(view.shape)}, strides "
                         f"{tuple(view.strides)}): pass a contiguous copy, e.g. "
                         f"numpy.ascontiguousarray(x), and use it")
    dtype = dtype_of_format(view.format, view.itemsize, what)
    return Buffer(view.ptr, view.size, dtype, tuple(view.shape), (obj, view))


def resolve_pair(send: Any, out: Any, what: str = "tensor") -> Tuple[Buffer, Buffer]:
    """(send, recv) buffers of an all-reduce; ``out=None`` means in place."""
    if out is None or out is send:
        b = resolve(send, writable=True, what=what)
        return b, b
    s = resolve(send, writable=False, what=what)
    r = resolve(out, writable=True, what="out", copy_in=False)
    if r.dtype != s.dtype:
        raise TypeError(f"out has dtype {r.dtype.name.lower()} but {what} has "
                        f"{s.dtype.name.lower()}: they must match")
    if r.shape != s.shape:
        raise ValueError(f"out has shape {r.shape} but {what} has {s.shape}: they must match")
    return s, r


def keepalive(buffers: Sequence[Buffer]) -> List[Any]:
    return [b.keep for b in buffers]
