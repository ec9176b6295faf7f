/*
 * qccl: fault-tolerant collective communication over ordinary IP networks.
 *
 * The whole public API, in C99. Conventions:
 *  - every function returns qcclResult_t; outputs come last;
 *  - pointer arguments must be non-NULL unless marked QCCL_NULLABLE;
 *  - on failure, qcclGetLastError() returns a message saying what failed and why;
 *  - no function ever ends the process, and no wait is unbounded except qcclConnect with
 *    connect_timeout_ms == 0 and qcclMasterWait;
 *  - addresses are "host:port" strings, IPv6 as "[::1]:port"; port 0 means "pick a free port".
 *
 * Threading: a qcclComm_t may be used from several threads; asynchronous all-reduces with
 * different tags may be issued and awaited from different threads. Control calls
 * (qcclUpdateTopology, qcclArePeersPending, qcclOptimizeTopology, qcclSyncSharedState) return
 * qcclInvalidUsage while operations are in flight on the communicator.
 *
 * See docs/c_api.md for a guided tour and docs/errors.md for what each result means.
 */
#ifndef QCCL_QCCL_H_
#define QCCL_QCCL_H_

#include <stddef.h>
#include <stdint.h>

#include "qccl/qccl_export.h"
#include "qccl/qccl_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes. Values may be appended before qcclNumResults, never renumbered. */
typedef enum {
  qcclSuccess = 0,
  qcclInvalidArgument,   /* NULL where not allowed, bad enum, bad size, malformed address    */
  qcclInvalidUsage,      /* call not legal now: not connected, ops in flight, already started */
  qcclMasterUnreachable, /* cannot reach the master, or the master connection was lost        */
  qcclPeerLost,          /* a peer left or failed during the operation; the operation failed  */
                         /* on every surviving peer and may be retried at once                 */
  qcclTooFewPeers,       /* the peer group has fewer than 2 accepted peers                     */
  qcclTimeout,           /* a documented deadline passed                                        */
  qcclKicked,            /* the master expelled this peer; qcclGetLastError() says why          */
  qcclMismatch,          /* peers disagreed about an operation (count, dtype, op, quantization) */
                         /* it was rejected on every peer                                       */
  qcclAuthFailed,        /* wrong or missing shared secret                                      */
  qcclAborted,           /* cancelled locally, by qcclCommAbort or qcclCommDestroy              */
  qcclInternalError,     /* a bug in qccl; the message says where                               */
  qcclNumResults
} qcclResult_t;

/* Writes QCCL_VERSION_CODE of the library actually linked (which may differ from the header). */
QCCL_API qcclResult_t qcclGetVersion(int *version_code);

/* Static text for a result code; never NULL (unknown codes give "unknown result"). */
QCCL_API const char *qcclGetErrorString(qcclResult_t result);

/* Detail of the last failure on the calling thread ("" if none). Valid until the next qccl
 * call on this thread. */
QCCL_API const char *qcclGetLastError(void);

typedef enum {
  qcclUint8, qcclInt8, qcclUint16, qcclInt16, qcclUint32, qcclInt32,
  qcclUint64, qcclInt64, qcclFloat16, qcclBFloat16, qcclFloat32, qcclFloat64,
  qcclNumDataTypes
} qcclDataType_t;

typedef enum { qcclSum, qcclAvg, qcclProd, qcclMax, qcclMin, qcclNumRedOps } qcclRedOp_t;

typedef enum { qcclQuantNone, qcclQuantMinMax, qcclQuantZeroPointScale } qcclQuantAlgorithm_t;

