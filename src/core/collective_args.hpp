// What a caller passes to each collective beside all-reduce (and barrier, which takes only a
// tag): the arguments of Communicator::broadcast_async & co. and of the ops that run them
// (core/broadcast_op.hpp, allgather_op.hpp, allgather_v_op.hpp, reduce_scatter_op.hpp, where
// each one's semantics are described). Buffers stay the caller's; they must stay valid until
// the operation's handle completes.
#pragma once

#include <cstddef>

#include "collectives/reduce_desc.hpp"
#include "common/ids.hpp"
#include "quant/dtype.hpp"

namespace qccl::core {

struct BroadcastArgs {
  void* buf = nullptr;  // the root's input, every other member's output
  size_t count = 0;     // elements
  DataType dtype = DataType::kFloat32;
  PeerId root = kNoPeer;  // the root's stable peer id
  OpTag tag = 0;
};

struct AllGatherArgs {
  const void* sendbuf = nullptr;
  void* recvbuf = nullptr;
  size_t count = 0;          // elements each member contributes
  size_t recv_capacity = 0;  // elements recvbuf holds
  DataType dtype = DataType::kFloat32;
  OpTag tag = 0;
};

struct AllGatherVArgs {
  const void* sendbuf = nullptr;
  size_t count = 0;          // this member's contribution, elements
  void* recvbuf = nullptr;
  size_t recv_capacity = 0;  // elements recvbuf holds
  DataType dtype = DataType::kFloat32;
  size_t* counts = nullptr;  // NULLABLE: each member's count, in ring order, at commit
  size_t counts_capacity = 0;
  OpTag tag = 0;
};

struct ReduceScatterArgs {
  const void* sendbuf = nullptr;  // desc.count elements
  void* recvbuf = nullptr;        // this member's block (may be sendbuf: in place)
  size_t recv_capacity = 0;       // elements recvbuf holds
  collectives::ReduceDesc desc;
};

}  // namespace qccl::core
