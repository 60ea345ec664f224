/* tessera info --profile: where a model's inference cost goes, counted as Sze et al.
 * ask (Efficient Processing of Deep Neural Networks, 2017): per layer as inference
 * runs it (a fused chain is one row under its convolution), the MACs, the parameters,
 * the bytes it must move at least once (inputs read, output written, weights read),
 * the measured time, the GFLOP/s reached, and the arithmetic intensity (FLOPs per
 * byte) against this machine's measured roofline: below the ridge a layer is
 * memory-bound and cannot reach the peak however good its kernel. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct prof_unit {
    int head;
    int64_t macs, params, bytes_per_sample, weight_bytes;
    double seconds;
} prof_unit;

/* Index of the layer named `name` among layers 0..before-1 (inputs are earlier). */
static int layer_index(const ts_model *m, const char *name, int before) {
    for (int j = before - 1; j >= 0; j--) {
        ts_layer_info li;
        if (!ts_model_layer(m, j, &li) && !strcmp(li.name, name)) return j;
    }
    return -1;
}

/* The CPU's name from /proc/cpuinfo ("?" elsewhere): speed figures name their CPU. */
static void cpu_name(char *buf, size_t n) {
    snprintf(buf, n, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        const char *v = strchr(line, ':');
        if (!v) break;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(buf, n, "%s", v);
        buf[strcspn(buf, "\n")] = 0;
        break;
    }
    fclose(f);
}

/* Sums each layer's cost into the unit inference runs it in (units[head]). The bytes
 * of a fused chain are what enters and leaves it: a read of a member's output by
 * another member, and that output's write when nothing outside the unit reads it, are
 * not traffic. (A channel-shuffle gather, exec_shuffle.c, still counts its sources
 * whole, though it reads only the channels it keeps.) */
static int gather(const ts_model *m, const double *sec, prof_unit *units) {
    const int nl = ts_model_layer_count(m);
    /* read_out[i]: 1 if a layer outside i's unit reads it (or it is the output), -1 if
     * only members of its unit read it, 0 if nothing does */
    signed char *read_out = calloc((size_t)nl, 1);
    if (!read_out) return 0;
    read_out[nl - 1] = 1;
    for (int j = 1; j < nl; j++) {
        ts_layer_info li;
        if (ts_model_layer(m, j, &li)) continue;
        for (int k = 0; k < li.ninputs; k++) {
            const char *in = ts_model_layer_input(m, j, k);
            const int i = in ? layer_index(m, in, j) : -1;
            if (i <= 0) continue;
            if (ts_model_layer_fused_into(m, i) != ts_model_layer_fused_into(m, j)) read_out[i] = 1;
            else if (!read_out[i]) read_out[i] = -1;
        }
    }
    for (int j = 1; j < nl; j++) {
        const int h = ts_model_layer_fused_into(m, j);
        if (h < 0) continue;
        ts_layer_cost c;
        ts_layer_info li;
        if (ts_model_layer_cost(m, j, &c) || ts_model_layer(m, j, &li)) continue;
        prof_unit *u = &units[h];
        u->head = h;
        u->macs += c.macs;
        u->params += c.params;
        u->weight_bytes += c.weight_bytes;
        u->bytes_per_sample += c.in_bytes + c.out_bytes;
        u->seconds += sec[j];
        if (read_out[j] < 0) u->bytes_per_sample -= c.out_bytes; /* never leaves the unit */
        for (int k = 0; c.in_bytes && k < li.ninputs; k++) { /* a read inside the unit */
            const char *in = ts_model_layer_input(m, j, k);
            const int i = in ? layer_index(m, in, j) : -1;
            ts_layer_info src;
            if (i > 0 && i != j && ts_model_layer_fused_into(m, i) == h && !ts_model_layer(m, i, &src))
                u->bytes_per_sample -= ts_shape_numel(&src.out) * (int64_t)sizeof(float);
        }
    }
    free(read_out);
    return 1;
}

