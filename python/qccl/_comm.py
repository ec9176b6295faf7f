"""qccl.Communicator, its asynchronous operations, and qccl.SharedState."""

from __future__ import annotations

import inspect
import threading
import weakref
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import _qccl as _C
from ._buffers import Buffer, resolve, resolve_pair
from ._enums import (encryption_setting, Attribute, PeerInfo, Quantization, ReduceInfo, ReduceOp, Stats, SyncInfo,
                     SyncStrategy, _quantization_args)
from ._errors import InvalidArgumentError, InvalidUsageError
from ._handle import Handle

__all__ = ["Communicator", "Op", "AllReduceOp", "SharedState"]

_U32 = 2**32
_U64 = 2**64

# Communicators still open at interpreter exit leave the run gracefully (see _close_all).
_live: "weakref.WeakSet[Communicator]" = weakref.WeakSet()


def _u32(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value < _U32:
        raise ValueError(f"{name} must be in [0, 2**32), not {value}")
    return value


def _u64(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value < _U64:
        raise ValueError(f"{name} must be in [0, 2**64), not {value}")
    return value


def _timeout_ms(timeout: Optional[float]) -> int:
    """Seconds (None = forever) -> the C API's milliseconds (0 = forever)."""
    if timeout is None:
        return 0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not "
                        f"{type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds (None waits forever), not {timeout}")
    return min(max(1, round(timeout * 1000)), _U32 - 1)


def _enum(cls, name: str, value: Any):
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{name} must be a qccl.{cls.__name__}, not {value!r}") from None


def _gather_buffers(tensor: Any, out: Any) -> Tuple[Buffer, Buffer]:
    """(send, recv) of an all-gather or reduce-scatter: ``out`` is a separate buffer of the
    same dtype (any shape; its element count is the room the op may use)."""
    if out is None:
        raise TypeError("out is required (the buffer that receives the result)")
    s = resolve(tensor, writable=False, what="tensor")
    r = resolve(out, writable=True, what="out", copy_in=False)
    if r.dtype != s.dtype:
        raise TypeError(f"out has dtype {r.dtype.name.lower()} but tensor has "
                        f"{s.dtype.name.lower()}: they must match")
    return s, r


class _Desc:
    """An all-reduce's buffers and descriptor, resolved and checked."""

    __slots__ = ("send", "recv", "op", "tag", "q_algorithm", "q_dtype")

    def __init__(self, tensor: Any, out: Any, op: Any, tag: Any,
                 quantization: Optional[Quantization]) -> None:
        self.op = _enum(ReduceOp, "op", op)
        self.tag = _u64("tag", tag)
        self.send, self.recv = resolve_pair(tensor, out)
        self.q_algorithm, self.q_dtype = _quantization_args(quantization, self.send.dtype)

    def args(self) -> Tuple[int, int, int, int, int, int, int, int]:
        return (self.send.ptr, self.recv.ptr, self.send.count, int(self.send.dtype),
                int(self.op), self.tag, self.q_algorithm, self.q_dtype)

    def buffers(self) -> List[Buffer]:
        return [self.send] if self.recv is self.send else [self.send, self.recv]

    def copy_back(self) -> None:
        self.recv.copy_back()


def _info(t: Tuple[Any, ...], counts: Sequence[int] = ()) -> ReduceInfo:
    """The binding's (world, tx, rx, epoch, [peers]) as a ReduceInfo."""
    world, tx, rx, epoch, peers = t
    return ReduceInfo(world, tx, rx, epoch, tuple(peers), tuple(counts))


class _Outputs:
    """The buffers an operation writes, for copy_back after success (staged CUDA tensors)."""

    __slots__ = ("buffers",)

    def __init__(self, buffers: Sequence[Buffer]) -> None:
        self.buffers = list(buffers)

    def copy_back(self) -> None:
        for b in self.buffers:
            b.copy_back()


class Op:
    """An asynchronous operation started by one of :class:`Communicator`'s ``..._async``
    methods (``all_reduce_async``, ``broadcast_async``, ``all_gather_async``,
    ``all_gather_v_async``, ``reduce_scatter_async``, ``barrier_async``).

    Holds references to its tensors until it has been waited for, so the caller may drop
    its own. ``wait()`` returns the :class:`qccl.ReduceInfo` or raises the operation's
    :class:`qccl.QcclError` (e.g. :class:`qccl.AbortedError` if the communicator was closed
    while it was in flight); calling it again returns / raises the same. An op dropped
    without ``wait()`` is waited for when it is garbage-collected (its result is lost, and a
    staged CUDA output is not written back).
    """

    __slots__ = ("_op", "_desc", "_info", "_lock", "__weakref__")

    def __init__(self, op: "_C.Op", desc: Any) -> None:
        self._op = op
        self._desc: Any = desc  # has copy_back(): _Desc or _Outputs
        self._info: Optional[ReduceInfo] = None
        self._lock = threading.Lock()

    def wait(self) -> ReduceInfo:
        """Blocks (without the GIL) until the operation ended; returns its info or raises."""
        t = self._op.wait()  # raises the op's error, every time
        with self._lock:
            if self._info is None:
                if self._desc is not None:
                    self._desc.copy_back()
                    self._desc = None
                self._info = _info(t, self._op.counts())
            return self._info

    def done(self) -> bool:
        """True once the operation ended (``wait()`` then returns at once). Never blocks."""
        return self._op.test()

    def test(self) -> bool:
        """Same as :meth:`done` (the C API's name, ``qcclTest``)."""
        return self._op.test()

    def __repr__(self) -> str:
        return f"<qccl.Op {'done' if self.done() else 'in flight'}>"

    def __del__(self) -> None:
        # Dropped without wait(): the library may still use the buffers, so the C op (which
        # holds them) must be waited for, but not here: that could block whatever thread
        # the garbage collector runs on until the peers join the op. A daemon thread waits.
        try:
            op = self._op
            if not op.waited and not op.test():
                threading.Thread(target=_reap, args=(op,), name="qccl-op-reaper",
                                 daemon=True).start()
        except Exception:  # never raise from __del__ (at shutdown, the C op waits itself)
            pass


AllReduceOp = Op  # the name before the other collectives came


def _reap(op: "_C.Op") -> None:
    try:
        op.wait()
    except Exception:
        pass  # the result of an op nobody waited for is lost by design


class SharedState:
    """Tensors kept byte-identical across the peers of a group by
    :meth:`Communicator.sync_shared_state`.

    ``tensors`` maps unique names to writable, contiguous buffers (torch CPU or CUDA tensors,
    NumPy arrays, ...); a sync may overwrite their contents in place, never their shape or
    dtype. ``revision`` advances by exactly one per sync (the first sync of a run accepts
    any); after a successful sync it holds the elected revision.

    ``allow_content_inequality``: names of entries that are never compared nor transferred
    (e.g. per-peer RNG state); they must still exist with the same dtype and element count
    on every peer. Change it with :meth:`set_allow_content_inequality`.
    """

    def __init__(self, tensors: Mapping[str, Any], revision: int = 0, *,
                 allow_content_inequality: Iterable[str] = ()) -> None:
        if not isinstance(tensors, Mapping):
            raise TypeError(f"tensors must be a mapping name -> tensor, not "
                            f"{type(tensors).__name__}")
        for name in tensors:
            if not isinstance(name, str):
                raise TypeError(f"shared-state names must be str, not {type(name).__name__}")
            if "\0" in name:
                raise ValueError(f"shared-state name {name!r} contains a NUL character")
        self.tensors: Dict[str, Any] = dict(tensors)
        self.revision: int = _u64("revision", revision)
        unequal = set(allow_content_inequality)
        unknown = unequal - set(self.tensors)
        if unknown:
            raise ValueError(f"allow_content_inequality names unknown entries: {sorted(unknown)}")
        self._unequal = unequal

    @property
    def allow_content_inequality(self) -> frozenset:
        """Names of the entries that are never compared nor transferred."""
        return frozenset(self._unequal)

    def set_allow_content_inequality(self, name: str, allow: bool = True) -> None:
        """Marks (or unmarks) one entry as allowed to differ between peers."""
        if name not in self.tensors:
            raise KeyError(name)
        if allow:
            self._unequal.add(name)
        else:
            self._unequal.discard(name)

    def __getitem__(self, name: str) -> Any:
        return self.tensors[name]

    def __len__(self) -> int:
        return len(self.tensors)

    def __repr__(self) -> str:
        return (f"<qccl.SharedState revision={self.revision} entries={list(self.tensors)} "
                f"allow_content_inequality={sorted(self._unequal)}>")


class Communicator(Handle):
    """One peer of a qccl run (``qcclComm_t``).

    ``Communicator(master_address, peer_group=0, connections_per_peer=0, auth_token=None,
    *, listen_address=None, advertise_address=None, auth_token_file=None, op_timeout=None,
    master_reconnect=None, encryption=None)`` creates it (not yet connected; a malformed
    address raises :class:`qccl.InvalidArgumentError`).
    ``listen_address`` ("host:port" or "host:first-last"), ``advertise_address`` ("host" or
    "host:port") and ``auth_token_file`` default to ``$QCCL_LISTEN_ADDRESS``,
    ``$QCCL_ADVERTISE_ADDRESS`` and ``$QCCL_AUTH_TOKEN_FILE``; see docs/deployment.md.
    ``op_timeout`` (seconds, None = ``$QCCL_OP_TIMEOUT_MS`` if set, else no deadline) is the
    deadline of every operation (:attr:`op_timeout`). ``master_reconnect`` (seconds; None =
    ``$QCCL_MASTER_RECONNECT_MS`` if set, else 60; 0 = do not resume) is how long this peer, once
    accepted, looks for a master that resumes the run after losing its master (the same
    address restarted, or the next of a list "a:48148,b:48148"; docs/reliability.md §8).
    ``encryption`` (None = on with a secret unless ``$QCCL_ENCRYPTION`` is "off"; True; False =
    authenticate only): with a shared secret every connection is encrypted and each record
    authenticated; every peer and the master must agree (docs/security.md).
    :meth:`connect` joins the run. Use it
    as a context manager, or call :meth:`close`, to leave the run gracefully; a communicator
    that is garbage-collected or still open at interpreter exit is closed then.

    Thread safety: every method may be called from any thread; blocking calls release the
    GIL. Async all-reduces with different tags may be in flight at once. ``close()`` waits
    for the blocking calls in progress on other threads, then ends the async ops in flight
    (their ``wait()`` raises :class:`qccl.AbortedError`); :meth:`abort` first ends those
    calls, so that ``close()`` need not wait.
    """

    def __init__(self, master_address: str, peer_group: int = 0, connections_per_peer: int = 0,
                 auth_token: Optional[str] = None, *, listen_address: Optional[str] = None,
                 advertise_address: Optional[str] = None,
                 auth_token_file: Optional[str] = None,
                 op_timeout: Optional[float] = None,
                 master_reconnect: Optional[float] = None,
                 encryption: Optional[bool] = None) -> None:
        if not isinstance(master_address, str):
            raise TypeError(f"master_address must be a str 'host:port', not "
                            f"{type(master_address).__name__}")
        for name, value in (("auth_token", auth_token), ("listen_address", listen_address),
                            ("advertise_address", advertise_address),
                            ("auth_token_file", auth_token_file)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
        self._config = (master_address, _u32("peer_group", peer_group),
                        _u32("connections_per_peer", connections_per_peer), auth_token,
                        listen_address, advertise_address, auth_token_file)
        self._lock = threading.Lock()
        self._connecting = False
        self._connected = False
        self._timeout_ms = 0
        self._op_timeout_ms = _timeout_ms(op_timeout)
        # 0 s: do not resume (QCCL_MASTER_RECONNECT_NEVER); None: the C API's default.
        self._master_reconnect_ms = (
            _U32 - 1 if master_reconnect == 0 and not isinstance(master_reconnect, bool)
            else min(_timeout_ms(master_reconnect), _U32 - 2))
        self._encryption = encryption_setting(encryption)
        self._aborted = False
        self._c: "_C.Comm" = self._create(0)
        _live.add(self)

    def _create(self, timeout_ms: int) -> "_C.Comm":
        address, group, conns, token, listen, advertise, token_file = self._config
        return _C.Comm(address, group, conns, timeout_ms, token, listen, advertise, token_file,
                       self._op_timeout_ms, self._master_reconnect_ms, self._encryption)

    # ---- membership ----

    def connect(self, timeout: Optional[float] = None) -> None:
        """Joins the run: blocks until the master accepted this peer and its ring is up.

        The first peer of a run is accepted at once; later ones wait until the accepted peers
        next call :meth:`update_topology`. ``timeout`` in seconds (None: wait forever) raises
        :class:`qccl.TimeoutError`; a failed connect may be retried.
        """
        ms = _timeout_ms(timeout)
        with self._lock:
            if self._connecting:
                raise InvalidUsageError("connect: another thread is connecting this communicator")
            if (not self._connected and ms != self._timeout_ms and not self._c.closed
                    and not self._aborted):
                # The C API takes the connect timeout from the config: a communicator that
                # never connected is cheap to re-create with another one.
                self._op_timeout_ms = self._c.op_timeout_ms  # as set_op_timeout left it
                old, self._c = self._c, self._create(ms)
                self._timeout_ms = ms
                old.close()
            self._connecting = True
            c = self._c
        try:
            c.connect()
            self._connected = True
        finally:
            with self._lock:
                self._connecting = False

    def update_topology(self) -> None:
        """Collective of all accepted peers: admits pending peers and rebuilds the rings.

        A peer admitted by this call returns from :meth:`connect` at the same moment; its
        next call must be the one the others make next (:meth:`admit_pending` at the loop
        head is always right; docs/call-order.md). Raises :class:`qccl.InvalidUsageError`
        while all-reduces are in flight, or at once when the call is out of step with the
        group (the message says what the group is doing; call again, the right call).
        """
        self._c.update_topology()

    def are_peers_pending(self) -> bool:
        """Collective vote of all accepted peers: True if peers wait to be admitted (the same
        answer on every peer, except that a peer admitted since its last completed call gets
        False at once when its group is already in another call: a collective, a sync, another
        kind of vote)."""
        return self._c.are_peers_pending()

    def admit_pending(self) -> bool:
        """The loop head: :meth:`are_peers_pending`, then :meth:`update_topology` if peers
        are pending. Returns True if peers were admitted. Right for the first peers and for
        peers that join later alike (docs/call-order.md)."""
        return self._c.admit_pending()

    def wait_for_world(self, min_size: int, timeout: Optional[float] = None) -> None:
        """Start-up: admits peers (:meth:`admit_pending`, asking every 50 ms while nobody is
        pending) until this peer's group has at least ``min_size`` accepted peers. Every peer
        calls it after :meth:`connect`, the first ones and later joiners alike. ``timeout``
        in seconds (None: no deadline) raises :class:`qccl.TimeoutError` when it passes."""
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise InvalidArgumentError(f"min_size must be an int >= 1, not {min_size!r}")
        self._c.wait_for_world(min_size, _timeout_ms(timeout))

    def optimize_topology(self) -> None:
        """Collective of all accepted peers of all groups: moves each group to its fastest ring.

        The master has the links of each group that it has no recent bandwidth figure for
        probed (short timed transfers; see the ``Master`` options ``probe_ms`` and
        ``probe_max_age_ms``), then gives every group the ring whose slowest link is the
        fastest (then the largest sum of link bandwidths). Returns once this peer's
        connections on the new ring are up; the next collective uses it (:attr:`ring_rank`
        and, if the ring changed, :attr:`epoch` change). Does not admit pending peers. Blocks
        without the GIL.

        Raises like :meth:`update_topology`: :class:`qccl.InvalidUsageError` (not connected,
        closed, all-reduces in flight, another control call running),
        :class:`qccl.MasterUnreachableError`, :class:`qccl.PeerLostError` (the new ring's
        connections did not come up in time: call again). A peer that no ring of reachable
        links can include is expelled: :class:`qccl.KickedError`.
        """
        self._c.optimize_topology()

    @property
    def peer_id(self) -> int:
        """This peer's id: stable for the run, never reused; the master's log names peers by it."""
        return self.get_attribute(Attribute.PEER_ID)

    def peers(self) -> List[PeerInfo]:
        """This peer's group in ring order (itself included), as of the last membership update
        seen: :class:`qccl.PeerInfo` ``(peer_id, ring_rank, address)``, the address being the
        "host:port" other peers dial."""
        return [PeerInfo(*p) for p in self._c.peers()]

    def get_attribute(self, attribute: Attribute) -> int:
        """Reads an attribute (:class:`qccl.Attribute`) as of the last membership update seen."""
        return self._c.get_attribute(int(_enum(Attribute, "attribute", attribute)))

    def stats(self) -> Stats:
        """Where this peer's operations spent their time so far (:class:`qccl.Stats`,
        ``qcclGetStats``); works in any state of the communicator."""
        return Stats(*self._c.stats())

    @property
    def world_size(self) -> int:
        """Accepted peers in all groups (``Attribute.GLOBAL_WORLD_SIZE``)."""
        return self.get_attribute(Attribute.GLOBAL_WORLD_SIZE)

    @property
    def group_world_size(self) -> int:
        """Accepted peers in this peer's group (``Attribute.GROUP_WORLD_SIZE``)."""
        return self.get_attribute(Attribute.GROUP_WORLD_SIZE)

    @property
    def ring_rank(self) -> int:
        """This peer's position in its group's ring (``Attribute.RING_RANK``)."""
        return self.get_attribute(Attribute.RING_RANK)

    @property
    def epoch(self) -> int:
        """Membership generation; grows at every change (``Attribute.EPOCH``)."""
        return self.get_attribute(Attribute.EPOCH)

    @property
    def peer_group(self) -> int:
        """The peer group given at construction."""
        return self._config[1]

    # ---- all-reduce ----

    def all_reduce(self, tensor: Any, out: Any = None, op: ReduceOp = ReduceOp.SUM, tag: int = 0,
                   quantization: Optional[Quantization] = None) -> ReduceInfo:
        """All-reduces ``tensor`` over the accepted peers of this peer's group.

        In place when ``out`` is None, else into ``out`` (same shape and dtype; ``tensor``
        is then only read). Every peer must pass the same element count, dtype, op, tag and
        quantization (else :class:`qccl.MismatchError` on every peer). All or nothing: on
        failure (e.g. :class:`qccl.PeerLostError`, retry at once) ``tensor`` holds its input.
        Blocks without the GIL. Returns a :class:`qccl.ReduceInfo`.
        """
        d = _Desc(tensor, out, op, tag, quantization)
        info = _info(self._c.all_reduce(*d.args()))
        d.copy_back()
        return info

    def all_reduce_async(self, tensor: Any, out: Any = None, op: ReduceOp = ReduceOp.SUM,
                         tag: int = 0,
                         quantization: Optional[Quantization] = None) -> Op:
        """Starts an all-reduce and returns at once; see :meth:`all_reduce`.

        Ops in flight at the same time need different tags. The returned
        :class:`Op` keeps the tensors alive until it has been waited for; do not
        touch their contents before ``wait()`` returned.
        """
        d = _Desc(tensor, out, op, tag, quantization)
        c_op = self._c.all_reduce_async(*d.args(), [b.keep for b in d.buffers()])
        return Op(c_op, d)

    def all_reduce_multiple_with_retry(
            self, ops: Sequence[Tuple[Any, ...]], max_in_flight: int = 4) -> ReduceInfo:
        """Runs several all-reduces, up to ``max_in_flight`` at once, retrying those that
        fail with :class:`qccl.PeerLostError` until all succeeded (or the group fell below 2
        peers: :class:`qccl.TooFewPeersError`).

        ``ops`` is a sequence of ``(tensor, out)`` or ``(tensor, out, desc_kwargs)``, where
        ``out`` may be None (in place) and ``desc_kwargs`` is a dict with any of ``op``,
        ``tag`` and ``quantization``. Tags must differ; an op without one gets its index.
        Returns the world size of the last op and the summed byte counts.
        """
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError("max_in_flight must be an int")
        if not 1 <= max_in_flight < 2**31:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        descs: List[_Desc] = []
        for i, entry in enumerate(ops):
            if not isinstance(entry, (tuple, list)) or not 2 <= len(entry) <= 3:
                raise TypeError(f"ops[{i}] must be (tensor, out) or (tensor, out, desc_kwargs)")
            kwargs = dict(entry[2]) if len(entry) == 3 and entry[2] is not None else {}
            unknown = set(kwargs) - {"op", "tag", "quantization"}
            if unknown:
                raise TypeError(f"ops[{i}]: unknown descriptor keys {sorted(unknown)} "
                                f"(allowed: op, tag, quantization)")
            descs.append(_Desc(entry[0], entry[1], kwargs.get("op", ReduceOp.SUM),
                               kwargs.get("tag", i), kwargs.get("quantization")))
        world, tx, rx, _, _ = self._c.all_reduce_multiple_with_retry(
            [d.args() for d in descs], max_in_flight)
        for d in descs:
            d.copy_back()
        return ReduceInfo(world, tx, rx)

    def run_multiple_with_retry(self, ops: Sequence[Tuple[Any, ...]],
                                max_in_flight: int = 4) -> ReduceInfo:
        """:meth:`all_reduce_multiple_with_retry` for a batch mixing kinds.

        Each entry is ``(kind, *args)`` or ``(kind, *args, kwargs)`` where ``kind`` names the
        method (``"all_reduce"``, ``"broadcast"``, ``"all_gather"``, ``"all_gather_v"``,
        ``"reduce_scatter"``, ``"barrier"``) and ``args`` / ``kwargs`` are its arguments, e.g.
        ``("broadcast", t, {"root": r, "tag": 1})``. An ``all_gather_v`` entry may add
        ``"counts": a_list`` to its kwargs: the list receives each peer's count. Tags must
        differ. Returns the world size of the last op and the summed byte counts.
        """
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError("max_in_flight must be an int")
        if not 1 <= max_in_flight < 2**31:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        rows, outputs, count_lists, keep = [], [], [], []
        for i, entry in enumerate(ops):
            row, outs, counts, bufs = self._batch_row(i, entry)
            rows.append(row)
            outputs.extend(outs)
            count_lists.append(counts)
            keep.extend(bufs)  # alive (staging copies included) until the call returned
        world, tx, rx, per_op = self._c.run_multiple_with_retry(rows, max_in_flight)
        for b in outputs:
            b.copy_back()
        for target, got in zip(count_lists, per_op):
            if target is not None:
                target[:] = got
        return ReduceInfo(world, tx, rx)

    def _batch_row(self, i: int,
                   entry: Any) -> Tuple[Tuple[Any, ...], List[Buffer], Any, List[Buffer]]:
        """One batch entry as the binding's row, the buffers to copy back, its counts list,
        and every buffer it uses."""
        if not isinstance(entry, (tuple, list)) or not entry or entry[0] not in _C.OP_KINDS:
            raise TypeError(f"ops[{i}] must be (kind, *args[, kwargs]) with kind one of "
                            f"{sorted(_C.OP_KINDS)}")
        kind, args = entry[0], list(entry[1:])
        kwargs = dict(args.pop()) if args and isinstance(args[-1], dict) else {}
        counts = kwargs.pop("counts", None) if kind == "all_gather_v" else None
        try:
            bound = inspect.signature(getattr(Communicator, kind)).bind(self, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"ops[{i}] ({kind}): {e}") from None
        bound.apply_defaults()
        a = bound.arguments
        tag = _u64("tag", a["tag"])
        op, q_algorithm, q_dtype, root = 0, 0, 0, 0
        if kind == "barrier":
            return (_C.OP_KINDS[kind], 0, 0, 0, 0, 0, 0, 0, tag, 0, 0, 0), [], None, []
        if kind == "all_reduce":
            d = _Desc(a["tensor"], a["out"], a["op"], tag, a["quantization"])
            return ((_C.OP_KINDS[kind],) + (d.send.ptr, d.recv.ptr, 0, 0, d.send.count,
                                            int(d.send.dtype), int(d.op), tag, d.q_algorithm,
                                            d.q_dtype, 0), [d.recv], None, d.buffers())
        if kind == "broadcast":
            b = resolve(a["tensor"], writable=True, what="tensor")
            root = _u64("root", a["root"])
            return ((_C.OP_KINDS[kind], 0, b.ptr, b.count, 0, 0, int(b.dtype), 0, tag, 0, 0,
                     root), [b], None, [b])
        s, r = _gather_buffers(a["tensor"], a["out"])
        if kind == "reduce_scatter":
            op = int(_enum(ReduceOp, "op", a["op"]))
            q_algorithm, q_dtype = _quantization_args(a["quantization"], s.dtype)
        return ((_C.OP_KINDS[kind], s.ptr, r.ptr, s.count, r.count, s.count, int(s.dtype), op,
                 tag, q_algorithm, q_dtype, root), [r], counts, [s, r])

    # ---- broadcast, all-gather, reduce-scatter, barrier ----
    # Each runs over the accepted peers of this peer's group with all-reduce's guarantees (all
    # or nothing, retry after PeerLostError, MismatchError when peers disagree) and returns a
    # ReduceInfo saying what it covered; each has an ``_async`` form returning an :class:`Op`.

    def broadcast(self, tensor: Any, root: int, tag: int = 0) -> ReduceInfo:
        """Broadcasts ``tensor`` from the peer whose :attr:`peer_id` is ``root`` into
        ``tensor`` on every other peer of the group (pipelined along the ring). Every peer
        passes the same count, dtype, root and tag. A root not in the group raises
        :class:`qccl.InvalidArgumentError` on every peer. On failure ``tensor`` is as it was.
        """
        return self.broadcast_async(tensor, root, tag).wait()

    def broadcast_async(self, tensor: Any, root: int, tag: int = 0) -> Op:
        """Starts :meth:`broadcast` and returns at once."""
        b = resolve(tensor, writable=True, what="tensor")
        c_op = self._c.broadcast_async(b.ptr, b.count, int(b.dtype), _u64("root", root),
                                       _u64("tag", tag), [b.keep])
        return Op(c_op, _Outputs([b]))

    def all_gather(self, tensor: Any, out: Any, tag: int = 0) -> ReduceInfo:
        """Gathers every peer's ``tensor`` (the same element count everywhere) into ``out``,
        concatenated in ring order (``info.peers`` names the peer of each block). ``out``
        (same dtype, any shape) needs room for ``world_size x tensor.numel()`` elements when
        the op runs, else :class:`qccl.InvalidArgumentError` on every peer.
        """
        return self.all_gather_async(tensor, out, tag).wait()

    def all_gather_async(self, tensor: Any, out: Any, tag: int = 0) -> Op:
        """Starts :meth:`all_gather` and returns at once."""
        s, r = _gather_buffers(tensor, out)
        c_op = self._c.all_gather_async(s.ptr, r.ptr, s.count, r.count, int(s.dtype),
                                        _u64("tag", tag), [s.keep, r.keep])
        return Op(c_op, _Outputs([r]))

    def all_gather_v(self, tensor: Any, out: Any, tag: int = 0) -> ReduceInfo:
        """Like :meth:`all_gather`, but each peer contributes its own number of elements
        (zero included): ``out`` receives them concatenated in ring order, and
        ``info.counts`` each peer's count (peer i's block starts at ``sum(counts[:i])``).
        ``out`` needs room for the total, else :class:`qccl.InvalidArgumentError` everywhere.
        """
        return self.all_gather_v_async(tensor, out, tag).wait()

    def all_gather_v_async(self, tensor: Any, out: Any, tag: int = 0) -> Op:
        """Starts :meth:`all_gather_v` and returns at once."""
        s, r = _gather_buffers(tensor, out)
        c_op = self._c.all_gather_v_async(s.ptr, s.count, r.ptr, r.count, int(s.dtype),
                                          _u64("tag", tag), [s.keep, r.keep])
        return Op(c_op, _Outputs([r]))

    def reduce_scatter(self, tensor: Any, out: Any, op: ReduceOp = ReduceOp.SUM, tag: int = 0,
                       quantization: Optional[Quantization] = None) -> ReduceInfo:
        """Reduces every peer's ``tensor`` (same count, dtype, op, quantization everywhere)
        and leaves block r of the result in ``out`` on the peer at ring rank r. Blocks split
        ``tensor.numel()`` N ways, the first ``numel % N`` one element larger; ``out`` needs
        room for this peer's block. Bit-identical to the same block of :meth:`all_reduce`.
        """
        return self.reduce_scatter_async(tensor, out, op, tag, quantization).wait()

    def reduce_scatter_async(self, tensor: Any, out: Any, op: ReduceOp = ReduceOp.SUM,
                             tag: int = 0,
                             quantization: Optional[Quantization] = None) -> Op:
        """Starts :meth:`reduce_scatter` and returns at once."""
        s, r = _gather_buffers(tensor, out)
        red = _enum(ReduceOp, "op", op)
        q_algorithm, q_dtype = _quantization_args(quantization, s.dtype)
        c_op = self._c.reduce_scatter_async(s.ptr, r.ptr, r.count, s.count, int(s.dtype),
                                            int(red), _u64("tag", tag), q_algorithm, q_dtype,
                                            [s.keep, r.keep])
        return Op(c_op, _Outputs([r]))

    def barrier(self, tag: int = 0) -> ReduceInfo:
        """Returns once every peer of the group has called it with ``tag``."""
        return self.barrier_async(tag).wait()

    def barrier_async(self, tag: int = 0) -> Op:
        """Starts :meth:`barrier` and returns at once."""
        return Op(self._c.barrier_async(_u64("tag", tag)), None)

    # ---- shared state ----

    def sync_shared_state(self, state: SharedState,
                          strategy: SyncStrategy = SyncStrategy.ENFORCE_POPULAR) -> SyncInfo:
        """Collective of the group: makes every peer's shared state byte-identical to the
        elected content (newest revision, then most peers; docs/shared-state.md).

        Only differing tensors are transferred, into ``state``'s buffers in place. On success
        ``state.revision`` is the elected revision. Raises :class:`qccl.MismatchError` if
        peers disagree about names, dtypes or counts or a revision skipped ahead (nothing
        changed), :class:`qccl.InvalidUsageError` while all-reduces are in flight.
        """
        if not isinstance(state, SharedState):
            raise TypeError(f"state must be a qccl.SharedState, not {type(state).__name__}")
        strategy = _enum(SyncStrategy, "strategy", strategy)
        buffers: List[Tuple[str, Buffer]] = []
        for name, t in state.tensors.items():
            buffers.append((name, resolve(t, writable=True, what=f"shared-state entry '{name}'")))
        unequal = state._unequal
        entries = [(name, b.ptr, b.count, int(b.dtype), name in unequal) for name, b in buffers]
        revision, tx, rx = self._c.sync_shared_state(_u64("state.revision", state.revision),
                                                     entries, int(strategy))
        for _, b in buffers:
            b.copy_back()
        state.revision = revision
        return SyncInfo(revision, tx, rx)

    # ---- deadlines and cancellation ----

    @property
    def op_timeout(self) -> Optional[float]:
        """The deadline of every operation started from now on, in seconds (None = none).

        When an operation has not completed on every peer of the group this long after the
        first one started it, it fails on all of them with :class:`qccl.TimeoutError` (all or
        nothing: inputs untouched, in-place buffers restored), including a peer that calls it
        only later; nobody is expelled and the next operation runs normally. The master applies
        the smallest timeout the peers gave (docs/reliability.md). Assigning applies to the
        operations started after it; any thread.
        """
        ms = self._c.op_timeout_ms
        return None if ms == 0 else ms / 1000.0

    @op_timeout.setter
    def op_timeout(self, seconds: Optional[float]) -> None:
        ms = _timeout_ms(seconds)
        with self._lock:
            self._op_timeout_ms = ms
            c = self._c
        c.set_op_timeout(ms)

    def abort(self) -> None:
        """Cancels the communicator, from any thread (``qcclCommAbort``).

        Every call blocked on it in other threads (connect, votes, all-reduces, ``wait()`` of
        async ops, syncs) raises :class:`qccl.AbortedError` within milliseconds, and so does
        every later call; the peer leaves the run gracefully. :meth:`close` is still needed
        and, once the aborted calls have returned, does not wait. Idempotent; a no-op after
        :meth:`close`.
        """
        with self._lock:
            self._aborted = True  # connect() must not replace the aborted handle
            c = self._c
        c.abort()

    # ---- lifetime ----

    def close(self) -> None:
        """Leaves the run gracefully and frees the communicator. Idempotent.

        Waits for blocking calls in progress on other threads to return; async ops still in
        flight end with :class:`qccl.AbortedError`. Every later call raises
        :class:`qccl.InvalidUsageError`.
        """
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self._connected else "not connected")
        return f"<qccl.Communicator master={self._config[0]} group={self._config[1]} {state}>"


def _close_all() -> None:
    for comm in list(_live):
        try:
            comm._c.close(False)  # not if a (daemon) thread is blocked in a call on it
        except Exception:
            pass
