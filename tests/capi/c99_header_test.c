/* Proves that include/qccl/qccl.h is valid, self-contained C99 (compiled with -std=c99
 * -pedantic -Werror) and that the library's static entry points behave as documented:
 * qcclGetVersion, qcclGetErrorString for every code, qcclGetLastError.
 * Exits 0 on success; prints every failed check and exits 1 otherwise. */
#include <qccl/qccl.h>

#include <stdio.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

static void check_version(void) {
  int code = -1;
  CHECK(QCCL_VERSION_CODE ==
        QCCL_VERSION_MAJOR * 10000 + QCCL_VERSION_MINOR * 100 + QCCL_VERSION_PATCH);
  CHECK(qcclGetVersion(&code) == qcclSuccess);
  /* The test is built against the library of the same tree, so they agree. */
  CHECK(code == QCCL_VERSION_CODE);
}

static void check_error_strings(void) {
  const char* seen[qcclNumResults];
  int r;
  int i;
  for (r = 0; r < (int)qcclNumResults; ++r) {
    const char* s = qcclGetErrorString((qcclResult_t)r);
    seen[r] = s;
    CHECK(s != NULL);
    if (s == NULL) continue;
    CHECK(s[0] != '\0');
    CHECK(strcmp(s, "unknown result") != 0);
    for (i = 0; i < r; ++i) {
      if (seen[i] != NULL && strcmp(seen[i], s) == 0) {
        fprintf(stderr, "codes %d and %d share the text \"%s\"\n", i, r, s);
        ++failures;
      }
    }
  }
  /* Unknown codes still give a static, non-NULL text. */
  CHECK(qcclGetErrorString(qcclNumResults) != NULL);
  CHECK(qcclGetErrorString((qcclResult_t)(qcclNumResults + 7)) != NULL);
  CHECK(qcclGetErrorString((qcclResult_t)-1) != NULL);
}

static void check_last_error(void) {
  const char* e = qcclGetLastError();
  CHECK(e != NULL);
  if (e != NULL) CHECK(e[0] == '\0'); /* no failure yet on this thread */
  /* NULL where not allowed is qcclInvalidArgument, with a message. */
  CHECK(qcclGetVersion(NULL) == qcclInvalidArgument);
  e = qcclGetLastError();
  CHECK(e != NULL);
  if (e != NULL) CHECK(e[0] != '\0');
}

static void check_types_compile(void) {
  /* The INIT macros and every public type must be usable from C99. */
  qcclMasterConfig_t master_config = QCCL_MASTER_CONFIG_INIT;
  qcclCommConfig_t comm_config = QCCL_COMM_CONFIG_INIT;
  qcclReduceDesc_t desc;
  qcclReduceInfo_t info;
  qcclReduceOp_t op;
  qcclMaster_t* master = NULL;
  qcclComm_t* comm = NULL;
  qcclOp_t* handle = NULL;
  qcclAttribute_t attr = QCCL_ATTR_EPOCH;

  CHECK(master_config.struct_size == sizeof(qcclMasterConfig_t));
  CHECK(master_config.auth_token == NULL);
  CHECK(comm_config.struct_size == sizeof(qcclCommConfig_t));
  CHECK(comm_config.auth_token == NULL);

  memset(&desc, 0, sizeof desc);
  desc.count = 4;
  desc.dtype = qcclFloat32;
  desc.op = qcclAvg;
  desc.tag = 1;
  desc.quantization.algorithm = qcclQuantMinMax;
  desc.quantization.quantized_dtype = qcclUint8;
  memset(&info, 0, sizeof info);
  op.sendbuf = NULL;
  op.recvbuf = NULL;
  op.desc = desc;
  CHECK(op.desc.count == 4 && info.world_size == 0);
  CHECK((int)qcclNumDataTypes == 12 && (int)qcclNumRedOps == 5);
  CHECK(master == NULL && comm == NULL && handle == NULL && attr == QCCL_ATTR_EPOCH);
}

int main(void) {
  check_version();
  check_error_strings();
  check_last_error();
  check_types_compile();
  if (failures != 0) {
    fprintf(stderr, "c99_header_test: %d check(s) failed\n", failures);
    return 1;
  }
  printf("c99_header_test: ok\n");
  return 0;
}
