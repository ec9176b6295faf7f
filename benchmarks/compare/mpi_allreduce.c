/* Open MPI baseline for benchmarks/compare.py: MPI_Allreduce of float32 (sum), and with --op
 * MPI_Allgather, MPI_Reduce_scatter_block (sum) and MPI_Bcast (root 0), measured like
 * qccl_allreduce_bench: an untimed barrier, each rank times its own op, the iteration's time is
 * the slowest rank's (max-reduce), every element of every result is checked. Rank 0 writes JSON.
 * Size is the op's total data (all-gather: the output; reduce-scatter: the input; broadcast:
 * the buffer), size/N rounded down to whole floats; busbw as nccl-tests (2(N-1)/N all-reduce,
 * (N-1)/N all-gather and reduce-scatter, 1 broadcast).
 * Run under: mpirun --mca pml ob1 --mca btl tcp,self ... -np N mpi_allreduce_bench \
 *            --sizes-mib 1,16 --iters 10 --warmup 3 [--op allreduce,allgather,reducescatter,broadcast]
 *            --json out.json */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Same values as qccl's benchmark: exact in float for any summation order. */
static float contribution(int rank, size_t j) { return (float)(rank + 1) * (float)(j % 1024 + 1); }

enum { ALLREDUCE, ALLGATHER, REDUCESCATTER, BROADCAST, NOPS };
static const char *const kOps[NOPS] = {"allreduce", "allgather", "reducescatter", "broadcast"};

/* Runs op once on `count` floats of total data (send holds contribution(rank, j) for all j <
 * count, all-gather sends its first count/n); returns the op's time in ms and sets *bad when
 * any element of the result differs from the exact value. */
