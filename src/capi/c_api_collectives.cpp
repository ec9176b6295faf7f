// The C API's collectives beside all-reduce: qcclBroadcast, qcclAllGather, qcclAllGatherV,
// qcclReduceScatter and qcclBarrier, each blocking and ...Async, and qcclRunMultipleWithRetry
// for a batch of any kinds. Arguments are checked here (each kind's *_args builds the core's
// arguments); what depends on the group (its size, the root's presence, the room in the
// caller's buffers) is checked by the operation when it runs, on every peer alike
// (core/*_op.hpp).
#include "qccl/qccl.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "capi/c_api_common.hpp"
#include "core/multi_op.hpp"

using qccl::Result;
using qccl::capi::fail;
using qccl::capi::fill_info;
using qccl::capi::guarded;
using qccl::capi::raw_enum;
using qccl::capi::to_reduce_desc;
using qccl::capi::to_result;
using qccl::capi::valid;
using qccl::core::Communicator;
using qccl::core::OpStarter;
using Handle = std::shared_ptr<qccl::core::OpHandle>;

namespace {

// `dtype` by reference: a caller's out-of-range value must not be loaded as the enum (UB).
qcclResult_t to_dtype(const qcclDataType_t& dtype, qccl::DataType* out, const char* fn) {
  unsigned raw = raw_enum(dtype);
  QCCL_REQUIRE(raw < qcclNumDataTypes, fn, "unknown dtype " + std::to_string(raw));
  *out = static_cast<qccl::DataType>(raw);
  return qcclSuccess;
}

// `count` elements of `dtype` at `buf`: non-NULL unless empty, and addressable.
qcclResult_t check_buffer(const void* buf, size_t count, qccl::DataType dtype, const char* what,
                          const char* fn) {
  if (count == 0) return qcclSuccess;
  QCCL_REQUIRE(buf != nullptr, fn, std::string(what) + " is NULL");
  QCCL_REQUIRE(count <= SIZE_MAX / qccl::dtype_size(dtype), fn,
               std::string(what) + ": count overflows");
  return qcclSuccess;
}

// Returns the result of `expr` unless it is qcclSuccess.
#define QCCL_TRY(expr)                                            \
  do {                                                            \
    if (qcclResult_t r_ = (expr); r_ != qcclSuccess) return r_;   \
  } while (0)

// ---- each kind's arguments ----

qcclResult_t broadcast_args(void* buf, size_t count, const qcclDataType_t& dtype, uint64_t root,
                            uint64_t tag, qccl::core::BroadcastArgs* a, const char* fn) {
  *a = {buf, count, qccl::DataType::kFloat32, root, tag};
  QCCL_TRY(to_dtype(dtype, &a->dtype, fn));
  return check_buffer(buf, count, a->dtype, "buf", fn);
}

qcclResult_t all_gather_args(const void* sendbuf, void* recvbuf, size_t sendcount,
                             size_t recvcount, const qcclDataType_t& dtype, uint64_t tag,
                             qccl::core::AllGatherArgs* a, const char* fn) {
  *a = {sendbuf, recvbuf, sendcount, recvcount, qccl::DataType::kFloat32, tag};
  QCCL_TRY(to_dtype(dtype, &a->dtype, fn));
  QCCL_TRY(check_buffer(sendbuf, sendcount, a->dtype, "sendbuf", fn));
  return check_buffer(recvbuf, recvcount, a->dtype, "recvbuf", fn);
}

qcclResult_t all_gather_v_args(const void* sendbuf, size_t sendcount, void* recvbuf,
                               size_t recvcount, const qcclDataType_t& dtype, size_t* counts,
                               size_t counts_capacity, uint64_t tag,
                               qccl::core::AllGatherVArgs* a, const char* fn) {
  *a = {sendbuf, sendcount, recvbuf, recvcount, qccl::DataType::kFloat32, counts,
        counts_capacity, tag};
  QCCL_TRY(to_dtype(dtype, &a->dtype, fn));
  QCCL_TRY(check_buffer(sendbuf, sendcount, a->dtype, "sendbuf", fn));
  QCCL_TRY(check_buffer(recvbuf, recvcount, a->dtype, "recvbuf", fn));
  QCCL_REQUIRE(counts != nullptr || counts_capacity == 0, fn,
               "counts is NULL but counts_capacity is not 0");
  return qcclSuccess;
}

qcclResult_t reduce_scatter_args(const void* sendbuf, void* recvbuf, size_t recvcount,
                                 const qcclReduceDesc_t* desc, qccl::core::ReduceScatterArgs* a,
                                 const char* fn) {
  QCCL_REQUIRE(desc != nullptr, fn, "desc is NULL");
  *a = {sendbuf, recvbuf, recvcount, {}};
  QCCL_TRY(to_reduce_desc(desc, &a->desc, fn));
  QCCL_TRY(check_buffer(sendbuf, a->desc.count, a->desc.dtype, "sendbuf", fn));
  QCCL_TRY(check_buffer(recvbuf, recvcount, a->desc.dtype, "recvbuf", fn));
  if (sendbuf != recvbuf && a->desc.count > 0 && recvcount > 0) {
    size_t esize = qccl::dtype_size(a->desc.dtype);
    auto s = static_cast<const char*>(sendbuf);
    auto r = static_cast<const char*>(recvbuf);
    bool overlap = s < r + recvcount * esize && r < s + a->desc.count * esize;
    QCCL_REQUIRE(!overlap, fn, "sendbuf and recvbuf overlap partially (use the same pointer "
                               "for in place)");
  }
  return qcclSuccess;
}

// Runs `start` on `comm` and either waits for it (op_out == nullptr: the blocking form,
// filling info_out) or hands its handle to *op_out.
qcclResult_t run(const char* fn, qcclComm_t* comm, qcclOp_t** op_out, qcclOpInfo_t* info_out,
                 const std::function<Result<Handle>(Communicator&)>& start) {
  QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
  Result<Handle> handle = start(*comm->rep);
  if (!handle.is_ok()) return to_result(handle.status(), fn);
  if (op_out) {
    auto op = std::make_unique<qcclOp>();
    op->rep = std::move(handle).value();
    *op_out = op.release();
    return qcclSuccess;
  }
  qccl::core::ReduceInfo info;
  qccl::Status st = (*handle)->wait(&info);
  fill_info(info, info_out);
  return to_result(st, fn);
}

qcclResult_t broadcast(const char* fn, void* buf, size_t count, const qcclDataType_t& dtype,
                       uint64_t root, uint64_t tag, qcclComm_t* comm, qcclOp_t** op_out,
                       qcclOpInfo_t* info_out) {
  qccl::core::BroadcastArgs a;
  QCCL_TRY(broadcast_args(buf, count, dtype, root, tag, &a, fn));
  return run(fn, comm, op_out, info_out, [&](Communicator& c) { return c.broadcast_async(a); });
}

qcclResult_t all_gather(const char* fn, const void* sendbuf, void* recvbuf, size_t sendcount,
                        size_t recvcount, const qcclDataType_t& dtype, uint64_t tag, qcclComm_t* comm,
                        qcclOp_t** op_out, qcclOpInfo_t* info_out) {
  qccl::core::AllGatherArgs a;
  QCCL_TRY(all_gather_args(sendbuf, recvbuf, sendcount, recvcount, dtype, tag, &a, fn));
  return run(fn, comm, op_out, info_out, [&](Communicator& c) { return c.all_gather_async(a); });
}

qcclResult_t all_gather_v(const char* fn, const void* sendbuf, size_t sendcount, void* recvbuf,
                          size_t recvcount, const qcclDataType_t& dtype, size_t* counts,
                          size_t counts_capacity, uint64_t tag, qcclComm_t* comm,
                          qcclOp_t** op_out, qcclOpInfo_t* info_out) {
  qccl::core::AllGatherVArgs a;
  QCCL_TRY(all_gather_v_args(sendbuf, sendcount, recvbuf, recvcount, dtype, counts,
                             counts_capacity, tag, &a, fn));
  return run(fn, comm, op_out, info_out,
             [&](Communicator& c) { return c.all_gather_v_async(a); });
}

qcclResult_t reduce_scatter(const char* fn, const void* sendbuf, void* recvbuf, size_t recvcount,
                            const qcclReduceDesc_t* desc, qcclComm_t* comm, qcclOp_t** op_out,
                            qcclOpInfo_t* info_out) {
  qccl::core::ReduceScatterArgs a;
  QCCL_TRY(reduce_scatter_args(sendbuf, recvbuf, recvcount, desc, &a, fn));
  return run(fn, comm, op_out, info_out,
             [&](Communicator& c) { return c.reduce_scatter_async(a); });
}

qcclResult_t barrier(const char* fn, uint64_t tag, qcclComm_t* comm, qcclOp_t** op_out,
                     qcclOpInfo_t* info_out) {
  return run(fn, comm, op_out, info_out, [&](Communicator& c) { return c.barrier_async(tag); });
}

// One entry of a batch as a starter of attempts on `c`, its arguments checked.
qcclResult_t to_starter(const qcclCollectiveOp_t& o, Communicator& c, OpStarter* out,
                        uint64_t* tag, const char* fn) {
  *tag = o.desc.tag;
  switch (raw_enum(o.kind)) {
    case qcclOpAllReduce: {
      qccl::collectives::ReduceDesc d;
      QCCL_TRY(to_reduce_desc(&o.desc, &d, fn));
      QCCL_TRY(check_buffer(o.sendbuf, d.count, d.dtype, "sendbuf", fn));
      QCCL_TRY(check_buffer(o.recvbuf, d.count, d.dtype, "recvbuf", fn));
      *out = [&c, d, s = o.sendbuf, r = o.recvbuf] { return c.all_reduce_async(s, r, d); };
      return qcclSuccess;
    }
    case qcclOpBroadcast: {
      qccl::core::BroadcastArgs a;
      QCCL_TRY(broadcast_args(o.recvbuf, o.sendcount, o.desc.dtype, o.root_peer_id, o.desc.tag,
                              &a, fn));
      *out = [&c, a] { return c.broadcast_async(a); };
      return qcclSuccess;
    }
    case qcclOpAllGather: {
      qccl::core::AllGatherArgs a;
      QCCL_TRY(all_gather_args(o.sendbuf, o.recvbuf, o.sendcount, o.recvcount, o.desc.dtype,
                               o.desc.tag, &a, fn));
      *out = [&c, a] { return c.all_gather_async(a); };
      return qcclSuccess;
    }
    case qcclOpAllGatherV: {
      qccl::core::AllGatherVArgs a;
      QCCL_TRY(all_gather_v_args(o.sendbuf, o.sendcount, o.recvbuf, o.recvcount, o.desc.dtype,
                                 o.counts, o.counts_capacity, o.desc.tag, &a, fn));
      *out = [&c, a] { return c.all_gather_v_async(a); };
      return qcclSuccess;
    }
    case qcclOpReduceScatter: {
      qccl::core::ReduceScatterArgs a;
      QCCL_TRY(reduce_scatter_args(o.sendbuf, o.recvbuf, o.recvcount, &o.desc, &a, fn));
      *out = [&c, a] { return c.reduce_scatter_async(a); };
      return qcclSuccess;
    }
    case qcclOpBarrier: {
      *out = [&c, t = o.desc.tag] { return c.barrier_async(t); };
      return qcclSuccess;
    }
    default:
      return fail(qcclInvalidArgument,
                  std::string(fn) + ": unknown kind " + std::to_string(raw_enum(o.kind)));
  }
}

}  // namespace