/* ------------------------------------------------------------------------------------------ */
/* Master                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct qcclMaster qcclMaster_t;

typedef struct {
  size_t struct_size;             /* set by QCCL_MASTER_CONFIG_INIT; lets fields be appended    */
  const char *listen_address;     /* "0.0.0.0:PORT" style; port 0 = ephemeral                   */
  uint32_t heartbeat_interval_ms; /* 0 = default (1000 ms)                                      */
  uint32_t peer_timeout_ms;       /* a peer silent this long is expelled; 0 = default (10000)   */
  QCCL_NULLABLE const char *auth_token; /* shared secret; NULL = no authentication             */
  /* Appended: a vote or collective that some accepted peer of the group does not join within
   * this time ends with that peer expelled as a straggler; 0 = default (60000 ms). */
  uint32_t vote_timeout_ms;
  /* Appended: bandwidth probes of qcclOptimizeTopology (docs/topology.md). probe_ms is the
   * measured transfer per link, 1..60000; 0 = default (250 ms). A link measured less than
   * probe_max_age_ms ago is not probed again; 0 = default (600000 ms = 10 min). */
  uint32_t probe_ms;
  uint32_t probe_max_age_ms;
  /* Appended: 1 = a standby (docs/reliability.md §8): it starts no run of its own (peers that
   * register wait), and takes over the run of peers that lost their master and list this one
   * after it in master_address. 0 = an ordinary master. (64 bits wide so that it lies past the
   * tail padding of the previous layout, which older callers leave undefined.) */
  uint64_t standby;
  /* Appended: for this many ms after qcclMasterStart no new run is started (peers that
   * register wait), so that the peers of a run whose master this one replaces on the same
   * address resume it first (docs/reliability.md §8); then waiting registrations start a run.
   * 0 = none. */
  uint32_t resume_grace_ms;
  /* Appended: with an auth_token, every connection is encrypted (QCCL_ENCRYPTION_DEFAULT:
   * unless $QCCL_ENCRYPTION is "off"; _ON) or only authenticated (QCCL_ENCRYPTION_OFF); every
   * peer and the master must agree,
   * else the connection is refused with qcclAuthFailed (docs/security.md). 64 bits wide so
   * that it lies past the tail padding of the previous layout. */
  uint64_t encryption;
} qcclMasterConfig_t;
#define QCCL_MASTER_CONFIG_INIT \
  { sizeof(qcclMasterConfig_t), "0.0.0.0:0", 0, 0, NULL, 0, 0, 0, 0, 0, 0 }

/* qcclMasterConfig_t.encryption and qcclCommConfig_t.encryption (docs/security.md). */
#define QCCL_ENCRYPTION_DEFAULT 0 /* on whenever a secret is set, unless $QCCL_ENCRYPTION=off */
#define QCCL_ENCRYPTION_ON 1      /* on whenever a secret is set, whatever the environment    */
#define QCCL_ENCRYPTION_OFF 2     /* authentication only: the traffic crosses in clear         */

/* Creates a master (not yet listening). Copies every string of the config.
 * qcclInvalidArgument: NULL pointer, bad struct_size, malformed listen address. */
QCCL_API qcclResult_t qcclMasterCreate(const qcclMasterConfig_t *config, qcclMaster_t **master_out);
/* Binds and starts serving on a background thread; returns at once.
 * qcclInvalidUsage: already started. qcclInvalidArgument: the address cannot be bound. */
QCCL_API qcclResult_t qcclMasterStart(qcclMaster_t *master);
/* The bound port (after qcclMasterStart). qcclInvalidUsage: not started. */
QCCL_API qcclResult_t qcclMasterGetPort(const qcclMaster_t *master, uint16_t *port_out);
/* Asks the master to stop; returns at once. Safe from any thread, but not from a signal
 * handler (it takes a lock): to stop on a signal, block the signal and call this from a thread
 * that waits for it with sigwait(), as qccl-master does. */
QCCL_API qcclResult_t qcclMasterStop(qcclMaster_t *master);
/* Blocks until the master has stopped. */
QCCL_API qcclResult_t qcclMasterWait(qcclMaster_t *master);
/* Stops (if running), waits and frees. */
QCCL_API qcclResult_t qcclMasterDestroy(qcclMaster_t *master);

