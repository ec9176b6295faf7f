// Drives N ring dataflows (RingAllReduce, RingAllGather, RingBroadcast: ring_frames.hpp)
// without any network: frames go from rank i to rank i+1 through one in-memory pool and are
// delivered in a random order (any interleaving TCP lanes could produce), optionally twice.
//
// With `resends`, frames also arrive twice, as when a sender resends the frames of a stalled
// connection on another one (a copy of the bytes taken when it resends): after the first copy
// was taken in; while the first copy is still being read (the copy takes over); or after the
// first copy's read failed part way (unclaimed).
//
// A ring whose on_received() returns every frame it releases, or an error (RingAllGatherV),
// is driven the same way; here every call must succeed. `last`: frames for which it returns
// true are held back until no other frame is in flight (to force an order, e.g. data frames
// before a peer's counts).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "collectives/ring_frames.hpp"

namespace qccl::collectives::testing {

// A frame in flight from rank `from` to rank from+1. Its bytes are read at delivery, not when
// it was queued: the ring must keep a frame's memory unchanged until it has been delivered.
struct InFlight {
  uint32_t from;
  Send send;
  std::shared_ptr<std::vector<uint8_t>> copy;  // a resent copy: these bytes, not send.data
};

// "c0 c1 ... " for a trace.
inline std::string show(const std::vector<size_t>& counts) {
  std::string s;
  for (size_t c : counts) s += std::to_string(c) + " ";
  return s;
}

// Every ring's initial frames, in flight.
template <class Ring>
std::vector<InFlight> initial_flight(const std::vector<std::unique_ptr<Ring>>& rings) {
  std::vector<InFlight> flight;
  for (uint32_t i = 0; i < rings.size(); ++i) {
    for (size_t j = 0; j < rings[i]->initial_frames(); ++j) {
      flight.push_back({i, rings[i]->initial_frame(j), nullptr});
    }
  }
  return flight;
}

// Delivers every frame of `rings` (rank i's dataflow at index i) until none is left; expects
// every claim to succeed and every ring to be complete at the end. Returns the frame payload
// bytes each rank sent.
template <class Ring>
std::vector<size_t> deliver(const std::vector<std::unique_ptr<Ring>>& rings, uint64_t order_seed,
                            bool resends = false,
                            std::function<bool(const InFlight&)> last = nullptr) {
  const auto world = static_cast<uint32_t>(rings.size());
  std::vector<size_t> tx_bytes(world, 0);
  std::vector<InFlight> flight = initial_flight(rings);
  std::mt19937_64 rng(order_seed);
  std::vector<uint8_t> staging;
  while (!flight.empty()) {
    size_t pick = std::uniform_int_distribution<size_t>(0, flight.size() - 1)(rng);
    if (last && last(flight[pick])) {  // any frame not held back goes first
      std::vector<size_t> free;
      for (size_t i = 0; i < flight.size(); ++i) {
        if (!last(flight[i])) free.push_back(i);
      }
      if (!free.empty()) pick = free[std::uniform_int_distribution<size_t>(0, free.size() - 1)(rng)];
    }
    InFlight f = flight[pick];
    flight.erase(flight.begin() + static_cast<std::ptrdiff_t>(pick));
    if constexpr (requires(Ring& r) { r.fill_initial_frame(size_t{0}); }) {
      if (f.send.step == 0 && rings[f.from]->initial_frames_need_fill()) {
        rings[f.from]->fill_initial_frame(f.send.segment);  // as a lane does before writing
      }
    }
    uint32_t to = (f.from + 1) % world;
    tx_bytes[f.from] += f.send.bytes;
    const uint8_t* bytes = f.copy ? f.copy->data() : f.send.data;
    auto resent = [&] {
      return InFlight{f.from, f.send,
                      std::make_shared<std::vector<uint8_t>>(bytes, bytes + f.send.bytes)};
    };
    int mode = resends ? std::uniform_int_distribution<int>(0, 5)(rng) : 0;
    auto target = rings[to]->claim(f.send.step, f.send.segment, f.send.bytes, /*claimant=*/1);
    EXPECT_TRUE(target.is_ok()) << target.status().message();
    if (!target.is_ok()) break;
    if (target->duplicate == Duplicate::kReceived) continue;  // skipped
    EXPECT_EQ(target->duplicate, Duplicate::kNo);
    if (mode == 1) {  // the read fails part way; the sender resends later
      if (!target->staged) std::memset(target->dst, 0xEE, f.send.bytes / 2);
      rings[to]->unclaim(f.send.step, f.send.segment, 1);
      flight.push_back(resent());
      continue;
    }
    if (mode == 2) {  // the read stalls part way; a resent copy arrives on connection 2
      if (!target->staged) std::memset(target->dst, 0xEE, f.send.bytes / 2);
      auto dup = rings[to]->claim(f.send.step, f.send.segment, f.send.bytes, 2);
      EXPECT_TRUE(dup.is_ok());
      if (!dup.is_ok()) break;
      EXPECT_EQ(dup->duplicate, Duplicate::kPending);
      EXPECT_EQ(dup->claimant, 1u);
      EXPECT_TRUE(dup->staged);
      staging.assign(bytes, bytes + f.send.bytes);
      rings[to]->take_over(f.send.step, f.send.segment, 2, staging.data());
      rings[to]->unclaim(f.send.step, f.send.segment, 1);  // the stalled read's failure: no-op
    } else if (target->staged) {
      staging.assign(bytes, bytes + f.send.bytes);
    } else {
      std::memcpy(target->dst, bytes, f.send.bytes);
    }
    if (mode == 3) flight.push_back(resent());  // a copy that comes after this one
    auto fwd = rings[to]->on_received(f.send.step, f.send.segment, staging.data());
    EXPECT_TRUE(rings[to]->received(f.send.step, f.send.segment));
    if constexpr (requires { fwd.is_ok(); }) {
      EXPECT_TRUE(fwd.is_ok()) << fwd.status().message();
      if (!fwd.is_ok()) break;
      for (const Send& s : *fwd) flight.push_back({to, s, nullptr});
    } else if (fwd) {
      flight.push_back({to, *fwd, nullptr});
    }
  }
  for (auto& ring : rings) EXPECT_TRUE(ring->complete());
  return tx_bytes;
}

}  // namespace qccl::collectives::testing
