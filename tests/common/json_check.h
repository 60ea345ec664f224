/* A strict JSON syntax check for tests (RFC 8259: one value, objects, arrays,
 * strings with their escapes, numbers, true/false/null; no NaN or Infinity, no
 * trailing commas, nothing after the value but whitespace). */
#ifndef TS_TEST_JSON_CHECK_H
#define TS_TEST_JSON_CHECK_H

/* 1 when s is exactly one JSON value; else 0 and the byte offset of the first error. */
int json_check(const char *s, long *error_at);

#endif
