// Separate from connection.cpp: <linux/tcp.h> (whose tcp_info has tcpi_bytes_acked, Linux
// 4.2+) and glibc's <netinet/tcp.h> cannot be included together.
#include "net/tcp_progress.hpp"

#include <cstddef>

#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

namespace qccl::net {

TcpProgress read_tcp_progress(int fd) {
  TcpProgress p;
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
      len >= offsetof(tcp_info, tcpi_bytes_acked) + sizeof(info.tcpi_bytes_acked)) {
    p.acked = info.tcpi_bytes_acked;
  }
  int queued = 0;
  if (::ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0) p.outstanding = static_cast<uint64_t>(queued);
  return p;
}

}  // namespace qccl::net
