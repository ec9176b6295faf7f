// Measurements between two network namespaces from one process, for netsim_test and for the
// qccl_netsim_probe tool (docs/netsim.md's figures): UDP ping-pong RTTs, TCP connect time,
// UDP loss, and TCP goodput of N parallel flows.
//
// A socket belongs to the namespace its creating thread was in, so socket_in() enters the
// namespace (/run/netns/NAME) for the socket() call only; after that, the fd works from any
// thread. Every wait is a poll() with a deadline; ports are 0 (the kernel picks them).
//
// Thread-safety: the functions switch the calling thread's namespace for a moment; call them
// from a thread that opens no other sockets meanwhile. tcp_goodput starts and joins two
// threads of its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qccl::netsim::probe {

struct Endpoint {
  std::string netns;    // a name under /run/netns
  std::string address;  // an IPv4 address of that namespace
};

// Every function returns "" on success, else what went wrong.

// `count` UDP round trips a -> b -> a (b echoes), one at a time; each must complete within
// `timeout_ms`. Appends each RTT in ms to *rtts.
std::string udp_rtts(const Endpoint& a, const Endpoint& b, int count, int timeout_ms,
                     std::vector<double>* rtts);

// Time of a TCP connect() from a to a listener on b (SYN, SYN-ACK: one round trip), `count`
// times; appends ms to *times.
std::string tcp_connect_times(const Endpoint& a, const Endpoint& b, int count, int timeout_ms,
                              std::vector<double>* times);

// Sends `count` numbered UDP datagrams of `bytes` (at least 4) from a to b, `per_ms` per
// millisecond, then waits until nothing arrived for `quiet_ms`; *received = how many arrived,
// *out_of_order = how many arrived after a higher-numbered one.
std::string udp_loss(const Endpoint& a, const Endpoint& b, int count, int bytes, int per_ms,
                     int quiet_ms, int* received, int* out_of_order);

// `flows` TCP connections a -> b, each sending as fast as it can for warmup_s + seconds; the
// goodput (payload bits/s received) of each flow over the last `seconds` goes to *bps.
std::string tcp_goodput(const Endpoint& a, const Endpoint& b, int flows, double warmup_s,
                        double seconds, std::vector<double>* bps);

// Median, and the q-quantile (0..1, nearest rank) of `v` (0 if empty).
double quantile(std::vector<double> v, double q);

}  // namespace qccl::netsim::probe
