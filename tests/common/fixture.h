/* Reader for .tsfx test fixtures: named float32 tensors dumped by
 * tests/fixtures/gen_fixtures.py (the format is described there). Every length in
 * the file is checked against the file size; a malformed file yields NULL and a
 * message, never a crash. */
#ifndef TS_TEST_FIXTURE_H
#define TS_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#define FIXTURE_MAX_DIMS 8

typedef struct fixture_tensor {
    char *name;
    int ndim;
    int64_t dims[FIXTURE_MAX_DIMS];
    int64_t numel;
    float *data;
} fixture_tensor;

typedef struct fixture {
    int count;
    fixture_tensor *tensors;
} fixture;

/* Parses a .tsfx image held in memory. On failure returns NULL and writes a message
 * to err (errlen bytes, may be 0). */
fixture *fixture_parse(const unsigned char *buf, size_t len, char *err, size_t errlen);
/* Reads and parses the file at path. */
fixture *fixture_load(const char *path, char *err, size_t errlen);
void fixture_free(fixture *f);
/* The tensor called name, or NULL. */
const fixture_tensor *fixture_find(const fixture *f, const char *name);

#endif
