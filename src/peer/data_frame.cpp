#include "peer/data_frame.hpp"

#include <cstring>

#include "wire/codec.hpp"

namespace qccl::peer {

DataHead encode_data_head(Epoch epoch, const FrameId& id, size_t payload) {
  DataHead head{};
  wire::FrameHeader fh{static_cast<uint32_t>(wire::kP2PDataHeaderSize + payload),
                       static_cast<uint16_t>(wire::MsgType::kP2PData), 0, epoch};
  auto fh_bytes = wire::encode_frame_header(fh);
  auto dh_bytes =
      wire::encode_data_header({id.tag, id.seq, id.fingerprint, id.step, id.segment});
  std::memcpy(head.data(), fh_bytes.data(), fh_bytes.size());
  std::memcpy(head.data() + fh_bytes.size(), dh_bytes.data(), dh_bytes.size());
  return head;
}

Result<DecodedHead> decode_data_head(const DataHead& head) {
  auto fh = wire::decode_frame_header(
      std::span<const uint8_t, wire::kFrameHeaderSize>(head.data(), wire::kFrameHeaderSize),
      wire::kMaxDataPayload);
  if (!fh.is_ok()) return fh.status();
  if (fh->type != static_cast<uint16_t>(wire::MsgType::kP2PData) ||
      fh->payload_len < wire::kP2PDataHeaderSize) {
    return make_status(StatusCode::kPeerLost, "not a data frame (type {}, {} bytes)", fh->type,
                       fh->payload_len);
  }
  auto dh = wire::decode_data_header(std::span<const uint8_t, wire::kP2PDataHeaderSize>(
      head.data() + wire::kFrameHeaderSize, wire::kP2PDataHeaderSize));
  if (!dh.is_ok()) return dh.status();
  return DecodedHead{fh->epoch, FrameId{dh->tag, dh->seq, dh->desc_hash, dh->step, dh->segment},
                     fh->payload_len - wire::kP2PDataHeaderSize};
}

}  // namespace qccl::peer
