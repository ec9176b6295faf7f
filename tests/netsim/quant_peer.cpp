// qccl_netsim_quant_peer: a peer for netsim_allreduce_test that checks a quantized all-reduce
// against its error bound (docs/quantization.md §4), with data that MinMax does not encode
// exactly (qccl_test_peer's --quant data is constant per block, so it checks exactness only).
//
//   qccl_netsim_quant_peer --master HOST:PORT --index I --world W --count N --iters K
//
// Peer i's float32 input is x_i[k] = sin(0.37 k + 1.3 i), in [-1, 1]; every peer can compute
// everyone's, hence the exact float64 sum over the W peers. After the gather (the lock-step
// "pending? update" sequence of tests/fault/test_peer.cpp) it runs K MinMax uint8 Sum
// all-reduces and prints, per op:
//   quant K world W maxerr E bound B hash H ms D
// where E = max_k |result[k] - exact[k]|, B = R W (W + 1) / (4 L) with R = 2 and L = 255 (the
// Sum bound of the doc) plus float32 rounding slack, and H an FNV-1a hash of the result bytes
// (every peer must print the same: bit parity). A result over the bound prints "bad K ...".
// Then "done". Setup failures print "error WHAT CODE msg ..." and exit 3; a failed op prints
// "fail K CODE" and exits 4.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "qccl/qccl.h"

namespace {

void emit(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int fail_setup(const char* what, qcclResult_t r) {
  emit(std::string("error ") + what + " " + std::to_string(static_cast<int>(r)) + " msg " +
       qcclGetLastError());
  return 3;
}

float input(int peer, size_t k) {
  return static_cast<float>(std::sin(0.37 * static_cast<double>(k) + 1.3 * peer));
}

uint64_t fnv1a(const void* data, size_t n) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  std::string master;
  int index = -1, world = 0, iters = 1;
  size_t count = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--master")
      master = v;
    else if (a == "--index")
      index = std::atoi(v.c_str());
    else if (a == "--world")
      world = std::atoi(v.c_str());
    else if (a == "--count")
      count = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--iters")
      iters = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "qccl_netsim_quant_peer: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (master.empty() || index < 0 || world < 2 || count == 0 || iters < 1) {
    std::fprintf(stderr,
                 "usage: qccl_netsim_quant_peer --master HOST:PORT --index I --world W "
                 "--count N --iters K\n");
    return 2;
  }

  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = master.c_str();
  cc.connect_timeout_ms = 20000;
  qcclComm_t* comm = nullptr;
  if (qcclResult_t r = qcclCommCreate(&cc, &comm); r != qcclSuccess) return fail_setup("create", r);
  struct Destroy {
    qcclComm_t* c;
    ~Destroy() { qcclCommDestroy(c); }
  } destroy{comm};
  if (qcclResult_t r = qcclConnect(comm); r != qcclSuccess) return fail_setup("connect", r);
  // Gather: every peer waits, admitting the others, until the group is complete.
  if (qcclResult_t r = qcclWaitForWorld(comm, world, 60000); r != qcclSuccess) {
    return fail_setup("wait for world", r);
  }
  emit("ready index " + std::to_string(index) + " world " + std::to_string(world));

  std::vector<float> send(count), recv(count);
  std::vector<double> exact(count, 0.0);
  for (size_t k = 0; k < count; ++k) {
    send[k] = input(index, k);
    for (int p = 0; p < world; ++p) exact[k] += input(p, k);
  }
  constexpr double kRange = 2.0, kLevels = 255.0;
  // The doc's Sum bound, plus float32 rounding of the stored partial sums (a few ulps of W).
  const double bound = kRange * world * (world + 1) / (4 * kLevels) + 1e-5 * world;
  qcclReduceDesc_t desc{};
  desc.count = count;
  desc.dtype = qcclFloat32;
  desc.op = qcclSum;
  desc.tag = 7;
  desc.quantization.algorithm = qcclQuantMinMax;
  desc.quantization.quantized_dtype = qcclUint8;
  for (int it = 0; it < iters; ++it) {
    qcclReduceInfo_t info{};
    const auto t0 = std::chrono::steady_clock::now();
    const qcclResult_t r = qcclAllReduce(send.data(), recv.data(), &desc, comm, &info);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (r != qcclSuccess) {
      emit("fail " + std::to_string(it) + " " + std::to_string(static_cast<int>(r)) + " msg " +
           qcclGetLastError());
      return 4;
    }
    double maxerr = 0;
    for (size_t k = 0; k < count; ++k) maxerr = std::max(maxerr, std::fabs(recv[k] - exact[k]));
    char line[256];
    std::snprintf(line, sizeof line, "quant %d world %u maxerr %.6f bound %.6f hash %llu ms %.1f",
                  it, info.world_size, maxerr, bound,
                  static_cast<unsigned long long>(fnv1a(recv.data(), count * sizeof(float))), ms);
    emit(line);
    if (!(maxerr <= bound)) emit("bad " + std::to_string(it) + " maxerr over the bound");
  }
  emit("done");
  return 0;
}
