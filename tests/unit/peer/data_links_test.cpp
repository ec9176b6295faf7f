// DataLinks, the lane pool, between two peers in one process over loopback: the pools come up
// (both directions), frames striped over the lanes arrive intact through the FrameSink, and a
// lane that closes mid-stream (a fault policy) is retired and its frames resent on the other
// lane, so that every frame still arrives while the sender's owner hears of each exactly once.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "peer/data_links.hpp"
#include "support/lane_faults.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::peer {
namespace {

constexpr size_t kFrameBytes = 64 * 1024;

// Takes frames of tag 1 (step 0, segment i) into buf[i]; a second copy is skipped.
struct RecordingSink final : FrameSink {
  explicit RecordingSink(size_t frames) : buf(frames * kFrameBytes), got(frames) {}
  Placement place(Epoch, const FrameId& id, size_t payload, uint32_t) override {
    Placement p;
    if (id.segment >= got.size() || payload != kFrameBytes) {
      p.kind = Placement::Kind::kBad;
      p.error = Status(StatusCode::kPeerLost, "unexpected frame");
      return p;
    }
    if (got[id.segment]) return p;  // kSkip: a resent copy
    p.kind = Placement::Kind::kRead;
    p.dst = buf.data() + id.segment * kFrameBytes;
    p.bytes = payload;
    return p;
  }
  Status landed(Epoch, const FrameId& id, size_t, uint32_t, const Status& read,
                const uint8_t*) override {
    if (read.is_ok() && !got[id.segment]) {
      got[id.segment] = true;
      ++received;
    }
    return read;
  }
  void copy_landed(Epoch, const FrameId&, uint32_t, uint32_t, const uint8_t*) override {}
  Status keep(Epoch, const FrameId&, std::vector<uint8_t>) override { return Status::ok(); }

  std::vector<uint8_t> buf;
  std::vector<bool> got;
  size_t received = 0;
};

struct CountingOwner final : FrameOwner {
  void on_sent(const Status& st, size_t) override { st.is_ok() ? ++ok : ++failed; }
  size_t ok = 0;
  size_t failed = 0;
};

struct Side {
  Side(asio::io_context& io, PeerId id, size_t frames)
      : sink(frames),
        links(io.get_executor(), sink, [this](Epoch, const Status&) { ready = true; },
              [this](Epoch, const Status& why) { failure = why; }) {
    LinkSettings s;
    s.heartbeat = std::chrono::milliseconds(100);
    s.timeout = std::chrono::milliseconds(2000);
    links.set_identity(id, s);
    EXPECT_TRUE(links.listen(ListenAddress{"127.0.0.1", 0, 0}).is_ok());
  }
  RecordingSink sink;
  DataLinks links;
  bool ready = false;
  std::optional<Status> failure;
};

class DataLinksTest : public ::testing::Test {
 protected:
  static constexpr size_t kFrames = 256;  // 16 MiB

  void SetUp() override {
    a_ = std::make_unique<Side>(io_, 1, kFrames);
    b_ = std::make_unique<Side>(io_, 2, kFrames);
  }
  void TearDown() override {
    a_->links.close_all();
    b_->links.close_all();
    run_until([] { return false; }, std::chrono::milliseconds(50));
  }

  // A ring of two: each dials `lanes` to the other.
  void connect(uint32_t lanes) {
    a_->links.set_ring(1, DataLinks::Neighbour{2, "127.0.0.1", b_->links.port()}, 2, lanes);
    b_->links.set_ring(1, DataLinks::Neighbour{1, "127.0.0.1", a_->links.port()}, 1, lanes);
    ASSERT_TRUE(run_until([&] { return a_->ready && b_->ready; }, std::chrono::seconds(10)));
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds bound) {
    auto deadline = std::chrono::steady_clock::now() + bound;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.restart();
      io_.run_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  // Sends every frame from a to b: frame i is bytes of value i.
  void send_all(CountingOwner& owner) {
    payload_.resize(kFrames * kFrameBytes);
    for (size_t i = 0; i < kFrames; ++i) {
      std::memset(payload_.data() + i * kFrameBytes, static_cast<int>(i & 0xff), kFrameBytes);
      a_->links.send(&owner, 1, FrameId{1, 0, 5, 0, static_cast<uint32_t>(i)},
                     payload_.data() + i * kFrameBytes, kFrameBytes, false, 0);
    }
  }

  asio::io_context io_;
  std::unique_ptr<Side> a_;
  std::unique_ptr<Side> b_;
  std::vector<uint8_t> payload_;
};

TEST_F(DataLinksTest, FramesStripedOverThePoolArriveIntact) {
  connect(4);
  CountingOwner owner;
  send_all(owner);
  ASSERT_TRUE(run_until([&] { return b_->sink.received == kFrames && owner.ok == kFrames; },
                        std::chrono::seconds(20)))
      << b_->sink.received << " received, " << owner.ok << " sent";
  EXPECT_EQ(b_->sink.buf, payload_);
  EXPECT_EQ(owner.failed, 0u);
  EXPECT_FALSE(a_->failure.has_value());
  EXPECT_FALSE(b_->failure.has_value());
}

TEST_F(DataLinksTest, ALaneThatClosesMidStreamIsRetiredAndItsFramesResentOnTheOther) {
  connect(2);
  a_->links.set_fault_policy(test_support::lane_faults({.close_after_bytes = 1 << 20}));
  CountingOwner owner;
  send_all(owner);
  ASSERT_TRUE(run_until([&] { return b_->sink.received == kFrames; }, std::chrono::seconds(20)))
      << b_->sink.received << " of " << kFrames << " received";
  EXPECT_EQ(b_->sink.buf, payload_);
  ASSERT_TRUE(run_until([&] { return owner.ok + owner.failed == kFrames; },
                        std::chrono::seconds(10)));
  EXPECT_FALSE(a_->failure.has_value()) << a_->failure->to_string();  // one lane is left
  EXPECT_FALSE(b_->failure.has_value()) << b_->failure->to_string();
}

TEST_F(DataLinksTest, WithNoLaneLeftTheEpochFails) {
  connect(1);
  a_->links.set_fault_policy(test_support::lane_faults({.close_after_bytes = 1 << 20}));
  CountingOwner owner;
  send_all(owner);
  ASSERT_TRUE(run_until([&] { return a_->failure.has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(a_->failure->code(), StatusCode::kPeerLost);
  // Every frame's owner hears of it once: written, or abandoned with the epoch.
  ASSERT_TRUE(run_until([&] { return owner.ok + owner.failed == kFrames; },
                        std::chrono::seconds(10)));
  EXPECT_GT(owner.failed, 0u);
  EXPECT_LT(b_->sink.received, kFrames);
}

}  // namespace
}  // namespace qccl::peer
