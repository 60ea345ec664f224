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

/* A sum in flight: phase 1 moves chunk j of every rank's buffer to rank j
 * (MPI_Ialltoallv), then this rank adds its chunks in rank order, phase 2 gathers the
 * summed chunks everywhere (MPI_Iallgatherv). MPI wants the collectives of one
 * communicator begun in the same order on every rank, so each phase has its own
 * (a duplicate of MPI_COMM_WORLD) and begins its sums first in, first out. */
typedef struct pending_sum {
    float *buf;        /* (n) summed in place */
    int phase;         /* 1 or 2: which exchange is in flight; 3: done */
    MPI_Request req;
    int *counts;       /* (4, size): chunk lengths, chunk offsets, then what is received from each rank and where */
    float *scratch;    /* (size, counts[rank]) every rank's chunk of this rank */
} pending_sum;

#define MAX_PENDING 256

/* The CLI's process state: one job per process. */
static struct {
    MPI_Comm scatter, gather;
    pending_sum q[MAX_PENDING];
    int nq;
} g_mpi;

static int mpi_failed(int code, char *err, size_t err_size) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", code);
    snprintf(err, err_size, "%s", msg);
    return 1;
}

/* Phase 1 done: this rank's chunk summed in rank order, then phase 2 begun. */
static int sum_chunk(cli_dist *d, pending_sum *p, char *err, size_t err_size) {
    const int R = d->size, *len = p->counts, *off = p->counts + R, mine = len[d->rank];
    float *out = p->buf + off[d->rank]; /* (mine) */
    memcpy(out, p->scratch, (size_t)mine * sizeof(float));
    for (int i = 1; i < R; i++) {
        const float *in = p->scratch + (size_t)i * (size_t)mine;
        for (int k = 0; k < mine; k++) out[k] += in[k];
    }
    p->phase = 2;
    int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, p->buf, len, off, MPI_FLOAT, g_mpi.gather, &p->req);
    return rc == MPI_SUCCESS ? 0 : mpi_failed(rc, err, err_size);
}

/* Moves the sums in flight along without waiting (block 0) or to their end (block 1);
 * phase 2 begins in queue order. */
static int advance(cli_dist *d, int block, char *err, size_t err_size) {
    for (int i = 0; i < g_mpi.nq; i++) {
        pending_sum *p = &g_mpi.q[i];
        while (p->phase < 3) {
            int done = 1, rc = block ? MPI_Wait(&p->req, MPI_STATUS_IGNORE) : MPI_Test(&p->req, &done, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) return mpi_failed(rc, err, err_size);
            if (!done) break;
            if (p->phase == 2) p->phase = 3;
            else if (sum_chunk(d, p, err, err_size)) return 1;
        }
        if (p->phase == 1) break; /* later sums' phase 2 waits for this one's */
    }
    return 0;
}

/* Begins summing buf (n > 0 floats). */
static int begin_sum(cli_dist *d, float *buf, size_t n, char *err, size_t err_size) {
    const int R = d->size;
    if (n / (size_t)R + 1 > (size_t)INT_MAX / (size_t)R) {
        snprintf(err, err_size, "%zu values are more than one MPI call moves", n);
        return 1;
    }
    if (g_mpi.nq == MAX_PENDING) {
        snprintf(err, err_size, "more than %d sums begun before a wait", MAX_PENDING);
        return 1;
    }
    pending_sum *p = &g_mpi.q[g_mpi.nq];
    memset(p, 0, sizeof *p);
    p->buf = buf;
    p->phase = 1;
    if (!(p->counts = malloc(4 * (size_t)R * sizeof(int)))) {
        snprintf(err, err_size, "out of memory");
        return 1;
    }
    g_mpi.nq++;
    int *len = p->counts, *off = len + R, *rlen = off + R, *roff = rlen + R;
    for (int j = 0; j < R; j++) {
        off[j] = (int)(n * (size_t)j / (size_t)R);
        len[j] = (int)(n * (size_t)(j + 1) / (size_t)R) - off[j];
    }
    const int mine = len[d->rank];
    for (int i = 0; i < R; i++) {
        rlen[i] = mine;
        roff[i] = i * mine;
    }
    if (!(p->scratch = malloc(((size_t)R * (size_t)mine + 1) * sizeof(float)))) {
        snprintf(err, err_size, "out of memory for %d values", R * mine);
        return 1;
    }
    int rc = MPI_Ialltoallv(buf, len, off, MPI_FLOAT, p->scratch, rlen, roff, MPI_FLOAT, g_mpi.scatter, &p->req);
    d->calls++;
    return rc == MPI_SUCCESS ? 0 : mpi_failed(rc, err, err_size);
}