static double cpu_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* *cpu: this process's CPU time (user + system, all threads) during the op, ms. */
static double run_op(int op, int rank, int n, size_t count, float *send, float *recv, int *bad,
                     double *cpu) {
  const size_t block = count / (size_t)n;
  const float weight = (float)n * (float)(n + 1) / 2.0f;
  size_t out = op == ALLREDUCE || op == BROADCAST ? count : op == ALLGATHER ? block * n : block;
  if (op == BROADCAST && rank == 0) for (size_t j = 0; j < count; ++j) recv[j] = contribution(0, j);
  else for (size_t j = 0; j < out; ++j) recv[j] = -1.0f; /* stale results must not pass */
  MPI_Barrier(MPI_COMM_WORLD);
  double c0 = cpu_ms();
  double t0 = MPI_Wtime();
  /* counts may exceed INT_MAX only beyond 8 GiB, far above what this benchmark runs */
  if (op == ALLREDUCE) MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  if (op == ALLGATHER)
    MPI_Allgather(send, (int)block, MPI_FLOAT, recv, (int)block, MPI_FLOAT, MPI_COMM_WORLD);
  if (op == REDUCESCATTER)
    MPI_Reduce_scatter_block(send, recv, (int)block, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  if (op == BROADCAST) MPI_Bcast(recv, (int)count, MPI_FLOAT, 0, MPI_COMM_WORLD);
  double dt = (MPI_Wtime() - t0) * 1e3;
  *cpu = cpu_ms() - c0;
  *bad = 0;
  for (size_t j = 0; j < out && !*bad; ++j) {
    float want = op == ALLREDUCE       ? weight * (float)(j % 1024 + 1)
                 : op == ALLGATHER     ? contribution((int)(j / block), j % block)
                 : op == REDUCESCATTER ? weight * (float)((rank * block + j) % 1024 + 1)
                                       : contribution(0, j);
    *bad = recv[j] != want;
  }
  return dt;
}

int main(int argc, char **argv) {
  long sizes[32];
  int nsizes = 0, iters = 10, warmup = 3, ops[NOPS], nops = 0;
  const char *json = NULL;
  MPI_Init(&argc, &argv);
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--sizes-mib") && i + 1 < argc) {
      char *s = argv[++i];
      for (char *tok = strtok(s, ","); tok && nsizes < 32; tok = strtok(NULL, ","))
        sizes[nsizes++] = atol(tok);
    } else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
      iters = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) {
      warmup = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--op") && i + 1 < argc) {
      for (char *tok = strtok(argv[++i], ","); tok && nops < NOPS; tok = strtok(NULL, ",")) {
        int k = 0;
        while (k < NOPS && strcmp(tok, kOps[k])) ++k;
        if (k == NOPS) {
          fprintf(stderr, "unknown --op %s\n", tok);
          MPI_Abort(MPI_COMM_WORLD, 2);
        }
        ops[nops++] = k;
      }
    } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
      json = argv[++i];
    } else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  if (nsizes == 0) sizes[nsizes++] = 1;
  if (nops == 0) ops[nops++] = ALLREDUCE;
  int rank, n;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  long max_mib = 0;
  for (int s = 0; s < nsizes; ++s) if (sizes[s] > max_mib) max_mib = sizes[s];
  size_t max_count = (size_t)max_mib << 18;
  float *send = malloc(max_count * sizeof(float)), *recv = malloc(max_count * sizeof(float));
  double *times = malloc(sizeof(double) * (size_t)iters);
  if (!send || !recv || !times) MPI_Abort(MPI_COMM_WORLD, 1);
  FILE *out = NULL;
  if (rank == 0 && json) {
    out = fopen(json, "w");
    if (!out) MPI_Abort(MPI_COMM_WORLD, 1);
    fprintf(out, "{\"system\": \"mpi\", \"iters\": %d, \"warmup\": %d, \"results\": [", iters, warmup);
  }
  if (rank == 0) {
    if (nops == 1 && ops[0] == ALLREDUCE) printf("Open MPI all-reduce, float32 sum, %d ranks, out of place\n", n);
    else printf("Open MPI collectives, float32 (sum), %d ranks, out of place; size = the op's total data\n", n);
    printf("%3s %10s %6s %11s %9s %9s %12s %12s\n", "N", "size(MiB)", "iters", "median(ms)",
           "min(ms)", "max(ms)", "algbw(GB/s)", "busbw(GB/s)");
  }
  int row = 0;
  for (int s = 0; s < nsizes; ++s) for (int o = 0; o < nops; ++o) {
    const int op = ops[o];
    size_t count = (size_t)sizes[s] << 18;
    for (size_t j = 0; j < count; ++j) send[j] = contribution(rank, j);
    double cpu_total = 0.0, cpu_all = 0.0;
    for (int it = 0; it < warmup + iters; ++it) {
      int bad = 0;
      double cpu = 0.0;
      double v[2] = {run_op(op, rank, n, count, send, recv, &bad, &cpu), 0.0};
      if (it >= warmup) cpu_total += cpu;
      v[1] = bad;
      MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (v[1] != 0.0) {
        if (rank == 0) fprintf(stderr, "wrong MPI %s result at %ld MiB\n", kOps[op], sizes[s]);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      if (it >= warmup) times[it - warmup] = v[0];
    }
    /* CPU per op, summed over the ranks (busy polling counts: it is what the op costs) */
    MPI_Reduce(&cpu_total, &cpu_all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      double sorted[iters];
      memcpy(sorted, times, sizeof(double) * (size_t)iters);
      qsort(sorted, (size_t)iters, sizeof(double), cmp_double);
      double med = iters % 2 ? sorted[iters / 2] : 0.5 * (sorted[iters / 2 - 1] + sorted[iters / 2]);
      double bytes = (double)count * 4.0, algbw = bytes / (med / 1e3) / 1e9;
      double factor = op == ALLREDUCE ? 2.0 * (n - 1) / n : op == BROADCAST ? 1.0 : (double)(n - 1) / n;
      printf("%3d %10ld %6d %11.3f %9.3f %9.3f %12.3f %12.3f%s%s\n", n, sizes[s], iters, med,
             sorted[0], sorted[iters - 1], algbw, algbw * factor, op ? " " : "", op ? kOps[op] : "");
      fflush(stdout);
      if (!out) continue;
      fprintf(out, "%s\n  {\"n\": %d, \"op\": \"%s\", \"size_bytes\": %.0f, \"times_ms\": [",
              row++ ? "," : "", n, kOps[op], bytes);
      for (int k = 0; k < iters; ++k) fprintf(out, "%s%.4f", k ? ", " : "", times[k]);
      fprintf(out, "], \"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, "
              "\"algbw_gbs\": %.4f, \"busbw_gbs\": %.4f, \"cpu_ms\": %.4f}",
              med, sorted[0], sorted[iters - 1], algbw, algbw * factor, cpu_all / iters);
    }
  }
  if (out) {
    fprintf(out, "\n]}\n");
    fclose(out);
  }
  free(send);
  free(recv);
  free(times);
  MPI_Finalize();
  return 0;
}
