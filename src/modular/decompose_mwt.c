/* Modules from a model trained MwT-style (Qi et al., ICSE'24; src/modular/mwt.c makes
 * the generators, ts_train_config.modular trains them).
 *
 * Every generator's mask layer ("<bn>.gen.mask", C values per sample) says which of
 * its convolution's kernels a sample uses: those with a mask > 0. One inference pass
 * over the training set counts, per class and kernel, the samples that use it. Class
 * c's module keeps a kernel when at least theta (0.9) of c's samples use it; a layer
 * that would keep none is given theta - 0.05, and so on (MwT's modularizer).
 *
 * Where the module's mask sits: tessera's module masks are keep-bits on ReLU outputs.
 * A kernel's channel is removed at the ReLU that alone reads its "<bn>.gated" output
 * (the whole H x W plane); the slicer then drops the kernel's row of the convolution,
 * its batch-norm channel and its generator row. Where the gated output is added to a
 * residual path first (a ResNet block's second convolution, its projection shortcut),
 * no ReLU mask removes the kernel without removing the skip path's channel too, so
 * those kernels stay (MwT instead zero-fills the block's output there); their masks
 * still count in cohesion and coupling.
 *
 * Each module's head is the origin's channelled margin (scale 1, shift 0); its yes/no
 * threshold the balanced-accuracy cut of its scores on the first val_count training
 * samples. Cohesion: the mean Jaccard index of the open-kernel sets of pairs of a
 * class's samples (the first MWT_COHESION_SAMPLES of it); coupling: the mean Jaccard
 * index of a module's kept-kernel set with each other module's of the decomposition. */
#include "modular.h"

#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Samples of a class whose kernel sets enter its cohesion (pairs: n(n-1)/2). */
#define MWT_COHESION_SAMPLES 128
#define MWT_THETA_STEP 0.05f

typedef struct mwt_gate {
    int mask;      /* the generator's mask layer, output (C) */
    int relu;      /* the ReLU that alone reads "<bn>.gated", or -1 (a residual addition first) */
    int channels;
    int64_t plane; /* H x W of that ReLU */
    int64_t off;   /* its kernels' offset among all generators' */
} mwt_gate;

/* What the capture callback fills for one batch. */
typedef struct mwt_sink {
    const mwt_gate *gates;
    const int *gate_of;     /* (nlayers): gate index of a mask layer, else -1 */
    int64_t T;              /* kernels of all generators */
    const int32_t *label;   /* (batch) */
    const int *slot;        /* (batch) cohesion slot of the sample in its class, or -1 */
    int64_t *count;         /* (classes, T): samples of the class with the kernel open */
    uint8_t *open;          /* (classes, MWT_COHESION_SAMPLES, T) */
} mwt_sink;

static int record(void *user, int layer, int64_t first, int n, const float *out) {
    mwt_sink *s = user;
    const mwt_gate *g = &s->gates[s->gate_of[layer]];
    for (int j = 0; j < n; j++) {
        const int64_t i = first + j;
        const float *row = out + (size_t)j * (size_t)g->channels;
        int64_t *cnt = s->count + (size_t)s->label[i] * (size_t)s->T + g->off;
        uint8_t *op = s->slot[i] < 0 ? NULL
                                     : s->open + ((size_t)s->label[i] * MWT_COHESION_SAMPLES + (size_t)s->slot[i]) *
                                                     (size_t)s->T + g->off;
        for (int ch = 0; ch < g->channels; ch++) {
            const int on = row[ch] > 0.0f;
            cnt[ch] += on;
            if (op) op[ch] = (uint8_t)on;
        }
    }
    return 0;
}

/* The generators of m, in layer order; NULL and a message when there are none. */
static ts_status find_gates(ts_ctx *ctx, const ts_model *m, mwt_gate **out, int *ngates, int64_t *T) {
    const size_t sl = strlen(TS_MWT_MASK_SUFFIX);
    mwt_gate *g = calloc((size_t)m->nlayers, sizeof *g);
    if (!g) return ts_fail(ctx, TS_ENOMEM, "decompose --method mwt: out of memory");
    int n = 0;
    int64_t off = 0;
    for (int li = 0; li < m->nlayers; li++) {
        const layer *l = &m->layers[li];
        const size_t len = strlen(l->name);
        if (l->kind != LAYER_RELU || l->out.ndim != 1 || len < sl || strcmp(l->name + len - sl, TS_MWT_MASK_SUFFIX))
            continue;
        char gated[LAYER_NAME_MAX + 8];
        snprintf(gated, sizeof gated, "%.*s.gated", (int)(len - sl), l->name);
        int gl = -1;
        for (int j = li + 1; j < m->nlayers && gl < 0; j++)
            if (!strcmp(m->layers[j].name, gated)) gl = j;
        const int r = gl >= 0 ? model_sole_consumer(m, gl) : -1;
        const int C = (int)l->out.dims[0];
        const int ok = r >= 0 && m->layers[r].kind == LAYER_RELU && m->layers[r].out.ndim == 3 &&
                       m->layers[r].out.dims[0] == C;
        g[n] = (mwt_gate){li, ok ? r : -1, C, ok ? m->layers[r].out.dims[1] * m->layers[r].out.dims[2] : 0, off};
        off += C;
        n++;
    }
    if (n == 0) {
        free(g);
        return ts_fail(ctx, TS_EINVAL, "decompose --method mwt: the model has no mask generators (layers named "
                                       "'<bn>" TS_MWT_MASK_SUFFIX "'); train it with tessera train --modular");
    }
    *out = g;
    *ngates = n;
    *T = off;
    return TS_OK;
}