/* ------------------------------------------------------------------------------------------ */
/* Communicator (one peer)                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct qcclComm qcclComm_t;

typedef struct {
  size_t struct_size;             /* set by QCCL_COMM_CONFIG_INIT                               */
  const char *master_address;     /* "host:port"                                                */
  uint32_t peer_group;            /* collectives span one group only                           */
  uint32_t connections_per_peer;  /* TCP connections to each ring neighbour, at most 64;       *
                                   * 0 = automatic: 16 to another host, 2 over loopback        */
  uint32_t connect_timeout_ms;    /* for qcclConnect; 0 = wait forever                          */
  QCCL_NULLABLE const char *auth_token;
  /* Appended: addressing on real hosts (docs/deployment.md). Each NULL field falls back to its
   * environment variable, then to the default; an explicit setting wins over the environment.
   * listen_address: the one data listener every peer-to-peer connection (ring lanes, shared-
   *   state transfers, bandwidth probes) dials: "host:port" or "host:first-last", binding the
   *   first free port of the range (e.g. "0.0.0.0:29500-29563", "[::]:29500").
   *   $QCCL_LISTEN_ADDRESS; default "[::]:0": any free port, IPv4 and IPv6 (0.0.0.0 where the
   *   host has no IPv6).
   * advertise_address: the host other peers dial, "host" or "host:port" (a NAT's outside
   *   address; the port only if the NAT maps it to another). $QCCL_ADVERTISE_ADDRESS; default:
   *   the address the master sees the peer connect from, except that a peer that reaches the
   *   master over loopback is announced to each other peer at the address that peer reaches
   *   the master at.
   * auth_token_file: a file holding the shared secret (one trailing newline is ignored), as
   *   qccl-master --auth-token-file; not together with auth_token. $QCCL_AUTH_TOKEN_FILE. */
  QCCL_NULLABLE const char *listen_address;
  QCCL_NULLABLE const char *advertise_address;
  QCCL_NULLABLE const char *auth_token_file;
  /* Appended: the deadline of every operation (all-reduce, barrier, ...), in ms; 0 = the
   * environment's $QCCL_OP_TIMEOUT_MS if set, else no deadline. An operation that has not
   * completed on every peer of the group this long after the first peer started it fails on
   * every one of them with qcclTimeout (all or nothing; a peer that calls it later gets
   * qcclTimeout too); nobody is expelled. Changeable with qcclCommSetOpTimeout. See
   * docs/reliability.md. */
  uint32_t op_timeout_ms;
  /* Appended: surviving the loss of the master (docs/reliability.md, "Losing the master").
   * When the master is lost (its process ends or stops answering), an accepted peer keeps its
   * communicator and, for up to this many ms, dials master_address again, every address of it
   * in turn when it lists several ("a:48148,b:48148": an active master and standbys), until a
   * master resumes the run: a new qccl-master on the same address, or a standby. Calls made
   * meanwhile wait; operations in flight fail with qcclPeerLost (retry) unless they had
   * finished locally, which the new master commits or fails on every peer alike. Past the
   * deadline every call fails with qcclMasterUnreachable. 0 = the environment's
   * $QCCL_MASTER_RECONNECT_MS if set (0 there: do not resume), else
   * QCCL_MASTER_RECONNECT_DEFAULT_MS; QCCL_MASTER_RECONNECT_NEVER = do not resume: every call
   * fails with qcclMasterUnreachable as soon as the master is lost. */
  uint32_t master_reconnect_ms;
  /* Appended: with a shared secret (auth_token or auth_token_file), every connection of this
   * peer (to the master, ring lanes, shared-state transfers, bandwidth probes) is encrypted
   * and authenticated record by record (AES-256-GCM or ChaCha20-Poly1305; docs/security.md).
   * QCCL_ENCRYPTION_DEFAULT: on, unless $QCCL_ENCRYPTION is "off"; QCCL_ENCRYPTION_ON: on;
   * QCCL_ENCRYPTION_OFF: authentication only. Every side of a run must agree: a connection
   * between sides that differ is refused with qcclAuthFailed (no silent downgrade). */
  uint32_t encryption;
} qcclCommConfig_t;
/* qcclCommConfig_t.master_reconnect_ms */
#define QCCL_MASTER_RECONNECT_DEFAULT_MS 60000u
#define QCCL_MASTER_RECONNECT_NEVER 0xFFFFFFFFu
#define QCCL_COMM_CONFIG_INIT \
  { sizeof(qcclCommConfig_t), "127.0.0.1:0", 0, 0, 0, NULL, NULL, NULL, NULL, 0, 0, 0 }

/* Creates a communicator (not yet connected). Copies every string of the config. A config
 * from an older qccl.h (a smaller struct_size) is accepted: only the fields it has are read,
 * the others take their defaults.
 * qcclInvalidArgument: NULL pointer, bad struct_size (smaller than the first published layout
 * or larger than this library's), malformed master address. */
QCCL_API qcclResult_t qcclCommCreate(const qcclCommConfig_t *config, qcclComm_t **comm_out);
/* Registers with the master and blocks until this peer is accepted into the run and its ring
 * connections are up. The first peer of a run is accepted at once; later peers wait until the
 * accepted peers next call qcclUpdateTopology.
 * qcclMasterUnreachable, qcclTimeout (connect_timeout_ms passed), qcclAuthFailed,
 * qcclInvalidUsage (already connected), qcclKicked, qcclAborted (qcclCommAbort). */
QCCL_API qcclResult_t qcclConnect(qcclComm_t *comm);
/* Leaves the run gracefully (the others see the group shrink), ends in-flight operations with
 * qcclAborted, and frees the communicator. Returns once the master has taken the leave (at
 * most 2 s if it does not answer), so the other peers' next calls find this peer gone. No other
 * thread may be inside a call on comm (use qcclCommAbort first to end such calls, and wait for
 * them to return). */
