/* --json: one JSON document on stdout, written as the command goes. Strings are
 * escaped (quotes, backslashes, control characters; other bytes as they are, so UTF-8
 * stays UTF-8) and numbers that are not finite become null: the output always parses. */
#ifndef TS_CLI_JSON_H
#define TS_CLI_JSON_H

#include <stdio.h>

#define JSON_MAX_DEPTH 16

typedef struct json_out {
    FILE *f;
    int depth;
    int count[JSON_MAX_DEPTH]; /* values written so far at each level (for the commas) */
    char closer[JSON_MAX_DEPTH]; /* the bracket that closes each level */
} json_out;

/* Starts the document (an object) on f. */
void json_begin(json_out *j, FILE *f);
/* Ends it (closing whatever is open) with a newline. */
void json_end(json_out *j);
/* Inside an object key names the value; inside an array it is NULL. */
void json_object(json_out *j, const char *key);
void json_array(json_out *j, const char *key);
void json_close(json_out *j); /* the innermost object or array */
void json_str(json_out *j, const char *key, const char *v); /* NULL: null */
void json_num(json_out *j, const char *key, double v);
void json_int(json_out *j, const char *key, long long v);
void json_bool(json_out *j, const char *key, int v);

#endif

/* --json of a command: when the command was given --json, the document is started on
 * the real stdout (command name first) and stdout itself goes to /dev/null, so the
 * text the command prints is dropped and only the document is seen; returns the
 * writer. NULL without --json (or when stdout cannot be split so: then text). */
struct cli_cmd;
json_out *cli_json_start(const struct cli_cmd *cmd);
/* The writer cli_json_start returned, or NULL. */
json_out *cli_json(void);
/* Ends the document with the exit code (and the error, when a command failed). */
void cli_json_finish(int exit_code, const char *error);