/* Kernels kept for one class: theta on each generator, lowered for one that keeps none. */
static void keep_kernels(const mwt_gate *gates, int ngates, const int64_t *count, int64_t samples, float theta,
                         uint8_t *keep) {
    for (int g = 0; g < ngates; g++) {
        const mwt_gate *gt = &gates[g];
        int any = 0;
        for (float t = theta; !any; t -= MWT_THETA_STEP) {
            /* t reaches <= 0 at the latest: every kernel is then kept */
            for (int ch = 0; ch < gt->channels; ch++) {
                keep[gt->off + ch] = (double)count[gt->off + ch] >= (double)t * (double)samples;
                any |= keep[gt->off + ch];
            }
        }
    }
}

/* (modular.h) */
double module_kernel_jaccard(const uint8_t *a, const uint8_t *b, int64_t T) {
    int64_t both = 0, either = 0;
    for (int64_t i = 0; i < T; i++) {
        both += a[i] & b[i];
        either += a[i] | b[i];
    }
    return either ? (double)both / (double)either : 1.0;
}

/* The module's yes/no threshold from its scores on the first `count` training samples. */
static ts_status fit_threshold(ts_ctx *ctx, ts_module *mod, const ts_dataset *train, const ts_preprocess *pp,
                               int64_t count, float *x, float *score, float *sp, float *sn) {
    ts_model *mm = NULL;
    ts_status st = ts_module_model(ctx, mod, &mm);
    if (st) return st;
    const size_t in_sz = (size_t)shape_numel(&mm->input);
    for (int64_t s = 0; s < count && !st; s += MODULE_EVAL_BATCH_MAX) {
        const int n = (int)(count - s < MODULE_EVAL_BATCH_MAX ? count - s : MODULE_EVAL_BATCH_MAX);
        ts_preprocess_images(pp, train->images + (size_t)s * in_sz, n, train->channels, train->height, train->width, x);
        st = ts_model_predict(ctx, mm, x, n, score + s);
    }
    ts_model_free(mm);
    if (st) return st;
    int64_t np = 0, nn = 0;
    for (int64_t s = 0; s < count; s++) {
        if (!isfinite(score[s])) continue;
        if (train->labels[s] == mod->cls) sp[np++] = score[s];
        else sn[nn++] = score[s];
    }
    mod->info.threshold = np && nn ? module_balanced_threshold(sp, np, sn, nn) : 0.0f;
    if (!isfinite(mod->info.threshold)) mod->info.threshold = 0.0f;
    return TS_OK;
}

/* Clears the module's keep bits of the kernels it drops (where a ReLU can drop them). */
static void drop_kernels(ts_module *mod, const mwt_gate *gates, int ngates, const uint8_t *keep) {
    for (int g = 0; g < ngates; g++) {
        const mwt_gate *gt = &gates[g];
        if (gt->relu < 0) continue;
        module_mask *mk = NULL;
        for (int k = 0; k < mod->nmasks && !mk; k++)
            if (mod->masks[k].layer == gt->relu) mk = &mod->masks[k];
        if (!mk) continue;
        for (int ch = 0; ch < gt->channels; ch++)
            if (!keep[gt->off + ch])
                for (int64_t u = (int64_t)ch * gt->plane; u < (int64_t)(ch + 1) * gt->plane; u++)
                    mk->keep[u >> 6] &= ~(1ull << (u & 63));
    }
}

