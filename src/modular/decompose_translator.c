/* Decomposing an encoder-decoder translator that writes several languages into one
 * module per target language (Imtiaz, Pan & Rajan, ICSE'23; brief
 * ../shared/reference/modularization-successors.md section 1, docs/sequences.md).
 * The paper's encoder-decoder labels are target languages: one model translates
 * English into French, German and Italian, a start token naming the language, and the
 * module of a language is the model with the decoder units that language uses less
 * than the others removed (its code decomposes the decoder only, rolled).
 *
 * Per language c: the first M pairs of c in a seeded order are the positives and
 * ceil(tangling * M / (languages - 1)) pairs of each other language the negatives
 * (no confidence filter: a translation has no one probability to test). The
 * decoder's hidden state at every real target step of those pairs, teacher forced
 * (the reference's words before each step, as in training), pooled per unit; the
 * units whose trimmed mean |state| is lower on positives than on negatives are
 * removed, most negative first, at most max_remove of the decoder (rnn_identify_rows,
 * the classifier's rule). With rank_by_use (opt-in), of the units the rule would
 * remove as many go, but those the language's own pairs use least (lowest mean |state|
 * on the positives): a unit that the language uses less than the others may still
 * carry much of it, and the largest difference picks exactly the units the other
 * language uses most, not those this one can spare. bench/RESULTS.md: on an LSTM
 * translator French BLEU -0.17 against -0.72 at max_remove 0.05, on a GRU one -1.05
 * against -0.71, so it is not the default.
 *
 * Removing decoder unit j zeroes its rows in every gate block, its biases, its column
 * of the decoder's W_hh and of the head. Its state then starts from the encoder's and
 * decays, but nothing reads it, so cutting it out is exact. The decoder starts from
 * the encoder's final state, which keeps every unit: the module's encoder is the
 * origin's with its units permuted so that the kept ones come first (a permutation of
 * a recurrent layer's units changes nothing but the order of its outputs), and a
 * reshape, a crop and a flatten pass the decoder the states of those units alone. */
#include "modular.h"

#include "data/data.h"
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_recurrent(layer_kind k) { return k == LAYER_RNN || k == LAYER_LSTM || k == LAYER_GRU; }
static int gates_of(layer_kind k) { return k == LAYER_LSTM ? 4 : k == LAYER_GRU ? 3 : 1; }

typedef struct en_de {
    int enc, dec, head; /* layer indices */
    int H, G, S;        /* units, gates, state values per unit (lstm: h and c) */
} en_de;

int translator_model(const ts_model *m) {
    const ts_shape *o = &m->layers[m->nlayers - 1].out;
    return m->input.ndim == 2 && m->input.dims[0] == 2 && o->ndim == 2 && o->dims[0] == m->input.dims[1];
}

/* The decoder (the recurrent layer the head reads, through dropout), its encoder (the
 * recurrent layer whose final states start it) and the head, or a message naming what
 * is not so. */
static ts_status find_en_de(ts_ctx *ctx, const ts_model *m, en_de *e) {
    const char *w = "decompose (translator)";
    if (!translator_model(m))
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: the model does not take a source and a target row (2, Tm) and score "
                       "each of the Tm steps", w);
    e->head = module_logits_layer(m);
    const layer *h = &m->layers[e->head];
    if (h->kind != LAYER_DENSE || h->ninputs != 1)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: layer '%s' gives the scores but is not a dense layer", w, h->name);
    int li = h->inputs[0];
    while (m->layers[li].kind == LAYER_DROPOUT && m->layers[li].ninputs == 1) li = m->layers[li].inputs[0];
    const layer *d = &m->layers[li];
    if (!is_recurrent(d->kind) || !d->initial || d->sequence != 1 || d->bidirectional || d->step_mask)
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s: the head reads '%s', not a one-direction rnn/lstm/gru decoder that outputs every step "
                       "and starts from an encoder's state (initial=1)", w, d->name);
    e->dec = li;
    e->enc = d->inputs[d->ninputs - 1];
    const layer *en = &m->layers[e->enc];
    int only = -1;
    if (en->kind != d->kind || en->bidirectional || en->step_mask || en->features != d->features ||
        model_consumers(m, e->enc, &only) != 1)
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "%s: the decoder '%s' starts from '%s', which is not a one-direction %s encoder of %d units "
                       "read by the decoder alone", w, d->name, en->name, LAYER_OPS[d->kind].name, d->features);
    if (model_consumers(m, e->dec, &only) != 1)
        return ts_fail(ctx, TS_EUNSUPPORTED, "%s: the decoder '%s' is read by more than the head", w, d->name);
    e->H = d->features;
    e->G = gates_of(d->kind);
    e->S = d->kind == LAYER_LSTM ? 2 : 1;
    return TS_OK;
}

