/*
 * churn_demo: the quick-start job. A local master and several peer processes all-reduce in a
 * loop; one peer is killed with SIGKILL mid-run and a new one joins; every result is checked.
 *
 *   churn_demo [--peers N] [--steps S] [--count C]
 *
 * The driver (this process without --peer) embeds the master, starts N peers (this binary
 * with --peer I), relays their progress lines, kills peer N-1 at step S/3 and starts peer N
 * at step 2S/3. Peer I contributes 2^I to every element, so each sum names the peers that
 * took part: it must have exactly world_size bits set, all of launched peers, and every
 * element of the buffer must be equal. Each step the peers also agree on the step number
 * (a Max all-reduce), so a newcomer falls into step, and they admit pending peers when
 * qcclArePeersPending says so.
 *
 * Shared state: every peer keeps a 16 MiB "model" that it updates from each step's result, and
 * syncs it with qcclSyncSharedState every step (revision = step). Peers that were there all
 * along hold identical bytes, so their syncs move nothing (rx 0 is checked); the newcomer
 * syncs with qcclSyncReceiveOnly and downloads the model from all the others at once, after
 * which its syncs must move nothing either. Exit status 0 means every result every peer saw
 * was right.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <qccl/qccl.h>

#define MAX_PEERS 16

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int popcount64(uint64_t x) {
  int n = 0;
  for (; x; x &= x - 1) ++n;
  return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Peer                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static int check(qcclResult_t r, const char *what, int index) {
  if (r == qcclSuccess) return 1;
  printf("[peer %d] %s failed: %s (%s)\n", index, what, qcclGetErrorString(r), qcclGetLastError());
  return 0;
}

/* Shared-state sync with retry on qcclPeerLost (a peer holding the state was lost). */
static qcclResult_t sync_retry(qcclComm_t *c, qcclSharedState_t *st, qcclSyncStrategy_t strategy,
                               qcclSyncInfo_t *info, int index) {
  for (;;) {
    qcclResult_t r = qcclSyncSharedState(c, st, strategy, info);
    if (r != qcclPeerLost) return r;
    printf("[peer %d] a peer was lost during the state sync; retrying\n", index);
  }
}

/* All-reduce with retry on qcclPeerLost (the ring is already rebuilt when it returns). */
static qcclResult_t reduce_retry(const void *send, void *recv, qcclReduceDesc_t *d, qcclComm_t *c,
                                 qcclReduceInfo_t *info, int index, int *retries) {
  for (;;) {
    qcclResult_t r = qcclAllReduce(send, recv, d, c, info);
    if (r != qcclPeerLost) return r;
    ++*retries;
    printf("[peer %d] a peer was lost during the all-reduce; retrying with the survivors\n", index);
  }
}

