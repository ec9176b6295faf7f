/* Open MPI baseline for benchmarks/compare.py: MPI_Allreduce of float32 (sum), measured like
 * qccl_allreduce_bench: an untimed barrier, each rank times its own op, the iteration's time is
 * the slowest rank's (max-reduce), every result is checked. Rank 0 writes JSON.
 * Run under: mpirun --mca pml ob1 --mca btl tcp,self ... -np N mpi_allreduce_bench \
 *            --sizes-mib 1,16 --iters 10 --warmup 3 --json out.json */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Same values as qccl's benchmark: exact in float for any summation order. */
static float contribution(int rank, size_t j) { return (float)(rank + 1) * (float)(j % 1024 + 1); }

int main(int argc, char **argv) {
  long sizes[32];
  int nsizes = 0, iters = 10, warmup = 3;
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
    } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
      json = argv[++i];
    } else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  if (nsizes == 0) sizes[nsizes++] = 1;
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
    printf("Open MPI all-reduce, float32 sum, %d ranks, out of place\n", n);
    printf("%3s %10s %6s %11s %9s %9s %12s %12s\n", "N", "size(MiB)", "iters", "median(ms)",
           "min(ms)", "max(ms)", "algbw(GB/s)", "busbw(GB/s)");
  }
  const float weight = (float)n * (float)(n + 1) / 2.0f;
  for (int s = 0; s < nsizes; ++s) {
    size_t count = (size_t)sizes[s] << 18;
    for (size_t j = 0; j < count; ++j) send[j] = contribution(rank, j);
    for (int it = 0; it < warmup + iters; ++it) {
      for (size_t j = 0; j < count; ++j) recv[j] = -1.0f; /* stale results must not pass */
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      /* count may exceed INT_MAX only beyond 8 GiB, far above what this benchmark runs */
      MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double dt = (MPI_Wtime() - t0) * 1e3, v[2] = {dt, 0.0};
      for (size_t j = 0; j < count; ++j) {
        if (recv[j] != weight * (float)(j % 1024 + 1)) { v[1] = 1.0; break; }
      }
      MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (v[1] != 0.0) {
        if (rank == 0) fprintf(stderr, "wrong MPI_Allreduce result at %ld MiB\n", sizes[s]);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      if (it >= warmup) times[it - warmup] = v[0];
    }
    if (rank == 0) {
      double sorted[iters];
      memcpy(sorted, times, sizeof(double) * (size_t)iters);
      qsort(sorted, (size_t)iters, sizeof(double), cmp_double);
      double med = iters % 2 ? sorted[iters / 2] : 0.5 * (sorted[iters / 2 - 1] + sorted[iters / 2]);
      double bytes = (double)count * 4.0, algbw = bytes / (med / 1e3) / 1e9;
      printf("%3d %10ld %6d %11.3f %9.3f %9.3f %12.3f %12.3f\n", n, sizes[s], iters, med, sorted[0],
             sorted[iters - 1], algbw, algbw * 2.0 * (n - 1) / n);
      fflush(stdout);
      if (!out) continue;
      fprintf(out, "%s\n  {\"n\": %d, \"size_bytes\": %.0f, \"times_ms\": [", s ? "," : "", n, bytes);
      for (int k = 0; k < iters; ++k) fprintf(out, "%s%.4f", k ? ", " : "", times[k]);
      fprintf(out, "], \"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, "
              "\"algbw_gbs\": %.4f, \"busbw_gbs\": %.4f}",
              med, sorted[0], sorted[iters - 1], algbw, algbw * 2.0 * (n - 1) / n);
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
