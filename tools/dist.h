/* Data-parallel runs of the CLI (docs/distributed.md): the process's place among the
 * ranks mpirun started, and the communicator the library's trainer takes (ts_comm).
 * Only tools/dist_mpi.c knows MPI; built without it, a run under mpirun is refused. */
#ifndef TS_CLI_DIST_H
#define TS_CLI_DIST_H

#include "cli.h"
#include "tessera.h"

typedef struct cli_dist {
    int rank, size;     /* 0 and 1 when not started by mpirun */
    int local_size;     /* ranks on this machine */
    double seconds;     /* time spent in allreduce_sum */
    long long calls;
} cli_dist;

/* Joins the job when mpirun started this process ($OMPI_COMM_WORLD_SIZE), else
 * fills d for a lone run. Returns 0, or an exit code after printing why. */
int dist_begin(const char *cmd, cli_dist *d);
/* The communicator over d's ranks for ts_trainer_set_comm. */
void dist_comm(cli_dist *d, ts_comm *out);
/* A command's set-up under mpirun (nothing alone): threads shared out among the ranks
 * on this machine unless --threads says, stdout (progress, results) from rank 0 only,
 * and with spread != 0 the context's communicator (ts_ctx_set_comm), so that the
 * library's evaluation and decomposition share their work among the ranks. Returns 0,
 * or an exit code after printing why. */
int dist_setup(const cli_cmd *c, ts_ctx *ctx, cli_dist *d, int spread);
/* Leaves the job. A rank that fails (rc != 0) ends every rank at once (MPI_Abort),
 * so that none waits on it in a collective; returns rc. */
int dist_end(const char *cmd, cli_dist *d, int rc);

#endif