QCCL_API qcclResult_t qcclCommDestroy(qcclComm_t *comm);
/* Cancels the communicator, from any thread: every call blocked on it (qcclConnect, the votes,
 * qcclAdmitPending, qcclWaitForWorld, operations and qcclWait on their handles,
 * qcclSyncSharedState) returns qcclAborted within milliseconds, and every later call on it
 * returns qcclAborted at once ("the communicator was aborted"); in-place buffers of the
 * aborted operations hold their input again. The peer leaves the run gracefully, as
 * qcclCommDestroy does (the master sees it leave at once; the others' operations in flight
 * fail with qcclPeerLost, and they may retry without it). Returns at once; idempotent (a no-op
 * on a communicator already aborted or expelled). qcclCommDestroy is still needed, once the
 * aborted calls have returned. Must not race with qcclCommDestroy of the same handle. */
QCCL_API qcclResult_t qcclCommAbort(qcclComm_t *comm);
/* Sets the op timeout (see qcclCommConfig_t.op_timeout_ms; 0 = no deadline) for the
 * operations this peer starts after the call; those in flight keep theirs. Any thread. The
 * master applies the smallest timeout the group's peers gave for an operation. Fails like
 * any call on a closed communicator (qcclAborted after qcclCommAbort, qcclKicked, ...). */
QCCL_API qcclResult_t qcclCommSetOpTimeout(qcclComm_t *comm, uint32_t timeout_ms);
/* *timeout_ms_out = the op timeout new operations get (0 = none). */
QCCL_API qcclResult_t qcclCommGetOpTimeout(const qcclComm_t *comm, uint32_t *timeout_ms_out);
/* Collective over all accepted peers of all groups: admits pending peers, then (re)builds the
 * connections to this peer's ring neighbours. Returns once they are up. A newly admitted peer
 * returns from qcclConnect at the same point: its next call must be the one the others make
 * next (qcclArePeersPending at a loop head is always right; see docs/call-order.md).
 * qcclInvalidUsage (out of step with the group: see below; or not connected, ops in flight,
 * another control call running), qcclKicked,
 * qcclMasterUnreachable, qcclPeerLost (the ring connections did not come up within twice the
 * peer timeout: call again). */
QCCL_API qcclResult_t qcclUpdateTopology(qcclComm_t *comm);
/* Collective vote of all accepted peers: *pending_out = 1 if peers wait to be admitted. Every
 * peer gets the same answer, except a peer admitted since its last completed call while its
 * group is already in another call (a collective, a shared-state sync, another kind of vote):
 * it gets 0 at once (the admission
 * vote it would join is the one that admitted it). qcclInvalidUsage, qcclKicked,
 * qcclMasterUnreachable. */
QCCL_API qcclResult_t qcclArePeersPending(qcclComm_t *comm, int *pending_out);
/* Collective over all accepted peers of all groups: the master has the links of each group
 * that it has no recent measurement for probed (short timed transfers on
 * connections_per_peer connections, disjoint pairs in parallel), then gives each group the
 * ring that maximises its slowest link's bandwidth (then the sum), and logs it with the
 * expected bottleneck. Returns once this peer's connections on the new ring are up; the next
 * collective uses it (QCCL_ATTR_RING_RANK and, if the ring changed, QCCL_ATTR_EPOCH change). A
 * peer that no ring of reachable links can include is expelled (qcclKicked). Does not admit
 * pending peers. Errors as qcclUpdateTopology. See docs/topology.md. */
QCCL_API qcclResult_t qcclOptimizeTopology(qcclComm_t *comm);

/* Out of step: a vote, a collective and a shared-state sync each wait for every peer they
 * concern. When the peers of a group make calls that can never meet (a vote while the others
 * run a collective, two kinds of vote, a sync while the others vote...), the master keeps the
 * phase that a settled peer entered first and answers the other calls at once with
 * qcclInvalidUsage; qcclGetLastError() names what the group is doing. Nobody is expelled and
 * the caller may call again (the right call this time). docs/call-order.md has the model. */

/* The loop head of a training loop: qcclArePeersPending, then qcclUpdateTopology if peers are
 * pending. *admitted_out (NULLABLE) = 1 if peers were admitted. Errors as the two calls. */
