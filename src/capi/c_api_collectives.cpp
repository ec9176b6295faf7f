// The C API's collectives beside all-reduce: qcclBroadcast, qcclAllGather, qcclAllGatherV,
// qcclReduceScatter and qcclBarrier, each blocking and ...Async. Arguments are checked here;
// what depends on the group (its size, the root's presence, the room in the caller's buffers)
// is checked by the operation when it runs, on every peer alike (core/*_op.hpp).
#include "qccl/qccl.h"

#include <cstdint>
#include <memory>
#include <string>

#include "capi/c_api_common.hpp"

using qccl::Result;
using qccl::capi::fail;
using qccl::capi::fill_info;
using qccl::capi::guarded;
using qccl::capi::raw_enum;
using qccl::capi::to_reduce_desc;
using qccl::capi::to_result;
using qccl::capi::valid;
using Handle = std::shared_ptr<qccl::core::OpHandle>;

namespace {

qcclResult_t to_dtype(qcclDataType_t dtype, qccl::DataType* out, const char* fn) {
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

// Runs `start` (which starts the op on `comm`) and either waits for it (op_out == nullptr:
// the blocking form, filling info_out) or hands its handle to *op_out.
template <class Start>
qcclResult_t run(const char* fn, qcclComm_t* comm, qcclOp_t** op_out, qcclOpInfo_t* info_out,
                 Start&& start) {
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

qcclResult_t broadcast(const char* fn, void* buf, size_t count, qcclDataType_t dtype,
                       uint64_t root, uint64_t tag, qcclComm_t* comm, qcclOp_t** op_out,
                       qcclOpInfo_t* info_out) {
  qccl::core::BroadcastArgs a{buf, count, qccl::DataType::kFloat32, root, tag};
  if (qcclResult_t r = to_dtype(dtype, &a.dtype, fn); r != qcclSuccess) return r;
  if (qcclResult_t r = check_buffer(buf, count, a.dtype, "buf", fn); r != qcclSuccess) return r;
  return run(fn, comm, op_out, info_out, [&](auto& c) { return c.broadcast_async(a); });
}

qcclResult_t all_gather(const char* fn, const void* sendbuf, void* recvbuf, size_t sendcount,
                        size_t recvcount, qcclDataType_t dtype, uint64_t tag, qcclComm_t* comm,
                        qcclOp_t** op_out, qcclOpInfo_t* info_out) {
  qccl::core::AllGatherArgs a{sendbuf, recvbuf, sendcount, recvcount, qccl::DataType::kFloat32,
                              tag};
  if (qcclResult_t r = to_dtype(dtype, &a.dtype, fn); r != qcclSuccess) return r;
  if (qcclResult_t r = check_buffer(sendbuf, sendcount, a.dtype, "sendbuf", fn); r != qcclSuccess) {
    return r;
  }
  if (qcclResult_t r = check_buffer(recvbuf, recvcount, a.dtype, "recvbuf", fn); r != qcclSuccess) {
    return r;
  }
  return run(fn, comm, op_out, info_out, [&](auto& c) { return c.all_gather_async(a); });
}

qcclResult_t all_gather_v(const char* fn, const void* sendbuf, size_t sendcount, void* recvbuf,
                          size_t recvcount, qcclDataType_t dtype, size_t* counts,
                          size_t counts_capacity, uint64_t tag, qcclComm_t* comm,
                          qcclOp_t** op_out, qcclOpInfo_t* info_out) {
  qccl::core::AllGatherVArgs a{sendbuf,  sendcount, recvbuf, recvcount, qccl::DataType::kFloat32,
                               counts,   counts_capacity, tag};
  if (qcclResult_t r = to_dtype(dtype, &a.dtype, fn); r != qcclSuccess) return r;
  if (qcclResult_t r = check_buffer(sendbuf, sendcount, a.dtype, "sendbuf", fn); r != qcclSuccess) {
    return r;
  }
  if (qcclResult_t r = check_buffer(recvbuf, recvcount, a.dtype, "recvbuf", fn); r != qcclSuccess) {
    return r;
  }
  QCCL_REQUIRE(counts != nullptr || counts_capacity == 0, fn,
               "counts is NULL but counts_capacity is not 0");
  return run(fn, comm, op_out, info_out, [&](auto& c) { return c.all_gather_v_async(a); });
}

qcclResult_t reduce_scatter(const char* fn, const void* sendbuf, void* recvbuf, size_t recvcount,
                            const qcclReduceDesc_t* desc, qcclComm_t* comm, qcclOp_t** op_out,
                            qcclOpInfo_t* info_out) {
  QCCL_REQUIRE(desc != nullptr, fn, "desc is NULL");
  qccl::core::ReduceScatterArgs a{sendbuf, recvbuf, recvcount, {}};
  if (qcclResult_t r = to_reduce_desc(desc, &a.desc, fn); r != qcclSuccess) return r;
  if (qcclResult_t r = check_buffer(sendbuf, a.desc.count, a.desc.dtype, "sendbuf", fn);
      r != qcclSuccess) {
    return r;
  }
  if (qcclResult_t r = check_buffer(recvbuf, recvcount, a.desc.dtype, "recvbuf", fn);
      r != qcclSuccess) {
    return r;
  }
  if (sendbuf != recvbuf && a.desc.count > 0 && recvcount > 0) {
    size_t esize = qccl::dtype_size(a.desc.dtype);
    auto s = static_cast<const char*>(sendbuf);
    auto r = static_cast<const char*>(recvbuf);
    bool overlap = s < r + recvcount * esize && r < s + a.desc.count * esize;
    QCCL_REQUIRE(!overlap, fn, "sendbuf and recvbuf overlap partially (use the same pointer "
                               "for in place)");
  }
  return run(fn, comm, op_out, info_out, [&](auto& c) { return c.reduce_scatter_async(a); });
}

qcclResult_t barrier(const char* fn, uint64_t tag, qcclComm_t* comm, qcclOp_t** op_out,
                     qcclOpInfo_t* info_out) {
  return run(fn, comm, op_out, info_out, [&](auto& c) { return c.barrier_async(tag); });
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

}  // extern "C"
