/* A command's set-up under mpirun (tools/dist.h): no MPI here, so that programs that
 * link tools/dist_mpi.c alone (bench/distributed) need none of the CLI. */
#include "dist.h"

#include <stdio.h>
#include <unistd.h>

int dist_setup(const cli_cmd *c, ts_ctx *ctx, cli_dist *d, int spread) {
    if (d->size <= 1) return 0;
    ts_status st = TS_OK;
    if (!cli_get(c, "threads")) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN), t = ncpu / d->local_size;
        st = ts_ctx_set_threads(ctx, t > 1 ? (int)t : 1);
    }
    if (!st && spread) {
        ts_comm comm;
        dist_comm(d, &comm);
        st = ts_ctx_set_comm(ctx, &comm);
    }
    if (st) return cli_fail(c->name, ctx, st);
    if (d->rank != 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "tessera %s: rank %d: cannot silence stdout\n", c->name, d->rank);
        return EXIT_IO;
    }
    return 0;
}
