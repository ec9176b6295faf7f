"""torch ``Work`` objects for qccl operations, and the thread that completes them.

Every collective starts qccl operations (asynchronous, on qccl's own threads) and returns a
:class:`Work` at once. One completer thread per process group waits for the operations in the
order they were started (without the GIL), runs the collective's finishing step (copies out of
staging buffers, block reordering) and completes the torch Future, so that DDP's reducer, which
waits on the Future from C++, sees the result without anybody calling into Python.
"""
from __future__ import annotations

import datetime
import queue
import threading
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist

from .._enums import Result
from ._errors import QcclBackendError

#: What a collective leaves for the completer: qccl ops to wait for, then ``finish(infos)``,
#: whose return value is the Future's result.
Finish = Callable[[List[Any]], Any]


class Work(dist.Work):
    """A collective of the ``"qccl"`` backend in flight (``torch.distributed.Work``).

    ``wait(timeout)`` blocks until it ended and raises :class:`QcclBackendError` if it failed
    (a ``timeout`` that passes first raises one with code ``Result.TIMEOUT``; the operation
    itself still ends by the process group's deadline). ``get_future()`` is completed with
    the collective's output tensors.
    """

    def __init__(self, call: str) -> None:
        super().__init__()
        self._call = call
        self._future: torch.futures.Future = torch.futures.Future()
        self._done = threading.Event()
        self._error: Optional[BaseException] = None

    # ---- completion (the completer thread, or the caller for an op that failed to start) ----

    # The Future first: whoever wait() releases may read it at once.
    def _succeed(self, value: Any) -> None:
        try:
            self._future.set_result(value)
        finally:
            self._done.set()

    def _fail(self, error: BaseException) -> None:
        self._error = QcclBackendError.of(self._call, error)
        try:
            self._future.set_exception(self._error)
        finally:
            self._done.set()

    # ---- torch's interface ----

    def wait(self, timeout: Optional[datetime.timedelta] = None) -> bool:
        seconds = timeout.total_seconds() if timeout else 0.0
        if not self._done.wait(seconds if seconds > 0 else None):
            raise QcclBackendError(f"qccl {self._call}: wait() timed out after {seconds} s",
                                   Result.TIMEOUT)
        if self._error is not None:
            raise self._error
        return True

    def is_completed(self) -> bool:
        return self._done.is_set()

    def is_success(self) -> bool:
        return self._done.is_set() and self._error is None

    def exception(self) -> Optional[BaseException]:
        return self._error

    def get_future(self) -> torch.futures.Future:
        return self._future

    def result(self) -> Any:
        self.wait()
        return self._future.value()

    def __repr__(self) -> str:
        state = "failed" if self._error else ("done" if self._done.is_set() else "in flight")
        return f"<qccl.distributed.Work {self._call} {state}>"


class Completer:
    """One daemon thread completing :class:`Work` in start order."""

    def __init__(self, name: str) -> None:
        self._queue: "queue.SimpleQueue[Optional[tuple]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Work, ops: Sequence[Any], finish: Finish,
               on_error: Callable[[BaseException], BaseException]) -> None:
        """``on_error(e)`` returns the error the Work reports."""
        self._queue.put((work, list(ops), finish, on_error))

    def close(self) -> None:
        """Ends the thread after the work already submitted (whose ops must end: close or
        abort the communicator first). Bounded: the ops have deadlines."""
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            work, ops, finish, on_error = item
            try:
                infos = []
                error: Optional[BaseException] = None
                for op in ops:  # wait for all of them, even after a failure: they use buffers
                    try:
                        infos.append(op.wait())
                    except BaseException as e:  # noqa: BLE001 - reported through the Work
                        error = error or e
                if error is not None:
                    raise error
                value = finish(infos)
            except BaseException as e:  # noqa: BLE001
                work._fail(on_error(e))
            else:
                work._succeed(value)
