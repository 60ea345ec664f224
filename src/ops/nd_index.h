/* Walking N-d tensors through element strides, shared by the layout, broadcast and
 * matmul reference kernels (internal to src/ops). */
#ifndef TS_OPS_ND_INDEX_H
#define TS_OPS_ND_INDEX_H

#include "ops.h"

/* Row-major strides of a contiguous tensor of these dims. */
static inline void nd_contiguous_strides(int rank, const int64_t *dims, int64_t *strides) {
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
        strides[d] = s;
        s *= dims[d];
    }
}

/* Simplifies a walk of `nops` operands over dims, in place: drops axes of size 1 and
 * merges an axis into the next when every operand steps through both as through
 * one (stride[d] == stride[d+1] * dims[d+1], which includes broadcasting over
 * both). The walk visits the same elements in the same order. Returns the new rank,
 * at least 1. strides[o] points to operand o's (rank) strides. */
static inline int nd_simplify(int rank, int64_t *dims, int nops, int64_t *const *strides) {
    int r = 0;
    for (int d = 0; d < rank; d++) {
        if (dims[d] == 1) continue;
        if (r > 0) {
            int merge = 1;
            for (int o = 0; o < nops && merge; o++) merge = strides[o][r - 1] == strides[o][d] * dims[d];
            if (merge) {
                dims[r - 1] *= dims[d];
                for (int o = 0; o < nops; o++) strides[o][r - 1] = strides[o][d];
                continue;
            }
        }
        dims[r] = dims[d];
        for (int o = 0; o < nops; o++) strides[o][r] = strides[o][d];
        r++;
    }
    if (r == 0) {
        dims[0] = 1;
        for (int o = 0; o < nops; o++) strides[o][0] = 0;
        r = 1;
    }
    return r;
}

/* Offset of row `row` of a walk whose rows are all axes but the last: decomposes the
 * row index over dims[0..rank-2] and sums index times stride. */
static inline int64_t nd_row_offset(int rank, const int64_t *dims, const int64_t *strides, int64_t row) {
    int64_t off = 0;
    for (int d = rank - 2; d >= 0; d--) {
        off += (row % dims[d]) * strides[d];
        row /= dims[d];
    }
    return off;
}

#endif