/* ---- drawing and recording */

enum { ROLE_POS = 1, ROLE_NEG = 2 };
typedef struct drawn {
    int64_t idx;
    int label;
    uint8_t role;
} drawn;

typedef struct recorder {
    int64_t H, Tm, base;
    const int64_t *off; /* (ndr + 1) rows of each drawn pair */
    float *vals;        /* (rows, H) */
} recorder;

static int record(void *user, int layer, int64_t first, int n, const float *out) {
    (void)layer;
    const recorder *rc = user;
    for (int j = 0; j < n; j++) {
        const int64_t d = rc->base + first + j, steps = rc->off[d + 1] - rc->off[d];
        memcpy(rc->vals + rc->off[d] * rc->H, out + (size_t)j * (size_t)(rc->Tm * rc->H),
               sizeof(float) * (size_t)(steps * rc->H));
    }
    return 0;
}

/* Row i of the model's input (2, Tm) for pair s: the source, then the target from
 * <bos> without its last token (the loader's teacher forcing). */
static void pair_row(const ts_text_dataset *ds, int64_t s, int64_t Tm, float *x) {
    memset(x, 0, sizeof *x * 2 * (size_t)Tm);
    for (int t = 0; t < ds->max_len; t++) x[t] = (float)ds->tokens[s * ds->max_len + t];
    const int32_t *tg = ds->targets + s * ds->target_len;
    for (int64_t u = 0; u < Tm && u < ds->target_len - 1; u++) x[Tm + u] = (float)tg[u];
}

/* Decoder steps that read a word of pair s: <bos> and the words, not <eos>. */
static int64_t real_steps(const ts_text_dataset *ds, int64_t s, int64_t Tm) {
    const int64_t n = ds->target_lengths[s] - 1;
    return n < Tm ? n : Tm;
}

/* ---- slicing */

/* The module's model: decoder units order[0..k) (origin indices, ascending), the
 * encoder permuted by order, its final state cropped to those units. */
