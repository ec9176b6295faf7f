// OpEngine with a fake op and no network: the engine's side of the all-or-nothing protocol
// (start, local completion, commit, abort, restart in a new epoch, aborts of ops not started
// yet, early frames, mismatched frames), driven on an io_context in the test thread. The
// master is a list of the messages the engine sends; the lanes are a DataLinks whose group
// epochs have no neighbours (ready at once).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "core/barrier_op.hpp"
#include "core/op_engine.hpp"
#include "support/watchdog.hpp"

QCCL_TEST_WATCHDOG(60);

namespace qccl::core {
namespace {

// An op that expects `frames` frames of 4 bytes (step 0, segments 0..frames-1) and sends none.
class FakeOp final : public Op {
 public:
  FakeOp(OpTag tag, uint64_t seq, Epoch epoch, uint64_t fingerprint, size_t frames,
         std::shared_ptr<OpHandle> handle)
      : Op(tag, seq, epoch, fingerprint, std::move(handle)), buf_(frames * 4), got_(frames) {}

  std::string_view call() const override { return "qcclFake"; }
  void start(uint32_t, uint32_t) override { started_ = true; }
  Result<FrameTarget> claim(uint32_t step, uint32_t segment, size_t bytes, uint32_t) override {
    if (step != 0 || segment >= got_.size() || bytes != 4) {
      return make_status(StatusCode::kPeerLost, "no frame ({}, {}, {} bytes)", step, segment, bytes);
    }
    FrameTarget t;
    t.dst = buf_.data() + 4 * segment;
    t.bytes = 4;
    if (got_[segment]) t.duplicate = FrameTarget::Duplicate::kReceived;
    return t;
  }
  void unclaim(uint32_t, uint32_t, uint32_t) override {}
  bool received(uint32_t, uint32_t segment) const override { return got_[segment]; }
  void take_over(uint32_t, uint32_t, uint32_t, const uint8_t*) override {}
  void on_received(uint32_t, uint32_t segment, const uint8_t*) override { got_[segment] = true; }
  bool frames_complete() const override {
    for (bool g : got_) {
      if (!g) return false;
    }
    return true;
  }
  size_t max_frame_bytes() const override { return 4; }
  std::shared_ptr<Op> again(uint64_t seq, Epoch epoch,
                            std::shared_ptr<OpHandle> handle) const override {
    return std::make_shared<FakeOp>(tag(), seq, epoch, fingerprint(), got_.size(), std::move(handle));
  }
  uint32_t value(size_t segment) const {
    uint32_t v;
    std::memcpy(&v, buf_.data() + 4 * segment, 4);
    return v;
  }
  bool started_ = false;

 private:
  std::vector<uint8_t> buf_;
  std::vector<bool> got_;
};

class OpEngineTest : public ::testing::Test {
 protected:
  OpEngineTest() {
    engine_ = std::make_shared<OpEngine>(
        io_.get_executor(),
        OpEngine::Hooks{[this](const wire::ControlMessage& m) {
                          sent_.push_back(m);
                          return true;
                        },
                        [this] { ++idle_; }, [] { return std::string("nobody"); }});
    links_ = std::make_unique<peer::DataLinks>(
        io_.get_executor(), *engine_, [this](Epoch e, const Status&) { engine_->on_links_ready(e); },
        [](Epoch, const Status&) {});
    engine_->attach(*links_);
    move_to(1);
  }
  ~OpEngineTest() override {
    links_->close_all();
    drain();
  }

  // Runs what the engine posted (poll alone stops once the loop runs out of work).
  void drain() {
    io_.restart();
    io_.poll();
  }

  // The group moves to `epoch` with 2 members (this one and a neighbour that never speaks).
  void move_to(Epoch epoch) {
    engine_->on_group(epoch, {1, 2}, 0);
    links_->set_ring(epoch, std::nullopt, kNoPeer, 0);  // ready at once
    drain();
  }