QCCL_API qcclResult_t qcclAdmitPending(qcclComm_t *comm, QCCL_NULLABLE int *admitted_out);
/* Start-up: repeats qcclAdmitPending (asking every 50 ms while nobody is pending) until this
 * peer's group has at least min_size accepted peers (QCCL_ATTR_GROUP_WORLD_SIZE). Every peer,
 * the first ones and later joiners alike, may call it after qcclConnect. timeout_ms = 0 waits
 * without a deadline; otherwise qcclTimeout once timeout_ms passed (checked between votes; a
 * vote in progress ends within the master's vote timeout). qcclInvalidArgument (min_size < 1),
 * and the errors of qcclAdmitPending. */
QCCL_API qcclResult_t qcclWaitForWorld(qcclComm_t *comm, int64_t min_size, uint32_t timeout_ms);

typedef enum {
  QCCL_ATTR_GLOBAL_WORLD_SIZE = 1, /* accepted peers, all groups                                */
  QCCL_ATTR_GROUP_WORLD_SIZE,      /* accepted peers in this peer's group                       */
  QCCL_ATTR_NUM_GROUPS,
  QCCL_ATTR_LARGEST_GROUP_SIZE,
  QCCL_ATTR_RING_RANK,             /* this peer's position in its group's ring                 */
  QCCL_ATTR_EPOCH,                 /* membership generation; grows at every change              */
  QCCL_ATTR_PEER_ID                /* this peer's id: stable for the run, never reused; the     *
                                    * master's log lines name peers by it                      */
} qcclAttribute_t;
/* Reads an attribute as of the last membership update this peer has seen.
 * qcclInvalidArgument: unknown attribute. qcclInvalidUsage: not connected. */
QCCL_API qcclResult_t qcclGetAttribute(const qcclComm_t *comm, qcclAttribute_t attr,
                                       int64_t *value_out);

/* One peer of this peer's group, as qcclGetPeers lists it. */
typedef struct {
  uint64_t peer_id;               /* QCCL_ATTR_PEER_ID of that peer                              */
  uint32_t ring_rank;             /* its position in the ring                                   */
  char address[280];              /* "host:port" others dial it at (NUL-terminated)              */
} qcclPeerInfo_t;
/* The peers of this peer's group in ring order (itself included), as of the last membership
 * update it has seen: up to `capacity` entries into `peers` (NULLABLE when capacity is 0);
 * *count_out = the group's size, which may exceed capacity (then call again with more room).
 * qcclInvalidUsage: not connected. */
QCCL_API qcclResult_t qcclGetPeers(const qcclComm_t *comm, QCCL_NULLABLE qcclPeerInfo_t *peers,
                                   size_t capacity, size_t *count_out);

/* Where this peer's operations spent their time (docs/performance.md, "Where the time goes"):
 * sums over every operation of any kind that ended (committed or failed) since the
 * communicator was created; read before and after a run of operations and subtract. An
 * operation's wall time splits into three consecutive spans: waiting for the ring's
 * connections of its group epoch, the data exchange, and the commit round with the master.
 * Concurrent operations each count their own spans. Nanoseconds. */
typedef struct {
  uint64_t ops;                   /* operations that ended                                      */
  uint64_t wait_ring_ns;          /* started -> this peer's lanes of the op's epoch were up     */
  uint64_t data_ns;               /* lanes up -> every frame received and sent                  */
  uint64_t commit_ns;             /* frames done -> the master's verdict (all or nothing)       */
  uint64_t frame_work_ns;         /* within data_ns: taking frames in (reduce, decode, forward)  */
  uint64_t thread_cpu_ns;         /* CPU time (user + system) of the communicator's I/O thread  */
  uint64_t tx_bytes, rx_bytes;    /* data bytes sent and received by those operations           */
} qcclStats_t;
/* Fills *stats_out. Works in any state of the communicator. */
QCCL_API qcclResult_t qcclGetStats(const qcclComm_t *comm, qcclStats_t *stats_out);

/* ------------------------------------------------------------------------------------------ */
/* All-reduce                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* How the payload travels (docs/quantization.md). MinMax / ZeroPointScale: from float32,
 * float64, float16 or bfloat16 to uint8, int8, uint16 or int16, with statistics per block of
 * 2048 elements; ops Sum, Avg, Min, Max. qcclQuantNone with a floating quantized_dtype
 * narrower than dtype (float32 -> bfloat16/float16, float64 -> float32/bfloat16/float16):
 * a plain down-cast on the wire, every op (a wider or equally wide float is refused).
 * qcclQuantNone with a non-float quantized_dtype, or with an integer dtype, sends the source
 * type (so a zeroed struct means "no quantization"). */
typedef struct {
  qcclQuantAlgorithm_t algorithm; /* qcclQuantNone = send the source type (or down-cast)        */
  qcclDataType_t quantized_dtype; /* the type on the wire                                      */
} qcclQuantization_t;

