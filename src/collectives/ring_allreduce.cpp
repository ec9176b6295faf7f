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
// Determinism and bit parity. Each chunk is reduced exactly once along a fixed path (from
// its rank-c peer around the ring to its owner), in the same order on every run, and then
// only copied. So every peer ends with the same bytes, whatever the timing. fp16/bf16 are
// combined in fp32 and rounded once per hop; Avg divides once, at the owner, in the last
// reduce-scatter step.
//
// Buffers. Reduce-scatter frames are read into a small staging buffer (one per connection)
// and reduced straight into recvbuf; out of place, the own contribution is read from sendbuf,
// so there is no full-buffer copy. All-gather frames are read directly into recvbuf. Causality
// makes this safe: a final segment can only arrive after this peer's earlier send of the same
// region has been delivered.
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
                             uint32_t world, uint32_t rank)
    : desc_(desc),
      send_(static_cast<const uint8_t*>(sendbuf)),
      recv_(static_cast<uint8_t*>(recvbuf)),
      world_(world),
      rank_(rank),
      elem_size_(dtype_size(desc.dtype)),
      segment_elems_(choose_segment_elems(desc.count, elem_size_, world)) {
  max_segments_ = num_segments(chunk_range(desc.count, world, 0).count, segment_elems_);
  for (uint32_t s = 0; s < num_steps(); ++s) {
    expected_ += num_segments(chunk_range(desc.count, world, recv_chunk(s)).count, segment_elems_);
  }
  claimed_.assign(static_cast<size_t>(num_steps()) * max_segments_, 0);
}

std::vector<RingAllReduce::Send> RingAllReduce::start() const {
  std::vector<Send> sends;
  Range chunk = chunk_range(desc_.count, world_, send_chunk(0));
  size_t n = num_segments(chunk.count, segment_elems_);
  for (size_t j = 0; j < n; ++j) {
    Range seg = segment_range(chunk, segment_elems_, j);
    sends.push_back({0, static_cast<uint32_t>(j), send_ + seg.offset * elem_size_,
                     seg.count * elem_size_});
  }
  return sends;
}

Result<RingAllReduce::RecvTarget> RingAllReduce::claim(uint32_t step, uint32_t segment,
                                                       size_t payload_bytes) {
  if (step >= num_steps()) {
    return make_status(StatusCode::kPeerLost, "data frame for step {} of a {}-step operation",
                       step, num_steps());
  }
  Range chunk = chunk_range(desc_.count, world_, recv_chunk(step));
  if (segment >= num_segments(chunk.count, segment_elems_)) {
    return make_status(StatusCode::kPeerLost, "data frame for segment {} of step {}: out of range",
                       segment, step);
  }
  uint8_t& state = claimed_[frame_index(step, segment)];
  if (state != 0) {
    return make_status(StatusCode::kPeerLost, "duplicate data frame (step {}, segment {})", step,
                       segment);
  }
  Range seg = segment_range(chunk, segment_elems_, segment);
  size_t bytes = seg.count * elem_size_;
  if (payload_bytes != bytes) {
    return make_status(StatusCode::kPeerLost,
                       "data frame (step {}, segment {}) has {} bytes, expected {}", step, segment,
                       payload_bytes, bytes);
  }
  state = 1;
  bool reduce_step = step < world_ - 1;
  return RecvTarget{reduce_step ? nullptr : recv_ + seg.offset * elem_size_, bytes, reduce_step};
}

std::optional<RingAllReduce::Send> RingAllReduce::on_received(uint32_t step, uint32_t segment,
                                                             const uint8_t* staging) {
  claimed_[frame_index(step, segment)] = 2;
  ++received_;
  Range chunk = chunk_range(desc_.count, world_, recv_chunk(step));
  Range seg = segment_range(chunk, segment_elems_, segment);
  uint8_t* dst = recv_ + seg.offset * elem_size_;
  if (step < world_ - 1) {
    const uint8_t* own = send_ + seg.offset * elem_size_;
    bool last_reduce = step == world_ - 2;
    if (last_reduce && desc_.op == ReduceOp::kAvg) {
      quant::reduce_and_divide(desc_.dtype, dst, own, staging, seg.count, world_);
    } else {
      quant::reduce(desc_.dtype, desc_.op, dst, own, staging, seg.count);
    }
  }
  if (step + 1 >= num_steps()) return std::nullopt;
  return Send{step + 1, segment, dst, seg.count * elem_size_};
}

}  // namespace qccl::collectives