ts_status decompose_mwt(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const ts_decompose_config *cfg,
                        const int *classes, int n, ts_progress_fn progress, void *user, ts_module ***modules,
                        int *count) {
    const double t0 = ts_monotonic_s();
    const int K = m->classes, want = n ? n : K, B = cfg->batch;
    const int64_t N = train->count;
    const size_t in_sz = (size_t)shape_numel(&m->input);
    mwt_gate *gates = NULL;
    int ngates = 0;
    int64_t T = 0;
    ts_status st = find_gates(ctx, m, &gates, &ngates, &T);
    if (st) return st;
    int *gate_of = malloc(sizeof *gate_of * (size_t)m->nlayers), *layers = malloc(sizeof *layers * (size_t)ngates);
    int *slot = malloc(sizeof *slot * (size_t)B), *filled = calloc((size_t)K, sizeof *filled);
    int64_t *cnt = calloc((size_t)K * (size_t)T, sizeof *cnt), *per_class = calloc((size_t)K, sizeof *per_class);
    uint8_t *open = calloc((size_t)K * MWT_COHESION_SAMPLES * (size_t)T, 1);
    uint8_t *keep = calloc((size_t)want * (size_t)T, 1);
    const int64_t nthr = cfg->val_count > 0 && cfg->val_count < N ? cfg->val_count : N;
    float *x = ts_alloc(ctx, (size_t)(B > MODULE_EVAL_BATCH_MAX ? B : MODULE_EVAL_BATCH_MAX) * in_sz * sizeof(float),
                        "decomposition inputs");
    float *logits = ts_alloc(ctx, (size_t)B * (size_t)K * sizeof(float), "decomposition logits");
    float *score = malloc(sizeof *score * (size_t)nthr), *sp = malloc(sizeof *sp * (size_t)nthr);
    float *sn = malloc(sizeof *sn * (size_t)nthr);
    ts_module **mods = NULL;
    ts_model *work = NULL;
    ts_preprocess pp;
    if (!gate_of || !layers || !slot || !filled || !cnt || !per_class || !open || !keep || !x || !logits || !score ||
        !sp || !sn)
        goto nomem;
    for (int li = 0; li < m->nlayers; li++) gate_of[li] = -1;
    for (int g = 0; g < ngates; g++) {
        gate_of[gates[g].mask] = g;
        layers[g] = gates[g].mask;
    }
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) goto done;
    if ((st = model_clone(ctx, m, &work))) goto done; /* inference caches change: m stays as given */

    /* one pass over the training set: which kernels each sample opens */
    mwt_sink sink = {gates, gate_of, T, NULL, slot, cnt, open};
    const ts_capture cap = {layers, ngates, record, &sink};
    for (int64_t s = 0; s < N; s += B) {
        const int nb = (int)(N - s < B ? N - s : B);
        sink.label = train->labels + s;
        for (int j = 0; j < nb; j++) {
            const int c = train->labels[s + j];
            per_class[c]++;
            slot[j] = filled[c] < MWT_COHESION_SAMPLES ? filled[c]++ : -1;
        }
        ts_preprocess_images(&pp, train->images + (size_t)s * in_sz, nb, train->channels, train->height, train->width,
                             x);
        if ((st = ts_model_predict_capture(ctx, work, x, nb, logits, &cap))) goto done;
        if (progress && progress(user, s + nb, N)) {
            st = ts_fail(ctx, TS_ECANCELED, "decompose: canceled");
            goto done;
        }
    }
    for (int w = 0; w < want; w++) {
        const int c = n ? classes[w] : w;
        if (per_class[c] == 0) {
            st = ts_fail(ctx, TS_EINVAL, "decompose --method mwt: class %d has no training samples", c);
            goto done;
        }
        keep_kernels(gates, ngates, cnt + (size_t)c * (size_t)T, per_class[c], cfg->theta, keep + (size_t)w * (size_t)T);
    }

    if (!(mods = calloc((size_t)want, sizeof *mods))) goto nomem;
    for (int w = 0; w < want; w++) {
        const int c = n ? classes[w] : w;
        if ((st = module_create(ctx, m, c, &mods[w]))) goto done;
        ts_module *mod = mods[w];
        drop_kernels(mod, gates, ngates, keep + (size_t)w * (size_t)T);
        if ((st = fit_threshold(ctx, mod, train, &pp, nthr, x, score, sp, sn))) goto done;
        double coh = 0.0, coup = 0.0;
        int64_t pairs = 0;
        const uint8_t *o = open + (size_t)c * MWT_COHESION_SAMPLES * (size_t)T;
        for (int i = 0; i < filled[c]; i++)
            for (int j = i + 1; j < filled[c]; j++, pairs++)
                coh += module_kernel_jaccard(o + (size_t)i * T, o + (size_t)j * T, T);
        mod->info.cohesion = pairs ? coh / (double)pairs : 1.0;
        for (int v = 0; v < want; v++)
            if (v != w) coup += module_kernel_jaccard(keep + (size_t)w * T, keep + (size_t)v * T, T);
        mod->info.coupling = want > 1 ? coup / (want - 1) : 0.0;
        mod->info.positives = (int)(per_class[c] > 1000000000 ? 1000000000 : per_class[c]);
        mod->info.negatives = (int)(N - per_class[c] > 1000000000 ? 1000000000 : N - per_class[c]);
        mod->info.method = TS_DECOMPOSE_MWT;
        if ((st = module_count(ctx, mod))) goto done;
    }
    for (int w = 0; w < want; w++) mods[w]->info.seconds = (ts_monotonic_s() - t0) / want;
    *modules = mods;
    *count = want;
    mods = NULL;
    goto done;
nomem:
    st = ts_fail(ctx, TS_ENOMEM, "decompose --method mwt: out of memory");
done:
    ts_modules_free(mods, want);
    ts_model_free(work);
    free(gates);
    free(gate_of);
    free(layers);
    free(slot);
    free(filled);
    free(cnt);
    free(per_class);
    free(open);
    free(keep);
    ts_free(x);
    ts_free(logits);
    free(score);
    free(sp);
    free(sn);
    return st;
}
