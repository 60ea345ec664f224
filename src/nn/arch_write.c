/* Writes a layer's attributes back as architecture text keys, the inverse of
 * arch.c's parse_attrs: compose and the ONNX importer build models as text. */
#include "nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct out_buf {
    char *dst;
    size_t cap, len;
} out_buf;

static void put(out_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->dst + b->len, b->len < b->cap ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n;
}

/* padding=PHxPW, or padding=t,l,b,r when asymmetric */
static void put_padding(out_buf *b, const layer *l) {
    if (l->pbh == l->ph && l->pbw == l->pw) put(b, " padding=%dx%d", l->ph, l->pw);
    else put(b, " padding=%d,%d,%d,%d", l->ph, l->pw, l->pbh, l->pbw);
}

static void put_shape(out_buf *b, const char *key, const ts_shape *s) {
    put(b, " %s=", key);
    for (int i = 0; i < s->ndim; i++) put(b, "%s%lld", i ? "x" : "", (long long)s->dims[i]);
}

int arch_layer_attrs(const layer *l, char *dst, size_t cap) {
    out_buf b = {dst, cap, 0};
    if (cap) dst[0] = '\0';
    switch (l->kind) {
    case LAYER_CONV2D:
        put(&b, " out=%d kernel=%dx%d stride=%dx%d", l->features, l->kh, l->kw, l->sh, l->sw);
        put_padding(&b, l);
        put(&b, " dilation=%dx%d groups=%d bias=%d", l->dh, l->dw, l->groups, l->bias);
        break;
    case LAYER_CONVTRANSPOSE:
        put(&b, " out=%d kernel=%dx%d stride=%dx%d", l->features, l->kh, l->kw, l->sh, l->sw);
        put_padding(&b, l);
        put(&b, " output_padding=%dx%d dilation=%dx%d groups=%d bias=%d", l->oph, l->opw, l->dh, l->dw, l->groups,
            l->bias);
        break;
    case LAYER_MAXPOOL:
    case LAYER_AVGPOOL:
        put(&b, " kernel=%dx%d stride=%dx%d", l->kh, l->kw, l->sh, l->sw);
        put_padding(&b, l);
        put(&b, " ceil=%d", l->ceil_mode);
        if (l->kind == LAYER_AVGPOOL) put(&b, " count_include_pad=%d", l->count_include_pad);
        if (l->kind == LAYER_MAXPOOL && (l->dh != 1 || l->dw != 1)) put(&b, " dilation=%dx%d", l->dh, l->dw);
        break;
    case LAYER_BATCHNORM: put(&b, " eps=%.9g momentum=%.9g", (double)l->eps, (double)l->momentum); break;
    case LAYER_DENSE: put(&b, " out=%d bias=%d", l->features, l->bias); break;
    case LAYER_LEAKYRELU: put(&b, " slope=%.9g", (double)l->alpha); break;
    case LAYER_DROPOUT: put(&b, " p=%.9g", (double)l->p); break;
    case LAYER_ELU: put(&b, " alpha=%.9g", (double)l->alpha); break;
    case LAYER_SELU: put(&b, " alpha=%.9g gamma=%.9g", (double)l->alpha, (double)l->gamma); break;
    case LAYER_HARDSIGMOID: put(&b, " alpha=%.9g beta=%.9g", (double)l->alpha, (double)l->beta); break;
    case LAYER_CLIP:
        if (l->lo > -INFINITY) put(&b, " min=%.9g", (double)l->lo);
        if (l->hi < INFINITY) put(&b, " max=%.9g", (double)l->hi);
        break;
    case LAYER_PRELU: put_shape(&b, "shape", &l->tshape); break;
    case LAYER_SOFTMAX:
    case LAYER_LOGSOFTMAX: put(&b, " axis=%d coerce=%d", l->axis, l->coerce); break;
    case LAYER_CONCAT: put(&b, " axis=%d", l->axis); break;
    case LAYER_RESHAPE:
    case LAYER_CONSTANT: put_shape(&b, "shape", &l->tshape); break;
    case LAYER_TRANSPOSE:
        put(&b, " perm=");
        for (int i = 0; i < l->out.ndim; i++) put(&b, "%s%d", i ? "," : "", l->perm[i]);
        break;
    case LAYER_PAD: {
        static const char *const modes[] = {"constant", "reflect", "edge"};
        int r = l->out.ndim; /* pads cover every per-sample axis */
        put(&b, " pads=");
        for (int i = 0; i < 2 * r; i++) put(&b, "%s%d", i ? "," : "", l->pads[i]);
        put(&b, " mode=%s value=%.9g", modes[l->pad_mode], (double)l->value);
        break;
    }
    case LAYER_BINARY: {
        static const char *const ops[] = {"add", "sub", "mul", "div"};
        put(&b, " op=%s", ops[l->op]);
        if (l->konst >= 0) {
            put_shape(&b, "const", &l->tshape);
            put(&b, " const_first=%d", l->const_first);
        }
        break;
    }
    case LAYER_MATMUL: put_shape(&b, "b", &l->tshape); break;
    default: break;
    }
    return (int)b.len;
}