static ts_status slice(ts_ctx *ctx, const ts_model *m, const en_de *e, const int *order, int k, ts_model **out) {
    *out = NULL;
    const int H = e->H, G = e->G;
    nn_builder *b = NULL;
    int *to = malloc(sizeof *to * (size_t)m->nlayers); /* origin layer -> module layer */
    ts_status st = to ? nn_builder_create(ctx, "module", 0, &m->input, m->classes, m->layers[0].name, &b)
                      : ts_fail(ctx, TS_ENOMEM, "module: out of memory");
    int crop = -1;
    if (to) to[0] = 0;
    for (int li = 1; li < m->nlayers && !st; li++) {
        const layer *l = &m->layers[li];
        layer_attrs a = l->attrs;
        int in[LAYER_MAX_INPUTS];
        for (int i = 0; i < l->ninputs; i++) in[i] = to[l->inputs[i]];
        if (li == e->dec) {
            a.features = k;
            in[l->ninputs - 1] = crop;
        }
        nn_added ad;
        st = nn_add_at(b, l->kind, l->name, in, l->ninputs, &a, &ad);
        to[li] = ad.layer;
        if (st || li != e->enc) continue;
        /* (S*H) -> (S, H) -> (S, k) -> (S*k): the kept units' h (and c) */
        char name[3][96];
        snprintf(name[0], sizeof name[0], "%.50s_units", l->name); /* within LAYER_NAME_MAX */
        snprintf(name[1], sizeof name[1], "%.50s_kept", l->name);
        snprintf(name[2], sizeof name[2], "%.50s_state", l->name);
        layer_attrs r, p, f;
        nn_attrs_default(LAYER_RESHAPE, &r);
        r.tshape.ndim = 2;
        r.tshape.dims[0] = e->S;
        r.tshape.dims[1] = H;
        nn_attrs_default(LAYER_PAD, &p);
        p.npads = 4;
        p.pads[0] = p.pads[1] = p.pads[2] = 0;
        p.pads[3] = k - H;
        nn_attrs_default(LAYER_FLATTEN, &f);
        nn_added q;
        int src = ad.layer;
        if (!(st = nn_add_at(b, LAYER_RESHAPE, name[0], &src, 1, &r, &q)) && (src = q.layer, 1) &&
            !(st = nn_add_at(b, LAYER_PAD, name[1], &src, 1, &p, &q)) && (src = q.layer, 1) &&
            !(st = nn_add_at(b, LAYER_FLATTEN, name[2], &src, 1, &f, &q)))
            crop = q.layer;
    }
    ts_model *s = NULL;
    if (!st) st = nn_builder_finish(b, 0, NULL, &s);
    else nn_builder_free(b);
    for (int li = 1; li < m->nlayers && !st; li++)
        if (li != e->enc && li != e->dec && li != e->head)
            st = model_copy_layer_tensors(ctx, m, li, s, to[li], "module");
    if (!st) {
        /* encoder: unit r is origin unit order[r]; weight (1, G*H, F+H), bias (1, 2, G*H) */
        const layer *ol = &m->layers[e->enc], *sl = &s->layers[to[e->enc]];
        const int64_t F = input_shape(m, ol, 0)->dims[1];
        const float *W = tensor_data((ts_model *)m, ol->weight), *B = tensor_data((ts_model *)m, ol->bias_t);
        float *SW = tensor_data(s, sl->weight), *SB = tensor_data(s, sl->bias_t);
        for (int g = 0; g < G; g++)
            for (int r = 0; r < H; r++) {
                const float *src = W + ((int64_t)g * H + order[r]) * (F + H);
                float *dst = SW + ((int64_t)g * H + r) * (F + H);
                memcpy(dst, src, sizeof(float) * (size_t)F);
                for (int c = 0; c < H; c++) dst[F + c] = src[F + order[c]];
                for (int q = 0; q < 2; q++) SB[(int64_t)q * G * H + g * H + r] = B[(int64_t)q * G * H + g * H + order[r]];
            }
        /* decoder: units order[0..k), weight (1, G*k, F+k) */
        ol = &m->layers[e->dec];
        sl = &s->layers[to[e->dec]];
        const int64_t Fd = input_shape(m, ol, 0)->dims[1];
        W = tensor_data((ts_model *)m, ol->weight);
        B = tensor_data((ts_model *)m, ol->bias_t);
        SW = tensor_data(s, sl->weight);
        SB = tensor_data(s, sl->bias_t);
        for (int g = 0; g < G; g++)
            for (int r = 0; r < k; r++) {
                const float *src = W + ((int64_t)g * H + order[r]) * (Fd + H);
                float *dst = SW + ((int64_t)g * k + r) * (Fd + k);
                memcpy(dst, src, sizeof(float) * (size_t)Fd);
                for (int c = 0; c < k; c++) dst[Fd + c] = src[Fd + order[c]];
                for (int q = 0; q < 2; q++) SB[(int64_t)q * G * k + g * k + r] = B[(int64_t)q * G * H + g * H + order[r]];
            }
        /* head: dense (V, H) -> (V, k) */
        ol = &m->layers[e->head];
        sl = &s->layers[to[e->head]];
        const float *HW = tensor_data((ts_model *)m, ol->weight);
        float *SHW = tensor_data(s, sl->weight);
        for (int64_t o = 0; o < ol->features; o++)
            for (int c = 0; c < k; c++) SHW[o * k + c] = HW[o * H + order[c]];
        if (ol->bias_t >= 0)
            memcpy(tensor_data(s, sl->bias_t), tensor_data((ts_model *)m, ol->bias_t), sizeof(float) * (size_t)ol->features);
        ts_model_params_changed(s);
        for (int i = 0; i < m->nmeta && !st; i++) st = ts_model_set_meta(ctx, s, m->meta[i].key, m->meta[i].value);
    }
    free(to);
    if (st) {
        ts_model_free(s);
        return st;
    }
    *out = s;
    return TS_OK;
}