/* Every call is timed, the progress ones inside backward too: they take this rank's CPU. */
static int mpi_allreduce_start(float *buf, size_t n, void *user, char *err, size_t err_size) {
    cli_dist *d = user;
    const double t0 = MPI_Wtime();
    int bad = (n && begin_sum(d, buf, n, err, err_size)) || advance(d, 0, err, err_size);
    d->seconds += MPI_Wtime() - t0;
    return bad;
}

static int mpi_allreduce_wait(void *user, char *err, size_t err_size) {
    cli_dist *d = user;
    const double t0 = MPI_Wtime();
    int bad = advance(d, 1, err, err_size);
    for (int i = 0; i < g_mpi.nq; i++) {
        free(g_mpi.q[i].counts);
        free(g_mpi.q[i].scratch);
    }
    g_mpi.nq = 0;
    d->seconds += MPI_Wtime() - t0;
    return bad;
}

static int mpi_allreduce_sum(float *buf, size_t n, void *user, char *err, size_t err_size) {
    if (mpi_allreduce_start(buf, n, user, err, err_size)) {
        mpi_allreduce_wait(user, err + strlen(err), err_size - strlen(err)); /* frees; the first error stays */
        return 1;
    }
    return mpi_allreduce_wait(user, err, err_size);
}

/* Work spread by the library (ts_ctx_set_comm): blocking, on MPI_COMM_WORLD, which
 * carries nothing else, in bytes; MPI counts are ints, so at most 2 GiB in all. */
static int mpi_allgatherv(const void *mine, void *all, const size_t *counts, void *user, char *err, size_t err_size) {
    cli_dist *d = user;
    const int R = d->size;
    int *len = malloc(2 * (size_t)R * sizeof *len), *off = len ? len + R : NULL;
    if (!len) {
        snprintf(err, err_size, "out of memory");
        return 1;
    }
    size_t total = 0;
    for (int r = 0; r < R; r++) {
        if (counts[r] > (size_t)INT_MAX || total > (size_t)INT_MAX - counts[r]) {
            snprintf(err, err_size, "more than %d bytes to gather", INT_MAX);
            free(len);
            return 1;
        }
        len[r] = (int)counts[r];
        off[r] = (int)total;
        total += counts[r];
    }
    /* not counted in d->seconds and d->calls, which are the gradient sums' */
    int rc = MPI_Allgatherv(mine, len[d->rank], MPI_BYTE, all, len, off, MPI_BYTE, MPI_COMM_WORLD);
    free(len);
    return rc == MPI_SUCCESS ? 0 : mpi_failed(rc, err, err_size);
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
    if (MPI_Comm_dup(MPI_COMM_WORLD, &g_mpi.scatter) != MPI_SUCCESS ||
        MPI_Comm_dup(MPI_COMM_WORLD, &g_mpi.gather) != MPI_SUCCESS) {
        fprintf(stderr, "tessera %s: rank %d: MPI_Comm_dup failed\n", cmd, d->rank);
        MPI_Abort(MPI_COMM_WORLD, EXIT_FAILURE_OTHER);
    }
    MPI_Comm_set_errhandler(g_mpi.scatter, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(g_mpi.gather, MPI_ERRORS_RETURN);
    return 0;
}

void dist_comm(cli_dist *d, ts_comm *out) {
    memset(out, 0, sizeof *out);
    out->rank = d->rank;
    out->size = d->size;
    out->allreduce_sum = mpi_allreduce_sum;
    out->allreduce_start = mpi_allreduce_start;
    out->allreduce_wait = mpi_allreduce_wait;
    out->allgatherv = mpi_allgatherv;
    out->user = d;
}

int dist_end(const char *cmd, cli_dist *d, int rc) {
    if (!launched_size()) return rc;
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
