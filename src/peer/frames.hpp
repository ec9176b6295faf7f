// What operations and lanes exchange: a data frame's address, and the two interfaces through
// which frames pass between an operation (core/) and the lane pool (peer/DataLinks).
//
//   outbound   the op calls DataLinks::send(owner, ...); the lane that writes the frame calls
//              owner->fill() first (deferred frames) and owner->on_sent() after.
//   inbound    a lane reader decodes a frame's head and asks the sink where its payload goes
//              (place); it reads the payload there and reports back (landed, copy_landed,
//              keep). The sink is the op engine; it finds the op and asks the op.
//
// Data headers on the wire (wire::P2PDataHeader) are encoded and decoded by peer/ only
// (peer/data_frame.hpp); operations see a FrameId.
//
// Thread-safety: loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/ids.hpp"
#include "common/status.hpp"

namespace qccl::peer {

// Which frame of which operation: the op's tag and per-tag sequence number in its group
// epoch, the fingerprint of its descriptor (peers that disagree find out from the first
// frame), and the frame's place in the op's dataflow.
struct FrameId {
  OpTag tag = 0;
  uint64_t seq = 0;
  uint64_t fingerprint = 0;
  uint32_t step = 0;
  uint32_t segment = 0;
};

// Receives the completion of a frame it sent.
class FrameOwner {
 public:
  virtual ~FrameOwner() = default;
  // Exactly once per frame (written, failed, or abandoned at an epoch change), unless the
  // frame was taken back with DataLinks::cancel(). `bytes` is the payload.
  virtual void on_sent(const Status& status, size_t bytes) = 0;
  // A frame sent with `deferred`: called by the lane about to write it, right before it reads
  // the payload, so that filling frame k+1 (e.g. encoding it) overlaps the write of frame k.
  virtual void fill(uint32_t index) { (void)index; }
};

// A sink's answer to "where does this frame's payload go?".
struct Placement {
  enum class Kind {
    kRead,      // read `bytes` into `dst` (nullptr: the lane's staging buffer), then landed()
    kReadCopy,  // a second copy of a frame another lane (`claimant`) is still reading: read it
                // into staging, then copy_landed()
    kKeep,      // the op has not begun here: read the payload into a buffer for keep()
    kSkip,      // not wanted (stale, already received, failed op): skip the payload
    kWait,      // not now (the early-frame budget is used up): ask again after wake_readers()
    kBad,       // impossible frame: `error`; the lane is dropped
  };
  Kind kind = Kind::kSkip;
  uint8_t* dst = nullptr;
  size_t bytes = 0;
  size_t staging = 0;  // staging capacity the op needs (its largest frame)
  uint32_t claimant = 0;
  Status error;
};

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual Placement place(Epoch epoch, const FrameId& id, size_t payload, uint32_t lane) = 0;
  // kRead: the read ended with `read` (ok: the payload is at dst, or in `staging`). A non-ok
  // return drops the lane.
  virtual Status landed(Epoch epoch, const FrameId& id, size_t payload, uint32_t lane,
                        const Status& read, const uint8_t* staging) = 0;
  // kReadCopy: the copy is in `staging`, complete.
  virtual void copy_landed(Epoch epoch, const FrameId& id, uint32_t lane, uint32_t claimant,
                           const uint8_t* staging) = 0;
  // kKeep: the whole payload.
  virtual Status keep(Epoch epoch, const FrameId& id, std::vector<uint8_t> payload) = 0;
};

}  // namespace qccl::peer
