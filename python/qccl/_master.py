"""qccl.Master: a master embedded in this process (``qcclMaster_t``)."""

from __future__ import annotations

import weakref
from typing import Any, Optional

from . import _qccl as _C
from ._enums import encryption_setting
from ._handle import Handle

__all__ = ["Master"]

_live: "weakref.WeakSet[Master]" = weakref.WeakSet()


def _ms(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (milliseconds; 0 = default), not "
                        f"{type(value).__name__}")
    if not 0 <= value < 2**32:
        raise ValueError(f"{name} must be in [0, 2**32), not {value}")
    return value


class Master(Handle):
    """The coordinator of a run, running on a background thread of this process.

    ``Master(listen_address="0.0.0.0:0")`` creates it (port 0 picks a free port); ``start()``
    binds and serves, ``port`` is the bound port, ``stop()`` asks it to stop, ``wait()``
    blocks until it stopped, ``close()`` stops and frees it (also via ``with``). Timeouts are
    in milliseconds, 0 meaning the C API's default (heartbeat 1000, peer timeout 10000, vote
    timeout 60000). For a standalone master process use ``qccl-master`` /
    ``python -m qccl.master``.

    The bandwidth probes of :meth:`qccl.Communicator.optimize_topology`: ``probe_ms`` is the
    timed transfer per probed link (at most 60000; 0 = 250), ``probe_max_age_ms`` how long a
    link's measurement stays valid before it is probed again (0 = 600000, 10 minutes).

    ``encryption`` (None = on with an ``auth_token`` unless ``$QCCL_ENCRYPTION`` is "off";
    True; False = authenticate only) must match the peers' (docs/security.md).
    """

    def __init__(self, listen_address: str = "0.0.0.0:0", *, heartbeat_interval_ms: int = 0,
                 peer_timeout_ms: int = 0, vote_timeout_ms: int = 0,
                 auth_token: Optional[str] = None, probe_ms: int = 0,
                 probe_max_age_ms: int = 0, encryption: Optional[bool] = None) -> None:
        if not isinstance(listen_address, str):
            raise TypeError(f"listen_address must be a str 'host:port', not "
                            f"{type(listen_address).__name__}")
        if auth_token is not None and not isinstance(auth_token, str):
            raise TypeError(f"auth_token must be a str or None, not {type(auth_token).__name__}")
        self.listen_address = listen_address
        self._c = _C.Master(listen_address, _ms("heartbeat_interval_ms", heartbeat_interval_ms),
                            _ms("peer_timeout_ms", peer_timeout_ms),
                            _ms("vote_timeout_ms", vote_timeout_ms), auth_token,
                            _ms("probe_ms", probe_ms), _ms("probe_max_age_ms", probe_max_age_ms),
                            encryption_setting(encryption))
        _live.add(self)

    def start(self) -> "Master":
        """Binds and starts serving on a background thread; returns at once (and self).

        Raises :class:`qccl.InvalidArgumentError` if the address cannot be bound,
        :class:`qccl.InvalidUsageError` if already started."""
        self._c.start()
        return self

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        return self._c.port

    @property
    def address(self) -> str:
        """``host:port`` to give peers: the listen host (127.0.0.1 for a wildcard) and port."""
        host = self.listen_address.rsplit(":", 1)[0]
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "[::]":
            host = "[::1]"
        return f"{host}:{self.port}"

    def stop(self) -> None:
        """Asks the master to stop; returns at once."""
        self._c.stop()

    def wait(self) -> None:
        """Blocks (without the GIL) until the master stopped."""
        self._c.wait()

    def close(self) -> None:
        """Stops the master if running, waits for it and frees it. Idempotent."""
        super().close()

    def __repr__(self) -> str:
        return f"<qccl.Master {self.listen_address}{' closed' if self.closed else ''}>"


def _close_all() -> None:
    for m in list(_live):
        try:
            m._c.close(False)
        except Exception:
            pass