/* Parameters of the decoder and the head (what a module cuts) */
static int64_t cut_weights(const ts_model *m, int dec, int head) {
    int64_t s = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const int li = m->tensors[t].layer;
        s += (li == dec || li == head) && m->tensors[t].role == TS_TENSOR_PARAM ? m->tensors[t].numel : 0;
    }
    return s;
}

/* Language c's module (lang its name; vocab the source vocabulary, for its tag) */
static ts_status make_module(ts_ctx *ctx, const ts_model *m, const en_de *e, const uint8_t *keep, int c,
                             const char *lang, const ts_vocab *vocab, int npos, int nneg, ts_module **out) {
    int *order = malloc(sizeof *order * (size_t)e->H), k = 0;
    if (!order) return ts_fail(ctx, TS_ENOMEM, "module: out of memory");
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < e->H; j++)
            if ((keep[j] != 0) == (pass == 0)) order[k++] = j;
    int kept = 0;
    for (int j = 0; j < e->H; j++) kept += keep[j] != 0;
    ts_model *s = NULL;
    /* every unit removed (max_remove 1): the first in order stays, as a layer needs one */
    ts_status st = slice(ctx, m, e, order, kept ? kept : 1, &s);
    free(order);
    /* the source's tag for the language, which ts_compose routes by (a set built by
     * hand may have none: then the module composes with nothing) */
    char tag[TEXT_TAG_MAX], id[24];
    text_language_tag(lang, tag);
    const int32_t tid = vocab ? ts_vocab_id(vocab, tag) : TS_TOKEN_UNK;
    snprintf(id, sizeof id, "%d", (int)tid);
    if (!st && tid > TS_TOKEN_EOS) st = ts_model_set_meta(ctx, s, TRANSLATOR_TAG_META, id);
    if (!st) st = module_create(ctx, s, c, out);
    if (!st) {
        ts_module_info *in = &(*out)->info;
        const int to_dec = e->dec + 3, to_head = e->head + 3; /* three layers inserted after the encoder */
        in->positives = npos;
        in->negatives = nneg;
        in->units = e->H;
        in->units_kept = kept ? kept : 1;
        text_module_sizes(in, m, s, cut_weights(m, e->dec, e->head), cut_weights(s, to_dec, to_head));
    }
    ts_model_free(s);
    return st;
}

/* rank_by_use: the file's comment says why */
void rnn_rank_by_use(const float *vals, int64_t H, const int64_t *pos, int64_t np, const double *diff, double *use,
                     int *cand, uint8_t *keep) {
    int64_t removed = 0, nc = 0;
    for (int64_t u = 0; u < H; u++) {
        removed += !keep[u];
        double sum = 0;
        for (int64_t i = 0; i < np; i++) sum += fabsf(vals[pos[i] * H + u]);
        use[u] = sum / (double)np;
        if (diff[u] < 0) cand[nc++] = (int)u;
        keep[u] = 1;
    }
    rnn_remove_least(use, cand, nc, removed, keep);
}