int info_profile(ts_ctx *ctx, ts_model *m, long batch, long iters, json_out *J) {
    const int nl = ts_model_layer_count(m);
    const ts_shape shape = ts_model_input_shape(m);
    const int64_t per = ts_shape_numel(&shape), k = ts_model_classes(m);
    float *x = malloc((size_t)(per * batch) * sizeof *x), *logits = malloc((size_t)(k * batch) * sizeof *logits);
    double *sec = calloc((size_t)nl, sizeof *sec);
    prof_unit *units = calloc((size_t)nl, sizeof *units);
    ts_status st = TS_OK;
    int rc = EXIT_OK;
    if (!x || !logits || !sec || !units) st = ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory for a batch of %ld", batch);
    ts_roofline roof;
    if (!st) {
        cli_random_batch(m, x, batch);
        st = ts_model_predict(ctx, m, x, (int)batch, logits); /* plans, packs and warms up */
    }
    if (!st) st = ts_machine_roofline(ctx, &roof);
    for (long i = 0; i < iters && !st; i++) st = ts_model_predict_profile(ctx, m, x, (int)batch, logits, sec);
    if (st) {
        rc = cli_fail("info", ctx, st);
        goto done;
    }
    for (int j = 0; j < nl; j++) sec[j] /= (double)iters;
    if (!gather(m, sec, units)) {
        rc = cli_fail("info", ctx, ts_ctx_set_error(ctx, TS_ENOMEM, "out of memory summing the profile"));
        goto done;
    }
    char cpu[160];
    cpu_name(cpu, sizeof cpu);
    printf("\nprofile: batch %ld, %d threads, %s kernels, mean of %ld calls; CPU %s\n", batch, roof.threads,
           ts_ctx_get_backend(ctx) == TS_BACKEND_REF ? "reference" : "oneDNN", iters, cpu);
    printf("roofline (measured): peak %.1f GFLOP/s (FMA chains; a 2048^3 sgemm reaches %.1f), bandwidth %.1f GB/s "
           "(STREAM triad), ridge %.1f FLOP/byte\n",
           roof.peak_gflops, roof.gemm_gflops, roof.bandwidth_gbs, roof.ridge);
    printf("%-4s %-24s %-28s %9s %9s %10s %9s %9s %6s %8s  %s\n", "#", "layer", "runs as", "MACs", "params", "moved MB",
           "ms", "GFLOP/s", "%peak", "FLOP/B", "bound");
    if (J) {
        json_object(J, "profile");
        json_int(J, "batch", batch);
        json_int(J, "threads", roof.threads);
        json_int(J, "calls", iters);
        json_str(J, "cpu", cpu);
        json_num(J, "peak_gflops", roof.peak_gflops);
        json_num(J, "sgemm_gflops", roof.gemm_gflops);
        json_num(J, "bandwidth_gbs", roof.bandwidth_gbs);
        json_num(J, "ridge_flop_per_byte", roof.ridge);
        json_array(J, "units");
    }
    double total_s = 0, mem_s = 0, total_flop = 0, total_bytes = 0;
    for (int h = 1; h < nl; h++) {
        const prof_unit *u = &units[h];
        if (ts_model_layer_fused_into(m, h) != h) continue;
        ts_layer_info li;
        if (ts_model_layer(m, h, &li)) continue;
        char tail[96], runs[128], mac[32], par[32];
        cli_fused_kinds(m, h, tail, sizeof tail);
        float qs;
        int u8;
        snprintf(runs, sizeof runs, "%s%s%s", li.kind, tail, ts_model_int8_layer(m, h, &qs, &u8) ? " int8" : "");
        const double flop = 2.0 * (double)u->macs * (double)batch;
        const double bytes = (double)u->bytes_per_sample * (double)batch + (double)u->weight_bytes;
        const double ai = bytes > 0 ? flop / bytes : 0.0;
        const double gflops = u->seconds > 0 ? flop / u->seconds / 1e9 : 0.0;
        const int memory_bound = ai < roof.ridge;
        total_s += u->seconds;
        total_flop += flop;
        total_bytes += bytes;
        if (memory_bound) mem_s += u->seconds;
        snprintf(mac, sizeof mac, "%lld", (long long)u->macs);
        snprintf(par, sizeof par, "%lld", (long long)u->params);
        printf("%-4d %-24.24s %-28.28s %9s %9s %10.3f %9.3f ", h, li.name, runs, mac, par, bytes / 1e6, 1e3 * u->seconds);
        if (u->macs > 0) printf("%9.2f %5.1f%% %8.2f  %s\n", gflops, 100.0 * gflops / roof.peak_gflops, ai,
                                memory_bound ? "memory" : "compute");
        else printf("%9s %6s %8s  %s\n", "-", "-", "0", "memory");
        if (J) {
            json_object(J, NULL);
            json_int(J, "layer", h);
            json_str(J, "name", li.name);
            json_str(J, "runs_as", runs);
            json_int(J, "macs_per_sample", (long long)u->macs);
            json_int(J, "params", (long long)u->params);
            json_num(J, "bytes_moved", bytes);
            json_num(J, "ms", 1e3 * u->seconds);
            json_num(J, "gflops", gflops);
            json_num(J, "flop_per_byte", ai);
            json_str(J, "bound", memory_bound ? "memory" : "compute");
            json_close(J);
        }
    }
    const double gflops = total_s > 0 ? total_flop / total_s / 1e9 : 0.0;
    printf("total: %.3f ms per batch in layers, %.2f GFLOP/s (%.1f%% of peak), %.1f MB moved, %.2f FLOP/byte; "
           "%.1f%% of the time in memory-bound layers\n",
           1e3 * total_s, gflops, 100.0 * gflops / roof.peak_gflops, total_bytes / 1e6,
           total_bytes > 0 ? total_flop / total_bytes : 0.0, total_s > 0 ? 100.0 * mem_s / total_s : 0.0);
    if (J) {
        json_close(J);
        json_num(J, "total_ms", 1e3 * total_s);
        json_num(J, "total_gflops", gflops);
        json_num(J, "total_bytes_moved", total_bytes);
        json_num(J, "memory_bound_time_share", total_s > 0 ? mem_s / total_s : 0.0);
        json_close(J);
    }
done:
    free(x);
    free(logits);
    free(sec);
    free(units);
    return rc;
}
