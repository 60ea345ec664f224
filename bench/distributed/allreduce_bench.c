/* Loopback cost of the CLI's allreduce (tools/dist_mpi.c, linked in as is): the
 * median time of one sum of N floats over the ranks mpirun started, after a barrier
 * (so waiting for a slower rank is not counted), for a few sizes. Rank 0 prints
 * "allreduce_us FLOATS MEDIAN_US". Built and run by bench/distributed/run.sh. */
#include "dist.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    cli_dist d;
    if (dist_begin("allreduce_bench", &d)) return 1;
    ts_comm comm;
    dist_comm(&d, &comm);
    enum { REPS = 60 };
    static double t[REPS];
    for (int a = 1; a < argc; a++) {
        const size_t n = (size_t)atol(argv[a]);
        float *buf = calloc(n ? n : 1, sizeof(float));
        char err[256];
        for (int r = 0; r < REPS; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            const double t0 = MPI_Wtime();
            if (comm.allreduce_sum(buf, n, comm.user, err, sizeof err)) {
                fprintf(stderr, "allreduce: %s\n", err);
                return dist_end("allreduce_bench", &d, 1);
            }
            t[r] = MPI_Wtime() - t0;
        }
        qsort(t, REPS, sizeof t[0], cmp_double);
        if (d.rank == 0) printf("allreduce_us %zu %.1f\n", n, 1e6 * t[REPS / 2]);
        free(buf);
    }
    return dist_end("allreduce_bench", &d, 0);
}
