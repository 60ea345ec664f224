/* Data-parallel runs over Open MPI (tools/dist.h, docs/distributed.md). The sum is
 * a reduce-scatter then an allgather, written out so that the order of additions is
 * fixed: rank j receives chunk j of every rank's buffer and adds them in rank order
 * ((x0 + x1) + x2 ...), then every rank gathers every summed chunk. Whatever
 * algorithms Open MPI picks for moving the data, the sums are the same bits on
 * every rank and in every run; the traffic is a ring allreduce's, 2 (R-1)/R of the
 * buffer per rank. */
#include "dist.h"

#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int launched_size(void) {
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    return s ? atoi(s) : 0;
}

#ifdef TS_HAVE_MPI
#include <limits.h>
#include <mpi.h>

/* What one rank keeps for the sums: the chunk bounds and the received chunks. */
typedef struct mpi_state {
    int *counts, *displs, *rcounts, *rdispls; /* (size) each */
    float *scratch;                           /* (size, chunk) received chunks */
    size_t scratch_n;
} mpi_state;

static mpi_state g_mpi; /* the CLI's process state: one job per process */

static void mpi_message(int code, char *err, size_t err_size) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", code);
    snprintf(err, err_size, "%s", msg);
}

static int mpi_allreduce_sum(float *buf, size_t n, void *user, char *err, size_t err_size) {
    cli_dist *d = user;
    const int R = d->size, me = d->rank;
    if (n / (size_t)R + 1 > (size_t)INT_MAX / (size_t)R) {
        snprintf(err, err_size, "%zu values are more than one MPI call moves", n);
        return 1;
    }
    const double t0 = MPI_Wtime();
    for (int j = 0; j < R; j++) {
        g_mpi.displs[j] = (int)(n * (size_t)j / (size_t)R);
        g_mpi.counts[j] = (int)(n * (size_t)(j + 1) / (size_t)R) - g_mpi.displs[j];
    }
    const int mine = g_mpi.counts[me];
    const size_t need = (size_t)R * (size_t)mine;
    if (need > g_mpi.scratch_n) {
        float *s = realloc(g_mpi.scratch, need * sizeof(float));
        if (!s) {
            snprintf(err, err_size, "out of memory for %zu values", need);
            return 1;
        }
        g_mpi.scratch = s;
        g_mpi.scratch_n = need;
    }
    for (int i = 0; i < R; i++) {
        g_mpi.rcounts[i] = mine;
        g_mpi.rdispls[i] = i * mine;
    }
    int rc = MPI_Alltoallv(buf, g_mpi.counts, g_mpi.displs, MPI_FLOAT, g_mpi.scratch, g_mpi.rcounts, g_mpi.rdispls,
                           MPI_FLOAT, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        mpi_message(rc, err, err_size);
        return 1;
    }
    float *out = buf + g_mpi.displs[me]; /* (mine) this rank's chunk, summed in rank order */
    memcpy(out, g_mpi.scratch, (size_t)mine * sizeof(float));
    for (int i = 1; i < R; i++) {
        const float *in = g_mpi.scratch + (size_t)i * (size_t)mine;
        for (int k = 0; k < mine; k++) out[k] += in[k];
    }
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, g_mpi.counts, g_mpi.displs, MPI_FLOAT,
                        MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        mpi_message(rc, err, err_size);
        return 1;
    }
    d->seconds += MPI_Wtime() - t0;
    d->calls++;
    return 0;
}

int dist_begin(const char *cmd, cli_dist *d) {
    memset(d, 0, sizeof *d);
    d->size = d->local_size = 1;
    if (!launched_size()) return 0;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        fprintf(stderr, "tessera %s: MPI_Init failed (started by mpirun, but cannot join the job)\n", cmd);
        return EXIT_FAILURE_OTHER;
    }
    /* errors come back as codes, so that this rank can say what failed before ending the job */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    d->local_size = local && atoi(local) > 0 ? atoi(local) : 1;
    const size_t r = (size_t)d->size;
    g_mpi.counts = calloc(r, sizeof(int));
    g_mpi.displs = calloc(r, sizeof(int));
    g_mpi.rcounts = calloc(r, sizeof(int));
    g_mpi.rdispls = calloc(r, sizeof(int));
    if (!g_mpi.counts || !g_mpi.displs || !g_mpi.rcounts || !g_mpi.rdispls) {
        fprintf(stderr, "tessera %s: rank %d: out of memory\n", cmd, d->rank);
        MPI_Abort(MPI_COMM_WORLD, EXIT_NOMEM);
    }
    return 0;
}

void dist_comm(cli_dist *d, ts_comm *out) {
    memset(out, 0, sizeof *out);
    out->rank = d->rank;
    out->size = d->size;
    out->allreduce_sum = mpi_allreduce_sum;
    out->user = d;
}

int dist_end(const char *cmd, cli_dist *d, int rc) {
    if (!launched_size()) return rc;
    free(g_mpi.counts);
    free(g_mpi.displs);
    free(g_mpi.rcounts);
    free(g_mpi.rdispls);
    free(g_mpi.scratch);
    memset(&g_mpi, 0, sizeof g_mpi);
    /* 130 and 143: a Ctrl-C or SIGTERM that every rank agreed to stop on (the trainer's
     * stop flags), so every rank is here; any other failure may be one rank's alone */
    if (rc != 0 && rc != EXIT_INTERRUPTED && rc != EXIT_TERMINATED && d->size > 1) {
        fprintf(stderr, "tessera %s: rank %d of %d failed (exit %d): ending every rank\n", cmd, d->rank, d->size, rc);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    MPI_Finalize();
    return rc;
}

#else /* built without MPI */

int dist_begin(const char *cmd, cli_dist *d) {
    memset(d, 0, sizeof *d);
    d->size = d->local_size = 1;
    if (launched_size() > 1) {
        fprintf(stderr, "tessera %s: started by mpirun with %d ranks, but this tessera was built without MPI "
                "(install libopenmpi-dev and rebuild; docs/distributed.md)\n", cmd, launched_size());
        return EXIT_UNSUPPORTED;
    }
    return 0;
}

void dist_comm(cli_dist *d, ts_comm *out) {
    memset(out, 0, sizeof *out);
    out->rank = d->rank;
    out->size = d->size;
}

int dist_end(const char *cmd, cli_dist *d, int rc) {
    (void)cmd;
    (void)d;
    return rc;
}

#endif
