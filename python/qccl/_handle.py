"""The lifetime plumbing that Master and Communicator share."""

from __future__ import annotations

from typing import Any, TypeVar

_Self = TypeVar("_Self", bound="Handle")


class Handle:
    """An object owning a native handle ``self._c`` that has ``close()`` and ``closed``.

    Subclasses define ``close()`` (idempotent); this adds ``closed``, the context manager and
    a ``__del__`` that closes and never raises.
    """

    _c: Any

    def close(self) -> None:
        c = getattr(self, "_c", None)
        if c is not None:
            c.close()

    @property
    def closed(self) -> bool:
        return self._c.closed

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from __del__
            pass