typedef struct {
  size_t count;                   /* elements                                                  */
  qcclDataType_t dtype;
  qcclRedOp_t op;
  uint64_t tag;                   /* distinguishes concurrent operations; equal on all peers   */
  qcclQuantization_t quantization;
} qcclReduceDesc_t;

typedef struct {
  uint32_t world_size;            /* peers whose contributions are in the result               */
  uint64_t tx_bytes, rx_bytes;    /* bytes this peer sent and received for the operation       */
} qcclReduceInfo_t;

typedef struct qcclOp qcclOp_t;   /* handle of an asynchronous operation                        */

/* All-reduce of desc->count elements over the accepted peers of this peer's group. In place
 * when sendbuf == recvbuf. All or nothing: on failure the operation failed on every peer,
 * sendbuf is untouched and an in-place buffer holds its input again; out-of-place recvbuf
 * contents are then unspecified. Every peer that succeeds holds byte-identical results.
 * qcclInvalidArgument (bad desc, unsupported quantization), qcclInvalidUsage (not
 * connected), qcclTooFewPeers, qcclPeerLost (retry at once), qcclMismatch, qcclTimeout (the
 * op timeout passed: failed on every peer, retry at once), qcclKicked, qcclMasterUnreachable,
 * qcclAborted. */
QCCL_API qcclResult_t qcclAllReduce(const void *sendbuf, void *recvbuf,
                                    const qcclReduceDesc_t *desc, qcclComm_t *comm,
                                    QCCL_NULLABLE qcclReduceInfo_t *info_out);
/* Starts an all-reduce and returns at once; the buffers must stay valid until qcclWait.
 * qcclInvalidUsage: another operation with the same tag is in flight. */
QCCL_API qcclResult_t qcclAllReduceAsync(const void *sendbuf, void *recvbuf,
                                         const qcclReduceDesc_t *desc, qcclComm_t *comm,
                                         qcclOp_t **op_out);
/* *done_out = 1 once the operation finished (qcclWait then returns at once). */
QCCL_API qcclResult_t qcclTest(qcclOp_t *op, int *done_out);
/* Waits for the operation, returns its result and frees the handle. */
QCCL_API qcclResult_t qcclWait(qcclOp_t *op, QCCL_NULLABLE qcclReduceInfo_t *info_out);

typedef struct {
  const void *sendbuf;
  void *recvbuf;
  qcclReduceDesc_t desc;
} qcclReduceOp_t;
/* Runs all ops, up to max_in_flight at once (tags must differ); retries those that fail with
 * qcclPeerLost until every op succeeded or the group fell below 2 peers (then qcclTooFewPeers).
 * info_out (NULLABLE) receives the world size of the last op and the summed byte counts. */
QCCL_API qcclResult_t qcclAllReduceMultipleWithRetry(const qcclReduceOp_t *ops, size_t num_ops,
                                                     qcclComm_t *comm, int max_in_flight,
                                                     QCCL_NULLABLE qcclReduceInfo_t *info_out);

/* ------------------------------------------------------------------------------------------ */
/* Broadcast, all-gather, reduce-scatter, barrier                                             */
/* ------------------------------------------------------------------------------------------ */

/* What an operation covered. Set peer_ids (NULLABLE) to room for peer_ids_capacity ids before
 * the call; on success the first min(world_size, peer_ids_capacity) entries are the
 * participants' peer ids (QCCL_ATTR_PEER_ID) in ring order: the order of an all-gather's
 * blocks and of a reduce-scatter's block assignment. On failure world_size is 0. */
typedef struct {
  uint32_t world_size;            /* peers that took part                                       */
  uint64_t epoch;                 /* the group epoch it ran in (QCCL_ATTR_EPOCH then)            */
  uint64_t tx_bytes, rx_bytes;    /* bytes this peer sent and received for the operation       */
  QCCL_NULLABLE uint64_t *peer_ids;
  size_t peer_ids_capacity;
} qcclOpInfo_t;

/* Every operation below runs over the accepted peers of this peer's group, like qcclAllReduce,
 * with the same guarantees: all or nothing (on failure it failed on every peer, inputs are
 * untouched and a buffer that is both input and output holds its input again); every peer
 * calls it with the same tag, kind and descriptor (or all get qcclMismatch); qcclPeerLost
 * means the ring was rebuilt, retry at once; a group of fewer than 2 peers gives
 * qcclTooFewPeers. Each has an ...Async form returning a qcclOp_t for qcclTest / qcclWait /
 * qcclWaitInfo (buffers valid until then). Errors as qcclAllReduce. docs/c_api.md has each
 * one's details. */