extern "C" {

qcclResult_t qcclBroadcast(void* buf, size_t count, qcclDataType_t dtype, uint64_t root_peer_id,
                           uint64_t tag, qcclComm_t* comm, qcclOpInfo_t* info_out) {
  const char* fn = "qcclBroadcast";
  return guarded(fn, [&] {
    return broadcast(fn, buf, count, dtype, root_peer_id, tag, comm, nullptr, info_out);
  });
}

qcclResult_t qcclBroadcastAsync(void* buf, size_t count, qcclDataType_t dtype,
                                uint64_t root_peer_id, uint64_t tag, qcclComm_t* comm,
                                qcclOp_t** op_out) {
  const char* fn = "qcclBroadcastAsync";
  return guarded(fn, [&] {
    QCCL_REQUIRE(op_out != nullptr, fn, "op_out is NULL");
    return broadcast(fn, buf, count, dtype, root_peer_id, tag, comm, op_out, nullptr);
  });
}

qcclResult_t qcclAllGather(const void* sendbuf, void* recvbuf, size_t sendcount,
                           size_t recvcount, qcclDataType_t dtype, uint64_t tag,
                           qcclComm_t* comm, qcclOpInfo_t* info_out) {
  const char* fn = "qcclAllGather";
  return guarded(fn, [&] {
    return all_gather(fn, sendbuf, recvbuf, sendcount, recvcount, dtype, tag, comm, nullptr,
                      info_out);
  });
}

qcclResult_t qcclAllGatherAsync(const void* sendbuf, void* recvbuf, size_t sendcount,
                                size_t recvcount, qcclDataType_t dtype, uint64_t tag,
                                qcclComm_t* comm, qcclOp_t** op_out) {
  const char* fn = "qcclAllGatherAsync";
  return guarded(fn, [&] {
    QCCL_REQUIRE(op_out != nullptr, fn, "op_out is NULL");
    return all_gather(fn, sendbuf, recvbuf, sendcount, recvcount, dtype, tag, comm, op_out,
                      nullptr);
  });
}

qcclResult_t qcclAllGatherV(const void* sendbuf, size_t sendcount, void* recvbuf,
                            size_t recvcount, qcclDataType_t dtype, size_t* counts,
                            size_t counts_capacity, uint64_t tag, qcclComm_t* comm,
                            qcclOpInfo_t* info_out) {
  const char* fn = "qcclAllGatherV";
  return guarded(fn, [&] {
    return all_gather_v(fn, sendbuf, sendcount, recvbuf, recvcount, dtype, counts,
                        counts_capacity, tag, comm, nullptr, info_out);
  });
}

qcclResult_t qcclAllGatherVAsync(const void* sendbuf, size_t sendcount, void* recvbuf,
                                 size_t recvcount, qcclDataType_t dtype, size_t* counts,
                                 size_t counts_capacity, uint64_t tag, qcclComm_t* comm,
                                 qcclOp_t** op_out) {
  const char* fn = "qcclAllGatherVAsync";
  return guarded(fn, [&] {
    QCCL_REQUIRE(op_out != nullptr, fn, "op_out is NULL");
    return all_gather_v(fn, sendbuf, sendcount, recvbuf, recvcount, dtype, counts,
                        counts_capacity, tag, comm, op_out, nullptr);
  });
}

qcclResult_t qcclReduceScatter(const void* sendbuf, void* recvbuf, size_t recvcount,
                               const qcclReduceDesc_t* desc, qcclComm_t* comm,
                               qcclOpInfo_t* info_out) {
  const char* fn = "qcclReduceScatter";
  return guarded(fn, [&] {
    return reduce_scatter(fn, sendbuf, recvbuf, recvcount, desc, comm, nullptr, info_out);
  });
}

qcclResult_t qcclReduceScatterAsync(const void* sendbuf, void* recvbuf, size_t recvcount,
                                    const qcclReduceDesc_t* desc, qcclComm_t* comm,
                                    qcclOp_t** op_out) {
  const char* fn = "qcclReduceScatterAsync";
  return guarded(fn, [&] {
    QCCL_REQUIRE(op_out != nullptr, fn, "op_out is NULL");
    return reduce_scatter(fn, sendbuf, recvbuf, recvcount, desc, comm, op_out, nullptr);
  });
}

qcclResult_t qcclBarrier(uint64_t tag, qcclComm_t* comm, qcclOpInfo_t* info_out) {
  const char* fn = "qcclBarrier";
  return guarded(fn, [&] { return barrier(fn, tag, comm, nullptr, info_out); });
}

qcclResult_t qcclBarrierAsync(uint64_t tag, qcclComm_t* comm, qcclOp_t** op_out) {
  const char* fn = "qcclBarrierAsync";
  return guarded(fn, [&] {
    QCCL_REQUIRE(op_out != nullptr, fn, "op_out is NULL");
    return barrier(fn, tag, comm, op_out, nullptr);
  });
}

qcclResult_t qcclRunMultipleWithRetry(const qcclCollectiveOp_t* ops, size_t num_ops,
                                      qcclComm_t* comm, int max_in_flight,
                                      qcclReduceInfo_t* info_out) {
  const char* fn = "qcclRunMultipleWithRetry";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    QCCL_REQUIRE(num_ops == 0 || ops != nullptr, fn, "ops is NULL");
    QCCL_REQUIRE(max_in_flight >= 1, fn, "max_in_flight must be at least 1");
    std::vector<OpStarter> starters(num_ops);
    std::vector<uint64_t> tags(num_ops);
    for (size_t i = 0; i < num_ops; ++i) {
      std::string what = std::string(fn) + ": ops[" + std::to_string(i) + "]";
      QCCL_TRY(to_starter(ops[i], *comm->rep, &starters[i], &tags[i], what.c_str()));
      for (size_t j = 0; j < i; ++j) {
        QCCL_REQUIRE(tags[j] != tags[i], fn,
                     "ops " + std::to_string(j) + " and " + std::to_string(i) + " share tag " +
                         std::to_string(tags[i]));
      }
    }
    qccl::core::ReduceInfo info;
    qccl::Status st = qccl::core::run_multiple_with_retry(
        *comm->rep, starters, static_cast<size_t>(max_in_flight), &info);
    if (info_out) *info_out = {info.world_size, info.tx_bytes, info.rx_bytes};
    return to_result(st, fn);
  });
}

}  // extern "C"
