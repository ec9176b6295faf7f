// Ring all-reduce: reduce-scatter then all-gather, segmented and pipelined.
//
// Chunking. The buffer is cut into `world` (N) chunks (chunking.hpp); chunk c is owned by the
// peer of rank c-1 (mod N), the one that completes its reduction. Each chunk is cut into
// segments of a few hundred KiB, the unit that travels.
//
// Steps. There are 2(N-1) steps. At step s peer r sends chunk (r - s) mod N to the next peer
// and receives chunk (r - s - 1) mod N from the previous one. Steps 0..N-2 are the
// reduce-scatter: the received segment is combined with this peer's own contribution
// (recvbuf = input op received); steps N-1..2N-3 are the all-gather: the received segment is
// final and lands directly in recvbuf. What a peer receives at step s is exactly what it
// sends at step s+1, so each segment is forwarded as soon as it has been reduced: segment j
// of step s+1 leaves while segment j+1 of step s is still arriving. There is no barrier
// between steps, and the pipeline depth is the whole operation.
//
// Worked example, N = 3, rank 1, chunks A B C (0 1 2). Step 0: send B (own input), receive A
// and reduce (A1 = a0+a1). Step 1: send A1, receive C partial (c2+c0), reduce: C is complete
// (c0+c1+c2; rank 1 owns chunk 2). Step 2 (all-gather): send C, receive final A. Step 3:
// send A, receive final B. Done: recvbuf = A B C, all final.
//
// Reduce-scatter mode (Mode::kReduceScatter). Only steps 0..N-2 run: N-1 steps, each peer
// ending with the one chunk it completes, (r + 1) mod N, in recvbuf at its offset. In the
// example above rank 1 stops after step 1 with C final; A and B in its recvbuf are scratch.
// The last reduce step is the all-reduce's own, including the Avg division and, quantized,
// the owner's encode-and-replace (into one extra wire slot, never sent), so the owned chunk
// is bit-identical to the same chunk of the all-reduce. Ring rank r owns chunk r when the
// caller passes rank (r + N - 1) mod N (ring_allreduce.hpp owned_chunk()).
//
// Determinism and bit parity. Each chunk is reduced exactly once along a fixed path (from
// its rank-c peer around the ring to its owner), in the same order on every run, and then
// only copied. So every peer ends with the same bytes, whatever the timing. fp16/bf16 are
// combined in fp32 and rounded once per hop; Avg divides once, at the owner, in the last
// reduce-scatter step.
//
// Buffers. Out of place, reduce-scatter frames are read straight into their place in recvbuf
// and reduced there with the own contribution from sendbuf (recvbuf = input op received): that
// region of recvbuf holds nothing yet (each chunk is received once in the reduce-scatter, and
// forwarded only after it is reduced), and the payload is still in cache when the reduction
// reads it. In place, the received partial sum would overwrite the input it is combined with,
// so those frames go through a small staging buffer (one per connection); the all-reduce op
// passes its copy of the input as sendbuf instead (core/allreduce_op.cpp), so only callers
// without one stage. All-gather frames are read directly into recvbuf. Causality makes this
// safe: a final segment can only arrive after this peer's earlier send of the same region has
// been delivered.
//
// Quantization (desc.quant_*: a WireCodec that is not the identity). Frames carry encoded
// segments (quant/quantize.hpp). Reduce-scatter: each hop decodes the received partial sum,
// combines it with its own input in the source type (decode_reduce) and encodes the result
// for the next hop. The owner encodes its final chunk once and replaces its own copy with
// what the encoding decodes to; all-gather frames are read into the slot they are forwarded
// from, so the owner's bytes travel unchanged and every peer decodes the same values: bit
// parity holds as without quantization. Encoded frames live in a wire buffer of one slot per
// (step, segment), so that a frame stays valid until its send completes without any
// bookkeeping; blocks of statistics start at each segment's first element.
//
// Failure. This class only moves data. Losing a neighbour, aborting and committing are the
// communicator's business (core/allreduce_op.cpp): it stops feeding frames, and frames of an
// aborted operation never reach a later one because they carry (epoch, tag, seq).
#include "collectives/ring_allreduce.hpp"

#include <algorithm>
#include <cstring>

#include "quant/reduce_kernels.hpp"

