/* CNNSplitter's search (Qi et al., ASE'22; the brief is
 * ../shared/reference/modularization-successors.md, section 2, and docs/modules.md,
 * "CNNSplitter search").
 *
 * A module keeps a subset of the kernels: channels of the ReLUs over (C,H,W) maps,
 * as grad and mwt modules do. Per class:
 *  - importance: a kernel's mean L1 norm of its ReLU map over the class's training
 *    samples the origin gets right with softmax p >= confidence (at most positives);
 *  - groups: each layer's kernels sorted by importance split into ga_groups(C) groups,
 *    one gene each (ga_decode);
 *  - sensitivity: a layer is sensitive when keeping only its top half of kernels in
 *    every class's module (the other layers whole) lowers the composed validation
 *    top-1 by more than GA_SENSITIVE_DROP; the initial population activates a
 *    fraction of each layer's genes drawn from {0.6, 0.7, 0.8} there and from
 *    {0.4, 0.5, 0.6, 0.7} elsewhere, gene g of a layer of G groups weighted by
 *    exp((G - 1 - g) / 10) (softmax: important groups first);
 *  - a genetic algorithm: steady-state selection of the fittest parents, single-point
 *    crossover, a fraction of every offspring's genes flipped, elites kept; a class
 *    stops after ga_patience generations without a better best.
 * Fitness = a acc + (1 - alpha) diff, a = alpha + max(0, gamma - acc): acc is the mean
 * top-1 over fixed random 2-, 4- and 8-class tasks that include the class and the
 * all-class task, composing the candidate with the other classes' current best
 * modules (argmax of module scores, the channelled margin); diff the mean over those
 * modules of 1 - Jaccard of the kept-kernel sets. Classes search round-robin, one
 * generation each per round, so that each sees the others' latest best.
 *
 * Cost: a candidate's scores on the validation part come from one forward pass of the
 * frozen origin with its masks in place (mask_net.c, one branch, batch norms folded);
 * they are cached by chromosome, so its fitness is recomputed from score vectors only
 * when the other classes' best change. Everything is drawn from per-class generators
 * seeded by cfg->seed: a run is deterministic for a seed and a thread count. */
#include "modular.h"

#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A layer is sensitive when half of its kernels cost more composed top-1 than this. */
#define GA_SENSITIVE_DROP 0.05
/* Random tasks per size (2, 4, 8 classes) in a class's fitness, besides the all-class task. */
#define GA_TASKS_PER_SIZE 3
/* Cached score vectors per class, in chromosomes per population member. */
#define GA_CACHE_PER_MEMBER 8

int ga_groups(int channels) {
    const int g = channels < 256 ? 10 : 100;
    return g < channels ? g : channels;
}

void ga_decode(const int *order, int channels, int groups, const uint8_t *genes, uint8_t *keep) {
    for (int g = 0; g < groups; g++) {
        const int lo = (int)((int64_t)g * channels / groups), hi = (int)((int64_t)(g + 1) * channels / groups);
        for (int r = lo; r < hi; r++) keep[order[r]] = genes[g] ? 1 : 0;
    }
}

typedef struct cache_entry {
    uint64_t hash;
    int used;
    uint8_t *genes; /* (G) */
    float *score;   /* (nval) */
} cache_entry;

/* Everything the search shares; per class arrays are indexed by class. */
typedef struct ga_search {
    ts_ctx *ctx;
    const ts_decompose_config *cfg;
    mask_net mn;           /* one branch whose head outputs the origin's logits */
    int K, G;              /* classes; genes per chromosome */
    int64_t T;             /* kernels over all gates (mn.C) */
    int *goff, *ngroups;   /* (ngates + 1) first gene of each gate; (ngates) its groups */
    int *order;            /* (K, T) per class and gate: kernels by importance, most important first */
    uint8_t *sensitive;    /* (ngates) */
    int64_t nval;
    int64_t *vstart;       /* (K + 1) class j's validation samples are [vstart[j], vstart[j + 1]) */
    int32_t *yval;
    float *xval;           /* (nval, input) preprocessed */
    float *logits;         /* (nval, K) scratch */
    float *best_score;     /* (K, nval) each class's current best module's scores */
    uint8_t *best_keep;    /* (K, T) its kernels */
    uint8_t *keep;         /* (T) scratch */
    int *ntask, *task;     /* per class: tasks, and (K, GA_TASKS_MAX, K + 1) sizes then classes */
    cache_entry *cache;    /* (K, cap) */
    int cap;
    uint8_t *cache_genes;
    float *cache_score;
} ga_search;

#define GA_TASKS_MAX (3 * GA_TASKS_PER_SIZE + 1)

/* The kernels chromosome genes of class c keep, into s->keep (T). */
static void decode_all(ga_search *s, int c, const uint8_t *genes) {
    for (int g = 0; g < s->mn.ngates; g++) {
        const mask_gate *gt = &s->mn.gates[g];
        ga_decode(s->order + (size_t)c * (size_t)s->T + gt->off, gt->channels, s->ngroups[g], genes + s->goff[g],
                  s->keep + gt->off);
    }
}

/* Class c's module scores (the channelled margin) on the validation part with the
 * kernels keep (T) in place. */
