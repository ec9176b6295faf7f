#include "core/communicator.hpp"

#include <algorithm>
#include <limits>

#include "common/address.hpp"
#include "core/allgather_op.hpp"
#include "core/allgather_v_op.hpp"
#include "core/allreduce_op.hpp"
#include "core/barrier_op.hpp"
#include "core/broadcast_op.hpp"
#include "core/reduce_scatter_op.hpp"
#include "core/runtime.hpp"
#include "core/state_sync.hpp"

namespace qccl::core {

Result<std::unique_ptr<Communicator>> Communicator::create(CommOptions options) {
  std::vector<HostPort> masters;
  for (size_t at = 0; at <= options.master_address.size();) {
    size_t comma = std::min(options.master_address.find(',', at), options.master_address.size());
    QCCL_ASSIGN_OR_RETURN(HostPort m, parse_host_port(options.master_address.substr(at, comma - at)));
    masters.push_back(std::move(m));
    at = comma + 1;
  }
  if (options.auth_token && options.auth_token->empty()) {
    return make_status(StatusCode::kInvalidArgument, "auth_token is empty; pass NULL for none");
  }
  if (options.connections_per_peer > 64) {
    return make_status(StatusCode::kInvalidArgument,
                       "connections_per_peer = {} is over the limit of 64",
                       options.connections_per_peer);
  }
  ListenAddress listen{"::", 0, 0};
  if (!options.listen_address.empty()) {
    QCCL_ASSIGN_OR_RETURN(listen, parse_listen_address(options.listen_address));
  }
  HostPort advertise;
  if (!options.advertise_address.empty()) {
    QCCL_ASSIGN_OR_RETURN(advertise, parse_advertise_address(options.advertise_address));
  }
  auto runtime = std::make_shared<Runtime>(std::move(options), std::move(masters),
                                           std::move(listen), std::move(advertise));
  QCCL_RETURN_IF_ERROR(runtime->init());
  return std::unique_ptr<Communicator>(new Communicator(std::move(runtime)));
}

Communicator::Communicator(std::shared_ptr<Runtime> runtime) : runtime_(std::move(runtime)) {}

Communicator::~Communicator() { runtime_->shutdown(); }

uint32_t ring_lanes_for(uint32_t configured, std::string_view host) {
  if (configured != 0) return configured;
  return is_loopback_host(host) ? kDefaultLoopbackLanes : kDefaultRemoteLanes;
}

Status Communicator::connect() { return runtime_->connect(); }

Status Communicator::update_topology() {
  auto r = runtime_->vote(wire::VoteKind::kUpdateTopology);
  return r.is_ok() ? Status::ok() : r.status();
}

Result<bool> Communicator::are_peers_pending() {
  return runtime_->vote(wire::VoteKind::kPeersPending);
}

Status Communicator::optimize_topology() {
  auto r = runtime_->vote(wire::VoteKind::kOptimizeTopology);
  return r.is_ok() ? Status::ok() : r.status();
}

Result<int64_t> Communicator::attribute(Attribute attr) const { return runtime_->attribute(attr); }

OpStats Communicator::stats() const { return runtime_->stats(); }

Result<std::vector<Communicator::PeerEntry>> Communicator::peers() const {
  return runtime_->peers();
}

Result<std::shared_ptr<OpHandle>> Communicator::all_reduce_async(
    const void* sendbuf, void* recvbuf, const collectives::ReduceDesc& desc) {
  auto handle = std::make_shared<OpHandle>();
  QCCL_RETURN_IF_ERROR(runtime_->start_op(
      desc.tag, "qcclAllReduce", [desc, sendbuf, recvbuf, handle](uint64_t seq, Epoch epoch) {
        return std::make_shared<AllReduceOp>(desc, sendbuf, recvbuf, seq, epoch, handle);
      }));
  return handle;
}

Status Communicator::all_reduce(const void* sendbuf, void* recvbuf,
                                const collectives::ReduceDesc& desc, ReduceInfo* info) {
  auto handle = all_reduce_async(sendbuf, recvbuf, desc);
  if (!handle.is_ok()) return handle.status();
  return (*handle)->wait(info);
}

Result<std::shared_ptr<OpHandle>> Communicator::barrier_async(OpTag tag) {
  auto handle = std::make_shared<OpHandle>();
  QCCL_RETURN_IF_ERROR(
      runtime_->start_op(tag, "qcclBarrier", [tag, handle](uint64_t seq, Epoch epoch) {
        return std::make_shared<BarrierOp>(tag, seq, epoch, handle);
      }));
  return handle;
}

namespace {

// Starts op kind `Op` with `args` under `tag` on `runtime`, completing a new handle.
template <class OpKind, class Args>
Result<std::shared_ptr<OpHandle>> start(Runtime& runtime, OpTag tag, std::string_view call,
                                        const Args& args) {
  auto handle = std::make_shared<OpHandle>();
  QCCL_RETURN_IF_ERROR(runtime.start_op(tag, call, [args, handle](uint64_t seq, Epoch epoch) {
    return std::make_shared<OpKind>(args, seq, epoch, handle);
  }));
  return handle;
}

}  // namespace

Result<std::shared_ptr<OpHandle>> Communicator::broadcast_async(const BroadcastArgs& args) {
  return start<BroadcastOp>(*runtime_, args.tag, "qcclBroadcast", args);
}

Result<std::shared_ptr<OpHandle>> Communicator::all_gather_async(const AllGatherArgs& args) {
  return start<AllGatherOp>(*runtime_, args.tag, "qcclAllGather", args);
}

Result<std::shared_ptr<OpHandle>> Communicator::all_gather_v_async(const AllGatherVArgs& args) {
  return start<AllGatherVOp>(*runtime_, args.tag, "qcclAllGatherV", args);
}

Result<std::shared_ptr<OpHandle>> Communicator::reduce_scatter_async(
    const ReduceScatterArgs& args) {
  return start<ReduceScatterOp>(*runtime_, args.desc.tag, "qcclReduceScatter", args);
}

Status Communicator::barrier(OpTag tag) {
  auto handle = barrier_async(tag);
  if (!handle.is_ok()) return handle.status();
  return (*handle)->wait(nullptr);
}

Status Communicator::await_ring(std::chrono::milliseconds bound) {
  return runtime_->await_ring(bound);
}

std::chrono::milliseconds Communicator::peer_timeout() const { return runtime_->peer_timeout(); }

Status Communicator::sync_shared_state(std::span<const StateTensor> tensors, uint64_t* revision,
                                       SyncStrategy strategy, SyncInfo* info) {
  // Checked and hashed here, on the caller's thread (hashing uses a few helper threads).
  QCCL_ASSIGN_OR_RETURN(
      SyncRequest req,
      prepare_sync(tensors, *revision, static_cast<wire::SyncStrategy>(strategy)));
  QCCL_ASSIGN_OR_RETURN(SyncOutcome out, runtime_->sync_shared_state(std::move(req)));
  *revision = out.revision;
  if (info != nullptr) *info = SyncInfo{out.tx_bytes, out.rx_bytes};
  return Status::ok();
}

void Communicator::abort() { runtime_->abort(); }

Status Communicator::set_op_timeout(std::chrono::milliseconds timeout) {
  auto ms = std::clamp<int64_t>(timeout.count(), 0, std::numeric_limits<uint32_t>::max());
  return runtime_->set_op_timeout(static_cast<uint32_t>(ms));
}

std::chrono::milliseconds Communicator::op_timeout() const {
  return std::chrono::milliseconds(runtime_->op_timeout());
}

void Communicator::set_fault_policy_for_testing(std::shared_ptr<net::FaultPolicy> policy) {
  runtime_->set_fault_policy(std::move(policy));
}

}  // namespace qccl::core
