/* The --json writer (cli_json.h). */
#include "cli_json.h"

#include "cli.h"

#include <math.h>
#include <unistd.h>

static void put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* The comma and key before a value. */
static void value_start(json_out *j, const char *key) {
    if (j->count[j->depth]++) fputc(',', j->f);
    if (key) {
        put_string(j->f, key);
        fputc(':', j->f);
    }
}

static void open_level(json_out *j, const char *key, char c) {
    value_start(j, key);
    fputc(c, j->f);
    if (j->depth + 1 < JSON_MAX_DEPTH) {
        j->count[++j->depth] = 0;
        j->closer[j->depth] = c == '{' ? '}' : ']';
    }
}

void json_begin(json_out *j, FILE *f) {
    j->f = f;
    j->depth = 0;
    j->count[0] = 0;
    open_level(j, NULL, '{');
}

void json_object(json_out *j, const char *key) { open_level(j, key, '{'); }

void json_array(json_out *j, const char *key) { open_level(j, key, '['); }

void json_close(json_out *j) {
    if (j->depth < 1) return;
    fputc(j->closer[j->depth], j->f);
    j->depth--;
}

void json_end(json_out *j) {
    while (j->depth > 0) json_close(j);
    fputc('\n', j->f);
    fflush(j->f);
}

void json_str(json_out *j, const char *key, const char *v) {
    value_start(j, key);
    if (v) put_string(j->f, v);
    else fputs("null", j->f);
}

void json_num(json_out *j, const char *key, double v) {
    value_start(j, key);
    if (isfinite(v)) fprintf(j->f, "%.10g", v);
    else fputs("null", j->f); /* JSON has no NaN or Infinity */
}

void json_int(json_out *j, const char *key, long long v) {
    value_start(j, key);
    fprintf(j->f, "%lld", v);
}

void json_bool(json_out *j, const char *key, int v) {
    value_start(j, key);
    fputs(v ? "true" : "false", j->f);
}

/* The CLI may keep process state (one command runs per process); the library may not. */
static json_out g_json;
static int g_json_on;

json_out *cli_json_start(const cli_cmd *cmd) {
    if (!cli_get(cmd, "json")) return NULL;
    fflush(stdout);
    int fd = dup(1);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f || !freopen("/dev/null", "w", stdout)) {
        if (f) fclose(f);
        return NULL;
    }
    json_begin(&g_json, f);
    json_str(&g_json, "command", cmd->name);
    g_json_on = 1;
    return &g_json;
}

json_out *cli_json(void) { return g_json_on ? &g_json : NULL; }

void cli_json_finish(int exit_code, const char *error) {
    if (!g_json_on) return;
    while (g_json.depth > 1) json_close(&g_json); /* a failure may leave a part open */
    if (error) json_str(&g_json, "error", error);
    json_int(&g_json, "exit", exit_code);
    json_end(&g_json);
    fclose(g_json.f);
    g_json_on = 0;
}