static ts_status forward_scores(ga_search *s, int c, const uint8_t *keep, float *score) {
    for (int64_t t = 0; t < s->T; t++) s->mn.score[t] = keep[t] ? 1.0f : -1.0f;
    mask_net_set_masks(&s->mn);
    const int K = s->K, B = s->cfg->batch;
    const size_t in_sz = (size_t)shape_numel(&s->mn.origin->input);
    for (int64_t i = 0; i < s->nval; i += B) {
        const int n = (int)(s->nval - i < B ? s->nval - i : B);
        ts_status st = ts_model_predict(s->ctx, s->mn.net, s->xval + (size_t)i * in_sz, n, s->logits + (size_t)i * K);
        if (st) return st;
    }
    for (int64_t i = 0; i < s->nval; i++) {
        const float *row = s->logits + (size_t)i * K;
        double sum = 0;
        for (int j = 0; j < K; j++) sum += row[j];
        score[i] = (float)(row[c] - (sum - row[c]) / (K - 1));
    }
    return TS_OK;
}

static uint64_t genes_hash(const uint8_t *g, int n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < n; i++) h = (h ^ g[i]) * 1099511628211ull;
    return h;
}

/* Class c's cached scores for a chromosome (NULL: not cached), and in *slot where
 * they would go. */
static const float *cache_find(ga_search *s, int c, const uint8_t *genes, cache_entry **slot) {
    const uint64_t h = genes_hash(genes, s->G);
    cache_entry *tab = s->cache + (size_t)c * (size_t)s->cap;
    *slot = NULL;
    for (int p = 0; p < 16; p++) {
        cache_entry *e = &tab[(h + (uint64_t)p) & (uint64_t)(s->cap - 1)];
        if (!e->used) {
            if (!*slot) *slot = e;
            break;
        }
        if (e->hash == h && !memcmp(e->genes, genes, (size_t)s->G)) return e->score;
    }
    if (!*slot) *slot = &tab[h & (uint64_t)(s->cap - 1)]; /* a full run of probes: replace the home slot */
    return NULL;
}

static void cache_fill(ga_search *s, cache_entry *slot, const uint8_t *genes) {
    slot->used = 1;
    slot->hash = genes_hash(genes, s->G);
    memcpy(slot->genes, genes, (size_t)s->G);
}

/* Class c's scores for a chromosome: from the cache, else a forward pass (cached). */
static ts_status candidate_scores(ga_search *s, int c, const uint8_t *genes, const float **out) {
    cache_entry *slot;
    if ((*out = cache_find(s, c, genes, &slot))) return TS_OK;
    decode_all(s, c, genes);
    slot->used = 0;
    ts_status st = forward_scores(s, c, s->keep, slot->score);
    if (st) return st;
    cache_fill(s, slot, genes);
    *out = slot->score;
    return TS_OK;
}

/* Mean top-1 of class c's tasks, its module scoring `score` and every other class its
 * current best. */
static double composed_acc(const ga_search *s, int c, const float *score) {
    double sum = 0;
    for (int t = 0; t < s->ntask[c]; t++) {
        const int *task = s->task + ((size_t)c * GA_TASKS_MAX + (size_t)t) * (size_t)(s->K + 1);
        const int k = task[0];
        int64_t right = 0, all = 0;
        for (int a = 1; a <= k; a++) {
            const int j = task[a];
            for (int64_t i = s->vstart[j]; i < s->vstart[j + 1]; i++) {
                int best = -1;
                float bv = 0;
                for (int b = 1; b <= k; b++) {
                    const float v = task[b] == c ? score[i] : s->best_score[(size_t)task[b] * (size_t)s->nval + i];
                    if (best < 0 || v > bv) {
                        best = task[b];
                        bv = v;
                    }
                }
                right += best == j;
                all++;
            }
        }
        sum += all ? (double)right / (double)all : 0.0;
    }
    return s->ntask[c] ? sum / s->ntask[c] : 0.0;
}

static double fitness(ga_search *s, int c, const uint8_t *genes, ts_status *st) {
    const float *score = NULL;
    if ((*st = candidate_scores(s, c, genes, &score))) return 0;
    decode_all(s, c, genes);
    const double acc = composed_acc(s, c, score);
    double diff = 0;
    for (int j = 0; j < s->K; j++)
        if (j != c) diff += 1.0 - module_kernel_jaccard(s->keep, s->best_keep + (size_t)j * (size_t)s->T, s->T);
    diff /= s->K - 1;
    const double alpha = s->cfg->ga_alpha, gap = s->cfg->ga_gamma - acc;
    return (alpha + (gap > 0 ? gap : 0)) * acc + (1 - alpha) * diff;
}

/* ------------------------------------------------------------- set-up */

/* perm (n) = 0 .. n-1 in an order fixed by seed (Fisher-Yates). */
static void shuffled(int64_t *perm, int64_t n, uint64_t seed) {
    ts_rng r;
    ts_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)ts_rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

typedef struct ranked {
    float v;
    int i;
} ranked;