ts_status decompose_translator(ts_ctx *ctx, const ts_model *m, const ts_text_dataset *train,
                               const ts_decompose_text_config *cfg, const int *classes, int n, ts_module ***modules,
                               int *count) {
    en_de e;
    ts_status st = find_en_de(ctx, m, &e);
    if (st) return st;
    const int K = train->classes;
    if (!train->labels || !train->class_names || K < 2)
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "decompose (translator): set %s has one target language; a translator is decomposed per "
                       "target language (train it on pairs read both ways, --both-ways)", train->name);
    if (!cfg->rolled)
        return ts_fail(ctx, TS_EUNSUPPORTED, "decompose (translator): only rolled (the paper's encoder-decoder "
                       "modules are not per step)");
    if ((st = train_check_text(ctx, m, train, "decompose (translator): training"))) return st;
    if (n < 0 || (n > 0 && !classes) || n > K)
        return ts_fail(ctx, TS_EINVAL, "decompose (translator): %d languages listed (the set has %d)", n, K);
    for (int i = 0; i < n; i++)
        if (classes[i] < 0 || classes[i] >= K)
            return ts_fail(ctx, TS_EINVAL, "decompose (translator): language %d is not one of the set's (0..%d)",
                           classes[i], K - 1);
    const double t0 = ts_monotonic_s();
    const int nmod = n ? n : K, M = cfg->positives;
    const int nneg = (int)ceil((double)cfg->tangling * M / (K - 1));
    const ts_shape in_shape = ts_text_input_shape(train);
    const int64_t Tm = in_shape.dims[1], H = e.H;
    int64_t *perm = malloc(sizeof *perm * (size_t)(train->count ? train->count : 1));
    int *npos = calloc((size_t)K, sizeof *npos), *nng = calloc((size_t)K, sizeof *nng), *order = NULL;
    drawn *dr = malloc(sizeof *dr * (size_t)(train->count ? train->count : 1));
    ts_module **mods = calloc((size_t)nmod, sizeof *mods);
    int64_t ndr = 0, *off = NULL, *pos = NULL, *neg = NULL;
    float *vals = NULL, *x = NULL, *logits = NULL, *a = NULL, *scratch = NULL;
    double *diff = NULL, *use = NULL;
    uint8_t *keep = malloc((size_t)H);
    ts_model *work = NULL;
    if (!perm || !npos || !nng || !dr || !mods || !keep) {
        st = ts_fail(ctx, TS_ENOMEM, "decompose (translator): out of memory");
        goto done;
    }
    /* the draw: data only, in a seeded order */
    text_draw_order(perm, train->count, cfg->seed);
    for (int64_t i = 0; i < train->count; i++) {
        const int64_t s = perm[i];
        const int c = train->labels[s];
        if (c < 0 || c >= K) continue;
        uint8_t role = 0;
        if (npos[c] < M) {
            role |= ROLE_POS;
            npos[c]++;
        }
        if (nng[c] < nneg) {
            role |= ROLE_NEG;
            nng[c]++;
        }
        if (role) dr[ndr++] = (drawn){s, c, role};
    }
    /* the decoder's states at every real step of every drawn pair */
    if (!(off = malloc(sizeof *off * (size_t)(ndr + 1)))) {
        st = ts_fail(ctx, TS_ENOMEM, "decompose (translator): out of memory");
        goto done;
    }
    off[0] = 0;
    for (int64_t d = 0; d < ndr; d++) off[d + 1] = off[d] + real_steps(train, dr[d].idx, Tm);
    const int64_t rows = off[ndr] ? off[ndr] : 1;
    vals = ts_alloc(ctx, sizeof(float) * (size_t)rows * (size_t)H, "decoder states of the drawn pairs");
    /* the capture also computes the head's scores (Tm x target vocabulary a pair, unused):
     * a small batch keeps that buffer small */
    const int B = cfg->batch < 16 ? cfg->batch : 16;
    const int64_t out_per = shape_numel(&m->layers[m->nlayers - 1].out);
    x = malloc(sizeof *x * (size_t)B * 2 * (size_t)Tm);
    logits = malloc(sizeof *logits * (size_t)B * (size_t)out_per);
    if (!vals) {
        st = TS_ENOMEM;
        goto done;
    }
    if (!x || !logits || (st = model_clone(ctx, m, &work))) {
        if (!st) st = ts_fail(ctx, TS_ENOMEM, "decompose (translator): out of memory");
        goto done;
    }
    recorder rc = {H, Tm, 0, off, vals};
    const ts_capture cap = {&e.dec, 1, record, &rc};
    for (int64_t b0 = 0; b0 < ndr && !st; b0 += B) {
        const int nb = (int)(ndr - b0 < B ? ndr - b0 : B);
        for (int i = 0; i < nb; i++) pair_row(train, dr[b0 + i].idx, Tm, x + (size_t)i * 2 * (size_t)Tm);
        rc.base = b0;
        st = ts_model_predict_capture(ctx, work, x, nb, logits, &cap);
    }
    if (st) goto done;
    const double shared_s = ts_monotonic_s() - t0;
    a = malloc(sizeof *a * (size_t)rows);
    scratch = malloc(sizeof *scratch * (size_t)rows);
    pos = malloc(sizeof *pos * (size_t)rows);
    neg = malloc(sizeof *neg * (size_t)rows);
    diff = malloc(sizeof *diff * (size_t)H);
    use = malloc(sizeof *use * (size_t)H);
    order = malloc(sizeof *order * (size_t)H);
    if (!a || !scratch || !pos || !neg || !diff || !use || !order) {
        st = ts_fail(ctx, TS_ENOMEM, "decompose (translator): out of memory");
        goto done;
    }
    const layer *dl = &m->layers[e.dec];
    for (int i = 0; i < nmod && !st; i++) {
        const int c = n ? classes[i] : i;
        const double tc = ts_monotonic_s();
        int64_t np = 0, nn = 0;
        int negs = 0;
        for (int64_t d = 0; d < ndr; d++) {
            const int own = dr[d].label == c;
            if (!(dr[d].role & (own ? ROLE_POS : ROLE_NEG))) continue;
            negs += !own;
            for (int64_t r = off[d]; r < off[d + 1]; r++) {
                if (own) pos[np++] = r;
                else neg[nn++] = r;
            }
        }
        if (np && nn)
            rnn_identify_rows(dl->kind == LAYER_RNN && dl->cell_act, vals, H, pos, np, neg, nn, cfg, a, scratch, diff,
                              order, keep);
        else memset(keep, 1, (size_t)H); /* nothing to compare: keep every unit */
        if (np && nn && cfg->rank_by_use && !(dl->kind == LAYER_RNN && dl->cell_act)) /* relu: no ranking */
            rnn_rank_by_use(vals, H, pos, np, diff, use, order, keep);
        st = make_module(ctx, m, &e, keep, c, train->class_names[c], train->vocab, npos[c], negs, &mods[i]);
        if (!st) mods[i]->info.seconds = ts_monotonic_s() - tc + shared_s / nmod;
    }