  std::shared_ptr<FakeOp> start(OpTag tag, size_t frames, std::shared_ptr<OpHandle>& handle,
                                uint64_t fingerprint = 77) {
    handle = std::make_shared<OpHandle>();
    std::shared_ptr<FakeOp> made;
    Status st = engine_->start(tag, "qcclFake", [&](uint64_t seq, Epoch epoch) {
      made = std::make_shared<FakeOp>(tag, seq, epoch, fingerprint, frames, handle);
      return made;
    });
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    drain();
    return made;
  }

  template <typename T>
  std::vector<T> sent_of() const {
    std::vector<T> out;
    for (const auto& m : sent_) {
      if (const auto* t = std::get_if<T>(&m)) out.push_back(*t);
    }
    return out;
  }

  static std::vector<uint8_t> word(uint32_t v) {
    std::vector<uint8_t> b(4);
    std::memcpy(b.data(), &v, 4);
    return b;
  }

  asio::io_context io_;
  std::shared_ptr<OpEngine> engine_;
  std::unique_ptr<peer::DataLinks> links_;
  std::vector<wire::ControlMessage> sent_;
  int idle_ = 0;
};

TEST_F(OpEngineTest, AnOpWithoutFramesReportsDoneAndCompletesOnlyAtTheMastersCommit) {
  std::shared_ptr<OpHandle> h;
  auto op = start(5, 0, h);
  ASSERT_TRUE(op->started_);
  auto starts = sent_of<wire::C2MOpStart>();
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0].tag, 5u);
  EXPECT_EQ(starts[0].seq, 0u);
  EXPECT_EQ(starts[0].desc_hash, 77u);
  auto dones = sent_of<wire::C2MOpDone>();
  ASSERT_EQ(dones.size(), 1u);
  EXPECT_EQ(dones[0].status, StatusCode::kOk);
  EXPECT_FALSE(h->test());
  EXPECT_EQ(op->phase(), Op::Phase::kWaitCommit);
  engine_->on_op_result(wire::M2COpResult{5, 0, 1, StatusCode::kOk, 2, ""});
  ASSERT_TRUE(h->test());
  ReduceInfo info;
  EXPECT_TRUE(h->wait(&info).is_ok());
  EXPECT_EQ(info.world_size, 2u);
  EXPECT_TRUE(engine_->empty());
  EXPECT_GE(idle_, 1);
}

TEST_F(OpEngineTest, ASecondCallOfATagInFlightIsRefused) {
  std::shared_ptr<OpHandle> h;
  start(5, 1, h);
  Status st = engine_->start(5, "qcclFake", [](uint64_t, Epoch) -> std::shared_ptr<Op> {
    ADD_FAILURE() << "no op may be made";
    return nullptr;
  });
  EXPECT_EQ(st.code(), StatusCode::kInvalidUsage);
  EXPECT_NE(st.message().find("already in flight"), std::string::npos) << st.message();
}

TEST_F(OpEngineTest, FramesArrivingBeforeTheOpBeganAreKeptAndDeliveredAtItsStart) {
  peer::FrameId id{5, 0, 77, 0, 1};
  auto p = engine_->place(1, id, 4, 3);
  ASSERT_EQ(p.kind, peer::Placement::Kind::kKeep);
  ASSERT_TRUE(engine_->keep(1, id, word(0xabcd)).is_ok());
  std::shared_ptr<OpHandle> h;
  auto op = start(5, 2, h);
  EXPECT_TRUE(op->received(0, 1));
  EXPECT_EQ(op->value(1), 0xabcdu);
  EXPECT_TRUE(sent_of<wire::C2MOpDone>().empty());  // frame 0 is still missing
  // Frame 0 arrives on a lane: read straight into the op's memory, then landed.
  peer::FrameId id0{5, 0, 77, 0, 0};
  p = engine_->place(1, id0, 4, 3);
  ASSERT_EQ(p.kind, peer::Placement::Kind::kRead);
  ASSERT_NE(p.dst, nullptr);
  uint32_t v = 0x1234;
  std::memcpy(p.dst, &v, 4);
  ASSERT_TRUE(engine_->landed(1, id0, 4, 3, Status::ok(), nullptr).is_ok());
  EXPECT_EQ(op->value(0), 0x1234u);
  ASSERT_EQ(sent_of<wire::C2MOpDone>().size(), 1u);
  // A second copy of a frame already taken in is skipped.
  EXPECT_EQ(engine_->place(1, id0, 4, 4).kind, peer::Placement::Kind::kSkip);
}

