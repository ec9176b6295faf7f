/* A program compiled against an older qccl.h passes configs of an older, smaller layout:
 * qcclCommCreate and qcclMasterCreate must accept them, read only the bytes struct_size covers
 * and default the rest (docs/c_api.md, "Configuration and defaults").
 *
 * The structs below are the layouts as first published (qccl.h 0.1.0), written out here as an
 * old header would have declared them. Each is placed at the very end of a readable page that
 * is followed by a PROT_NONE page, so that a library reading one byte past struct_size crashes
 * this test instead of reading garbage. With them, a master is started and a communicator
 * connects. Sizes outside [first layout, current layout] are refused with qcclInvalidArgument
 * and a message that names the call and struct_size.
 *
 * Strict C99 (-std=c99 -pedantic -Werror), like an old user program. Exits 0 on success; prints
 * every failed check and exits 1 otherwise. */
#define _DEFAULT_SOURCE 1 /* mmap's MAP_ANONYMOUS under -std=c99 */

#include <qccl/qccl.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      fprintf(stderr, "  qcclGetLastError: %s\n", qcclGetLastError());        \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

/* qcclMasterConfig_t as first published: vote_timeout_ms and the probe fields came later. */
typedef struct {
  size_t struct_size;
  const char *listen_address;
  uint32_t heartbeat_interval_ms;
  uint32_t peer_timeout_ms;
  const char *auth_token;
} master_config_v1;

/* qcclCommConfig_t as first published. */
typedef struct {
  size_t struct_size;
  const char *master_address;
  uint32_t peer_group;
  uint32_t connections_per_peer;
  uint32_t connect_timeout_ms;
  const char *auth_token;
} comm_config_v1;

/* qcclCommConfig_t before op_timeout_ms (issue 19): the addressing fields of issue 11 last. */
typedef struct {
  size_t struct_size;
  const char *master_address;
  uint32_t peer_group;
  uint32_t connections_per_peer;
  uint32_t connect_timeout_ms;
  const char *auth_token;
  const char *listen_address;
  const char *advertise_address;
  const char *auth_token_file;
} comm_config_v2;

/* Two pages: the first readable and writable, the second PROT_NONE. */
static unsigned char *guarded_pages(size_t *page_out) {
  long page = sysconf(_SC_PAGESIZE);
  unsigned char *base;
  if (page <= 0) return NULL;
  base = (unsigned char *)mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == (unsigned char *)MAP_FAILED) return NULL;
  if (mprotect(base + page, (size_t)page, PROT_NONE) != 0) {
    munmap(base, 2 * (size_t)page);
    return NULL;
  }
  *page_out = (size_t)page;
  return base;
}

/* Copies `size` bytes to the end of the readable page: the next byte is unreadable. */
static void *at_page_end(unsigned char *base, size_t page, const void *bytes, size_t size) {
  unsigned char *dst = base + page - size;
  memcpy(dst, bytes, size);
  return dst;
}

static int contains(const char *haystack, const char *needle) {
  return haystack != NULL && strstr(haystack, needle) != NULL;
}

static void check_refused_sizes(const char *address) {
  const size_t sizes[] = {0, 1, sizeof(comm_config_v1) - 1, sizeof(qcclCommConfig_t) + 1,
                          sizeof(qcclCommConfig_t) + 64};
  size_t i;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
    qcclComm_t *comm = NULL;
    cc.master_address = address;
    cc.struct_size = sizes[i];
    CHECK(qcclCommCreate(&cc, &comm) == qcclInvalidArgument);
    CHECK(comm == NULL);
    CHECK(contains(qcclGetLastError(), "qcclCommCreate"));
    CHECK(contains(qcclGetLastError(), "struct_size"));
  }
}

int main(void) {
  size_t page = 0;
  unsigned char *pages = guarded_pages(&page);
  master_config_v1 mc;
  comm_config_v1 cc;
  qcclMaster_t *master = NULL;
  qcclComm_t *comm = NULL;
  uint16_t port = 0;
  char address[64];
  int64_t world = 0;

  if (pages == NULL) {
    perror("config_layout_test: mmap/mprotect");
    return 1;
  }
  /* The first layouts are a prefix of the current ones (the test is only meaningful then). */
  CHECK(sizeof(master_config_v1) <= sizeof(qcclMasterConfig_t));
  CHECK(offsetof(master_config_v1, auth_token) == offsetof(qcclMasterConfig_t, auth_token));
  CHECK(sizeof(comm_config_v1) <= sizeof(qcclCommConfig_t));
  CHECK(offsetof(comm_config_v1, auth_token) == offsetof(qcclCommConfig_t, auth_token));

  memset(&mc, 0, sizeof mc);
  mc.struct_size = sizeof mc;
  mc.listen_address = "127.0.0.1:0";
  CHECK(qcclMasterCreate((const qcclMasterConfig_t *)at_page_end(pages, page, &mc, sizeof mc),
                         &master) == qcclSuccess);
  if (master == NULL) return 1;
  CHECK(qcclMasterStart(master) == qcclSuccess);
  CHECK(qcclMasterGetPort(master, &port) == qcclSuccess);
  snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)port);

  check_refused_sizes(address);

  memset(&cc, 0, sizeof cc);
  cc.struct_size = sizeof cc;
  cc.master_address = address;
  cc.connect_timeout_ms = 20000;
  CHECK(qcclCommCreate((const qcclCommConfig_t *)at_page_end(pages, page, &cc, sizeof cc),
                       &comm) == qcclSuccess);
  if (comm != NULL) {
    CHECK(qcclConnect(comm) == qcclSuccess);
    CHECK(qcclGetAttribute(comm, QCCL_ATTR_GROUP_WORLD_SIZE, &world) == qcclSuccess);
    CHECK(world == 1);
    CHECK(qcclCommDestroy(comm) == qcclSuccess);
  }

  /* The layout before op_timeout_ms: no op timeout (its byte would lie past the guard). */
  {
    comm_config_v2 v2;
    uint32_t op_timeout = 1;
    memset(&v2, 0, sizeof v2);
    v2.struct_size = sizeof v2;
    v2.master_address = address;
    comm = NULL;
    CHECK(sizeof(comm_config_v2) <= offsetof(qcclCommConfig_t, op_timeout_ms));
    CHECK(qcclCommCreate((const qcclCommConfig_t *)at_page_end(pages, page, &v2, sizeof v2),
                         &comm) == qcclSuccess);
    if (comm != NULL) {
      CHECK(qcclCommGetOpTimeout(comm, &op_timeout) == qcclSuccess);
      CHECK(op_timeout == 0);
      CHECK(qcclCommDestroy(comm) == qcclSuccess);
    }
  }

  /* The current layout, with the current size, still works (next to the guard too). */
  {
    qcclCommConfig_t now = QCCL_COMM_CONFIG_INIT;
    comm = NULL;
    now.master_address = address;
    now.connect_timeout_ms = 20000;
    CHECK(qcclCommCreate((const qcclCommConfig_t *)at_page_end(pages, page, &now, sizeof now),
                         &comm) == qcclSuccess);
    if (comm != NULL) {
      CHECK(qcclConnect(comm) == qcclSuccess);
      CHECK(qcclCommDestroy(comm) == qcclSuccess);
    }
  }

  CHECK(qcclMasterDestroy(master) == qcclSuccess);
  munmap(pages, 2 * page);
  if (failures == 0) printf("config_layout_test: ok\n");
  return failures == 0 ? 0 : 1;
}