namespace qccl::collectives {

RingAllReduce::RingAllReduce(const ReduceDesc& desc, const void* sendbuf, void* recvbuf,
                             uint32_t world, uint32_t rank, Mode mode)
    : desc_(desc),
      send_(static_cast<const uint8_t*>(sendbuf)),
      recv_(static_cast<uint8_t*>(recvbuf)),
      world_(world),
      rank_(rank),
      mode_(mode),
      elem_size_(dtype_size(desc.dtype)),
      segment_elems_(choose_segment_elems(desc.count, elem_size_, world)),
      codec_(wire_codec(desc)),
      coded_(!codec_.identity()) {
  max_segments_ = num_segments(chunk_range(desc.count, world, 0).count, segment_elems_);
  for (uint32_t s = 0; s < num_steps(); ++s) {
    expected_ += num_segments(chunk_range(desc.count, world, recv_chunk(s)).count, segment_elems_);
  }
  size_t frames = static_cast<size_t>(num_steps()) * max_segments_;
  claims_ = FrameClaims(frames);
  max_frame_bytes_ = frame_bytes(segment_elems_);
  if (coded_) {
    slot_bytes_ = (max_frame_bytes_ + 7) & ~size_t{7};
    size_t slots = frames + (mode_ == Mode::kReduceScatter ? max_segments_ : 0);
    wire_ = std::make_unique_for_overwrite<uint8_t[]>(slots * slot_bytes_);
  }
}

RingAllReduce::Send RingAllReduce::send_frame(uint32_t step, uint32_t segment, Range seg) {
  if (!coded_) {
    // Unquantized frames go straight from the user's buffer: the own input at step 0, the
    // reduced (or final) values in recvbuf after that.
    const uint8_t* base = step == 0 ? send_ : recv_;
    return {step, segment, base + seg.offset * elem_size_, seg.count * elem_size_};
  }
  return {step, segment, slot(step, segment), frame_bytes(seg.count)};
}

size_t RingAllReduce::initial_frames() const {
  return num_segments(chunk_range(desc_.count, world_, send_chunk(0)).count, segment_elems_);
}

RingAllReduce::Send RingAllReduce::initial_frame(size_t j) {
  Range seg = segment_range(chunk_range(desc_.count, world_, send_chunk(0)), segment_elems_, j);
  return send_frame(0, static_cast<uint32_t>(j), seg);
}

void RingAllReduce::fill_initial_frame(size_t j) {
  if (!coded_) return;
  Range seg = segment_range(chunk_range(desc_.count, world_, send_chunk(0)), segment_elems_, j);
  quant::encode(codec_, send_ + seg.offset * elem_size_, seg.count,
                slot(0, static_cast<uint32_t>(j)), nullptr);
}

Result<RingAllReduce::RecvTarget> RingAllReduce::claim(uint32_t step, uint32_t segment,
                                                       size_t payload_bytes, uint32_t claimant) {
  QCCL_RETURN_IF_ERROR(check_step(step, 0, num_steps()));
  Range chunk = chunk_range(desc_.count, world_, recv_chunk(step));
  QCCL_ASSIGN_OR_RETURN(Range seg, check_segment(step, segment, chunk, segment_elems_));
  size_t bytes = frame_bytes(seg.count);
  QCCL_RETURN_IF_ERROR(check_payload(step, segment, payload_bytes, bytes));
  auto c = claims_.claim(frame_index(step, segment), claimant);
  if (c.duplicate != Duplicate::kNo) return FrameClaims::duplicate_target(c, bytes);
  return claim_target(step, segment);
}

void RingAllReduce::unclaim(uint32_t step, uint32_t segment, uint32_t claimant) {
  claims_.unclaim(frame_index(step, segment), claimant);
}

void RingAllReduce::take_over(uint32_t step, uint32_t segment, uint32_t claimant,
                              const uint8_t* staging) {
  claims_.take_over(frame_index(step, segment), claimant);
  // Where the first copy was being read to; staged targets have no such place.
  auto target = claim_target(step, segment);
  if (!target.staged && target.dst) std::memcpy(target.dst, staging, target.bytes);
}

RingAllReduce::RecvTarget RingAllReduce::claim_target(uint32_t step, uint32_t segment) const {
  Range seg = segment_range(chunk_range(desc_.count, world_, recv_chunk(step)), segment_elems_,
                            segment);
  size_t bytes = frame_bytes(seg.count);
  // Reduce-scatter frames stage unless reduced in recvbuf (which implies unquantized).
  if (step < world_ - 1 && !reduce_in_recvbuf()) return RecvTarget{nullptr, bytes, true};
  if (!coded_) return RecvTarget{recv_ + seg.offset * elem_size_, bytes, false};
  // All-gather, quantized: into the slot this frame is forwarded from (the last one has none).
  bool forwarded = step + 1 < num_steps();
  return RecvTarget{forwarded ? wire_.get() + frame_index(step + 1, segment) * slot_bytes_ : nullptr,
                    bytes, !forwarded};
}

std::optional<RingAllReduce::Send> RingAllReduce::on_received(uint32_t step, uint32_t segment,
                                                             const uint8_t* staging) {
  claims_.mark_received(frame_index(step, segment));
  Range chunk = chunk_range(desc_.count, world_, recv_chunk(step));
  Range seg = segment_range(chunk, segment_elems_, segment);
  uint8_t* dst = recv_ + seg.offset * elem_size_;
  bool forward = step + 1 < num_steps();
  if (step < world_ - 1) {
    const uint8_t* own = send_ + seg.offset * elem_size_;
    bool last_reduce = step == world_ - 2;
    uint32_t divisor = last_reduce && desc_.op == ReduceOp::kAvg ? world_ : 1;
    if (coded_) {
      quant::decode_reduce(codec_, desc_.op, dst, own, staging, seg.count, divisor);
      // The owner (last_reduce) keeps exactly what the others will decode.
      quant::encode(codec_, dst, seg.count, slot(step + 1, segment), last_reduce ? dst : nullptr);
    } else {
      // The received partial sum: already in place, or in staging (claim_target).
      const uint8_t* in = reduce_in_recvbuf() ? dst : staging;
      if (divisor > 1) {
        quant::reduce_and_divide(desc_.dtype, dst, own, in, seg.count, divisor);
      } else {
        quant::reduce(desc_.dtype, desc_.op, dst, own, in, seg.count);
      }
    }
  } else if (coded_) {
    quant::decode(codec_, forward ? slot(step + 1, segment) : staging, seg.count, dst);
  }
  if (!forward) return std::nullopt;
  return send_frame(step + 1, segment, seg);
}

}  // namespace qccl::collectives