TEST_F(OpEngineTest, AFrameWithAnotherFingerprintFailsTheOpWithMismatch) {
  std::shared_ptr<OpHandle> h;
  start(5, 1, h);
  auto p = engine_->place(1, peer::FrameId{5, 0, 78, 0, 0}, 4, 3);
  EXPECT_EQ(p.kind, peer::Placement::Kind::kSkip);
  auto dones = sent_of<wire::C2MOpDone>();
  ASSERT_EQ(dones.size(), 1u);
  EXPECT_EQ(dones[0].status, StatusCode::kMismatch);
  EXPECT_FALSE(h->test());  // until the group moves past the op's epoch
  // The master aborts the op for every member, then moves the group on.
  engine_->on_op_result(wire::M2COpResult{5, 0, 1, StatusCode::kMismatch, 0, "mismatch"});
  move_to(2);
  ASSERT_TRUE(h->test());
  EXPECT_EQ(h->wait(nullptr).code(), StatusCode::kMismatch);
}

TEST_F(OpEngineTest, AnImpossibleFrameDropsTheLane) {
  std::shared_ptr<OpHandle> h;
  start(5, 1, h);
  auto p = engine_->place(1, peer::FrameId{5, 0, 77, 3, 0}, 4, 3);
  EXPECT_EQ(p.kind, peer::Placement::Kind::kBad);
  EXPECT_EQ(p.error.code(), StatusCode::kPeerLost);
}

TEST_F(OpEngineTest, AnOpTheMasterAbortedFailsOnceTheGroupMovesOn) {
  std::shared_ptr<OpHandle> h;
  start(5, 1, h);
  engine_->on_op_result(wire::M2COpResult{5, 0, 1, StatusCode::kPeerLost, 0, "peer 9 left"});
  EXPECT_FALSE(h->test());
  move_to(2);
  ASSERT_TRUE(h->test());
  Status st = h->wait(nullptr);
  EXPECT_EQ(st.code(), StatusCode::kPeerLost);
  EXPECT_EQ(st.message(), "peer 9 left");
  EXPECT_TRUE(engine_->empty());
}

TEST_F(OpEngineTest, AnOpTheMasterNeverHeardOfRunsAgainInTheNewEpochWithTheSameHandle) {
  std::shared_ptr<OpHandle> h;
  start(5, 1, h);
  move_to(2);  // no abort came: the master had no start of it
  auto starts = sent_of<wire::C2MOpStart>();
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[1].tag, 5u);
  EXPECT_EQ(starts[1].op_epoch, 2u);
  EXPECT_EQ(starts[1].seq, 0u);  // sequence numbers restart with the epoch
  EXPECT_FALSE(h->test());
  peer::FrameId id{5, 0, 77, 0, 0};
  auto p = engine_->place(2, id, 4, 1);
  ASSERT_EQ(p.kind, peer::Placement::Kind::kRead);
  ASSERT_TRUE(engine_->landed(2, id, 4, 1, Status::ok(), nullptr).is_ok());
  engine_->on_op_result(wire::M2COpResult{5, 0, 2, StatusCode::kOk, 2, ""});
  ASSERT_TRUE(h->test());
  EXPECT_TRUE(h->wait(nullptr).is_ok());
}

TEST_F(OpEngineTest, TheNextCallOfATagTheMasterAbortedBeforeItStartedHereFailsTheSameWay) {
  engine_->on_op_result(wire::M2COpResult{6, 0, 1, StatusCode::kPeerLost, 0, "peer 4 left"});
  std::shared_ptr<OpHandle> h;
  start(6, 1, h);
  EXPECT_TRUE(sent_of<wire::C2MOpStart>().empty());  // the master has forgotten the op
  move_to(2);
  ASSERT_TRUE(h->test());
  EXPECT_EQ(h->wait(nullptr).code(), StatusCode::kPeerLost);
}

