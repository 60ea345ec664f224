/* The ONNX subsystem: TensorProto values, the importer and the exporter. Only
 * src/onnx sees protobuf-c and the generated schema; the engine does not. */
#ifndef TS_ONNX_H
#define TS_ONNX_H

#include "core/core.h"
#include "onnx/onnx.pb-c.h"

#define ONNX_MAX_RANK 8
/* largest tensor a file may hold, in elements (2^31, 8 GiB of float32) */
#define ONNX_MAX_ELEMENTS ((int64_t)1 << 31)

/* ONNX TensorProto.DataType codes used here */
enum {
    ONNX_FLOAT = 1, ONNX_UINT8 = 2, ONNX_INT8 = 3, ONNX_UINT16 = 4, ONNX_INT16 = 5, ONNX_INT32 = 6,
    ONNX_INT64 = 7, ONNX_STRING = 8, ONNX_BOOL = 9, ONNX_FLOAT16 = 10, ONNX_DOUBLE = 11, ONNX_UINT32 = 12,
    ONNX_UINT64 = 13, ONNX_BFLOAT16 = 16
};

/* A decoded tensor: floats (from float32/float64) or integers (from any integer
 * type or bool), row-major. */
struct ts_onnx_tensor {
    int is_float;
    int rank;
    int64_t dims[ONNX_MAX_RANK];
    int64_t numel;
    float *f;     /* (numel) when is_float */
    int64_t *i;   /* (numel) otherwise */
};

const char *onnx_dtype_name(int dtype);
/* Decodes and validates p (dims against data length, overflow, type); `what`
 * names it in messages ("model.onnx: initializer 'conv.weight'"). */
ts_status onnx_tensor_from_proto(ts_ctx *ctx, const Onnx__TensorProto *p, const char *what, ts_onnx_tensor **out);
/* A float converted to int64 as Cast does: truncation toward zero, saturated at
 * the int64 range, NaN to 0 (C leaves out-of-range conversions undefined). */
static inline int64_t onnx_float_to_int64(float f) {
    if (!(f == f)) return 0;
    if (f >= 9223372036854775807.0f) return INT64_MAX;
    if (f <= -9223372036854775808.0f) return INT64_MIN;
    return (int64_t)f;
}
ts_onnx_tensor *onnx_tensor_new(int is_float, int rank, const int64_t *dims);
ts_onnx_tensor *onnx_tensor_copy(const ts_onnx_tensor *src);
/* Reads a whole file into memory (ts_free it). */
ts_status onnx_read_file(ts_ctx *ctx, const char *path, uint8_t **data, size_t *size);

/* The allocator given to protobuf-c's unpack and free_unpacked (the same one for
 * both): it allocates with this library's malloc and remembers a failure, so that
 * an unpack that returns NULL for want of memory is reported as TS_ENOMEM, not as a
 * corrupt file. */
typedef struct onnx_pb_allocator {
    ProtobufCAllocator base;
    int failed;
} onnx_pb_allocator;
void onnx_pb_allocator_init(onnx_pb_allocator *a);

#endif