/* Broadcast of count elements from the peer whose QCCL_ATTR_PEER_ID is root_peer_id (a stable
 * id, unlike a ring rank, so a retry after churn sends the same data) into buf on every other
 * peer, pipelined along the ring. A root that is not in the group fails it on every peer with
 * qcclInvalidArgument. */
QCCL_API qcclResult_t qcclBroadcast(void *buf, size_t count, qcclDataType_t dtype,
                                    uint64_t root_peer_id, uint64_t tag, qcclComm_t *comm,
                                    QCCL_NULLABLE qcclOpInfo_t *info_out);
QCCL_API qcclResult_t qcclBroadcastAsync(void *buf, size_t count, qcclDataType_t dtype,
                                         uint64_t root_peer_id, uint64_t tag, qcclComm_t *comm,
                                         qcclOp_t **op_out);
/* All-gather: every peer contributes sendcount elements; recvbuf (room for recvcount elements)
 * receives world_size x sendcount elements, the contributions in ring order. The group's size
 * is known only when the operation runs: if recvbuf is too small then, it fails on every peer
 * with qcclInvalidArgument. In place: sendbuf is this peer's block of recvbuf (recvbuf + ring
 * rank x sendcount). */
QCCL_API qcclResult_t qcclAllGather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                    size_t recvcount, qcclDataType_t dtype, uint64_t tag,
                                    qcclComm_t *comm, QCCL_NULLABLE qcclOpInfo_t *info_out);
QCCL_API qcclResult_t qcclAllGatherAsync(const void *sendbuf, void *recvbuf, size_t sendcount,
                                         size_t recvcount, qcclDataType_t dtype, uint64_t tag,
                                         qcclComm_t *comm, qcclOp_t **op_out);
/* All-gather of variable sizes: every peer contributes its own sendcount (0 allowed); recvbuf
 * (room for recvcount elements) receives the contributions concatenated in ring order, and
 * counts (NULLABLE; room for counts_capacity entries, at least the group's size) each peer's
 * count in ring order; peer i's block starts at the sum of counts[0..i). The counts travel
 * first (a small all-gather), so no peer needs to know the others'. Too little room in recvbuf
 * or counts fails it on every peer with qcclInvalidArgument. */
QCCL_API qcclResult_t qcclAllGatherV(const void *sendbuf, size_t sendcount, void *recvbuf,
                                     size_t recvcount, qcclDataType_t dtype,
                                     QCCL_NULLABLE size_t *counts, size_t counts_capacity,
                                     uint64_t tag, qcclComm_t *comm,
                                     QCCL_NULLABLE qcclOpInfo_t *info_out);
QCCL_API qcclResult_t qcclAllGatherVAsync(const void *sendbuf, size_t sendcount, void *recvbuf,
                                          size_t recvcount, qcclDataType_t dtype,
                                          QCCL_NULLABLE size_t *counts, size_t counts_capacity,
                                          uint64_t tag, qcclComm_t *comm, qcclOp_t **op_out);
/* Reduce-scatter: every peer passes desc->count elements in sendbuf (every dtype, op and
 * quantization of qcclAllReduce); the peer at ring rank r receives block r of the reduction
 * in recvbuf (room for recvcount elements). Blocks: desc->count split into world_size
 * contiguous blocks whose sizes differ by at most one, the first desc->count % world_size
 * one element larger. Each block is bit-identical to the same block of a qcclAllReduce of the
 * same inputs. In place: recvbuf == sendbuf (the block lands at its start). A block larger than
 * recvcount fails it on every peer with qcclInvalidArgument. */
QCCL_API qcclResult_t qcclReduceScatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                        const qcclReduceDesc_t *desc, qcclComm_t *comm,
                                        QCCL_NULLABLE qcclOpInfo_t *info_out);
QCCL_API qcclResult_t qcclReduceScatterAsync(const void *sendbuf, void *recvbuf,
                                             size_t recvcount, const qcclReduceDesc_t *desc,
                                             qcclComm_t *comm, qcclOp_t **op_out);
/* Returns once every peer of the group has called it with this tag (the master commits it
 * when all have). */
QCCL_API qcclResult_t qcclBarrier(uint64_t tag, qcclComm_t *comm,
                                  QCCL_NULLABLE qcclOpInfo_t *info_out);
