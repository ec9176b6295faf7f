"""Per-device routing (``init_process_group("cpu:gloo,cuda:qccl")``) for qccl's group.

torch lets a process group carry one backend per device type. A backend written in Python
(this one) replaces the whole group when torch creates it, so qccl's group keeps torch's
device map itself: a collective on a device mapped to "qccl" runs on qccl; on a device mapped
to "gloo" it runs on a Gloo group that qccl's group creates, on the same store, at the first
such call (every rank makes that call, as with any collective); on an unmapped device it
raises, as torch does.
"""
from __future__ import annotations

import datetime
import functools
from typing import Any, Callable, Dict, Optional

import torch
import torch.distributed as dist

from .._enums import Result
from ._errors import QcclBackendError


def device_backends(pg: Any) -> Dict[str, str]:
    """torch's device -> backend map of ``pg`` ({} when torch did not create it)."""
    config = dist.distributed_c10d._world.pg_backend_config.get(pg)
    if config is None:
        return {}
    pairs = (item.split(":", 1) for item in str(config).split(",") if ":" in item)
    return {device.strip(): backend.strip().lower() for device, backend in pairs}


class Router:
    """Which backend runs a collective, by the device of its first tensor."""

    def __init__(self, store: dist.Store, rank: int, size: int,
                 timeout: datetime.timedelta) -> None:
        self._store, self._rank, self._size, self._timeout = store, rank, size, timeout
        self._gloo: Optional[Any] = None
        self._backends: Dict[str, str] = {}  # torch's map, once torch has registered it

    def backend_for(self, pg: Any, device: torch.device) -> Optional[Any]:
        """None for qccl, else the backend object for ``device``'s collectives."""
        backends = self._backends or device_backends(pg)  # (fixed once torch set it)
        self._backends = backends
        if not backends:
            return None
        name = backends.get(device.type)
        if name == "qccl":
            return None
        if name is None:
            raise QcclBackendError(f"no backend for {device.type} tensors in this process "
                                   f"group ({', '.join(f'{d}:{b}' for d, b in backends.items())})",
                                   Result.INVALID_USAGE)
        if name != "gloo":
            raise QcclBackendError(f"a qccl process group routes other devices to gloo only, "
                                   f"not {name}", Result.INVALID_USAGE)
        if self._gloo is None:
            store = dist.PrefixStore("qccl/routed/gloo/", self._store)
            self._gloo = dist.ProcessGroupGloo(store, self._rank, self._size, self._timeout)
        return self._gloo


def routed(name: Optional[str] = None) -> Callable:
    """Runs the decorated collective on the routed backend's ``name`` (default: the same
    method name) when its tensors' device is not qccl's."""

    def wrap(method: Callable) -> Callable:
        other_name = name or method.__name__

        @functools.wraps(method)
        def collective(self: Any, *args: Any) -> Any:
            t = _first_tensor(args)
            other = self._router.backend_for(self, t.device) if t is not None else None
            if other is None:
                return method(self, *args)
            return getattr(other, other_name)(*args)
        return collective
    return wrap


def _first_tensor(value: Any) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None
