/* ONNX TensorProto values: decoding with every size checked against the data,
 * and writing float32 tensors (test data, exported initializers). */
#include "onnx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *onnx_dtype_name(int dtype) {
    static const char *const names[] = {"undefined", "float", "uint8", "int8", "uint16", "int16", "int32",
                                        "int64", "string", "bool", "float16", "double", "uint32", "uint64",
                                        "complex64", "complex128", "bfloat16"};
    return dtype >= 0 && dtype < (int)(sizeof names / sizeof *names) ? names[dtype] : "unknown";
}

ts_onnx_tensor *onnx_tensor_new(int is_float, int rank, const int64_t *dims) {
    ts_onnx_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->is_float = is_float;
    t->rank = rank;
    t->numel = 1;
    for (int k = 0; k < rank; k++) {
        t->dims[k] = dims[k];
        t->numel *= dims[k];
    }
    size_t bytes = (size_t)(t->numel ? t->numel : 1) * (is_float ? sizeof(float) : sizeof(int64_t));
    void *p = calloc(1, bytes);
    if (!p) {
        free(t);
        return NULL;
    }
    if (is_float) t->f = p;
    else t->i = p;
    return t;
}

ts_onnx_tensor *onnx_tensor_copy(const ts_onnx_tensor *src) {
    ts_onnx_tensor *t = onnx_tensor_new(src->is_float, src->rank, src->dims);
    size_t bytes = (size_t)src->numel * (src->is_float ? sizeof(float) : sizeof(int64_t));
    if (t && bytes) memcpy(src->is_float ? (void *)t->f : (void *)t->i, src->is_float ? (void *)src->f : (void *)src->i, bytes);
    return t;
}

void ts_onnx_tensor_free(ts_onnx_tensor *t) {
    if (!t) return;
    free(t->f);
    free(t->i);
    free(t);
}

/* little-endian loads from raw_data (which may be unaligned) */
static uint64_t load_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int b = bytes - 1; b >= 0; b--) v = (v << 8) | p[b];
    return v;
}

static int elem_bytes(int dtype) {
    switch (dtype) {
    case ONNX_FLOAT: case ONNX_INT32: case ONNX_UINT32: return 4;
    case ONNX_DOUBLE: case ONNX_INT64: case ONNX_UINT64: return 8;
    case ONNX_INT16: case ONNX_UINT16: return 2;
    case ONNX_INT8: case ONNX_UINT8: case ONNX_BOOL: return 1;
    default: return 0;
    }
}

/* value k of a raw integer buffer, sign-extended as its type says */
static int64_t raw_int(const uint8_t *raw, int dtype, int64_t k) {
    int b = elem_bytes(dtype);
    uint64_t v = load_le(raw + (size_t)k * (size_t)b, b);
    switch (dtype) {
    case ONNX_INT8: return (int8_t)v;
    case ONNX_INT16: return (int16_t)v;
    case ONNX_INT32: return (int32_t)v;
    default: return (int64_t)v; /* uint*, bool, int64 */
    }
}

