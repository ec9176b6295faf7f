// Unit tests of the fixed-size records (wire/frame.hpp: Preamble, PreambleAck, FrameHeader)
// and of the P2P data header (wire/codec.hpp): layouts, round trips, rejections.
#include "wire/frame.hpp"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "wire/codec.hpp"
#include "wire_test_util.hpp"

namespace qccl::wire {
namespace {

using test::fails_with;

Preamble sample_preamble() {
  Preamble p;
  p.kind = ConnKind::kData;
  p.peer_id = 0x0102030405060708ull;
  p.epoch = 0x1112131415161718ull;
  p.lane = 0x2122;
  p.lane_count = 0x3132;
  return p;
}

TEST(WireFrame, PreambleGoldenBytes) {
  const std::array<uint8_t, kPreambleSize> expected = {
      'Q', 'C', 'C', 'L', 1, 0, 2, 0,                        // magic, version, kind, flags
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,        // peer_id
      0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,        // epoch
      0x22, 0x21, 0x32, 0x31, 0, 0, 0, 0};                   // lane, lane_count, probe window
  EXPECT_EQ(encode_preamble(sample_preamble()), expected);
}

TEST(WireFrame, PreambleRoundTrips) {
  for (ConnKind kind : {ConnKind::kControl, ConnKind::kData}) {
    Preamble p = sample_preamble();
    p.kind = kind;
    auto r = decode_preamble(encode_preamble(p));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->kind, kind);
    EXPECT_EQ(r->peer_id, 0x0102030405060708ull);
    EXPECT_EQ(r->epoch, 0x1112131415161718ull);
    EXPECT_EQ(r->lane, 0x2122);
    EXPECT_EQ(r->lane_count, 0x3132);
  }
  auto d = decode_preamble(encode_preamble(Preamble{}));
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->probe_window_ms, 0u);
  EXPECT_EQ(d->kind, ConnKind::kControl);
  EXPECT_EQ(d->peer_id, kNoPeer);
}

TEST(WireFrame, ProbePreambleCarriesItsWindowInTheLastWord) {
  Preamble p = sample_preamble();
  p.kind = ConnKind::kProbe;
  p.probe_window_ms = 0x41424344;
  auto b = encode_preamble(p);
  EXPECT_EQ(b[6], 4);
  EXPECT_EQ(b[28], 0x44);
  EXPECT_EQ(b[31], 0x41);
  auto r = decode_preamble(b);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->kind, ConnKind::kProbe);
  EXPECT_EQ(r->probe_window_ms, 0x41424344u);
  // Other kinds keep the word reserved: written as zero, ignored when read.
  p.kind = ConnKind::kData;
  b = encode_preamble(p);
  EXPECT_EQ(b[28], 0);
  b[28] = 9;
  r = decode_preamble(b);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->probe_window_ms, 0u);
}

TEST(WireFrame, PreambleFlagsTravelInByte7) {
  Preamble p = sample_preamble();
  p.flags = kPreambleFlagAuth;
  auto b = encode_preamble(p);
  EXPECT_EQ(b[7], kPreambleFlagAuth);
  auto r = decode_preamble(b);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->flags, kPreambleFlagAuth);
  b[7] = 0x81;  // unknown bits are kept for the caller to ignore, not refused
  r = decode_preamble(b);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->flags, 0x81);
}

TEST(WireFrame, PreambleRejectsBadMagic) {
  auto b = encode_preamble(sample_preamble());
  b[0] = 'X';
  EXPECT_TRUE(fails_with(decode_preamble(b), {"Preamble", "magic"}));
  b = encode_preamble(sample_preamble());
  b[3] ^= 0x01;
  EXPECT_TRUE(fails_with(decode_preamble(b), {"magic"}));
}

TEST(WireFrame, PreambleRejectsBadVersion) {
  for (uint16_t v : {0, 2, 0x0100, 0xFFFF}) {
    auto b = encode_preamble(sample_preamble());
    b[4] = static_cast<uint8_t>(v);
    b[5] = static_cast<uint8_t>(v >> 8);
    EXPECT_TRUE(fails_with(decode_preamble(b), {"version", std::to_string(v)})) << v;
  }
}