done:
    free(perm);
    free(npos);
    free(nng);
    free(dr);
    free(off);
    ts_free(vals);
    free(x);
    free(logits);
    free(a);
    free(scratch);
    free(pos);
    free(neg);
    free(diff);
    free(use);
    free(order);
    free(keep);
    ts_model_free(work);
    return text_modules_hand_over(st, mods, nmod, modules, count);
}

ts_status ts_module_evaluate_bleu(ts_ctx *ctx, const ts_module *mod, const ts_text_dataset *ds, int beam, int batch,
                                  double *bleu, int64_t *count) {
    if (!ctx || !mod || !ds || !bleu || !count) return ts_fail(ctx, TS_EINVAL, "ts_module_evaluate_bleu: NULL argument");
    *bleu = 0;
    *count = 0;
    if (!translator_model(mod->origin))
        return ts_fail(ctx, TS_EUNSUPPORTED, "module evaluation: the module of '%s' is not a translator's",
                       mod->class_name);
    /* the module's language by name: a set may list its languages in another order */
    int c = -1;
    for (int i = 0; ds->task == TS_SEQ_TRANSLATE && ds->labels && ds->class_names && i < ds->classes && c < 0; i++)
        if (!strcmp(ds->class_names[i], mod->class_name)) c = i;
    if (c < 0)
        return ts_fail(ctx, TS_EUNSUPPORTED,
                       "module evaluation: set %s is not a translation set read both ways with language '%s'", ds->name,
                       mod->class_name);
    ts_text_dataset *sel = NULL;
    ts_model *mm = NULL;
    ts_status st = ts_text_dataset_select(ctx, ds, &c, 1, &sel);
    if (!st && sel->count) {
        *count = sel->count;
        if (!(st = ts_module_model(ctx, mod, &mm))) st = ts_evaluate_bleu(ctx, mm, sel, beam, batch, bleu);
    }
    ts_model_free(mm);
    ts_text_dataset_free(sel);
    return st;
}