QCCL_API qcclResult_t qcclBarrierAsync(uint64_t tag, qcclComm_t *comm, qcclOp_t **op_out);
/* A batch of operations of any kinds, for qcclRunMultipleWithRetry. `kind` says which fields
 * count; each has the meaning of the same argument of the blocking call:
 *   qcclOpAllReduce       sendbuf, recvbuf, desc
 *   qcclOpBroadcast       recvbuf (the buffer), sendcount (its count), desc.dtype, desc.tag,
 *                         root_peer_id
 *   qcclOpAllGather       sendbuf, sendcount, recvbuf, recvcount, desc.dtype, desc.tag
 *   qcclOpAllGatherV      the same, and counts / counts_capacity (NULLABLE)
 *   qcclOpReduceScatter   sendbuf, recvbuf, recvcount, desc (desc.count: the whole input)
 *   qcclOpBarrier         desc.tag */
typedef enum {
  qcclOpAllReduce = 0,
  qcclOpBroadcast,
  qcclOpAllGather,
  qcclOpAllGatherV,
  qcclOpReduceScatter,
  qcclOpBarrier,
  qcclNumOpKinds
} qcclOpKind_t;

typedef struct {
  qcclOpKind_t kind;
  const void *sendbuf;
  void *recvbuf;
  size_t sendcount;
  size_t recvcount;
  qcclReduceDesc_t desc;
  uint64_t root_peer_id;
  QCCL_NULLABLE size_t *counts;
  size_t counts_capacity;
} qcclCollectiveOp_t;

/* qcclAllReduceMultipleWithRetry for a batch mixing kinds: runs all ops, up to max_in_flight at
 * once (tags must differ), retrying those that fail with qcclPeerLost (before any later op
 * starts, once the group's new ring is up) until every op succeeded or the group fell below 2
 * peers (qcclTooFewPeers). Any other failure ends the call with its code once the ops in flight
 * finished; ops that succeeded before keep their results. info_out (NULLABLE): the world size
 * of the last op and the summed byte counts. */
QCCL_API qcclResult_t qcclRunMultipleWithRetry(const qcclCollectiveOp_t *ops, size_t num_ops,
                                               qcclComm_t *comm, int max_in_flight,
                                               QCCL_NULLABLE qcclReduceInfo_t *info_out);

/* qcclWait with the full qcclOpInfo_t (any operation, all-reduce included): waits, returns the
 * operation's result and frees the handle. */
QCCL_API qcclResult_t qcclWaitInfo(qcclOp_t *op, QCCL_NULLABLE qcclOpInfo_t *info_out);

/* ------------------------------------------------------------------------------------------ */
/* Shared state                                                                               */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
  const char *name;               /* key; unique within the state                              */
  void *data;                     /* caller-owned host memory (NULL only when count == 0)      */
  size_t count;                   /* elements                                                  */
  qcclDataType_t dtype;
  int allow_content_inequality;   /* 1 = never compared nor transferred                         */
} qcclTensorInfo_t;

typedef struct {
  uint64_t revision;              /* +1 per sync; set to the elected revision on success        */
  size_t num_tensors;
  qcclTensorInfo_t *tensors;
} qcclSharedState_t;

typedef enum {
  qcclSyncEnforcePopular,         /* default: the most popular content wins                      */
  qcclSyncReceiveOnly,            /* my state is stale: never a candidate, overwrite it          */
  qcclSyncSendOnly                /* my state is the truth: kicked if another content wins       */
} qcclSyncStrategy_t;

typedef struct {
  uint64_t tx_bytes, rx_bytes;    /* tensor bytes this peer sent to and received from peers     */
} qcclSyncInfo_t;

/* Collective over the accepted peers of this peer's group: makes every peer's shared state
 * byte-identical to the content elected by the master (newest revision, then most peers; see
 * docs/shared-state.md). Only tensors whose hash differs are downloaded, striped over every
 * up-to-date peer, each piece verified by hash. On success state->revision holds the elected
 * revision. qcclInvalidArgument (bad state or strategy, duplicate names), qcclInvalidUsage
 * (not connected, operations in flight), qcclMismatch (peers disagree about names, dtypes or
 * counts, or a revision skipped ahead; nothing was changed), qcclPeerLost (a peer holding the
 * content left; retry at once), qcclKicked (a send-only peer whose content lost),
 * qcclMasterUnreachable, qcclAborted. */
QCCL_API qcclResult_t qcclSyncSharedState(qcclComm_t *comm, qcclSharedState_t *state,
                                          qcclSyncStrategy_t strategy,
                                          QCCL_NULLABLE qcclSyncInfo_t *info_out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* QCCL_QCCL_H_ */