TEST(WireFrame, PreambleRejectsBadKind) {
  for (uint8_t k : {0, 5, 255}) {
    auto b = encode_preamble(sample_preamble());
    b[6] = k;
    EXPECT_TRUE(fails_with(decode_preamble(b), {"kind", std::to_string(k)})) << int{k};
  }
}

TEST(WireFrame, PreambleAckRoundTripsEveryStatus) {
  for (uint8_t c = 0; c < static_cast<uint8_t>(StatusCode::kNumCodes); ++c) {
    const auto b = encode_preamble_ack(PreambleAck{static_cast<StatusCode>(c)});
    const std::array<uint8_t, kPreambleAckSize> expected = {'Q', 'C', 'C', 'L', c, 0, 0, 0};
    EXPECT_EQ(b, expected);
    auto r = decode_preamble_ack(b);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, static_cast<StatusCode>(c));
  }
}

TEST(WireFrame, PreambleAckRejectsBadMagicAndStatus) {
  auto b = encode_preamble_ack(PreambleAck{StatusCode::kAuthFailed});
  b[1] = 0;
  EXPECT_TRUE(fails_with(decode_preamble_ack(b), {"PreambleAck", "magic"}));
  for (uint8_t s : {static_cast<uint8_t>(StatusCode::kNumCodes), uint8_t{200}, uint8_t{255}}) {
    auto c = encode_preamble_ack(PreambleAck{});
    c[4] = s;
    EXPECT_TRUE(fails_with(decode_preamble_ack(c), {"status", std::to_string(s)})) << int{s};
  }
}

TEST(WireFrame, FrameHeaderRoundTrips) {
  const FrameHeader h{0x003BCDEF, 0x0102, 0x0304, 0x1122334455667788ull};
  const auto b = encode_frame_header(h);
  const std::array<uint8_t, kFrameHeaderSize> expected = {
      0xEF, 0xCD, 0x3B, 0, 0x02, 0x01, 0x04, 0x03, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
  EXPECT_EQ(b, expected);
  auto r = decode_frame_header(b, kMaxDataPayload);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->payload_len, 0x003BCDEFu);
  EXPECT_EQ(r->type, 0x0102);
  EXPECT_EQ(r->flags, 0x0304);
  EXPECT_EQ(r->epoch, 0x1122334455667788ull);
}

TEST(WireFrame, FrameHeaderRejectsOversizedPayload) {
  FrameHeader h;
  h.type = static_cast<uint16_t>(MsgType::kC2MRegister);
  h.payload_len = kMaxControlPayload;
  EXPECT_TRUE(decode_frame_header(encode_frame_header(h), kMaxControlPayload).is_ok());
  h.payload_len = kMaxControlPayload + 1;
  EXPECT_TRUE(fails_with(decode_frame_header(encode_frame_header(h), kMaxControlPayload),
                         {std::to_string(kMaxControlPayload + 1), std::to_string(kMaxControlPayload)}));
  h.payload_len = 0xFFFFFFFFu;
  EXPECT_TRUE(fails_with(decode_frame_header(encode_frame_header(h), kMaxDataPayload),
                         {"4294967295", std::to_string(kMaxDataPayload)}));
  h.payload_len = 1;
  EXPECT_TRUE(fails_with(decode_frame_header(encode_frame_header(h), 0), {"limit 0"}));
}

TEST(WireFrame, DataHeaderGoldenBytesAndRoundTrip) {
  const P2PDataHeader h{0x0102030405060708ull, 0x1112131415161718ull, 0x2122232425262728ull,
                        0x31323334u, 0x41424344u};
  const auto b = encode_data_header(h);
  const std::array<uint8_t, kP2PDataHeaderSize> expected = {
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x18, 0x17, 0x16,
      0x15, 0x14, 0x13, 0x12, 0x11, 0x28, 0x27, 0x26, 0x25, 0x24, 0x23,
      0x22, 0x21, 0x34, 0x33, 0x32, 0x31, 0x44, 0x43, 0x42, 0x41};
  EXPECT_EQ(b, expected);
  auto r = decode_data_header(b);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->tag, h.tag);
  EXPECT_EQ(r->seq, h.seq);
  EXPECT_EQ(r->desc_hash, h.desc_hash);
  EXPECT_EQ(r->step, h.step);
  EXPECT_EQ(r->segment, h.segment);
}

}  // namespace
}  // namespace qccl::wire
