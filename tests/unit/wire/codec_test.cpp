// Unit tests of the control-message codec (wire/codec.hpp): exact byte layouts, round trips of
// every message, and rejection of every kind of malformed payload the decoder must catch.
#include "wire/codec.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "support/watchdog.hpp"
#include "wire_test_util.hpp"

QCCL_TEST_WATCHDOG(100);

namespace qccl::wire {
namespace {

using test::fails_with;
using test::payload_of;
using test::same_message;
using test::sample_messages;

void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
std::vector<uint8_t> payload_bytes(const ControlMessage& m) {
  const std::vector<uint8_t> frame = encode_frame(m, 1);
  return std::vector<uint8_t>(frame.begin() + kFrameHeaderSize, frame.end());
}
uint16_t type_num(const ControlMessage& m) { return static_cast<uint16_t>(type_of(m)); }

TEST(WireCodec, RegisterGoldenBytes) {
  const std::vector<uint8_t> frame =
      encode_frame(C2MRegister{0x01020304, 0x0506, "ab"}, 0x1122334455667788ull);
  const std::vector<uint8_t> expected = {
      12, 0, 0, 0, 1, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  // header
      0x04, 0x03, 0x02, 0x01, 0x06, 0x05, 2, 0, 0, 0, 'a', 'b'};                  // payload
  EXPECT_EQ(frame, expected);
}

TEST(WireCodec, MembershipGoldenBytes) {
  M2CMembership m{0x0A, 1, 2, 3, 4, {test::member(0x0B, "h", 0x0C0D)}, 0x0E};
  const std::vector<uint8_t> expected = {
      0x0A, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0,  // counts
      1, 0, 0, 0,                                                                  // ring size
      0x0B, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'h', 0x0D, 0x0C,                     // member
      0x0E, 0, 0, 0, 0, 0, 0, 0,                                                   // next id
      0, 0, 0, 0, 0, 0, 0, 0};                                                     // votes
  EXPECT_EQ(payload_bytes(m), expected);
}

// The op timeout travels last, so that the master can enforce the op's deadline
// (docs/reliability.md §7); a start without it (the layout before op deadlines) is refused.
TEST(WireCodec, OpStartGoldenBytesCarryTheTimeout) {
  const std::vector<uint8_t> expected = {
      1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,  // tag, seq
      3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,  // op_epoch, desc_hash
      0x2C, 0x01, 0, 0};                               // timeout_ms = 300
  const std::vector<uint8_t> payload = payload_bytes(C2MOpStart{1, 2, 3, 4, 300});
  EXPECT_EQ(payload, expected);
  auto back = decode_control(type_num(C2MOpStart{}), payload);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(std::get<C2MOpStart>(*back).timeout_ms, 300u);
  auto old = decode_control(type_num(C2MOpStart{}), std::span<const uint8_t>(payload).first(32));
  EXPECT_TRUE(fails_with(old, {"C2MOpStart", "timeout_ms"}));
}

TEST(WireCodec, TypeOfMatchesEveryAlternative) {
  EXPECT_EQ(type_of(C2MRegister{}), MsgType::kC2MRegister);
  EXPECT_EQ(type_of(C2MHeartbeat{}), MsgType::kC2MHeartbeat);
  EXPECT_EQ(type_of(C2MVote{}), MsgType::kC2MVote);
  EXPECT_EQ(type_of(C2MOpStart{}), MsgType::kC2MOpStart);
  EXPECT_EQ(type_of(C2MOpDone{}), MsgType::kC2MOpDone);
  EXPECT_EQ(type_of(C2MLeave{}), MsgType::kC2MLeave);
  EXPECT_EQ(type_of(C2MSyncState{}), MsgType::kC2MSyncState);
  EXPECT_EQ(type_of(C2MSyncDone{}), MsgType::kC2MSyncDone);
  EXPECT_EQ(type_of(M2CSyncPlan{}), MsgType::kM2CSyncPlan);
  EXPECT_EQ(type_of(M2CSyncResult{}), MsgType::kM2CSyncResult);
  EXPECT_EQ(type_of(M2CWelcome{}), MsgType::kM2CWelcome);
  EXPECT_EQ(type_of(M2CMembership{}), MsgType::kM2CMembership);
  EXPECT_EQ(type_of(M2CVoteResult{}), MsgType::kM2CVoteResult);
  EXPECT_EQ(type_of(M2COpResult{}), MsgType::kM2COpResult);
  EXPECT_EQ(type_of(M2CKicked{}), MsgType::kM2CKicked);
  EXPECT_EQ(type_of(M2CHeartbeat{}), MsgType::kM2CHeartbeat);
  EXPECT_EQ(type_of(C2MProbeResults{}), MsgType::kC2MProbeResults);
  EXPECT_EQ(type_of(C2MResume{}), MsgType::kC2MResume);
  EXPECT_EQ(type_of(M2CProbePlan{}), MsgType::kM2CProbePlan);
}

TEST(WireCodec, ProbeMessagesGoldenBytes) {
  const std::vector<uint8_t> results = {
      7, 0, 0, 0, 0, 0, 0, 0,           // round
      1, 0, 0, 0,                       // one inbound link
      3, 0, 0, 0, 0, 0, 0, 0,           // its source
      0x40, 0x42, 0x0F, 0, 0, 0, 0, 0,  // 1000000 bytes/s
      1, 0, 0, 0,                       // one unreachable target
      9, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(payload_bytes(C2MProbeResults{7, {ProbeResult{3, 1000000}}, {9}}), results);
  const std::vector<uint8_t> plan = {
      7, 0, 0, 0, 0, 0, 0, 0,  // round
      250, 0, 0, 0,            // window_ms
      0xDB, 1, 0, 0,           // slot_ms 475
      1, 0, 0, 0,              // one target
      2, 0, 0, 0,              // its slot
      3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'h', 0x0D, 0x0C,  // the peer
      0, 0, 0, 0};             // no sources
  EXPECT_EQ(payload_bytes(M2CProbePlan{7, 250, 475, {ProbeTarget{2, test::member(3, "h", 0x0C0D)}},
                                       {}}),
            plan);
}

TEST(WireCodec, EveryMessageRoundTrips) {
  const std::vector<ControlMessage> samples = sample_messages();
  ASSERT_EQ(samples.size(), 35u);
  for (const ControlMessage& m : samples) {
    const std::vector<uint8_t> frame = encode_frame(m, 0xFEDCBA9876543210ull);
    auto decoded = test::decode_whole_frame(frame);
    ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
    EXPECT_EQ(decoded->header.type, type_num(m));
    EXPECT_EQ(decoded->header.flags, 0);
    EXPECT_EQ(decoded->header.epoch, 0xFEDCBA9876543210ull);
    EXPECT_EQ(decoded->header.payload_len, frame.size() - kFrameHeaderSize);
    EXPECT_TRUE(same_message(decoded->message, m)) << "type " << type_num(m);
  }
}

TEST(WireCodec, RoundTripKeepsFieldValues) {
  M2CMembership ring{17, 8, 3, 2, 5, {}};
  ring.ring.push_back(test::member(11, "10.0.0.1", 40001));
  ring.ring.push_back(test::member(12, "", 40002));
  auto r = decode_control(type_num(ring), payload_of(encode_frame(ring, 5)));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const auto& m = std::get<M2CMembership>(*r);
  EXPECT_EQ(m.group_epoch, 17u);
  EXPECT_EQ(m.global_world_size, 8u);
  EXPECT_EQ(m.group_world_size, 3u);
  EXPECT_EQ(m.num_groups, 2u);
  EXPECT_EQ(m.largest_group_size, 5u);
  ASSERT_EQ(m.ring.size(), 2u);
  EXPECT_EQ(m.ring[0].id, 11u);
  EXPECT_EQ(m.ring[0].host, "10.0.0.1");
  EXPECT_EQ(m.ring[0].port, 40001);
  EXPECT_EQ(m.ring[1].host, "");
  EXPECT_EQ(m.ring[1].port, 40002);

  const C2MOpDone done{5, 6, 7, StatusCode::kTimeout, "slow"};
  auto d = decode_control(type_num(done), payload_of(encode_frame(done, 1)));
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(std::get<C2MOpDone>(*d).status, StatusCode::kTimeout);
  EXPECT_EQ(std::get<C2MOpDone>(*d).message, "slow");
}

TEST(WireCodec, EveryStatusCodeRoundTrips) {
  for (uint8_t c = 0; c < static_cast<uint8_t>(StatusCode::kNumCodes); ++c) {
    const M2COpResult m{1, 2, 3, static_cast<StatusCode>(c), 4, "x"};
    auto r = decode_control(type_num(m), payload_of(encode_frame(m, 0)));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(std::get<M2COpResult>(*r).status, static_cast<StatusCode>(c));
  }
}

TEST(WireCodec, MaximalRingRoundTripsAndFitsControlLimit) {
  M2CMembership m{1, kMaxRingMembers, kMaxRingMembers, 1, kMaxRingMembers, {}};
  for (uint32_t i = 0; i < kMaxRingMembers; ++i) {
    m.ring.push_back(test::member(i + 1, "", static_cast<uint16_t>(i)));
  }
  const std::vector<uint8_t> frame = encode_frame(m, 2);
  auto r = test::decode_whole_frame(frame);  // includes the kMaxControlPayload check
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(same_message(r->message, m));
}

TEST(WireCodec, EncodeClampsLongStringsAtCharacterBoundary) {
  std::string s = "a";
  while (s.size() <= kMaxStringBytes + 10) s += "\xC3\xA9";  // U+00E9, two bytes
  auto r = decode_control(type_num(M2CKicked{}),
                          payload_of(encode_frame(M2CKicked{KickReason::kShutdown, s}, 0)));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  // Byte 4096 is the second byte of a character, so the cut falls one byte earlier.
  EXPECT_EQ(std::get<M2CKicked>(*r).message, s.substr(0, kMaxStringBytes - 1));

  auto h = decode_control(
      type_num(C2MRegister{}),
      payload_of(encode_frame(C2MRegister{1, 2, std::string(kMaxStringBytes + 1, 'z')}, 0)));
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(std::get<C2MRegister>(*h).advertised_host, std::string(kMaxStringBytes, 'z'));
}

TEST(WireCodec, RejectsTruncationAtEveryLength) {
  for (const ControlMessage& m : sample_messages()) {
    const std::vector<uint8_t> payload = payload_bytes(m);
    for (size_t len = 0; len < payload.size(); ++len) {
      auto r = decode_control(type_num(m), std::span<const uint8_t>(payload).first(len));
      ASSERT_TRUE(fails_with(r, {"truncated"})) << "type " << type_num(m) << " len " << len;
    }
  }
}

TEST(WireCodec, TruncationMessageSaysWhere) {
  const std::vector<uint8_t> payload = payload_bytes(C2MOpStart{1, 2, 3, 4});
  auto r = decode_control(type_num(C2MOpStart{}), std::span<const uint8_t>(payload).first(17));
  EXPECT_TRUE(fails_with(r, {"C2MOpStart", "op_epoch", "byte 16", "payload has 17"}));
}

TEST(WireCodec, RejectsTrailingBytes) {
  for (const ControlMessage& m : sample_messages()) {
    for (size_t extra : {1u, 7u}) {
      std::vector<uint8_t> payload = payload_bytes(m);
      payload.resize(payload.size() + extra, 0);
      auto r = decode_control(type_num(m), payload);
      ASSERT_TRUE(fails_with(r, {"trailing"})) << "type " << type_num(m) << " extra " << extra;
    }
  }
}

TEST(WireCodec, RejectsUnknownAndDataTypes) {
  const std::vector<uint8_t> empty;
  for (uint16_t t : {0, 11, 31, 41, 63, 67, 1000, 0xFFFF}) {
    EXPECT_TRUE(fails_with(decode_control(t, empty), {"unknown message type"})) << t;
  }
  const std::vector<uint8_t> data(kP2PDataHeaderSize, 0);
  for (MsgType t : {MsgType::kP2PData, MsgType::kP2PStateRequest, MsgType::kP2PStatePiece}) {
    EXPECT_TRUE(fails_with(decode_control(static_cast<uint16_t>(t), data),
                           {"not a control message"}));
  }
}

TEST(WireCodec, RejectsOutOfRangeEnums) {
  const uint16_t vote = type_num(C2MVote{});
  for (uint8_t k : {0, 4, 255}) {
    EXPECT_TRUE(fails_with(decode_control(vote, std::vector<uint8_t>{k}), {"C2MVote", "kind"}));
  }
  std::vector<uint8_t> vr = payload_bytes(M2CVoteResult{VoteKind::kPeersPending, true, StatusCode::kOk, ""});
  vr[0] = 4;
  EXPECT_TRUE(fails_with(decode_control(type_num(M2CVoteResult{}), vr), {"M2CVoteResult"}));

  std::vector<uint8_t> done = payload_bytes(C2MOpDone{1, 2, 3, StatusCode::kOk, "m"});
  ASSERT_EQ(done[24], 0);
  done[24] = static_cast<uint8_t>(StatusCode::kNumCodes);
  EXPECT_TRUE(fails_with(decode_control(type_num(C2MOpDone{}), done),
                         {"C2MOpDone", "status", "byte 24"}));

  std::vector<uint8_t> result = payload_bytes(M2COpResult{1, 2, 3, StatusCode::kOk, 4, ""});
  result[24] = 0xFF;
  EXPECT_TRUE(fails_with(decode_control(type_num(M2COpResult{}), result), {"status"}));

  // C2MSyncState: strategy at byte 8, the first entry's dtype after its name.
  std::vector<uint8_t> sync = payload_bytes(
      C2MSyncState{1, SyncStrategy::kSendOnly, {StateEntry{"w", 11, 2, 3, false}}});
  sync[8] = 3;
  EXPECT_TRUE(fails_with(decode_control(type_num(C2MSyncState{}), sync), {"strategy"}));
  sync[8] = 0;
  ASSERT_EQ(sync[18], 11);  // 8 revision + 1 strategy + 4 count + 4 length + 1 name byte
  sync[18] = kNumDataTypes;
  EXPECT_TRUE(fails_with(decode_control(type_num(C2MSyncState{}), sync), {"dtype", "12"}));

  for (uint8_t k : {0, 11, 200}) {
    std::vector<uint8_t> kicked = payload_bytes(M2CKicked{KickReason::kTimeout, "t"});
    kicked[0] = k;
    EXPECT_TRUE(fails_with(decode_control(type_num(M2CKicked{}), kicked), {"M2CKicked", "reason"}));
  }
}

TEST(WireCodec, RejectsBadBoolBytes) {
  for (uint8_t b : {2, 0x80, 0xFF}) {
    std::vector<uint8_t> p = payload_bytes(M2CVoteResult{VoteKind::kPeersPending, true, StatusCode::kOk, ""});
    ASSERT_EQ(p.size(), 2u + 1 + 4 + 8);  // kind, bool, status, empty message, round
    ASSERT_EQ(p[1], 1);
    p[1] = b;
    EXPECT_TRUE(fails_with(decode_control(type_num(M2CVoteResult{}), p),
                           {"peers_pending", "0 or 1"}));
  }
}

TEST(WireCodec, RejectsOverLimitStrings) {
  // A length one over the limit, with the bytes actually present.
  std::vector<uint8_t> p = payload_bytes(M2CKicked{KickReason::kTimeout, ""});
  put_u32(p, 1, kMaxStringBytes + 1);
  p.resize(p.size() + kMaxStringBytes + 1, 'a');
  EXPECT_TRUE(fails_with(decode_control(type_num(M2CKicked{}), p),
                         {"M2CKicked", "message", "4097", "limit 4096"}));

  // A length claiming 2^32-1 with no bytes behind it: rejected from the length alone.
  std::vector<uint8_t> reg = payload_bytes(C2MRegister{1, 2, ""});
  put_u32(reg, 6, 0xFFFFFFFFu);
  EXPECT_TRUE(fails_with(decode_control(type_num(C2MRegister{}), reg),
                         {"advertised_host", "4294967295", "limit 4096"}));

  // A ring member's host too long.
  std::vector<uint8_t> mem = payload_bytes(M2CMembership{1, 1, 1, 1, 1, {test::member(1, "", 2)}});
  put_u32(mem, 36, 0xFFFFFFFFu);
  EXPECT_TRUE(fails_with(decode_control(type_num(M2CMembership{}), mem), {"host", "limit 4096"}));
}

TEST(WireCodec, RejectsOverLimitRings) {
  const uint16_t t = type_num(M2CMembership{});
  std::vector<uint8_t> p = payload_bytes(M2CMembership{1, 2, 3, 4, 5, {}});
  ASSERT_EQ(p.size(), 44u);
  put_u32(p, 24, 0xFFFFFFFFu);
  EXPECT_TRUE(fails_with(decode_control(t, p), {"M2CMembership", "ring", "limit 65536"}));
  put_u32(p, 24, kMaxRingMembers + 1);
  EXPECT_TRUE(fails_with(decode_control(t, p), {"65537", "limit 65536"}));
  // Within the limit but far more than the bytes present: rejected before reserving.
  put_u32(p, 24, kMaxRingMembers);
  EXPECT_TRUE(fails_with(decode_control(t, p), {"truncated", "ring", "65536 entries"}));

  // C2MResume's ring (ids only) and op list: the same limits, checked before reserving.
  const uint16_t r = type_num(C2MResume{});
  std::vector<uint8_t> resume =
      payload_bytes(C2MResume{1, 1, 1, 2, 0, 1, "", 1, 1, {}, 3, false, 0, {}});
  // ... | u32 ops | u8 vote_waiting | u64 vote_round | bool | bool | u64 | u64
  const size_t tail = 1 + 8 + 1 + 1 + 8 + 8;
  ASSERT_EQ(resume.size(), 8u + 8 + 8 + 8 + 4 + 2 + 4 + 8 + 8 + 4 + 8 + 1 + 8 + 4 + tail);
  put_u32(resume, 58, kMaxRingMembers + 1);
  EXPECT_TRUE(fails_with(decode_control(r, resume), {"C2MResume", "ring", "limit 65536"}));
  put_u32(resume, 58, 0);
  put_u32(resume, resume.size() - tail - 4, 1000);
  EXPECT_TRUE(fails_with(decode_control(r, resume), {"C2MResume", "truncated", "ops"}));
  put_u32(resume, resume.size() - tail - 4, 0);
  resume[resume.size() - tail] = 4;  // no such vote kind
  EXPECT_TRUE(fails_with(decode_control(r, resume), {"C2MResume", "vote_waiting"}));

  // An encoder handed an over-limit ring does not cut it; the receiver rejects it.
  M2CMembership big{1, 0, 0, 1, 0, std::vector<RingMember>(kMaxRingMembers + 1)};
  EXPECT_TRUE(fails_with(decode_control(t, payload_of(encode_frame(big, 0))), {"limit 65536"}));
}

TEST(WireCodec, StateFramesGoldenBytesAndRoundTrip) {
  const P2PStateRequest q{0x01020304u, 0x11121314u, 0x2122232425262728ull};
  const auto qb = encode_state_request(q);
  const std::array<uint8_t, kP2PStateRequestSize> qe = {0x04, 0x03, 0x02, 0x01, 0x14, 0x13,
                                                        0x12, 0x11, 0x28, 0x27, 0x26, 0x25,
                                                        0x24, 0x23, 0x22, 0x21};
  EXPECT_EQ(qb, qe);
  const P2PStateRequest qd = decode_state_request(qb);
  EXPECT_EQ(qd.entry, q.entry);
  EXPECT_EQ(qd.piece, q.piece);
  EXPECT_EQ(qd.entry_hash, q.entry_hash);

  const P2PStatePieceHeader h{7, 9, 0xAABBCCDDEEFF0011ull, StatusCode::kPeerLost};
  auto hb = encode_state_piece_header(h);
  EXPECT_EQ(hb[16], static_cast<uint8_t>(StatusCode::kPeerLost));
  for (size_t i = 17; i < kP2PStatePieceHeaderSize; ++i) EXPECT_EQ(hb[i], 0) << i;
  auto hd = decode_state_piece_header(hb);
  ASSERT_TRUE(hd.is_ok()) << hd.status().to_string();
  EXPECT_EQ(hd->entry, 7u);
  EXPECT_EQ(hd->piece, 9u);
  EXPECT_EQ(hd->piece_hash, h.piece_hash);
  EXPECT_EQ(hd->status, StatusCode::kPeerLost);
  hb[16] = static_cast<uint8_t>(StatusCode::kNumCodes);
  EXPECT_TRUE(fails_with(decode_state_piece_header(hb), {"status", "byte 16"}));
}

TEST(WireCodec, RejectsOverLimitStateEntries) {
  // A claimed entry count over kMaxStateEntries is refused before anything is reserved.
  std::vector<uint8_t> p = payload_bytes(C2MSyncState{1, SyncStrategy::kEnforcePopular, {}});
  put_u32(p, 9, kMaxStateEntries + 1);
  EXPECT_TRUE(fails_with(decode_control(type_num(C2MSyncState{}), p), {"entries"}));
  // A count the remaining bytes cannot hold is refused too.
  put_u32(p, 9, 1000);
  EXPECT_TRUE(fails_with(decode_control(type_num(C2MSyncState{}), p), {"entries"}));
}

}  // namespace
}  // namespace qccl::wire
