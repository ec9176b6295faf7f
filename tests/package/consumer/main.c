/* A user program of the installed library, in C99: checks the version, the error strings, and
 * runs a master on an ephemeral loopback port for a moment. Built two ways by tests/package:
 * through find_package(qccl), and with plain `cc -std=c99 main.c -IP/include -LP/lib -lqccl`.
 * Exits 0 on success. */
#include <qccl/qccl.h>

#include <stdio.h>

static int check(qcclResult_t r, const char* what) {
  if (r != qcclSuccess) {
    fprintf(stderr, "%s: %s (%s)\n", what, qcclGetErrorString(r), qcclGetLastError());
    return 1;
  }
  return 0;
}

int main(void) {
  int version = 0;
  qcclMasterConfig_t config = QCCL_MASTER_CONFIG_INIT;
  qcclMaster_t* master = NULL;
  uint16_t port = 0;

  if (check(qcclGetVersion(&version), "qcclGetVersion")) return 1;
  if (version != QCCL_VERSION_CODE) {
    fprintf(stderr, "library version %d, header version %d\n", version, QCCL_VERSION_CODE);
    return 1;
  }
  if (qcclGetErrorString(qcclPeerLost) == NULL) return 1;

  config.listen_address = "127.0.0.1:0";
  if (check(qcclMasterCreate(&config, &master), "qcclMasterCreate")) return 1;
  if (check(qcclMasterStart(master), "qcclMasterStart")) return 1;
  if (check(qcclMasterGetPort(master, &port), "qcclMasterGetPort")) return 1;
  if (port == 0) {
    fprintf(stderr, "qcclMasterGetPort gave port 0\n");
    return 1;
  }
  if (check(qcclMasterStop(master), "qcclMasterStop")) return 1;
  if (check(qcclMasterWait(master), "qcclMasterWait")) return 1;
  if (check(qcclMasterDestroy(master), "qcclMasterDestroy")) return 1;

  printf("qccl %d.%d.%d: ok (master ran on port %u)\n", QCCL_VERSION_MAJOR, QCCL_VERSION_MINOR,
         QCCL_VERSION_PATCH, (unsigned)port);
  return 0;
}
