/* Shared by the libFuzzer targets: tessera's readers take file paths, so each
 * input is written to one scratch file per process (or several, for readers that
 * take more than one file). Built by `make fuzz` (clang, -fsanitize=fuzzer). */
#ifndef TS_FUZZ_COMMON_H
#define TS_FUZZ_COMMON_H

#include "tessera.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_paths[4][256];

/* at exit: the scratch files go with the process */
static void fuzz_remove_paths(void) {
    for (int i = 0; i < 4; i++)
        if (fuzz_paths[i][0]) remove(fuzz_paths[i]);
}

/* A per-process scratch path with the given suffix (".tsr", ".gz", ...), in
 * /dev/shm where there is one: the file is rewritten for every input, and a
 * disk-backed /tmp roughly halves the executions per second. */
static inline const char *fuzz_path(int slot, const char *suffix) {
    static int registered;
    char (*paths)[256] = fuzz_paths;
    if (!registered) registered = atexit(fuzz_remove_paths) == 0;
    if (paths[slot][0] && !strstr(paths[slot], suffix)) remove(paths[slot]); /* a slot changing suffix */
    if (!paths[slot][0] || !strstr(paths[slot], suffix)) {
        /* FUZZ_SCRATCH (set by scripts/fuzz-smoke.sh): a folder of this process's own,
         * so the path holds no pid: the strings a reader compares are the same in every
         * run, and so are the mutations libFuzzer draws from them */
        const char *own = getenv("FUZZ_SCRATCH");
        if (own && *own) {
            snprintf(paths[slot], sizeof paths[slot], "%s/%d%s", own, slot, suffix);
        } else {
            const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
            snprintf(paths[slot], sizeof paths[slot], "%s/tessera-fuzz-%ld-%d%s", dir, (long)getpid(), slot, suffix);
        }
    }
    return paths[slot];
}

/* Writes data to the slot's file; returns its path (NULL if the write failed). */
static inline const char *fuzz_write(int slot, const char *suffix, const uint8_t *data, size_t size) {
    const char *p = fuzz_path(slot, suffix);
    FILE *f = fopen(p, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    fclose(f);
    return w == size ? p : NULL;
}

static inline ts_ctx *fuzz_ctx(void) {
    static ts_ctx *ctx;
    if (!ctx && ts_ctx_create(&ctx)) abort();
    return ctx;
}

/* Called first for every input: no message left over from the previous one. */
static inline void fuzz_begin(void) { ts_ctx_clear_error(fuzz_ctx()); }

/* Every failure must leave a message on the context. */
static inline void fuzz_check_message(ts_status st) {
    if (st && !*ts_ctx_error(fuzz_ctx())) abort();
}

#endif
