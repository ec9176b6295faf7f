"""How each collective lays torch tensors out for qccl, and back: the collectives' parts.

A part starts qccl operations (each with a fresh tag from ``tag()``) and, once they all ended,
finishes: copies out of staging buffers, moves all-gather blocks from ring order to rank
order. torch ranks are fixed while qccl orders peers by ring, so the parts map between them:
reduce-scatter inputs are laid out in ring order so that each peer receives its rank's block,
broadcast roots are named by peer id, all-gather blocks go to the rank of the peer each
operation reports. A group of one rank (``_solo``) computes the result locally.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch

from .._enums import Quantization, ReduceOp, Result
from ._errors import QcclBackendError
from ._tensors import (check_device, contiguous, flat_bytes, premul_factor, reducible,
                       same_numel)

#: One collective's piece: starts its qccl ops (given a fresh tag for each), and finishes.
Part = Tuple[Callable[[Callable[[], int]], List[Any]], Callable[[List[Any]], Any]]


class Parts:
    """The part builders of :class:`ProcessGroupQccl` (a mixin: it uses the group's
    communicator, rank <-> peer maps and ring)."""

    def _broadcast(self, t: torch.Tensor, root: int) -> Part:
        c, back = contiguous(t)
        data = flat_bytes(c)
        peer = self._peer_of_rank[root]

        def start(tag):
            if data.numel() == 0 or self._solo:
                return []
            return [self._comm.broadcast_async(data, root=peer, tag=tag())]

        def finish(_infos):
            back()
        return start, finish

    def _gather_list(self, outs: List[torch.Tensor], inp: torch.Tensor) -> Part:
        """all_gather into a list, equal sizes (qccl's all-gather) or not (all-gather-v)."""
        src = flat_bytes(contiguous(inp)[0])
        size = inp.element_size()
        if same_numel(outs + [inp]):
            n = src.numel()
            flat = torch.empty(n * self.size(), dtype=torch.uint8, device=inp.device)

            def start(tag):
                if self._solo:
                    flat.copy_(src)
                    return []
                return [self._comm.all_gather_async(src, flat, tag=tag())]

            def finish(infos):
                for k, peer in enumerate(infos[0].peers if infos else self._ring_peers):
                    o = outs[self._rank_of_peer[peer]]
                    o.copy_(flat[k * n:(k + 1) * n].view(o.dtype).view(o.shape))
            return start, finish

        total = sum(o.numel() for o in outs) * size
        flat = torch.empty(total, dtype=torch.uint8, device=inp.device)

        def start_v(tag):
            if self._solo:
                flat.copy_(src)
                return []
            return [self._comm.all_gather_v_async(src, flat, tag=tag())]

        def finish_v(infos):
            offset = 0
            peers, counts = ((infos[0].peers, infos[0].counts) if infos
                             else (self._ring_peers, (src.numel(),)))
            for peer, count in zip(peers, counts):
                o = outs[self._rank_of_peer[peer]]
                if count != o.numel() * size:
                    raise QcclBackendError(
                        f"qccl allgather: rank {self._rank_of_peer[peer]} sent {count // size} "
                        f"elements, its output tensor has {o.numel()}", Result.MISMATCH)
                o.copy_(flat[offset:offset + count].view(o.dtype).view(o.shape))
                offset += count
        return start_v, finish_v

    def _all_reduce(self, t: torch.Tensor, op: Any,
                    quantization: Optional[Quantization] = None) -> Part:
        check_device([t], "allreduce")
        factor = premul_factor(op)
        if factor is not None:
            c = t * factor
            back = lambda: t.copy_(c)  # noqa: E731
        else:
            c, back = contiguous(t)
        v, red = reducible(c, op, "allreduce")
        q = quantization if quantization is not None else self._quantization(v, red)

        def start(tag):
            if v.numel() == 0 or self._solo:
                return []
            return [self._comm.all_reduce_async(v, op=red, tag=tag(), quantization=q)]

        def finish(_infos):
            back()
        return start, finish

    def _all_reduce_flat(self, tensors: List[torch.Tensor], op: Any) -> Part:
        flat = torch.cat([t.reshape(-1) for t in tensors])
        start, finish_flat = self._all_reduce(flat, op)

        def finish(infos):
            finish_flat(infos)
            offset = 0
            for t in tensors:
                t.copy_(flat[offset:offset + t.numel()].view(t.shape))
                offset += t.numel()
        return start, finish

    def _all_reduce_slice(self, ins: List[torch.Tensor], out: torch.Tensor, op: Any) -> Part:
        flat = torch.cat([t.reshape(-1) for t in ins])
        start, finish_flat = self._all_reduce(flat, op)
        offset = sum(t.numel() for t in ins[:self.rank()])

        def finish(infos):
            finish_flat(infos)
            out.copy_(flat[offset:offset + out.numel()].view(out.shape))
        return start, finish

    def _gather_into(self, output: torch.Tensor, input: torch.Tensor) -> Part:
        check_device([output, input], "all_gather_into_tensor")
        same_dtype([output], input, "all_gather_into_tensor")
        if output.numel() != input.numel() * self.size():
            raise QcclBackendError(
                f"qccl all_gather_into_tensor: output has {output.numel()} elements, needs "
                f"{self.size()} x {input.numel()}", Result.INVALID_ARGUMENT)
        if input.numel() == 0:
            return (lambda _tag: []), no_finish
        o, back = contiguous(output)
        if self._ring != sorted(self._ring):
            # Ring order is not rank order: gather into staging, then each block to its
            # rank (one copy; an in-place input, FSDP2's, never overlaps the staging).
            start_list, finish_list = self._gather_list(list(o.view(-1).chunk(self.size())),
                                                        input)

            def finish_blocks(infos):
                finish_list(infos)
                back()
            return start_list, finish_blocks
        src = flat_bytes(contiguous(input)[0])
        dst = flat_bytes(o)
        n = src.numel()
        if overlap(src, dst) and src.data_ptr() != dst.data_ptr() + self.rank() * n:
            src = src.clone()  # qccl takes an in-place input only at this peer's block

        def start(tag):
            if self._solo:
                dst.copy_(src)
                return []
            return [self._comm.all_gather_async(src, dst, tag=tag())]

        def finish(infos):
            order = [self._rank_of_peer[p] for p in infos[0].peers] if infos else []
            if order != sorted(order):  # ring order is not rank order: move the blocks
                ring = dst.clone()
                for k, r in enumerate(order):
                    dst[r * n:(r + 1) * n] = ring[k * n:(k + 1) * n]
            back()
        return start, finish

    def _scatter_from(self, output: torch.Tensor, input: torch.Tensor, op: Any) -> Part:
        check_device([output, input], "reduce_scatter_tensor")
        same_dtype([output], input, "reduce_scatter_tensor")
        if input.numel() != output.numel() * self.size():
            raise QcclBackendError(
                f"qccl reduce_scatter_tensor: input has {input.numel()} elements, needs "
                f"{self.size()} x {output.numel()}", Result.INVALID_ARGUMENT)
        if self._ring == sorted(self._ring):
            stacked = contiguous(input)[0].reshape(-1)
        else:  # lay the ranks' blocks out in ring order
            stacked = input.reshape(self.size(), -1)[self._ring].reshape(-1)
        return self._reduce_scatter(stacked, output, op, "reduce_scatter_tensor")

    def _reduce_scatter(self, stacked: torch.Tensor, out: torch.Tensor, op: Any,
                        call: str) -> Part:
        """``stacked``: the size() blocks in ring order (read only, unless premultiplied)."""
        factor = premul_factor(op)
        if factor is not None:
            stacked = stacked * factor
        src, red = reducible(stacked, op, call)
        o, back = contiguous(out)
        dst, _ = reducible(o, op, call)
        q = self._quantization(src, red)

        def start(tag):
            if src.numel() == 0:
                return []
            if self._solo:
                dst.copy_(src)
                return []
            return [self._comm.reduce_scatter_async(src, dst, op=red, tag=tag(),
                                                    quantization=q)]

        def finish(infos):
            if infos and infos[0].peers != self._ring_peers:
                raise QcclBackendError(f"qccl {call}: the ring changed under the group",
                                       Result.PEER_LOST)
            back()
        return start, finish

    def _quantization(self, v: torch.Tensor, red: ReduceOp) -> Optional[Quantization]:
        q = self._options.quantization
        if q is None or v.dtype != torch.float32 or red not in (ReduceOp.SUM, ReduceOp.AVG):
            return None
        return q

def same_dtype(tensors: List[torch.Tensor], other: torch.Tensor, call: str) -> None:
    for t in tensors:
        if t.dtype != other.dtype:
            raise QcclBackendError(f"qccl {call}: dtypes differ ({t.dtype} and {other.dtype})",
                                   Result.INVALID_ARGUMENT)


def overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two contiguous uint8 tensors share memory."""
    return a.data_ptr() < b.data_ptr() + b.numel() and b.data_ptr() < a.data_ptr() + a.numel()


def no_finish(_infos: List[Any]) -> None:
    return None
