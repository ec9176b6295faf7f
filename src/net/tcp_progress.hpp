// TcpProgress: how far the kernel's TCP got with the bytes written to a socket.
//
// Data lanes use it to tell a slow connection (acknowledgements keep coming) from a stalled
// one (they stopped) without any message of their own (peer/data_links.hpp).
#pragma once

#include <cstdint>

namespace qccl::net {

struct TcpProgress {
  uint64_t acked = 0;        // bytes the other end acknowledged since the connection began
  uint64_t outstanding = 0;  // bytes written but not acknowledged yet (sent or not)
};

// Reads TCP_INFO and SIOCOUTQ of a connected TCP socket; zeros where the kernel says nothing.
TcpProgress read_tcp_progress(int fd);

}  // namespace qccl::net
