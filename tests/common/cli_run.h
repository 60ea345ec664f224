/* Running the built tessera binary from a test, as a user would: a temporary folder,
 * one command at a time with its stdout and stderr captured. */
#ifndef TS_TEST_CLI_RUN_H
#define TS_TEST_CLI_RUN_H

#include <stddef.h>

typedef struct cli_runner {
    char bin[4096];              /* $TESSERA_BIN, else build/tessera, made absolute */
    char dir[256];               /* the test's temporary folder */
    char out[1 << 16], err[1 << 16]; /* the last command's stdout and stderr */
} cli_runner;

/* Finds the binary and makes /tmp/tessera-NAME-XXXXXX; 0 (after saying why) on failure. */
int cli_runner_begin(cli_runner *r, const char *name);
/* Removes the temporary folder. */
void cli_runner_end(cli_runner *r);
/* Runs `tessera ARGS` (printf-style) with HOME set to the folder, $TESSERA_DATA to a
 * missing one and stdin empty; returns the exit code (128 + signal when killed). */
int cli_run(cli_runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, run in the folder cwd. */
int cli_run_in(cli_runner *r, const char *cwd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same, started by `launcher` (such as "mpirun -np 2"): LAUNCHER tessera ARGS. */
int cli_run_under(cli_runner *r, const char *launcher, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Whether DIR/name exists. */
int cli_exists(const cli_runner *r, const char *name);
/* Whether the folder holds a temporary file (a name with ".tmp"). */
int cli_leftover_tmp(const cli_runner *r);
/* Lines in s. */
int cli_count_lines(const char *s);
/* The first n-1 bytes of a file into buf, NUL-terminated ("" when unreadable). */
void cli_slurp(const char *path, char *buf, size_t n);

#endif
