// The C API's all-reduce: descriptor and buffer checks, qcclAllReduce, qcclAllReduceAsync with
// qcclTest and qcclWait, and qcclAllReduceMultipleWithRetry.
#include "qccl/qccl.h"

#include <memory>
#include <string>
#include <vector>

#include "capi/c_api_common.hpp"
#include "core/multi_op.hpp"

using qccl::Status;
using qccl::capi::fail;
using qccl::capi::guarded;
using qccl::capi::raw_enum;
using qccl::capi::to_reduce_desc;
using qccl::capi::to_result;
using qccl::capi::valid;

namespace {

qcclResult_t check_buffers(const void* sendbuf, const void* recvbuf, const qcclReduceDesc_t* d,
                           const char* fn) {
  if (d->count == 0) return qcclSuccess;
  QCCL_REQUIRE(sendbuf != nullptr && recvbuf != nullptr, fn, "sendbuf or recvbuf is NULL");
  size_t bytes = d->count * qccl::dtype_size(static_cast<qccl::DataType>(raw_enum(d->dtype)));
  auto s = static_cast<const char*>(sendbuf);
  auto r = static_cast<const char*>(recvbuf);
  bool overlap = s != r && s < r + bytes && r < s + bytes;
  QCCL_REQUIRE(!overlap, fn, "sendbuf and recvbuf overlap partially (use the same pointer for "
                             "in place)");
  return qcclSuccess;
}

// Starts an all-reduce for qcclAllReduce and qcclAllReduceAsync; `fn` names the caller in
// error messages.
qcclResult_t start_all_reduce(const char* fn, const void* sendbuf, void* recvbuf,
                              const qcclReduceDesc_t* desc, qcclComm_t* comm,
                              std::shared_ptr<qccl::core::OpHandle>* handle) {
  QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
  QCCL_REQUIRE(desc != nullptr, fn, "desc is NULL");
  qccl::collectives::ReduceDesc d;
  if (qcclResult_t r = to_reduce_desc(desc, &d, fn); r != qcclSuccess) return r;
  if (qcclResult_t r = check_buffers(sendbuf, recvbuf, desc, fn); r != qcclSuccess) return r;
  auto h = comm->rep->all_reduce_async(sendbuf, recvbuf, d);
  if (!h.is_ok()) return to_result(h.status(), fn);
  *handle = std::move(h).value();
  return qcclSuccess;
}

}  // namespace

extern "C" {

qcclResult_t qcclAllReduceAsync(const void* sendbuf, void* recvbuf, const qcclReduceDesc_t* desc,
                                qcclComm_t* comm, qcclOp_t** op_out) {
  const char* fn = "qcclAllReduceAsync";
  return guarded(fn, [&] {
    QCCL_REQUIRE(op_out != nullptr, fn, "op_out is NULL");
    std::shared_ptr<qccl::core::OpHandle> handle;
    qcclResult_t r = start_all_reduce(fn, sendbuf, recvbuf, desc, comm, &handle);
    if (r != qcclSuccess) return r;
    auto op = std::make_unique<qcclOp>();
    op->rep = std::move(handle);
    *op_out = op.release();
    return qcclSuccess;
  });
}

qcclResult_t qcclTest(qcclOp_t* op, int* done_out) {
  const char* fn = "qcclTest";
  QCCL_REQUIRE(valid(op) && done_out != nullptr, fn, "op or done_out is NULL");
  *done_out = op->rep->test() ? 1 : 0;
  return qcclSuccess;
}

qcclResult_t qcclWait(qcclOp_t* op, qcclReduceInfo_t* info_out) {
  const char* fn = "qcclWait";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(op), fn, "op is NULL or not an operation handle");
    qccl::core::ReduceInfo info;
    Status st = op->rep->wait(&info);
    if (info_out) *info_out = {info.world_size, info.tx_bytes, info.rx_bytes};
    op->magic = 0;
    delete op;
    return to_result(st, fn);
  });
}

qcclResult_t qcclWaitInfo(qcclOp_t* op, qcclOpInfo_t* info_out) {
  const char* fn = "qcclWaitInfo";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(op), fn, "op is NULL or not an operation handle");
    qccl::core::ReduceInfo info;
    Status st = op->rep->wait(&info);
    qccl::capi::fill_info(info, info_out);
    op->magic = 0;
    delete op;
    return to_result(st, fn);
  });
}

qcclResult_t qcclAllReduce(const void* sendbuf, void* recvbuf, const qcclReduceDesc_t* desc,
                           qcclComm_t* comm, qcclReduceInfo_t* info_out) {
  const char* fn = "qcclAllReduce";
  return guarded(fn, [&] {
    std::shared_ptr<qccl::core::OpHandle> handle;
    qcclResult_t r = start_all_reduce(fn, sendbuf, recvbuf, desc, comm, &handle);
    if (r != qcclSuccess) return r;
    qccl::core::ReduceInfo info;
    qccl::Status st = handle->wait(&info);
    if (info_out) *info_out = {info.world_size, info.tx_bytes, info.rx_bytes};
    return to_result(st, fn);
  });
}

qcclResult_t qcclAllReduceMultipleWithRetry(const qcclReduceOp_t* ops, size_t num_ops,
                                            qcclComm_t* comm, int max_in_flight,
                                            qcclReduceInfo_t* info_out) {
  const char* fn = "qcclAllReduceMultipleWithRetry";
  return guarded(fn, [&] {
    QCCL_REQUIRE(valid(comm), fn, "comm is NULL or not a communicator");
    QCCL_REQUIRE(num_ops == 0 || ops != nullptr, fn, "ops is NULL");
    QCCL_REQUIRE(max_in_flight >= 1, fn, "max_in_flight must be at least 1");
    std::vector<qccl::core::MultiOp> multi(num_ops);
    for (size_t i = 0; i < num_ops; ++i) {
      if (qcclResult_t r = to_reduce_desc(&ops[i].desc, &multi[i].desc, fn); r != qcclSuccess) return r;
      if (qcclResult_t r = check_buffers(ops[i].sendbuf, ops[i].recvbuf, &ops[i].desc, fn);
          r != qcclSuccess) {
        return r;
      }
      for (size_t j = 0; j < i; ++j) {
        QCCL_REQUIRE(ops[j].desc.tag != ops[i].desc.tag, fn,
                     "ops " + std::to_string(j) + " and " + std::to_string(i) + " share tag " +
                         std::to_string(ops[i].desc.tag));
      }
      multi[i].sendbuf = ops[i].sendbuf;
      multi[i].recvbuf = ops[i].recvbuf;
    }
    qccl::core::ReduceInfo info;
    Status st = qccl::core::all_reduce_multiple_with_retry(*comm->rep, multi,
                                                          static_cast<size_t>(max_in_flight), &info);
    if (info_out) *info_out = {info.world_size, info.tx_bytes, info.rx_bytes};
    return to_result(st, fn);
  });
}

}  // extern "C"