static int by_importance(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Capture callback: per sample of the call, each gate channel's L1 norm into l1 (B, T). */
typedef struct l1_sink {
    const mask_gate *gates;
    const int *gate_of; /* (origin layers) */
    int64_t T;
    double *l1;
} l1_sink;

static int record_l1(void *user, int layer, int64_t first, int n, const float *out) {
    l1_sink *k = user;
    const mask_gate *g = &k->gates[k->gate_of[layer]];
    for (int j = 0; j < n; j++)
        for (int ch = 0; ch < g->channels; ch++) {
            const float *p = out + ((size_t)j * (size_t)g->channels + (size_t)ch) * (size_t)g->plane;
            double a = 0;
            for (int64_t u = 0; u < g->plane; u++) a += fabsf(p[u]);
            k->l1[(size_t)(first + j) * (size_t)k->T + g->off + ch] = a;
        }
    return 0;
}

/* Importance order of every class's kernels from the training samples outside the
 * validation part (invalid[i] set), in an order fixed by the seed. */
static ts_status rank_kernels(ga_search *s, const ts_model *m, const ts_dataset *train, const ts_preprocess *pp,
                              const uint8_t *invalid, int64_t *positives) {
    const int K = s->K, B = s->cfg->batch;
    const int64_t T = s->T, N = train->count;
    const size_t in_sz = (size_t)shape_numel(&m->input);
    ts_model *work = NULL;
    int *gate_of = calloc((size_t)m->nlayers, sizeof *gate_of), *layers = malloc(sizeof *layers * (size_t)s->mn.ngates);
    int64_t *perm = malloc(sizeof *perm * (size_t)N), *idx = malloc(sizeof *idx * (size_t)B);
    double *l1 = malloc(sizeof *l1 * (size_t)B * (size_t)T), *sum = calloc((size_t)K * (size_t)T, sizeof *sum);
    float *x = ts_alloc(s->ctx, (size_t)B * in_sz * sizeof(float), "importance batch");
    float *lo = ts_alloc(s->ctx, (size_t)B * (size_t)K * sizeof(float), "importance logits");
    ranked *rk = malloc(sizeof *rk * (size_t)T);
    ts_status st = TS_OK;
    if (!gate_of || !layers || !perm || !idx || !l1 || !sum || !x || !lo || !rk) {
        st = ts_fail(s->ctx, TS_ENOMEM, "decompose --method ga: out of memory");
        goto done;
    }
    for (int g = 0; g < s->mn.ngates; g++) {
        gate_of[s->mn.gates[g].relu] = g;
        layers[g] = s->mn.gates[g].relu;
    }
    if ((st = model_clone(s->ctx, m, &work))) goto done; /* inference caches change: m stays as given */
    shuffled(perm, N, s->cfg->seed ^ 0x696d706f7274ull);
    l1_sink sink = {s->mn.gates, gate_of, T, l1};
    const ts_capture cap = {layers, s->mn.ngates, record_l1, &sink};
    int64_t cursor = 0;
    for (;;) {
        int b = 0;
        while (b < B && cursor < N) {
            const int64_t i = perm[cursor++];
            if (invalid[i] || positives[train->labels[i]] >= s->cfg->positives) continue;
            ts_preprocess_images(pp, train->images + (size_t)i * in_sz, 1, train->channels, train->height,
                                 train->width, x + (size_t)b * in_sz);
            idx[b++] = i;
        }
        if (b == 0) break;
        if ((st = ts_model_predict_capture(s->ctx, work, x, b, lo, &cap))) goto done;
        for (int j = 0; j < b; j++) {
            const int c = train->labels[idx[j]];
            const float *row = lo + (size_t)j * K;
            if (positives[c] >= s->cfg->positives || ts_argmax(row, K) != c) continue;
            double z = 0;
            for (int k = 0; k < K; k++) z += exp((double)(row[k] - row[c]));
            if (1.0 / z < s->cfg->confidence) continue;
            positives[c]++;
            for (int64_t t = 0; t < T; t++) sum[(size_t)c * (size_t)T + t] += l1[(size_t)j * (size_t)T + t];
        }
    }
    /* the mean only scales a class's importances: the sums sort the same way */
    for (int c = 0; c < K; c++)
        for (int g = 0; g < s->mn.ngates; g++) {
            const mask_gate *gt = &s->mn.gates[g];
            for (int ch = 0; ch < gt->channels; ch++)
                rk[ch] = (ranked){(float)sum[(size_t)c * (size_t)T + gt->off + ch], ch};
            qsort(rk, (size_t)gt->channels, sizeof *rk, by_importance);
            for (int ch = 0; ch < gt->channels; ch++) s->order[(size_t)c * (size_t)T + gt->off + ch] = rk[ch].i;
        }
done:
    ts_model_free(work);
    free(gate_of);
    free(layers);
    free(perm);
    free(idx);
    free(l1);
    free(sum);
    ts_free(x);
    ts_free(lo);
    free(rk);
    return st;
}

/* Top-1 of all classes composed by argmax over score (K, nval). */
static double all_class_acc(const ga_search *s, const float *score) {
    int64_t right = 0;
    for (int64_t i = 0; i < s->nval; i++) {
        int best = 0;
        for (int j = 1; j < s->K; j++)
            if (score[(size_t)j * (size_t)s->nval + i] > score[(size_t)best * (size_t)s->nval + i]) best = j;
        right += best == s->yval[i];
    }
    return s->nval ? (double)right / (double)s->nval : 0.0;
}

/* Sensitive layers: keeping the top half of a layer's kernels in every module (the
 * other layers whole) costs more than GA_SENSITIVE_DROP of composed top-1. */
static ts_status find_sensitive(ga_search *s, double origin_acc) {
    const int K = s->K, NG = s->mn.ngates;
    /* (NG, K, nval): layer g's half kept in class c's module; the (g, c) pairs are
     * shared out among the ranks (ts_ctx_set_comm) */
    float *tmp = malloc(sizeof *tmp * (size_t)NG * (size_t)K * (size_t)s->nval + 1);
    if (!tmp) return ts_fail(s->ctx, TS_ENOMEM, "decompose --method ga: out of memory");
    int64_t lo, hi;
    ctx_share(s->ctx, ctx_rank(s->ctx), (int64_t)NG * K, &lo, &hi);
    ts_status st = TS_OK;
    for (int64_t i = lo; !st && i < hi; i++) {
        const int g = (int)(i / K), c = (int)(i % K);
        const mask_gate *gt = &s->mn.gates[g];
        const int top = (gt->channels + 1) / 2;
        memset(s->keep, 1, (size_t)s->T);
        const int *ord = s->order + (size_t)c * (size_t)s->T + gt->off;
        for (int r = top; r < gt->channels; r++) s->keep[gt->off + ord[r]] = 0;
        st = forward_scores(s, c, s->keep, tmp + (size_t)i * (size_t)s->nval);
    }
    if (!st) st = ctx_gather_rows(s->ctx, tmp, (int64_t)NG * K, 0, sizeof *tmp * (size_t)s->nval, "decompose --method ga");
    for (int g = 0; !st && g < NG; g++)
        s->sensitive[g] = all_class_acc(s, tmp + (size_t)g * (size_t)K * (size_t)s->nval) < origin_acc - GA_SENSITIVE_DROP;
    free(tmp);
    return st;
}

/* The fixed tasks of class c: GA_TASKS_PER_SIZE random 2-, 4- and 8-class tasks that
 * include it (sizes below K), then all classes. */
static void draw_tasks(ga_search *s, int c, ts_rng *r) {
    const int K = s->K;
    int others[4096];
    int n = 0;
    static const int sizes[3] = {2, 4, 8};
    for (int z = 0; z < 3; z++) {
        if (sizes[z] >= K) continue;
        for (int t = 0; t < GA_TASKS_PER_SIZE; t++) {
            int *task = s->task + ((size_t)c * GA_TASKS_MAX + (size_t)n++) * (size_t)(K + 1);
            int m = 0;
            for (int j = 0; j < K; j++)
                if (j != c) others[m++] = j;
            for (int i = 0; i < sizes[z] - 1; i++) { /* a partial shuffle picks them */
                const int j = i + (int)ts_rng_below(r, (uint64_t)(m - i)), v = others[i];
                others[i] = others[j];
                others[j] = v;
            }
            uint8_t in[4096] = {0};
            in[c] = 1;
            for (int i = 0; i < sizes[z] - 1; i++) in[others[i]] = 1;
            task[0] = sizes[z];
            for (int j = 0, a = 1; j < K; j++)
                if (in[j]) task[a++] = j;
        }
    }
    int *task = s->task + ((size_t)c * GA_TASKS_MAX + (size_t)n++) * (size_t)(K + 1);
    task[0] = K;
    for (int j = 0; j < K; j++) task[j + 1] = j;
    s->ntask[c] = n;
}

/* One initial chromosome of class c: per layer a fraction of active genes drawn from
 * the sensitive or the other set, the genes themselves with weights exp((G-1-g)/10),
 * without replacement. */
static void init_chromosome(const ga_search *s, ts_rng *r, uint8_t *genes) {
    static const double sens[3] = {0.6, 0.7, 0.8}, rest[4] = {0.4, 0.5, 0.6, 0.7};
    double w[100];
    memset(genes, 0, (size_t)s->G);
    for (int g = 0; g < s->mn.ngates; g++) {
        const int ng = s->ngroups[g];
        const double f = s->sensitive[g] ? sens[ts_rng_below(r, 3)] : rest[ts_rng_below(r, 4)];
        int act = (int)lround(f * ng);
        if (act < 1) act = 1;
        double total = 0;
        for (int i = 0; i < ng; i++) total += (w[i] = exp((double)(ng - 1 - i) / 10.0));
        uint8_t *gs = genes + s->goff[g];
        for (int a = 0; a < act; a++) {
            double u = (double)ts_rng_uniform(r) * total;
            int pick = -1;
            for (int i = 0; i < ng; i++) {
                if (gs[i]) continue;
                pick = i; /* the last free one absorbs rounding */
                if ((u -= w[i]) < 0) break;
            }
            gs[pick] = 1;
            total -= w[pick];
        }
    }
}

/* ----------------------------------------------------------- the search */

typedef struct ga_class {
    ts_rng rng;
    uint8_t *pop, *next; /* (P, G) */
    double *fit;         /* (P) */
    int *rank;           /* (P) population members, fittest first */
    double best;         /* best fitness seen */
    int stale, gens, done;
} ga_class;

/* rank (P) = members by fitness, fittest first, ties by index. */
static void rank_members(const double *fit, int P, int *rank) {
    for (int i = 0; i < P; i++) {
        int j = i;
        while (j > 0 && fit[rank[j - 1]] < fit[i]) {
            rank[j] = rank[j - 1];
            j--;
        }
        rank[j] = i;
    }
}

/* With ranks (ts_ctx_set_comm): the forward passes that class c's population needs
 * (its chromosomes not cached, each once) shared out among the ranks, and every
 * rank's results cached on every rank, so that evaluate finds them all. A forward
 * pass gives the same bits on any rank, so fitness and search are a lone run's. */
static ts_status prefetch_scores(ga_search *s, int c, const ga_class *gc) {
    const int P = s->cfg->ga_population;
    if (ctx_ranks(s->ctx) == 1) return TS_OK;
    int *need = malloc(sizeof *need * (size_t)P), nneed = 0;
    if (!need) return ts_fail(s->ctx, TS_ENOMEM, "decompose --method ga: out of memory");
    for (int p = 0; p < P; p++) {
        const uint8_t *g = gc->pop + (size_t)p * (size_t)s->G;
        cache_entry *slot;
        int dup = cache_find(s, c, g, &slot) != NULL;
        for (int q = 0; q < nneed && !dup; q++) dup = !memcmp(gc->pop + (size_t)need[q] * (size_t)s->G, g, (size_t)s->G);
        if (!dup) need[nneed++] = p;
    }
    float *score = nneed ? malloc(sizeof *score * (size_t)nneed * (size_t)s->nval) : NULL;
    ts_status st = nneed && !score ? ts_fail(s->ctx, TS_ENOMEM, "decompose --method ga: out of memory") : TS_OK;
    int64_t lo, hi;
    ctx_share(s->ctx, ctx_rank(s->ctx), nneed, &lo, &hi);
    for (int64_t i = lo; !st && i < hi; i++) {
        decode_all(s, c, gc->pop + (size_t)need[i] * (size_t)s->G);
        st = forward_scores(s, c, s->keep, score + (size_t)i * (size_t)s->nval);
    }
    if (!st) st = ctx_gather_rows(s->ctx, score, nneed, 0, sizeof *score * (size_t)s->nval, "decompose --method ga");
    for (int i = 0; !st && i < nneed; i++) {
        const uint8_t *g = gc->pop + (size_t)need[i] * (size_t)s->G;
        cache_entry *slot;
        cache_find(s, c, g, &slot);
        memcpy(slot->score, score + (size_t)i * (size_t)s->nval, sizeof *score * (size_t)s->nval);
        cache_fill(s, slot, g);
    }
    free(need);
    free(score);
    return st;
}

/* Fitness of class c's population, then its best becomes the class's current best. */
static ts_status evaluate(ga_search *s, int c, ga_class *gc) {
    const int P = s->cfg->ga_population;
    ts_status st = prefetch_scores(s, c, gc);
    if (st) return st;
    for (int p = 0; p < P; p++) {
        gc->fit[p] = fitness(s, c, gc->pop + (size_t)p * (size_t)s->G, &st);
        if (st) return st;
    }
    rank_members(gc->fit, P, gc->rank);
    const uint8_t *best = gc->pop + (size_t)gc->rank[0] * (size_t)s->G;
    const float *score = NULL;
    if ((st = candidate_scores(s, c, best, &score))) return st;
    memcpy(s->best_score + (size_t)c * (size_t)s->nval, score, sizeof(float) * (size_t)s->nval);
    decode_all(s, c, best);
    memcpy(s->best_keep + (size_t)c * (size_t)s->T, s->keep, (size_t)s->T);
    return TS_OK;
}

/* The next population: elites, then offspring of the fittest parents (single-point
 * crossover of parents k and k + 1 in turn, a fraction of the genes flipped). */
static void breed(const ga_search *s, ga_class *gc) {
    const ts_decompose_config *cfg = s->cfg;
    const int P = cfg->ga_population, G = s->G, E = cfg->ga_elites, np = cfg->ga_parents;
    int flips = (int)lround((double)cfg->ga_mutation * G);
    if (cfg->ga_mutation > 0 && flips < 1) flips = 1;
    for (int e = 0; e < E; e++)
        memcpy(gc->next + (size_t)e * G, gc->pop + (size_t)gc->rank[e] * G, (size_t)G);
    for (int k = 0; k < P - E; k++) {
        const uint8_t *a = gc->pop + (size_t)gc->rank[k % np] * G, *b = gc->pop + (size_t)gc->rank[(k + 1) % np] * G;
        uint8_t *child = gc->next + (size_t)(E + k) * G;
        const int cut = G > 1 ? 1 + (int)ts_rng_below(&gc->rng, (uint64_t)(G - 1)) : G;
        memcpy(child, a, (size_t)cut);
        memcpy(child + cut, b + cut, (size_t)(G - cut));
        for (int f = 0; f < flips; f++) child[ts_rng_below(&gc->rng, (uint64_t)G)] ^= 1;
    }
    uint8_t *t = gc->pop;
    gc->pop = gc->next;
    gc->next = t;
}

static ts_status check_ga_config(ts_ctx *ctx, const ts_decompose_config *c) {
    if (c->ga_population < 2 || c->ga_population > 100000)
        return ts_fail(ctx, TS_EINVAL, "decompose --method ga: population %d out of 2..100000", c->ga_population);
    if (c->ga_generations < 0 || c->ga_generations > 1000000)
        return ts_fail(ctx, TS_EINVAL, "decompose --method ga: generations %d out of 0..1000000", c->ga_generations);
    if (c->ga_parents < 1 || c->ga_parents > c->ga_population)
        return ts_fail(ctx, TS_EINVAL, "decompose --method ga: parents %d out of 1..%d (the population)",
                       c->ga_parents, c->ga_population);
    if (c->ga_elites < 0 || c->ga_elites >= c->ga_population)
        return ts_fail(ctx, TS_EINVAL, "decompose --method ga: elites %d out of 0..%d (fewer than the population)",
                       c->ga_elites, c->ga_population - 1);
    if (!(c->ga_mutation >= 0.0f && c->ga_mutation <= 1.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose --method ga: mutation %g out of [0, 1]", (double)c->ga_mutation);
    if (c->ga_patience < 1)
        return ts_fail(ctx, TS_EINVAL, "decompose --method ga: patience %d must be at least 1", c->ga_patience);
    if (c->ga_val_per_class < 1 || c->ga_val_per_class > 1000000)
        return ts_fail(ctx, TS_EINVAL, "decompose --method ga: validation samples per class %d out of 1..1000000",
                       c->ga_val_per_class);
    if (!(c->ga_alpha > 0.0f && c->ga_alpha <= 1.0f) || !(c->ga_gamma >= 0.0f && c->ga_gamma <= 1.0f))
        return ts_fail(ctx, TS_EINVAL, "decompose --method ga: alpha %g out of (0, 1] or gamma %g out of [0, 1]",
                       (double)c->ga_alpha, (double)c->ga_gamma);
    return TS_OK;
}

/* Class-balanced validation part: the first ga_val_per_class samples of each class in
 * an order fixed by the seed (at most half of a class's samples), grouped by class. */
static ts_status carve_validation(ga_search *s, const ts_dataset *train, const ts_preprocess *pp, uint8_t *invalid) {
    const int K = s->K;
    const int64_t N = train->count;
    int64_t *per = calloc((size_t)K, sizeof *per), *take = calloc((size_t)K, sizeof *take);
    int64_t *perm = malloc(sizeof *perm * (size_t)N);
    if (!per || !take || !perm) {
        free(per);
        free(take);
        free(perm);
        return ts_fail(s->ctx, TS_ENOMEM, "decompose --method ga: out of memory");
    }
    for (int64_t i = 0; i < N; i++) per[train->labels[i]]++;
    s->vstart[0] = 0;
    for (int c = 0; c < K; c++) {
        take[c] = per[c] / 2 < s->cfg->ga_val_per_class ? per[c] / 2 : s->cfg->ga_val_per_class;
        s->vstart[c + 1] = s->vstart[c] + take[c];
    }
    s->nval = s->vstart[K];
    ts_status st = TS_OK;
    const size_t in_sz = (size_t)train->channels * (size_t)train->height * (size_t)train->width;
    s->xval = ts_alloc(s->ctx, (size_t)(s->nval ? s->nval : 1) * in_sz * sizeof(float), "validation inputs");
    s->yval = malloc(sizeof *s->yval * (size_t)(s->nval ? s->nval : 1));
    s->logits = malloc(sizeof *s->logits * (size_t)(s->nval ? s->nval : 1) * (size_t)K);
    if (!s->xval || !s->yval || !s->logits) {
        st = ts_fail(s->ctx, TS_ENOMEM, "decompose --method ga: out of memory");
        goto done;
    }
    if (s->nval == 0) {
        st = ts_fail(s->ctx, TS_EINVAL, "decompose --method ga: no class has 2 training samples to carve a validation "
                                        "part from");
        goto done;
    }
    shuffled(perm, N, s->cfg->seed ^ 0x76616cull);
    memset(per, 0, sizeof *per * (size_t)K);
    for (int64_t k = 0; k < N; k++) {
        const int64_t i = perm[k];
        const int c = train->labels[i];
        if (per[c] >= take[c]) continue;
        const int64_t v = s->vstart[c] + per[c]++;
        invalid[i] = 1;
        s->yval[v] = c;
        ts_preprocess_images(pp, train->images + (size_t)i * in_sz, 1, train->channels, train->height, train->width,
                             s->xval + (size_t)v * in_sz);
    }
done:
    free(per);
    free(take);
    free(perm);
    return st;
}

/* Gene layout, tasks, cache and best arrays once the mask network exists. */
static ts_status alloc_search(ga_search *s) {
    const int K = s->K, ng = s->mn.ngates, P = s->cfg->ga_population;
    s->T = s->mn.C;
    s->goff = malloc(sizeof *s->goff * (size_t)(ng + 1));
    s->ngroups = malloc(sizeof *s->ngroups * (size_t)ng);
    s->sensitive = calloc((size_t)ng, 1);
    s->vstart = malloc(sizeof *s->vstart * (size_t)(K + 1));
    s->order = malloc(sizeof *s->order * (size_t)K * (size_t)s->T);
    s->best_keep = malloc((size_t)K * (size_t)s->T);
    s->keep = malloc((size_t)s->T);
    s->ntask = calloc((size_t)K, sizeof *s->ntask);
    s->task = malloc(sizeof *s->task * (size_t)K * GA_TASKS_MAX * (size_t)(K + 1));
    if (!s->goff || !s->ngroups || !s->sensitive || !s->vstart || !s->order || !s->best_keep || !s->keep ||
        !s->ntask || !s->task)
        return ts_fail(s->ctx, TS_ENOMEM, "decompose --method ga: out of memory");
    s->goff[0] = 0;
    for (int g = 0; g < ng; g++) {
        s->ngroups[g] = ga_groups(s->mn.gates[g].channels);
        s->goff[g + 1] = s->goff[g] + s->ngroups[g];
    }
    s->G = s->goff[ng];
    s->cap = 1;
    while (s->cap < GA_CACHE_PER_MEMBER * P) s->cap *= 2;
    return TS_OK;
}

static ts_status alloc_cache(ga_search *s) {
    const size_t n = (size_t)s->K * (size_t)s->cap;
    s->cache = calloc(n, sizeof *s->cache);
    s->cache_genes = malloc(n * (size_t)s->G);
    s->cache_score = malloc(n * (size_t)s->nval * sizeof(float));
    s->best_score = malloc(sizeof(float) * (size_t)s->K * (size_t)s->nval);
    if (!s->cache || !s->cache_genes || !s->cache_score || !s->best_score)
        return ts_fail(s->ctx, TS_ENOMEM, "decompose --method ga: out of memory for the score cache (%zu entries of "
                                          "%lld scores)", n, (long long)s->nval);
    for (size_t i = 0; i < n; i++) {
        s->cache[i].genes = s->cache_genes + i * (size_t)s->G;
        s->cache[i].score = s->cache_score + i * (size_t)s->nval;
    }
    return TS_OK;
}

static void free_search(ga_search *s) {
    mask_net_free(&s->mn);
    free(s->goff);
    free(s->ngroups);
    free(s->order);
    free(s->sensitive);
    free(s->vstart);
    free(s->yval);
    ts_free(s->xval);
    free(s->logits);
    free(s->best_score);
    free(s->best_keep);
    free(s->keep);
    free(s->ntask);
    free(s->task);
    free(s->cache);
    free(s->cache_genes);
    free(s->cache_score);
}

/* Module for class c from its best kernels: channel planes of the dropped kernels
 * cleared, threshold fitted on its validation scores. */
static ts_status make_module(ga_search *s, const ts_model *m, int c, const ga_class *gc, float *sp, float *sn,
                             ts_module **out) {
    ts_status st = module_create(s->ctx, m, c, out);
    if (st) return st;
    ts_module *mod = *out;
    const uint8_t *keep = s->best_keep + (size_t)c * (size_t)s->T;
    for (int g = 0, k = 0; g < s->mn.ngates; g++) {
        const mask_gate *gt = &s->mn.gates[g];
        while (k < mod->nmasks && mod->masks[k].layer != gt->relu) k++;
        if (k == mod->nmasks) break;
        module_mask *mk = &mod->masks[k];
        for (int ch = 0; ch < gt->channels; ch++)
            if (!keep[gt->off + ch])
                for (int64_t u = (int64_t)ch * gt->plane; u < (int64_t)(ch + 1) * gt->plane; u++)
                    mk->keep[u >> 6] &= ~(1ull << (u & 63));
    }
    const float *score = s->best_score + (size_t)c * (size_t)s->nval;
    int64_t np = 0, nn = 0;
    for (int64_t i = 0; i < s->nval; i++) {
        if (s->yval[i] == c) sp[np++] = score[i];
        else sn[nn++] = score[i];
    }
    mod->info.threshold = np && nn ? module_balanced_threshold(sp, np, sn, nn) : 0.0f;
    if (!isfinite(mod->info.threshold)) mod->info.threshold = 0.0f;
    double coup = 0;
    for (int j = 0; j < s->K; j++)
        if (j != c) coup += module_kernel_jaccard(keep, s->best_keep + (size_t)j * (size_t)s->T, s->T);
    mod->info.coupling = coup / (s->K - 1);
    mod->info.method = TS_DECOMPOSE_GA;
    mod->info.generations = gc->gens;
    mod->info.fitness = gc->fit[gc->rank[0]];
    return module_count(s->ctx, mod);
}

ts_status decompose_ga(ts_ctx *ctx, const ts_model *m, const ts_dataset *train, const ts_decompose_config *cfg,
                       const int *classes, int n, ts_progress_fn progress, void *user, ts_module ***modules,
                       int *count) {
    ts_status st = check_ga_config(ctx, cfg);
    if (st) return st;
    const int K = m->classes, want = n ? n : K, P = cfg->ga_population;
    if (K < 2) return ts_fail(ctx, TS_EINVAL, "decompose --method ga: the model has %d class; 2 or more needed", K);
    if (K > 4096) return ts_fail(ctx, TS_EUNSUPPORTED, "decompose --method ga: more than 4096 classes");
    const double t0 = ts_monotonic_s();
    ga_search s = {0};
    s.ctx = ctx;
    s.cfg = cfg;
    s.K = K;
    ga_class *gcs = calloc((size_t)K, sizeof *gcs);
    uint8_t *invalid = calloc((size_t)train->count, 1), *searched = calloc((size_t)K, 1);
    int64_t *positives = calloc((size_t)K, sizeof *positives);
    float *head = malloc(sizeof *head * (size_t)K * (size_t)K), *sp = NULL, *sn = NULL;
    ts_module **mods = NULL;
    if (!gcs || !invalid || !searched || !positives || !head) goto nomem;
    for (int i = 0; i < K * K; i++) head[i] = i / K == i % K ? 1.0f : 0.0f;
    const mask_net_spec spec = {"decompose --method ga", 1, 0, K, head, "logits"};
    if ((st = mask_net_build(&s.mn, ctx, m, &spec, cfg->seed))) goto done;
    if ((st = alloc_search(&s))) goto done;
    ts_preprocess pp;
    if ((st = ts_model_get_preprocess(ctx, m, &pp))) goto done;
    if ((st = carve_validation(&s, train, &pp, invalid))) goto done;
    if ((st = alloc_cache(&s))) goto done;
    if ((st = rank_kernels(&s, m, train, &pp, invalid, positives))) goto done;

    /* every class's module starts as the origin: all kernels */
    memset(s.best_keep, 1, (size_t)K * (size_t)s.T);
    memset(s.keep, 1, (size_t)s.T);
    for (int c = 0; c < K; c++)
        if ((st = forward_scores(&s, c, s.keep, s.best_score + (size_t)c * (size_t)s.nval))) goto done;
    const double origin_acc = all_class_acc(&s, s.best_score);
    if ((st = find_sensitive(&s, origin_acc))) goto done;
    for (int w = 0; w < want; w++) searched[n ? classes[w] : w] = 1;
    for (int c = 0; c < K; c++) {
        ga_class *gc = &gcs[c];
        ts_rng_seed(&gc->rng, cfg->seed ^ (0x6761ull << 32) ^ (uint64_t)c * 0x9e3779b97f4a7c15ull);
        draw_tasks(&s, c, &gc->rng);
        gc->pop = malloc((size_t)P * (size_t)s.G);
        gc->next = malloc((size_t)P * (size_t)s.G);
        gc->fit = malloc(sizeof *gc->fit * (size_t)P);
        gc->rank = malloc(sizeof *gc->rank * (size_t)P);
        if (!gc->pop || !gc->next || !gc->fit || !gc->rank) goto nomem;
        gc->done = !searched[c];
        for (int p = 0; p < P; p++) init_chromosome(&s, &gc->rng, gc->pop + (size_t)p * (size_t)s.G);
    }
    /* round 0 evaluates the initial populations; round r >= 1 breeds generation r */
    const int64_t total = (int64_t)want * (cfg->ga_generations + 1);
    int64_t done_steps = 0;
    for (int round = 0; round <= cfg->ga_generations; round++) {
        int active = 0;
        for (int c = 0; c < K; c++) {
            ga_class *gc = &gcs[c];
            if (gc->done) continue;
            if (round > 0) breed(&s, gc);
            if ((st = evaluate(&s, c, gc))) goto done;
            const double f = gc->fit[gc->rank[0]];
            gc->gens = round;
            if (round == 0 || f > gc->best + 1e-9) {
                gc->best = f;
                gc->stale = 0;
            } else if (++gc->stale >= cfg->ga_patience) {
                gc->done = 1;
                done_steps += cfg->ga_generations - round; /* the rounds it will skip */
            }
            active += !gc->done;
            done_steps++;
            if (cfg->ga_generation) cfg->ga_generation(cfg->ga_generation_user, c, round, gc->best);
            if (progress && progress(user, done_steps, total)) {
                st = ts_fail(ctx, TS_ECANCELED, "decompose: canceled");
                goto done;
            }
        }
        if (!active) break;
    }
    if (progress) progress(user, total, total);

    const double val_acc = all_class_acc(&s, s.best_score);
    sp = malloc(sizeof *sp * (size_t)s.nval);
    sn = malloc(sizeof *sn * (size_t)s.nval);
    if (!(mods = calloc((size_t)want, sizeof *mods)) || !sp || !sn) goto nomem;
    const double secs = ts_monotonic_s() - t0;
    for (int w = 0; w < want; w++) {
        const int c = n ? classes[w] : w;
        if ((st = make_module(&s, m, c, &gcs[c], sp, sn, &mods[w]))) goto done;
        ts_module *mod = mods[w];
        mod->info.positives = (int)positives[c];
        mod->info.negatives = (int)(s.nval - (s.vstart[c + 1] - s.vstart[c]));
        mod->info.seconds = secs / want;
        mod->info.val_accuracy = val_acc;
        mod->info.origin_val_accuracy = origin_acc;
    }
    *modules = mods;
    *count = want;
    mods = NULL;
    goto done;
nomem:
    st = ts_fail(ctx, TS_ENOMEM, "decompose --method ga: out of memory");
done:
    ts_modules_free(mods, want);
    for (int c = 0; gcs && c < K; c++) {
        free(gcs[c].pop);
        free(gcs[c].next);
        free(gcs[c].fit);
        free(gcs[c].rank);
    }
    free(gcs);
    free_search(&s);
    free(invalid);
    free(searched);
    free(positives);
    free(head);
    free(sp);
    free(sn);
    return st;
}
