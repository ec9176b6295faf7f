"""qccl.distributed.ProcessGroupQccl: a torch.distributed process group over qccl.

torch ranks are fixed; qccl orders peers by ring. Every collective maps between the two with
the rank -> peer id table formed at start-up (``_rendezvous``) and the peer ids each operation
reports (``info.peers``): all-gather blocks are put at their ranks, reduce-scatter inputs are
laid out in ring order so that each peer receives its rank's block, broadcast roots are named
by peer id. Operations run on qccl's threads; see ``_work`` for how they complete.
"""
from __future__ import annotations

import atexit
import datetime
import threading
import weakref
from typing import Any, List, Optional, Sequence

import torch
import torch.distributed as dist

from .._enums import Quantization, Result
from .._errors import QcclError
from ._errors import QcclBackendError, broken, unsupported
from ._options import Options
from ._rendezvous import form_group, leave_group
from ._routing import Router, routed
from ._tensors import check_device, op_type, same_numel
from ._parts import Part, Parts, no_finish, same_dtype
from ._work import Completer, Work

_TAGS = 4096  # tags cycle; far more than collectives in flight at once
# Failures after which the qccl group no longer matches the torch group.
_BREAKING = {Result.PEER_LOST, Result.KICKED, Result.ABORTED, Result.TOO_FEW_PEERS,
             Result.MASTER_UNREACHABLE}


_live: "weakref.WeakSet[ProcessGroupQccl]" = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    # Before qccl's own exit hook (registered earlier, run later) and before the interpreter
    # finalizes: the completer threads must not be left inside native waits (see
    # _rendezvous.leave_group).
    for pg in list(_live):
        try:
            pg._shutdown(background=False)
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


