#include "forwarder.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace qccl::netsim {

namespace {
constexpr size_t kPoolGrowth = 1024;  // slots added at a time
}  // namespace

Forwarder::Forwarder(asio::io_context& io, std::vector<Node> nodes, const Knobs& knobs,
                     uint64_t seed, size_t max_packets)
    : io_(io),
      nodes_(std::move(nodes)),
      emulation_(knobs, seed),
      max_packets_(max_packets),
      timer_(io) {
  fds_.reserve(nodes_.size());
  for (Node& n : nodes_) {
    fds_.emplace_back(io_, n.fd);  // owns the fd from here on
    n.fd = -1;
  }
}

int64_t Forwarder::now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Forwarder::start() {
  for (size_t i = 0; i < fds_.size(); ++i) arm_read(i);
}

void Forwarder::stop() {
  stopped_ = true;
  for (auto& fd : fds_) {
    asio::error_code ignored;
    fd.cancel(ignored);
  }
  timer_.cancel();
  while (!heap_.empty()) heap_.pop();
}

void Forwarder::expire_flows(int64_t idle_ns) { emulation_.expire(now_ns() - idle_ns); }

void Forwarder::arm_read(size_t i) {
  fds_[i].async_wait(asio::posix::stream_descriptor::wait_read, [this, i](asio::error_code ec) {
    if (ec || stopped_) return;
    read_batch(i);
    flush_due();
    arm_read(i);
  });
}

int Forwarder::node_of(uint32_t address) const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].address == address) return static_cast<int>(i);
  }
  return -1;
}

int64_t Forwarder::take_slot() {
  if (free_slots_.empty()) {
    const size_t have = pool_.size() / kSlotBytes;
    if (have >= max_packets_) return -1;
    const size_t grow = std::min(kPoolGrowth, max_packets_ - have);
    pool_.resize((have + grow) * kSlotBytes);
    for (size_t s = have + grow; s > have; --s) free_slots_.push_back(static_cast<uint32_t>(s - 1));
  }
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void Forwarder::read_batch(size_t i) {
  static uint8_t scratch[kSlotBytes];  // where packets go when the pool is full
  const int fd = fds_[i].native_handle();
  for (int k = 0; k < kReadBatch; ++k) {
    const int64_t slot = take_slot();
    uint8_t* buf = slot >= 0 ? slot_data(static_cast<uint32_t>(slot)) : scratch;
    const ssize_t n = ::read(fd, buf, kSlotBytes);
    auto release = [&] {
      if (slot >= 0) free_slots_.push_back(static_cast<uint32_t>(slot));
    };
    if (n <= 0) {  // EAGAIN: drained; anything else: try again at the next wake-up
      release();
      return;
    }
    if (slot < 0) {
      ++stats_.overflow;
      continue;
    }
    const auto key = parse_ipv4(buf, static_cast<size_t>(n));
    const int to = key ? node_of(key->dst) : -1;
    if (to < 0 || static_cast<size_t>(to) == i) {
      ++stats_.unknown;
      release();
      continue;
    }
    const int64_t now = now_ns();
    int64_t due = 0;
    switch (emulation_.admit(*key, static_cast<size_t>(n), now, &due)) {
      case Emulation::Verdict::kLost:
        ++stats_.lost;
        release();
        continue;
      case Emulation::Verdict::kCapDrop:
        ++stats_.cap_dropped;
        release();
        continue;
      case Emulation::Verdict::kDeliver:
        break;
    }
    heap_.push(Entry{due, seq_++, static_cast<uint32_t>(slot), static_cast<uint16_t>(n),
                     static_cast<uint16_t>(to)});
  }
}

void Forwarder::flush_due() {
  const int64_t horizon = now_ns() + kEarlySlack;
  while (!heap_.empty() && heap_.top().due_ns <= horizon) {
    const Entry e = heap_.top();
    heap_.pop();
    const ssize_t w = ::write(fds_[e.to].native_handle(), slot_data(e.slot), e.len);
    if (w == static_cast<ssize_t>(e.len)) {
      ++stats_.forwarded;
      stats_.forwarded_bytes += e.len;
    } else {
      ++stats_.write_errors;  // e.g. the destination's link is down
    }
    free_slots_.push_back(e.slot);
  }
  arm_timer();
}

void Forwarder::arm_timer() {
  if (heap_.empty() || stopped_) return;
  const int64_t due = heap_.top().due_ns;
  if (due >= armed_ns_) return;  // the armed wake-up comes first and re-arms
  armed_ns_ = due;
  timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(due)));
  timer_.async_wait([this](asio::error_code ec) {
    if (ec) return;  // re-armed earlier (or stopped): that wait owns the timer now
    armed_ns_ = INT64_MAX;
    flush_due();
  });
}

}  // namespace qccl::netsim
