// Forwarder: the L3 switch of qccl_netsim (docs/netsim.md). One TUN fd per node; a packet read
// from any node's TUN whose IPv4 destination is another node's address is written to that
// node's TUN when the Emulation says so.
//
// Single-threaded on one asio::io_context:
//   - per node, an async_wait(wait_read) on the TUN fd; when it is readable, up to kReadBatch
//     packets are read with plain non-blocking read()s (one syscall per packet, no asio
//     buffers), then the wait is re-armed (so busy nodes take turns);
//   - every admitted packet sits in a packet pool (fixed-size slots, a free list; the pool only
//     grows, up to max_packets, so the steady state allocates nothing) and in a min-heap
//     ordered by (delivery time, arrival sequence);
//   - one steady_timer is armed at the heap's earliest time; it fires, every due packet is
//     written (write() on the destination's non-blocking fd; a failure is counted, not
//     retried), and it is re-armed. Packets due within kEarlySlack are written in the same
//     pass: cheaper than another wake-up and below the timer's own accuracy.
//
// Drops are counted by reason: not IPv4 or unknown destination ("unknown"), loss, per-flow cap,
// pool full ("overflow"), and failed writes ("write_error").
//
// Thread-safety: none; everything runs on the io_context's (single) thread.
#pragma once

#include <cstdint>
#include <queue>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include "emulation.hpp"

namespace qccl::netsim {

struct Node {
  std::string netns;
  uint32_t address = 0;  // network byte order
  int fd = -1;           // the node's TUN; the Forwarder takes ownership
};

struct Stats {
  uint64_t forwarded = 0, forwarded_bytes = 0;
  uint64_t lost = 0, cap_dropped = 0, unknown = 0, overflow = 0, write_errors = 0;
};

class Forwarder {
 public:
  static constexpr int kReadBatch = 64;
  static constexpr size_t kSlotBytes = 2048;      // > the MTU; longer packets: dropped, unknown
  static constexpr int64_t kEarlySlack = 20'000;  // ns

  // REQUIRES: node fds are open TUN fds; addresses are distinct.
  Forwarder(asio::io_context& io, std::vector<Node> nodes, const Knobs& knobs, uint64_t seed,
            size_t max_packets);

  // Starts reading every node.
  void start();
  // Stops reading and drops what is queued; the io_context then runs out of work.
  void stop();

  void set_knobs(const Knobs& knobs) { emulation_.set_knobs(knobs); }
  const Stats& stats() const { return stats_; }
  size_t queued() const { return heap_.size(); }
  size_t flows() const { return emulation_.flows(); }
  // Forgets idle flows (called from the stats timer).
  void expire_flows(int64_t idle_ns);

  static int64_t now_ns();

 private:
  struct Entry {
    int64_t due_ns;
    uint64_t seq;
    uint32_t slot;
    uint16_t len;
    uint16_t to;
    bool operator>(const Entry& o) const {
      return due_ns != o.due_ns ? due_ns > o.due_ns : seq > o.seq;
    }
  };

  void arm_read(size_t i);
  void read_batch(size_t i);
  // The index of the node with `address`, or -1.
  int node_of(uint32_t address) const;
  // A free packet slot, or -1 if the pool is at max_packets.
  int64_t take_slot();
  uint8_t* slot_data(uint32_t slot) { return pool_.data() + size_t{slot} * kSlotBytes; }
  void flush_due();
  void arm_timer();

  asio::io_context& io_;
  std::vector<Node> nodes_;
  std::vector<asio::posix::stream_descriptor> fds_;
  Emulation emulation_;
  Stats stats_;
  std::vector<uint8_t> pool_;
  std::vector<uint32_t> free_slots_;
  size_t max_packets_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
  uint64_t seq_ = 0;
  asio::steady_timer timer_;
  int64_t armed_ns_ = INT64_MAX;  // when timer_ fires; INT64_MAX = not armed
  bool stopped_ = false;
};

}  // namespace qccl::netsim