ts_status onnx_tensor_from_proto(ts_ctx *ctx, const Onnx__TensorProto *p, const char *what, ts_onnx_tensor **out) {
    *out = NULL;
    if (p->has_data_location && p->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: data stored in an external file is not supported", what);
    if (p->segment) return ts_fail(ctx, TS_EUNSUPPORTED, "%s: segmented tensors are not supported", what);
    if (p->n_dims > ONNX_MAX_RANK)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: rank %zu (at most %d)", what, p->n_dims, ONNX_MAX_RANK);
    int64_t numel = 1;
    for (size_t k = 0; k < p->n_dims; k++) {
        if (p->dims[k] < 0)
            return ts_fail(ctx, TS_EFORMAT, "%s: dims[%zu] = %lld is negative", what, k, (long long)p->dims[k]);
        if (p->dims[k] > 0 && numel > ONNX_MAX_ELEMENTS / p->dims[k])
            return ts_fail(ctx, TS_EFORMAT, "%s: dims overflow (more than %lld elements)", what,
                           (long long)ONNX_MAX_ELEMENTS);
        numel *= p->dims[k];
    }
    int dtype = p->has_data_type ? p->data_type : 0;
    int is_float = dtype == ONNX_FLOAT || dtype == ONNX_DOUBLE;
    int is_int = dtype == ONNX_INT64 || dtype == ONNX_INT32 || dtype == ONNX_INT16 || dtype == ONNX_INT8 ||
                 dtype == ONNX_UINT8 || dtype == ONNX_UINT16 || dtype == ONNX_UINT32 || dtype == ONNX_UINT64 ||
                 dtype == ONNX_BOOL;
    if (!is_float && !is_int)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: data type %s (%d) is not supported (float32, float64 and integers are)",
                       what, onnx_dtype_name(dtype), dtype);
    /* where the values are: raw_data, or the typed field that the type uses */
    int64_t have;
    const char *field;
    if (p->has_raw_data) {
        int b = elem_bytes(dtype);
        if (p->raw_data.len % (size_t)b)
            return ts_fail(ctx, TS_EFORMAT, "%s: raw_data holds %zu bytes, not a multiple of %d (%s)", what,
                           p->raw_data.len, b, onnx_dtype_name(dtype));
        have = (int64_t)(p->raw_data.len / (size_t)b);
        field = "raw_data";
    } else if (dtype == ONNX_FLOAT) {
        have = (int64_t)p->n_float_data;
        field = "float_data";
    } else if (dtype == ONNX_DOUBLE) {
        have = (int64_t)p->n_double_data;
        field = "double_data";
    } else if (dtype == ONNX_INT64) {
        have = (int64_t)p->n_int64_data;
        field = "int64_data";
    } else if (dtype == ONNX_UINT32 || dtype == ONNX_UINT64) {
        have = (int64_t)p->n_uint64_data;
        field = "uint64_data";
    } else {
        have = (int64_t)p->n_int32_data;
        field = "int32_data";
    }
    if (have != numel)
        return ts_fail(ctx, TS_EFORMAT, "%s: %s holds %lld values but dims say %lld", what, field, (long long)have,
                       (long long)numel);
    ts_onnx_tensor *t = onnx_tensor_new(is_float, (int)p->n_dims, p->dims);
    if (!t) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory for %lld values", what, (long long)numel);
    const uint8_t *raw = p->has_raw_data ? p->raw_data.data : NULL;
    for (int64_t k = 0; k < numel; k++) {
        if (dtype == ONNX_FLOAT) {
            if (raw) {
                uint32_t u = (uint32_t)load_le(raw + 4 * k, 4);
                memcpy(&t->f[k], &u, 4);
            } else {
                t->f[k] = p->float_data[k];
            }
        } else if (dtype == ONNX_DOUBLE) {
            double d;
            if (raw) {
                uint64_t u = load_le(raw + 8 * k, 8);
                memcpy(&d, &u, 8);
            } else {
                d = p->double_data[k];
            }
            t->f[k] = (float)d;
        } else if (raw) {
            t->i[k] = raw_int(raw, dtype, k);
        } else if (dtype == ONNX_INT64) {
            t->i[k] = p->int64_data[k];
        } else if (dtype == ONNX_UINT32 || dtype == ONNX_UINT64) {
            t->i[k] = (int64_t)p->uint64_data[k];
        } else {
            t->i[k] = p->int32_data[k];
        }
    }
    *out = t;
    return TS_OK;
}

ts_status onnx_read_file(ts_ctx *ctx, const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ts_fail(ctx, TS_EIO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(f);
                return ts_fail(ctx, TS_ENOMEM, "%s: out of memory reading the file", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return ts_fail(ctx, TS_EIO, "%s: read error", path);
    }
    *data = buf;
    *size = len;
    return TS_OK;
}

static void *pb_alloc(void *data, size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) ((onnx_pb_allocator *)data)->failed = 1;
    return p;
}

static void pb_free(void *data, void *p) {
    (void)data;
    free(p);
}

void onnx_pb_allocator_init(onnx_pb_allocator *a) {
    a->base.alloc = pb_alloc;
    a->base.free = pb_free;
    a->base.allocator_data = a;
    a->failed = 0;
}

ts_status ts_onnx_tensor_parse(ts_ctx *ctx, const void *data, size_t size, const char *name, ts_onnx_tensor **out) {
    if (!ctx || (!data && size) || !name || !out) return ts_fail(ctx, TS_EINVAL, "ts_onnx_tensor_parse: NULL argument");
    *out = NULL;
    onnx_pb_allocator pa;
    onnx_pb_allocator_init(&pa);
    Onnx__TensorProto *p = onnx__tensor_proto__unpack(&pa.base, size, data);
    if (!p && pa.failed) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory decoding the TensorProto", name);
    if (!p) return ts_fail(ctx, TS_EFORMAT, "%s: not a valid ONNX TensorProto (protobuf decoding failed)", name);
    ts_status st = onnx_tensor_from_proto(ctx, p, name, out);
    onnx__tensor_proto__free_unpacked(p, &pa.base);
    return st;
}

ts_status ts_onnx_tensor_load(ts_ctx *ctx, const char *path, ts_onnx_tensor **out) {
    if (!ctx || !path || !out) return ts_fail(ctx, TS_EINVAL, "ts_onnx_tensor_load: NULL argument");
    uint8_t *data;
    size_t size;
    ts_status st = onnx_read_file(ctx, path, &data, &size);
    if (st) return st;
    st = ts_onnx_tensor_parse(ctx, data, size, path, out);
    free(data);
    return st;
}

int ts_onnx_tensor_is_float(const ts_onnx_tensor *t) { return t && t->is_float; }
int ts_onnx_tensor_rank(const ts_onnx_tensor *t) { return t ? t->rank : 0; }
int64_t ts_onnx_tensor_dim(const ts_onnx_tensor *t, int axis) {
    return t && axis >= 0 && axis < t->rank ? t->dims[axis] : 0;
}
int64_t ts_onnx_tensor_numel(const ts_onnx_tensor *t) { return t ? t->numel : 0; }
const float *ts_onnx_tensor_floats(const ts_onnx_tensor *t) { return t && t->is_float ? t->f : NULL; }
void ts_onnx_free(void *p) { free(p); }
