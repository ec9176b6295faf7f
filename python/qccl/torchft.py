"""qccl for torchft: :class:`ProcessGroupQccl`, a reconfigurable torchft process group.

torchft (https://github.com/pytorch/torchft) keeps training going while replicas die and
come back: its ``Manager`` asks a lighthouse for a quorum every step and, when the quorum
changed, calls ``configure()`` on the replicate-dimension process group with a fresh store
prefix, rank and world size. This module gives it a qccl group for that dimension:

    from datetime import timedelta
    import torchft
    from qccl.torchft import ProcessGroupQccl

    pg = ProcessGroupQccl(timeout=timedelta(seconds=30))
    manager = torchft.Manager(pg=pg, min_replica_size=2, ...)
    model = torchft.DistributedDataParallel(manager, model)

Each ``configure()`` aborts the previous qccl group (a new quorum is a new group: its own
embedded master, started by rank 0 and published in the new store prefix) and builds a
:class:`qccl.distributed.ProcessGroupQccl` on the new prefix, blocking until all
``world_size`` ranks are connected. Collectives go to that group (torchft's
``ProcessGroupWrapper`` forwards them); what qccl does not offer (send/recv, all-to-all)
raises ``qccl.distributed.QcclBackendError`` saying so.

torchft (0.2.0, which needs torch >= 2.7) is an optional dependency: importing ``qccl`` never
imports this module, torch or torchft; importing ``qccl.torchft`` imports both.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch.distributed import Store
from torchft.process_group import ProcessGroupWrapper

__all__ = ["ProcessGroupQccl"]


class ProcessGroupQccl(ProcessGroupWrapper):
    """A torchft process group over qccl, for the replicate dimension of ``torchft.Manager``.

    Args (keyword only, all optional):
        timeout: the store timeout of ``configure()``, the deadline for all ranks to connect,
            and the default deadline of every collective (``set_timeout`` changes it, also for
            the current group).
        options: a :class:`qccl.distributed.Options` (connections per peer, auth token,
            addresses, quantization...), used for every group this object configures.

    Before the first ``configure()`` (and after ``abort()``/``shutdown()``) there is no group:
    collectives fail with ``process group not initialized``. As torchft's Manager needs, a
    collective that fails does not raise from ``wait()``: its error is reported by
    ``errored()`` (and fails its Future); the Manager then discards the step, and the next
    quorum reconfigures.
    """

    def __init__(self, *, timeout: timedelta = timedelta(seconds=60),
                 options: Optional[Any] = None) -> None:
        if not isinstance(timeout, timedelta):
            raise TypeError(f"timeout must be a datetime.timedelta, not {type(timeout).__name__}")
        super().__init__(timeout=timeout)
        self._options = options
        self._errored: Optional[Exception] = None

    def _create_pg(self, store: Store, rank: int, world_size: int) -> dist.ProcessGroup:
        from qccl.distributed import ProcessGroupQccl as _Group

        self._errored = None
        return _Group(store, rank, world_size, timeout=self._timeout, options=self._options)

    def getBackendName(self) -> str:
        return "torchft-qccl"

    def _wrap_work(self, work: dist.Work, opts: object) -> dist.Work:
        return _ReportingWork(self, work)

    def _report(self, error: Exception) -> None:
        if self._errored is None:
            from qccl.distributed import QcclBackendError

            self._errored = QcclBackendError.of("process group", error)

    def set_timeout(self, timeout: timedelta) -> None:
        super().set_timeout(timeout)
        pg = self._pg
        if pg is not None:
            pg.set_timeout(timeout)

    def abort(self, errored: bool = True) -> None:
        """Ends the current group's collectives at once (``configure()`` calls it with
        ``errored=False`` first). The aborted group is then freed on a background thread: its
        rank 0 waits a few seconds for the other ranks to leave before it stops the master."""
        pg = self._pg
        if errored and pg is not None:
            self._errored = RuntimeError("qccl process group aborted")
        super().abort(errored=errored)
        if pg is not None:
            # (not a daemon: see qccl.distributed._rendezvous.leave_group)
            threading.Thread(target=pg.shutdown, name="qccl-torchft-release").start()

    def shutdown(self) -> None:
        """Leaves the current group gracefully: the other ranks see this rank go at once
        (rank 0 first waits, bounded, for them to leave: it stops the group's master)."""
        pg, self._pg = self._pg, None
        if pg is not None:
            pg.shutdown()

    def errored(self) -> Optional[Exception]:
        """The error that broke the current group (a ``QcclBackendError``, so a
        ``RuntimeError``, as torchft's groups report), or the abort's, or None."""
        pg = self._pg
        err = pg.errored() if pg is not None else None
        return err if err is not None else self._errored

    def __repr__(self) -> str:
        return f"ProcessGroupQccl(pg={self._pg})"


class _ReportingWork(dist.Work):
    """A collective of the replicate group, as torchft's Manager needs it: a failure is
    reported (``errored()``) rather than raised by ``wait()``, so that the Manager discards
    the step and reconfigures instead of failing the backward pass (torchft's DDP hook
    cannot handle a ``wait()`` that raises). The Future still fails with the error; the
    Manager's ``wrap_future`` turns that into the step's default result."""

    def __init__(self, pg: ProcessGroupQccl, work: dist.Work) -> None:
        super().__init__()
        self._pg, self._work = pg, work

    def wait(self, timeout: Optional[timedelta] = None) -> bool:
        try:
            self._work.wait(timeout) if timeout else self._work.wait()
        except Exception as e:  # noqa: BLE001 - reported through errored()
            self._pg._report(e)
        return True

    def is_completed(self) -> bool:
        return self._work.is_completed()

    def exception(self) -> Optional[BaseException]:
        return self._work.exception()

    def get_future(self) -> "torch.futures.Future":
        return self._work.get_future()
