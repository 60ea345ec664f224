/* Running the tessera binary from tests (cli_run.h). */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include "common/cli_run.h"
#include "common/test.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void cli_slurp(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, n - 1, f) : 0;
    buf[got] = '\0';
    if (f) fclose(f);
}

int cli_runner_begin(cli_runner *r, const char *name) {
    const char *bin = getenv("TESSERA_BIN");
    if (!bin) bin = "build/tessera";
    if (access(bin, X_OK) != 0 || !realpath(bin, r->bin)) { /* absolute: commands may run in other folders */
        fprintf(stderr, "%s: %s is not built\n", name, bin);
        return 0;
    }
    snprintf(r->dir, sizeof r->dir, "/tmp/tessera-%s-XXXXXX", name);
    if (!mkdtemp(r->dir)) {
        fprintf(stderr, "%s: cannot create %s\n", name, r->dir);
        return 0;
    }
    r->out[0] = r->err[0] = '\0';
    return 1;
}

void cli_runner_end(cli_runner *r) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", r->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", r->dir);
}

static int run_args(cli_runner *r, const char *cwd, const char *launcher, const char *args) {
    char cmd[16384], o[512], e[512];
    snprintf(o, sizeof o, "%s/stdout", r->dir);
    snprintf(e, sizeof e, "%s/stderr", r->dir);
    snprintf(cmd, sizeof cmd, "%s%s%sHOME=%s TESSERA_DATA=%s/nodata %s%s%s %s >%s 2>%s </dev/null", cwd ? "cd " : "",
             cwd ? cwd : "", cwd ? " && " : "", r->dir, r->dir, launcher ? launcher : "", launcher ? " " : "", r->bin,
             args, o, e);
    double t0 = test_case_clock();
    int rc = system(cmd);
    /* TESSERA_TEST_TIMES: the commands that take a while, to see where a test's time goes */
    if (getenv("TESSERA_TEST_TIMES") && test_case_clock() - t0 > 0.5)
        printf("time   %.2f s: tessera %.120s\n", test_case_clock() - t0, args);
    cli_slurp(o, r->out, sizeof r->out);
    cli_slurp(e, r->err, sizeof r->err);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

static int run_v(cli_runner *r, const char *cwd, const char *launcher, const char *fmt, va_list ap) {
    char args[2048];
    vsnprintf(args, sizeof args, fmt, ap);
    return run_args(r, cwd, launcher, args);
}

int cli_run(cli_runner *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = run_v(r, NULL, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int cli_run_in(cli_runner *r, const char *cwd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = run_v(r, cwd, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int cli_run_under(cli_runner *r, const char *launcher, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = run_v(r, NULL, launcher, fmt, ap);
    va_end(ap);
    return rc;
}

int cli_exists(const cli_runner *r, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", r->dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

int cli_count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

int cli_leftover_tmp(const cli_runner *r) {
    DIR *d = opendir(r->dir);
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) found = 1;
    if (d) closedir(d);
    return found;
}