static int run_peer(const char *master, int index, int steps, size_t count) {
  qcclCommConfig_t cc = QCCL_COMM_CONFIG_INIT;
  cc.master_address = master;
  cc.connect_timeout_ms = 60000;
  qcclComm_t *comm = NULL;
  if (!check(qcclCommCreate(&cc, &comm), "qcclCommCreate", index)) return 2;
  printf("[peer %d] connecting to the master at %s\n", index, master);
  if (!check(qcclConnect(comm), "qcclConnect", index)) return 2;
  int64_t world = 0;
  qcclGetAttribute(comm, QCCL_ATTR_GROUP_WORLD_SIZE, &world);
  printf("[peer %d] admitted; world size %lld\n", index, (long long)world);

  float *send = malloc(count * sizeof(float));
  float *recv = malloc(count * sizeof(float));
  for (size_t i = 0; i < count; ++i) send[i] = (float)(1u << index);
  /* The shared state: a model (zeros until the first sync) and the step it belongs to. */
  size_t model_count = 4u << 20;
  float *model = calloc(model_count, sizeof(float));
  int64_t model_step = 0;
  qcclTensorInfo_t tensors[2] = {{"model", model, model_count, qcclFloat32, 0},
                                 {"model_step", &model_step, 1, qcclInt64, 0}};
  qcclSharedState_t state = {0, 2, tensors};
  int synced_once = 0;
  int64_t step = 0;
  int retries = 0, bad = 0, ok_steps = 0;
  while (step < steps) {
    /* The loop head, the same for a newcomer: qcclAdmitPending, then wait (at most a minute)
     * for a second peer if this one is alone (docs/call-order.md). */
    int admitted = 0;
    if (!check(qcclAdmitPending(comm, &admitted), "qcclAdmitPending", index)) break;
    if (admitted) {
      qcclGetAttribute(comm, QCCL_ATTR_GROUP_WORLD_SIZE, &world);
      printf("[peer %d] admitted the waiting peers; world size %lld\n", index, (long long)world);
    }
    if (!check(qcclWaitForWorld(comm, 2, 60000), "qcclWaitForWorld", index)) break;
    /* Agree on the step, so that a newcomer falls into step with the others. */
    int64_t my_step = step, agreed = 0;
    qcclReduceDesc_t sd = {1, qcclInt64, qcclMax, 1, {qcclQuantNone, qcclInt64}};
    qcclReduceInfo_t info;
    qcclResult_t r = reduce_retry(&my_step, &agreed, &sd, comm, &info, index, &retries);
    if (r == qcclTooFewPeers) continue;
    if (!check(r, "qcclAllReduce(step)", index)) break;
    step = agreed;
    /* Sync the shared state (revision = step): the newcomer receives it, the others agree. */
    qcclSyncInfo_t sinfo;
    state.revision = (uint64_t)step;
    double s0 = now_ms();
    /* A peer joining a run in progress knows its state is stale: receive-only. */
    int joining = !synced_once && step > 0;
    r = sync_retry(comm, &state, joining ? qcclSyncReceiveOnly : qcclSyncEnforcePopular, &sinfo,
                   index);
    if (!check(r, "qcclSyncSharedState", index)) break;
    if (!synced_once && sinfo.rx_bytes > 0) {
      printf("[peer %d] state: downloaded %.1f MiB of shared state (revision %llu) in %.1f ms\n",
             index, sinfo.rx_bytes / 1048576.0, (unsigned long long)state.revision,
             now_ms() - s0);
    } else if (synced_once && sinfo.rx_bytes != 0) {
      printf("[peer %d] state: WRONG: received %llu bytes although its state should be "
             "identical\n", index, (unsigned long long)sinfo.rx_bytes);
      ++bad;
    }
    if (sinfo.tx_bytes > 0) {
      printf("[peer %d] state: served %.1f MiB to a newcomer\n", index, sinfo.tx_bytes / 1048576.0);
    }
    synced_once = 1;
    qcclReduceDesc_t d = {count, qcclFloat32, qcclSum, 0, {qcclQuantNone, qcclFloat32}};
    double t0 = now_ms();
    r = reduce_retry(send, recv, &d, comm, &info, index, &retries);
    if (r == qcclTooFewPeers) continue;
    if (!check(r, "qcclAllReduce", index)) break;
    double ms = now_ms() - t0;
    uint64_t sum = (uint64_t)recv[0];
    int same = 1;
    for (size_t i = 1; i < count; ++i) same &= recv[i] == recv[0];
    int good = same && (double)sum == recv[0] && popcount64(sum) == (int)info.world_size;
    if (!good) ++bad;
    else ++ok_steps;
    /* Advance the model deterministically from the (bit-identical) result. */
    for (size_t i = 0; i < model_count; ++i) model[i] = model[i] * 0.5f + recv[0] * (float)(i % 7);
    model_step = step + 1;
    printf("[peer %d] step %3lld: world %u, sum 0b", index, (long long)step, info.world_size);
    for (int b = MAX_PEERS - 1; b >= 0; --b) {
      if (sum >> b) putchar((sum >> b) & 1 ? '1' : '0');
    }
    printf(" (%s), %.1f ms\n", good ? "verified" : "WRONG", ms);
    ++step;
  }
  printf("[peer %d] done: %d verified steps, %d wrong, %d retries after peer loss\n", index,
         ok_steps, bad, retries);
  free(send);
  free(recv);
  free(model);
  qcclCommDestroy(comm);
  return bad == 0 && step >= steps ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Driver                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
  pid_t pid;
  int out_fd; /* read end of the peer's stdout */
  int index;
  int killed;
  int exited;
  int status;
  char buf[4096];
  size_t len;
} Child;