class ProcessGroupQccl(Parts, dist.ProcessGroup):
    """The process group of the ``"qccl"`` backend (``import qccl.distributed`` registers it).

    ``ProcessGroupQccl(store, rank, world_size, timeout=30 min, options=None)`` forms the
    group before it returns (rank 0 starts or names the master, every rank connects; see
    :class:`qccl.distributed.Options`); ``timeout`` bounds that and every collective. After a
    peer is lost every call raises :class:`QcclBackendError`: re-create the group (torchft's
    :class:`qccl.torchft.ProcessGroupQccl` does that for you).
    """

    def __init__(self, store: dist.Store, rank: int, world_size: int,
                 timeout: datetime.timedelta = datetime.timedelta(minutes=30),
                 options: Optional[Options] = None, *, group_name: str = "") -> None:
        super().__init__(rank, world_size)
        self._group_name, self._group_desc = group_name, ""
        self._options = options if options is not None else Options()
        try:
            group = form_group(store, rank, world_size, timeout, self._options, group_name)
        except QcclError as e:
            raise QcclBackendError.of("forming the process group", e) from e
        self._store = store
        self._router = Router(store, rank, world_size, timeout)
        self._comm, self._master = group.comm, group.master
        self._peer_of_rank = group.peer_of_rank
        self._rank_of_peer = {p: r for r, p in enumerate(group.peer_of_rank)}
        self._ring = [self._rank_of_peer[p.peer_id] for p in self._comm.peers()]
        self._ring_peers = tuple(self._peer_of_rank[r] for r in self._ring)
        self._lock = threading.Lock()
        self._seq = 0
        self._error: Optional[BaseException] = None
        self._closed = False
        # qccl needs two peers for a collective; a torch group of one computes them locally.
        self._solo = world_size == 1
        self._completer = Completer(f"qccl-pg-r{rank}")
        _live.add(self)

    # ---- identity and lifecycle (torch's and torchft's interface) ----

    def getBackendName(self) -> str:  # noqa: N802 - torch's name
        return "qccl"

    # torch keeps a group's name in its backends, which a Python group has none of; the name
    # is what DeviceMesh (FSDP2, functional collectives) looks groups up by.
    def getGroupName(self) -> str:  # noqa: N802
        return self._group_name

    def setGroupName(self, name: str) -> None:  # noqa: N802
        self._group_name = name

    def getGroupDesc(self) -> str:  # noqa: N802
        return self._group_desc

    def setGroupDesc(self, desc: str) -> None:  # noqa: N802
        self._group_desc = desc

    @property
    def communicator(self):
        """The :class:`qccl.Communicator` underneath (for qccl-only calls; do not close it)."""
        return self._comm

    @property
    def ring_order(self) -> List[int]:
        """The torch rank at each position of qccl's ring."""
        return list(self._ring)

    def backend_of(self, device: Any) -> str:
        """The backend running this group's collectives on ``device`` ("qccl", or "gloo" for
        a device that ``init_process_group("cpu:gloo,cuda:qccl")`` routed to gloo)."""
        other = self._router.backend_for(self, torch.device(device))
        return "qccl" if other is None else other.name()

    def errored(self) -> Optional[BaseException]:
        """The failure that made the group unusable, or None."""
        return self._error

    def set_timeout(self, timeout: datetime.timedelta) -> None:
        """The deadline of the collectives started from now on."""
        self._comm.op_timeout = timeout.total_seconds()

    def abort(self) -> None:
        """Ends every collective in flight (their ``wait()`` raises, code ABORTED) within
        100 ms; the group is unusable afterwards. Safe from any thread."""
        self._error = self._error or QcclBackendError("qccl process group aborted",
                                                      Result.ABORTED)
        self._comm.abort()

    def shutdown(self) -> None:
        """Leaves the qccl group gracefully and stops the embedded master. Idempotent."""
        self._shutdown(background=True)

    def _shutdown(self, background: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._error = self._error or QcclBackendError("qccl process group shut down",
                                                      Result.INVALID_USAGE)
        self._comm.close()
        self._completer.close()
        aborted = getattr(self._error, "code", None) == Result.ABORTED
        leave_group(self._store, self.rank(), self.size(), self._master, wait=not aborted,
                    background=background)

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:  # noqa: BLE001 - interpreter teardown
            pass

    # ---- collectives ----

    @routed()
    def allreduce(self, tensors: Any, opts: Any = None) -> Work:
        tensors = _as_list(tensors)
        if len(tensors) != 1:
            raise unsupported("allreduce of several tensors in one call",
                              "use allreduce_coalesced")
        return self._launch("allreduce", [self._all_reduce(tensors[0], _red(opts))], tensors)

    @routed()
    def allreduce_coalesced(self, tensors: Sequence[torch.Tensor], opts: Any = None) -> Work:
        tensors = list(tensors)
        check_device(tensors, "allreduce_coalesced")
        op = _red(opts)
        parts = []
        for dtype in dict.fromkeys(t.dtype for t in tensors):
            group = [t for t in tensors if t.dtype == dtype]
            parts.append(self._all_reduce_flat(group, op))
        return self._launch("allreduce_coalesced", parts, tensors)

    @routed()
    def broadcast(self, tensors: Any, opts: Any = None) -> Work:
        tensors = _as_list(tensors)
        root = opts.rootRank if hasattr(opts, "rootRank") else int(opts or 0)
        if len(tensors) != 1 or getattr(opts, "rootTensor", 0) != 0:
            raise unsupported("broadcast of several tensors in one call")
        check_device(tensors, "broadcast")
        if not 0 <= root < self.size():
            raise QcclBackendError(f"qccl broadcast: root rank {root} is not in the group of "
                                   f"{self.size()}", Result.INVALID_ARGUMENT)
        return self._launch("broadcast", [self._broadcast(tensors[0], root)], tensors)

    @routed()
    def allgather(self, output_tensors: Any, input_tensors: Any, opts: Any = None) -> Work:
        if len(output_tensors) != 1 or len(_as_list(input_tensors)) != 1:
            raise unsupported("allgather of several tensors per rank in one call")
        outs, inp = list(output_tensors[0]), _as_list(input_tensors)[0]
        if len(outs) != self.size():
            raise QcclBackendError(f"qccl allgather: {len(outs)} output tensors for a group of "
                                   f"{self.size()}", Result.INVALID_ARGUMENT)
        check_device(outs + [inp], "allgather")
        same_dtype(outs, inp, "allgather")
        return self._launch("allgather", [self._gather_list(outs, inp)], [outs])

    @routed("_allgather_base")
    def all_gather_single(self, output: torch.Tensor, input: torch.Tensor,
                          opts: Any = None) -> Work:
        return self._launch("all_gather_into_tensor", [self._gather_into(output, input)],
                            [output])

    _allgather_base = all_gather_single

    @routed()
    def allgather_into_tensor_coalesced(self, outputs: Sequence[torch.Tensor],
                                        inputs: Sequence[torch.Tensor], opts: Any = None) -> Work:
        parts = [self._gather_into(o, i) for o, i in zip(outputs, inputs)]
        return self._launch("all_gather_into_tensor_coalesced", parts, list(outputs))

    all_gather_single_coalesced = allgather_into_tensor_coalesced

    @routed()
    def reduce_scatter(self, output_tensors: Any, input_tensors: Any, opts: Any = None) -> Work:
        out, ins = _as_list(output_tensors)[0], list(input_tensors[0])
        if len(ins) != self.size():
            raise QcclBackendError(f"qccl reduce_scatter: {len(ins)} input tensors for a group "
                                   f"of {self.size()}", Result.INVALID_ARGUMENT)
        check_device(ins + [out], "reduce_scatter")
        same_dtype(ins, out, "reduce_scatter")
        op = _red(opts)
        if same_numel(ins + [out]):
            stacked = torch.cat([ins[r].reshape(-1) for r in self._ring])
            part = self._reduce_scatter(stacked, out, op, "reduce_scatter")
        else:  # uneven blocks: all-reduce them all, keep this rank's
            part = self._all_reduce_slice(ins, out, op)
        return self._launch("reduce_scatter", [part], [out])

    @routed("_reduce_scatter_base")
    def reduce_scatter_single(self, output: torch.Tensor, input: torch.Tensor,
                              opts: Any = None) -> Work:
        return self._launch("reduce_scatter_tensor",
                            [self._scatter_from(output, input, _red(opts))], [output])

    _reduce_scatter_base = reduce_scatter_single

    @routed()
    def reduce_scatter_tensor_coalesced(self, outputs: Sequence[torch.Tensor],
                                        inputs: Sequence[torch.Tensor],
                                        opts: Any = None) -> Work:
        op = _red(opts)
        parts = [self._scatter_from(o, i, op) for o, i in zip(outputs, inputs)]
        return self._launch("reduce_scatter_tensor_coalesced", parts, list(outputs))

    reduce_scatter_single_coalesced = reduce_scatter_tensor_coalesced

    def barrier(self, opts: Any = None) -> Work:
        def start(tag):
            return [] if self._solo else [self._comm.barrier_async(tag=tag())]
        return self._launch("barrier", [(start, no_finish)], [])

    def allreduce_quantized(self, tensor: torch.Tensor, quantization: Optional[Quantization],
                            op: Any = dist.ReduceOp.AVG) -> Work:
        """all_reduce with qccl's wire quantization (used by :mod:`qccl.distributed.hooks`)."""
        return self._launch("allreduce", [self._all_reduce(tensor, op, quantization)], [tensor])

    # What qccl does not offer: a clear error naming the call.
    def alltoall_base(self, *args: Any, **kwargs: Any) -> Work:
        raise unsupported("all_to_all_single (alltoall_base)")

    all_to_all_single = alltoall_base

    def alltoall(self, *args: Any, **kwargs: Any) -> Work:
        raise unsupported("all_to_all (alltoall)")

    def send(self, *args: Any, **kwargs: Any) -> Work:
        raise unsupported("send", "qccl has collectives only, no point-to-point")

    def recv(self, *args: Any, **kwargs: Any) -> Work:
        raise unsupported("recv", "qccl has collectives only, no point-to-point")

    def recv_anysource(self, *args: Any, **kwargs: Any) -> Work:
        raise unsupported("recv (any source)", "qccl has collectives only, no point-to-point")

    def gather(self, *args: Any, **kwargs: Any) -> Work:
        raise unsupported("gather", "use all_gather")

    def scatter(self, *args: Any, **kwargs: Any) -> Work:
        raise unsupported("scatter", "use broadcast")

    def reduce(self, *args: Any, **kwargs: Any) -> Work:
        raise unsupported("reduce", "use all_reduce")

    # ---- running ----

    def _next_tag(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq % _TAGS

    def _launch(self, call: str, parts: List[Part], result: Any) -> Work:
        """Starts the parts' qccl ops; the Work completes when they all ended and finished.
        A bad argument raises here, before any op started."""
        if self._error is not None:
            raise broken(self._error)
        work = Work(call)
        ops: List[Any] = []

        def failed(e: BaseException) -> QcclBackendError:
            return self._failure(call, e)

        try:
            for start, _ in parts:
                ops.append(start(self._next_tag))
        except BaseException as e:
            if ops:  # an earlier part is in flight: it fails or ends with the Work
                error = e  # (`e` is unbound after the except block)
                self._completer.submit(work, [o for group in ops for o in group],
                                       lambda _i: _reraise(error), failed)
                return work
            raise failed(e) from (None if isinstance(e, QcclBackendError) else e)

        def finish(infos: List[Any]) -> Any:
            for info in infos:
                if info.world_size != self.size():
                    raise QcclBackendError(
                        f"qccl {call} ran over {info.world_size} peers, the process group has "
                        f"{self.size()}: a peer left", Result.PEER_LOST)
            at = 0
            for (_, finish_part), started in zip(parts, ops):
                finish_part(infos[at:at + len(started)])
                at += len(started)
            return result

        self._completer.submit(work, [o for group in ops for o in group], finish, failed)
        return work

    def _failure(self, call: str, error: BaseException) -> QcclBackendError:
        """The error a failed collective reports; remembers the ones that break the group.
        Any failure once the qccl group is smaller than the torch group is PEER_LOST (e.g.
        a reduce-scatter started on the shrunk ring fails its block size check first)."""
        e = QcclBackendError.of(call, error)
        if e.code not in _BREAKING and self._shrunk():
            e = QcclBackendError(f"qccl {call}: the group lost a peer ({error})",
                                 Result.PEER_LOST)
            e.__cause__ = error
        if e.code in _BREAKING and self._error is None:
            self._error = e
        return e

    def _shrunk(self) -> bool:
        try:
            return self._comm.group_world_size != self.size()
        except Exception:  # noqa: BLE001 - closed: no longer the torch group either
            return True


def _red(opts: Any) -> Any:
    """The reduce op of an AllreduceOptions/ReduceScatterOptions, a ReduceOp, or None (SUM)."""
    if opts is None:
        return dist.ReduceOp.SUM
    op = getattr(opts, "reduceOp", opts)
    op_type(op)  # validates
    return op


def _as_list(tensors: Any) -> List[torch.Tensor]:
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def _reraise(error: BaseException) -> Any:
    raise error