// Op deadlines (docs/reliability.md): every start carries the op timeout for the master; a
// peer late to an op the master timed out fails its call of it with kTimeout, like the others.
TEST_F(OpEngineTest, StartsCarryTheOpTimeoutOfTheirTime) {
  std::shared_ptr<OpHandle> a, b;
  start(1, 0, a);
  engine_->set_op_timeout(300);
  start(2, 0, b);
  auto starts = sent_of<wire::C2MOpStart>();
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0].timeout_ms, 0u);
  EXPECT_EQ(starts[1].timeout_ms, 300u);
}

TEST_F(OpEngineTest, ALateCallOfAnOpTheMasterTimedOutFailsWithTimeout) {
  engine_->on_op_result(wire::M2COpResult{6, 0, 1, StatusCode::kTimeout, 0, "op timeout"});
  move_to(2);
  std::shared_ptr<OpHandle> h;
  start(6, 1, h);
  EXPECT_TRUE(sent_of<wire::C2MOpStart>().empty());
  ASSERT_TRUE(h->test());
  EXPECT_EQ(h->wait(nullptr).code(), StatusCode::kTimeout);
  // The call after it is a new op again.
  std::shared_ptr<OpHandle> next;
  start(6, 0, next);
  EXPECT_EQ(sent_of<wire::C2MOpStart>().size(), 1u);
}

TEST_F(OpEngineTest, AnOpDoneLocallyStillFailsWithTheMastersTimeout) {
  std::shared_ptr<OpHandle> h;
  auto op = start(5, 0, h);
  ASSERT_EQ(op->phase(), Op::Phase::kWaitCommit);
  engine_->on_op_result(wire::M2COpResult{5, 0, 1, StatusCode::kTimeout, 0, "op timeout"});
  move_to(2);
  ASSERT_TRUE(h->test());
  EXPECT_EQ(h->wait(nullptr).code(), StatusCode::kTimeout);
}

TEST_F(OpEngineTest, TheCommunicatorsDeathFailsEveryOp) {
  std::shared_ptr<OpHandle> a, b;
  start(1, 1, a);
  start(2, 0, b);
  engine_->on_fatal(Status(StatusCode::kMasterUnreachable, "master gone"));
  drain();
  ASSERT_TRUE(a->test());
  ASSERT_TRUE(b->test());
  EXPECT_EQ(a->wait(nullptr).code(), StatusCode::kMasterUnreachable);
  EXPECT_EQ(b->wait(nullptr).code(), StatusCode::kMasterUnreachable);
  EXPECT_TRUE(engine_->empty());
}

TEST_F(OpEngineTest, ABarrierIsAnOpWithoutFramesWhoseFingerprintIsItsKind) {
  auto h = std::make_shared<OpHandle>();
  ASSERT_TRUE(engine_->start(9, "qcclBarrier", [&](uint64_t seq, Epoch epoch) {
    return std::make_shared<BarrierOp>(9, seq, epoch, h);
  }).is_ok());
  drain();
  auto starts = sent_of<wire::C2MOpStart>();
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0].desc_hash, barrier_fingerprint());
  ASSERT_EQ(sent_of<wire::C2MOpDone>().size(), 1u);  // done locally at once
  EXPECT_FALSE(h->test());                            // the master's commit is the barrier
  engine_->on_op_result(wire::M2COpResult{9, 0, 1, StatusCode::kOk, 3, ""});
  ASSERT_TRUE(h->test());
  // Any data frame for a barrier is impossible.
  EXPECT_EQ(engine_->place(1, peer::FrameId{9, 1, barrier_fingerprint(), 0, 0}, 4, 1).kind,
            peer::Placement::Kind::kKeep);  // seq 1 has not begun: kept like any early frame
}

}  // namespace
}  // namespace qccl::core