static int spawn_peer(Child *c, const char *self, const char *master, int index, int steps,
                      size_t count) {
  int fds[2];
  if (pipe(fds) != 0) return 0;
  pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    char idx[16], st[16], cnt[32];
    snprintf(idx, sizeof idx, "%d", index);
    snprintf(st, sizeof st, "%d", steps);
    snprintf(cnt, sizeof cnt, "%zu", count);
    setenv("QCCL_LOG_LEVEL", "warn", 1);
    execl(self, self, "--peer", idx, "--master", master, "--steps", st, "--count", cnt, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  memset(c, 0, sizeof *c);
  c->pid = pid;
  c->out_fd = fds[0];
  c->index = index;
  return 1;
}

/* Relays complete lines; returns the highest step number seen in them (or -1). */
static long relay(Child *c) {
  long best = -1;
  ssize_t n = read(c->out_fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
  if (n <= 0) {
    close(c->out_fd);
    c->out_fd = -1;
    return best;
  }
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  char *start = c->buf, *nl;
  while ((nl = strchr(start, '\n')) != NULL) {
    *nl = '\0';
    printf("%s\n", start);
    const char *s = strstr(start, " step ");
    if (s) best = strtol(s + 6, NULL, 10) > best ? strtol(s + 6, NULL, 10) : best;
    start = nl + 1;
  }
  c->len = strlen(start);
  memmove(c->buf, start, c->len);
  return best;
}

static int run_driver(const char *self, int npeers, int steps, size_t count) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  qcclMasterConfig_t mc = QCCL_MASTER_CONFIG_INIT;
  mc.listen_address = "127.0.0.1:0";
  mc.heartbeat_interval_ms = 200;
  mc.peer_timeout_ms = 2000;
  mc.vote_timeout_ms = 20000;
  qcclMaster_t *master = NULL;
  if (qcclMasterCreate(&mc, &master) != qcclSuccess || qcclMasterStart(master) != qcclSuccess) {
    fprintf(stderr, "churn_demo: cannot start the master: %s\n", qcclGetLastError());
    return 2;
  }
  uint16_t port = 0;
  qcclMasterGetPort(master, &port);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
  printf("[demo] master listening on %s; starting %d peers, %d steps of %zu floats\n", addr, npeers,
         steps, count);

  Child kids[MAX_PEERS];
  int nkids = 0;
  for (int i = 0; i < npeers; ++i) {
    if (!spawn_peer(&kids[nkids], self, addr, i, steps, count)) return 2;
    ++nkids;
  }
  int killed = 0, joined = 0;
  double deadline = now_ms() + 300000.0; /* the whole run is bounded */
  for (;;) {
    struct pollfd pfd[MAX_PEERS];
    int map[MAX_PEERS], n = 0;
    for (int i = 0; i < nkids; ++i) {
      if (kids[i].out_fd >= 0) {
        pfd[n].fd = kids[i].out_fd;
        pfd[n].events = POLLIN;
        map[n++] = i;
      }
    }
    if (n == 0) break;
    if (now_ms() > deadline) {
      printf("[demo] the run took too long; stopping it\n");
      break;
    }
    int pr = poll(pfd, (nfds_t)n, 1000);
    if (pr < 0 && errno != EINTR) break;
    for (int k = 0; k < n; ++k) {
      if (!(pfd[k].revents & (POLLIN | POLLHUP))) continue;
      long step = relay(&kids[map[k]]);
      if (!killed && step >= steps / 3) {
        Child *victim = &kids[npeers - 1];
        printf("[demo] step %ld: kill -9 peer %d (pid %d)\n", step, victim->index, (int)victim->pid);
        kill(victim->pid, SIGKILL);
        victim->killed = 1;
        killed = 1;
      }
      if (killed && !joined && step >= 2 * steps / 3 && nkids < MAX_PEERS) {
        printf("[demo] step %ld: starting a new peer %d\n", step, npeers);
        if (spawn_peer(&kids[nkids], self, addr, npeers, steps, count)) ++nkids;
        joined = 1;
      }
    }
  }
  int failures = 0;
  for (int i = 0; i < nkids; ++i) {
    /* Bounded reap: a peer still running now is ended. */
    int status = 0;
    double until = now_ms() + 10000.0;
    pid_t r;
    while ((r = waitpid(kids[i].pid, &status, WNOHANG)) == 0 && now_ms() < until) {
      struct timespec ts = {0, 20 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    if (r == 0) {
      kill(kids[i].pid, SIGKILL);
      waitpid(kids[i].pid, &status, 0);
    }
    int ok = kids[i].killed ? 1 : (WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!ok) ++failures;
    printf("[demo] peer %d: %s\n", kids[i].index,
           kids[i].killed ? "killed as planned"
                          : ok ? "finished, every result verified" : "FAILED");
  }
  qcclMasterDestroy(master);
  if (failures == 0 && killed && joined) {
    printf("[demo] OK: every step's result was verified on every peer; one peer was killed and "
           "one joined mid-run\n");
    return 0;
  }
  printf("[demo] FAILED (%d peer(s) reported errors)\n", failures);
  return 1;
}

int main(int argc, char **argv) {
  int peer = -1, npeers = 4, steps = 45;
  size_t count = (size_t)1 << 22;
  const char *master = NULL;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--peer") && i + 1 < argc) peer = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--master") && i + 1 < argc) master = argv[++i];
    else if (!strcmp(argv[i], "--peers") && i + 1 < argc) npeers = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = (size_t)atol(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--peers N] [--steps S] [--count C]\n", argv[0]);
      return 2;
    }
  }
  if (npeers < 3 || npeers >= MAX_PEERS - 1 || steps < 6 || count < 1) {
    fprintf(stderr, "churn_demo: need 3 <= peers < %d, steps >= 6, count >= 1\n", MAX_PEERS - 1);
    return 2;
  }
  if (peer >= 0 && master) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    return run_peer(master, peer, steps, count);
  }
  signal(SIGPIPE, SIG_IGN);
  return run_driver(argv[0], npeers, steps, count);
}
