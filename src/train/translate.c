/* Decoding with an encoder-decoder model trained on a translation set
 * (ts_text_input_shape: a source row and a target row of Tm ids; output (Tm, V)
 * scores). The decoder reads the target row left to right, so the scores at step u
 * depend on the source and target ids 0..u only.
 *
 * Two ways to get step u's scores:
 * - Incremental (the zoo's layout, and any model of its form: the head a dense layer
 *   reading, through dropout, a one-direction rnn/lstm/gru decoder that outputs every
 *   step, starts from another layer's state (initial=1) and reads an embedding of the
 *   target row): the layers that compute the state that starts the decoder run once
 *   per batch (the target row at <bos>); then each word costs one decoder step and one
 *   row of the head, the state carried from step to step. The first batch of a call
 *   also runs the whole model and compares its step-0 scores with the incremental
 *   ones; a model where they differ (some other layout that passed the checks), or
 *   whose starting state inference fuses away, decodes the other way.
 * - Rerun (any model of that layout): write word u + 1 into the row and run the whole
 *   model again, Tm passes for a sentence of Tm words, each scoring every step.
 * The two give the same words but where float rounding flips a near tie (the step's
 * GEMMs are smaller batches).
 *
 * Greedy: the best word at each step. Beam search of width B: per sentence the B
 * best prefixes by summed log-probability; a prefix that ends with <eos> (or <pad>,
 * which the rerun would read as the row's end) is finished,
 * scored by its mean log-probability per word (so short ones are not favoured); the
 * search ends when B prefixes have finished (or at Tm words, where every prefix
 * counts as finished) and the best finished one wins. */
#include "nn/layers.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log-softmax of row (k) into out (k) */
static void log_softmax(const float *row, int k, double *out) {
    double mx = row[0], se = 0;
    for (int j = 1; j < k; j++) mx = row[j] > mx ? row[j] : mx;
    for (int j = 0; j < k; j++) se += exp(row[j] - mx);
    const double lse = mx + log(se);
    for (int j = 0; j < k; j++) out[j] = row[j] - lse;
}

/* A sentence ends at <eos>, and at <pad> too: the rerun would read a <pad> written
 * into the row as padding (the decoder's steps end there), the incremental decoder as
 * a word, and BLEU cuts a translation at either. */
static int ends(int w) { return w == TS_TOKEN_EOS || w == TS_TOKEN_PAD; }

/* ---- incremental decoding: the decoder one step at a time */

#define STEP_CHUNK 256 /* samples per partial run of the model (its inference plans as many) */

typedef struct stepper {
    int init;               /* the layer whose output starts the decoder (its last input) */
    const layer *dec, *head;
    const float *emb;       /* (vocab, E): the decoder's embedding rows */
    const float *dec_w, *dec_b, *head_w, *head_b; /* the decoder's and the head's (head_b may be NULL) */
    int vocab, rows, S;     /* embedding rows; samples at most; state values per sample */
    rnn_params p;           /* one step, sequence 2: y is the new state (h, then an lstm's c) */
    float *state, *next;    /* (rows, S) */
    float *x, *h, *scores;  /* (rows, E), (rows, H), (rows, V) */
    float *scratch;
    unsigned char *skip;    /* (nlayers): 1 for the layers the starting state does not need */
    int checked;            /* step 0 was compared with the model's own scores once */
    int differs;            /* and differed: the rerun decodes */
} stepper;

static const layer *through_dropout(const ts_model *m, int *li) {
    while (m->layers[*li].kind == LAYER_DROPOUT && m->layers[*li].ninputs == 1) *li = m->layers[*li].inputs[0];
    return &m->layers[*li];
}

static void stepper_free(stepper *sp) {
    ts_free(sp->state);
    ts_free(sp->next);
    ts_free(sp->x);
    ts_free(sp->h);
    ts_free(sp->scores);
    ts_free(sp->scratch);
    ts_free(sp->skip);
    memset(sp, 0, sizeof *sp);
}

/* TS_OK with sp ready for up to `rows` samples; TS_EUNSUPPORTED (no message) when m
 * is not of the form the file's comment gives (the rerun decodes it); TS_ENOMEM. */
static ts_status stepper_init(ts_ctx *ctx, const ts_model *m, int v, int rows, stepper *sp) {
    memset(sp, 0, sizeof *sp);
    if (ctx->constant_time) return TS_EUNSUPPORTED; /* the rerun keeps the embedding's constant-time reads */
    const layer *head = &m->layers[m->nlayers - 1];
    if (head->kind != LAYER_DENSE || head->ninputs != 1 || head->features != v || head->weight < 0) return TS_EUNSUPPORTED;
    int li = head->inputs[0];
    const layer *dec = through_dropout(m, &li);
    if ((dec->kind != LAYER_RNN && dec->kind != LAYER_LSTM && dec->kind != LAYER_GRU) || !dec->initial || dec->bias_t < 0 ||
        dec->sequence != 1 || dec->bidirectional || dec->mask >= 0 || dec->features != m->layers[li].out.dims[1])
        return TS_EUNSUPPORTED;
    int ei = dec->inputs[0];
    const layer *emb = through_dropout(m, &ei);
    if (emb->kind != LAYER_EMBEDDING || emb->weight < 0) return TS_EUNSUPPORTED;
    const ts_shape *in = &m->layers[dec->inputs[0]].out; /* (Tm, E) */
    if (in->ndim != 2 || in->dims[1] != emb->features) return TS_EUNSUPPORTED;
    sp->p = recurrent_params(m, dec, rows);
    sp->p.t = 1;        /* one step */
    sp->p.sequence = 2; /* y: the new state */
    sp->init = dec->inputs[dec->ninputs - 1];
    if (shape_numel(&m->layers[sp->init].out) != rnn_state_size(&sp->p)) return TS_EUNSUPPORTED;
    sp->dec = dec;
    sp->head = head;
    sp->emb = tensor_data((ts_model *)m, emb->weight);
    sp->dec_w = tensor_data((ts_model *)m, dec->weight);
    sp->dec_b = tensor_data((ts_model *)m, dec->bias_t);
    sp->head_w = tensor_data((ts_model *)m, head->weight);
    sp->head_b = head->bias_t >= 0 ? tensor_data((ts_model *)m, head->bias_t) : NULL;
    sp->vocab = emb->vocab;
    sp->rows = rows;
    sp->S = (int)rnn_state_size(&sp->p);
    const size_t r = (size_t)rows;
    sp->state = ts_alloc(ctx, sizeof(float) * r * (size_t)sp->S, "decoder states");
    sp->next = ts_alloc(ctx, sizeof(float) * r * (size_t)sp->S, "decoder states");
    sp->x = ts_alloc(ctx, sizeof(float) * r * (size_t)emb->features, "decoder inputs");
    sp->h = ts_alloc(ctx, sizeof(float) * r * (size_t)dec->features, "decoder outputs");
    sp->scores = ts_alloc(ctx, sizeof(float) * r * (size_t)v, "step scores");
    sp->scratch = ts_alloc(ctx, sizeof(float) * (rnn_scratch_floats(&sp->p) + 1), "decoder scratch");
    sp->skip = ts_alloc(ctx, (size_t)m->nlayers, "decoding layers");
    if (sp->skip) { /* what the starting state is computed from (layers come in order) */
        memset(sp->skip, 1, (size_t)m->nlayers);
        sp->skip[sp->init] = 0;
        for (int li = sp->init; li > 0; li--)
            for (int k = 0; !sp->skip[li] && k < m->layers[li].ninputs; k++) sp->skip[m->layers[li].inputs[k]] = 0;
    }
    if (sp->state && sp->next && sp->x && sp->h && sp->scores && sp->scratch && sp->skip) return TS_OK;
    stepper_free(sp);
    return TS_ENOMEM;
}

/* One decoder step of samples 0..n-1, each reading word[i] after its state: the state
 * moves on and sp->scores (n, V) gets the step's scores. */
static ts_status stepper_step(ts_ctx *ctx, stepper *sp, int n, const int32_t *word) {
    const int E = sp->p.f, H = sp->p.h, V = sp->head->features;
    for (int i = 0; i < n; i++) {
        if (word[i] < 0 || word[i] >= sp->vocab)
            return ts_fail(ctx, TS_EINVAL, "decoding: word %d is not a row of the decoder's embedding (%d rows)",
                           (int)word[i], sp->vocab);
        memcpy(sp->x + (size_t)i * E, sp->emb + (size_t)word[i] * E, sizeof(float) * (size_t)E);
    }
    rnn_params p = sp->p;
    p.n = n;
    int on_dnnl = 0;
    ts_status st = ops_rnn_forward(ctx, &p, sp->x, NULL, sp->state, sp->dec_w, sp->dec_b, NULL, sp->next, NULL, 0,
                                   sp->scratch, &on_dnnl);
    if (st) return st;
    float *t = sp->state;
    sp->state = sp->next;
    sp->next = t;
    if (sp->S == H) /* rnn, gru: the state is h */
        return ops_dense_forward(ctx, n, H, V, sp->scores, sp->state, sp->head_w, sp->head_b);
    for (int i = 0; i < n; i++) memcpy(sp->h + (size_t)i * H, sp->state + (size_t)i * sp->S, sizeof(float) * (size_t)H);
    return ops_dense_forward(ctx, n, H, V, sp->scores, sp->h, sp->head_w, sp->head_b);
}

/* Rows from[0..n) of the state into rows 0..n-1 (a beam's survivors, greedy's
 * unfinished sentences). */
static void stepper_keep(stepper *sp, int n, const int *from) {
    const size_t S = (size_t)sp->S;
    for (int i = 0; i < n; i++) memcpy(sp->next + (size_t)i * S, sp->state + (size_t)from[i] * S, sizeof(float) * S);
    float *t = sp->state;
    sp->state = sp->next;
    sp->next = t;
}

/* ts_model_predict_capture's callback: the starting states into sp->state */
static int grab_state(void *user, int layer, int64_t first, int n, const float *out) {
    (void)layer;
    stepper *sp = user;
    memcpy(sp->state + (size_t)first * (size_t)sp->S, out, sizeof(float) * (size_t)n * (size_t)sp->S);
    return 0;
}

typedef struct decode_run {
    ts_ctx *ctx;
    ts_model *m;
    const ts_text_dataset *ds;
    int tm, v;       /* steps per row, scores per step */
    float *x, *logits;
    stepper *sp;     /* incremental decoding, or NULL: the rerun */
} decode_run;

/* Whether inference (fused, as a partial run computes it) leaves layer li's output in
 * plain rows: not fused into another layer, not channels-last. */
static int state_plain(const ts_model *m, int li) {
    const exec_state *e = &m->exec;
    return e->fuse_skip && !e->fuse_skip[li] && !e->chain_skip[li] && !(e->cl && e->cl[li]) && !e->bn_relu[li];
}

/* The state that starts the decoder for rows x (n, 2, Tm), the target at <bos>, and the
 * first step taken incrementally; *s0 (n rows of *stride floats) then holds step 0's
 * scores. The first call of a decoding runs the whole model and compares its step 0
 * with the incremental one: *same is 0 when they differ beyond float rounding (then
 * the rerun decodes, and nothing here is used again). Later calls run only the layers
 * the starting state needs. */
static ts_status stepper_start(decode_run *r, int n, int *same, const float **s0, size_t *stride) {
    stepper *sp = r->sp;
    *same = 0;
    if (sp->differs) return TS_OK;
    ts_status st = TS_OK;
    const size_t in_sz = 2 * (size_t)r->tm;
    if (!sp->checked) {
        const ts_capture cap = {&sp->init, 1, grab_state, sp};
        st = ts_model_predict_capture(r->ctx, r->m, r->x, n, r->logits, &cap);
    }
    for (int i = 0; sp->checked && !st && i < n; i += STEP_CHUNK) { /* the encoder's layers alone */
        const int b = n - i < STEP_CHUNK ? n - i : STEP_CHUNK;
        int layout = 0;
        st = exec_predict_part(r->ctx, r->m, r->x + (size_t)i * in_sz, b, sp->skip, &layout);
        if (!st && !state_plain(r->m, sp->init)) { /* not expected after the first call's check: rerun */
            sp->differs = 1;
            return TS_OK;
        }
        if (!st)
            memcpy(sp->state + (size_t)i * sp->S, r->m->exec.ls[sp->init].out, sizeof(float) * (size_t)b * sp->S);
    }
    int32_t *bos = st ? NULL : ts_alloc(r->ctx, sizeof *bos * (size_t)n, "decoding words");
    if (!st && !bos) st = TS_ENOMEM;
    for (int i = 0; !st && i < n; i++) bos[i] = TS_TOKEN_BOS;
    if (!st) st = stepper_step(r->ctx, sp, n, bos);
    ts_free(bos);
    if (st) return st;
    if (sp->checked) {
        *same = 1;
        *s0 = sp->scores;
        *stride = (size_t)r->v;
        return TS_OK;
    }
    /* float rounding: the step's GEMMs see other batch shapes; bf16 rounds coarser */
    const double rel = r->ctx->bf16 ? 3e-2 : 1e-3;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        const float *a = r->logits + (size_t)i * r->tm * r->v, *b = sp->scores + (size_t)i * r->v;
        double scale = 1;
        for (int j = 0; j < r->v; j++) scale = fabs(a[j]) > scale ? fabs(a[j]) : scale;
        for (int j = 0; j < r->v && ok; j++) ok = fabs((double)a[j] - b[j]) <= rel * scale;
    }
    ok &= state_plain(r->m, sp->init); /* later calls read it as a partial run leaves it */
    sp->checked = 1;
    sp->differs = !ok;
    *same = ok;
    *s0 = r->logits;
    *stride = (size_t)r->tm * r->v;
    return TS_OK;
}

/* Source row of sample s into x (2, Tm), the target row cleared to <bos> */
static void start_row(const decode_run *r, int64_t s, float *x) {
    memset(x, 0, sizeof *x * 2 * (size_t)r->tm);
    for (int t = 0; t < r->ds->max_len; t++) x[t] = (float)r->ds->tokens[s * r->ds->max_len + t];
    x[r->tm] = (float)TS_TOKEN_BOS;
}

/* greedy() incrementally; *used 0 when the model's first step did not match (nothing
 * decoded then). */
static ts_status greedy_steps(decode_run *r, int64_t first, int n, int32_t *out /* (n, Tm) */, int *used) {
    const int tm = r->tm, v = r->v;
    stepper *sp = r->sp;
    *used = 0;
    for (int i = 0; i < n; i++) start_row(r, first + i, r->x + (size_t)i * 2 * tm);
    int same = 0;
    const float *s0 = NULL;
    size_t stride = 0;
    ts_status st = stepper_start(r, n, &same, &s0, &stride);
    if (st || !same) return st;
    *used = 1;
    memset(out, 0, sizeof *out * (size_t)n * tm);
    int *live = ts_alloc(r->ctx, sizeof *live * 2 * (size_t)n, "decoding rows"), *from = live ? live + n : NULL;
    int32_t *word = ts_alloc(r->ctx, sizeof *word * (size_t)n, "decoding words");
    if (!live || !word) st = TS_ENOMEM;
    int alive = 0;
    for (int i = 0; !st && i < n; i++) { /* step 0 */
        const int w = ts_argmax(s0 + (size_t)i * stride, v);
        out[(size_t)i * tm] = w;
        if (!ends(w) && tm > 1) {
            live[alive] = i;
            word[alive++] = w;
        }
    }
    if (!st && alive < n) stepper_keep(sp, alive, live);
    for (int u = 1; u < tm && alive > 0 && !st; u++) {
        if ((st = stepper_step(r->ctx, sp, alive, word))) break;
        int k = 0;
        for (int j = 0; j < alive; j++) { /* row j is sentence live[j]; k <= j, so live and word shift in place */
            const int w = ts_argmax(sp->scores + (size_t)j * v, v), i = live[j];
            out[(size_t)i * tm + u] = w;
            if (!ends(w) && u + 1 < tm) {
                from[k] = j;
                live[k] = i;
                word[k++] = w;
            }
        }
        if (k < alive) stepper_keep(sp, k, from);
        alive = k;
    }
    ts_free(live);
    ts_free(word);
    return st;
}

static ts_status greedy(decode_run *r, int64_t first, int n, int32_t *out /* (n, Tm) */) {
    if (r->sp) {
        int used = 0;
        ts_status st = greedy_steps(r, first, n, out, &used);
        if (st || used) return st;
    }
    const int tm = r->tm, v = r->v;
    for (int i = 0; i < n; i++) start_row(r, first + i, r->x + (size_t)i * 2 * tm);
    memset(out, 0, sizeof *out * (size_t)n * tm);
    unsigned char *done = n > 0 ? calloc((size_t)n, 1) : NULL;
    if (!done) return ts_fail(r->ctx, TS_ENOMEM, "decoding: out of memory");
    ts_status st = TS_OK;
    int left = n;
    for (int u = 0; u < tm && left > 0 && !st; u++) {
        if ((st = ts_model_predict(r->ctx, r->m, r->x, n, r->logits))) break;
        for (int i = 0; i < n; i++) {
            if (done[i]) continue;
            const int w = ts_argmax(r->logits + ((size_t)i * tm + u) * v, v);
            out[(size_t)i * tm + u] = w;
            if (ends(w) || u + 1 == tm) {
                done[i] = 1;
                left--;
            } else {
                r->x[(size_t)i * 2 * tm + tm + u + 1] = (float)w;
            }
        }
    }
    free(done);
    return st;
}

typedef struct cand {
    double score;
    int from, word;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    if (x->from != y->from) return x->from - y->from;
    return x->word - y->word;
}

/* Beam search of one sentence; r->x and r->logits hold beam rows. */
static ts_status beam_one(decode_run *r, int64_t s, int beam, int32_t *out /* (Tm) */) {
    const int tm = r->tm, v = r->v;
    double *score = calloc((size_t)beam, sizeof *score), *lp = malloc(sizeof *lp * (size_t)v);
    cand *c = malloc(sizeof *c * (size_t)beam * (size_t)beam);
    float *nx = malloc(sizeof *nx * (size_t)beam * 2 * tm);
    int *from = malloc(sizeof *from * (size_t)beam);
    int32_t *word = malloc(sizeof *word * (size_t)beam);
    ts_status st = score && lp && c && nx && from && word ? TS_OK
                                                           : ts_fail(r->ctx, TS_ENOMEM, "beam search: out of memory");
    double best = -INFINITY;
    memset(out, 0, sizeof *out * (size_t)tm);
    int alive = 1, finished = 0; /* one prefix, <bos>, to start */
    int steps = r->sp && !r->sp->differs; /* incremental (the file's comment) */
    if (!st) start_row(r, s, r->x);
    for (int u = 0; u < tm && alive > 0 && !st; u++) {
        /* prefix b's scores for step u: at sc + b * stride */
        const float *sc = r->logits + (size_t)u * v;
        size_t stride = (size_t)tm * v;
        if (u == 0 && steps) {
            int same = 0;
            if ((st = stepper_start(r, 1, &same, &sc, &stride))) break;
            steps = same;
        } else if (steps) {
            for (int b = 0; b < alive; b++) word[b] = (int32_t)r->x[(size_t)b * 2 * tm + tm + u];
            if ((st = stepper_step(r->ctx, r->sp, alive, word))) break;
            sc = r->sp->scores;
            stride = (size_t)v;
        } else if ((st = ts_model_predict(r->ctx, r->m, r->x, alive, r->logits))) {
            break;
        }
        int nc = 0;
        for (int b = 0; b < alive; b++) {
            log_softmax(sc + (size_t)b * stride, v, lp);
            for (int k = 0; k < beam; k++) { /* this prefix's k best words (ties to the lower id) */
                int w = -1;
                for (int j = 0; j < v; j++) {
                    int taken = 0;
                    for (int q = nc - k; q < nc && !taken; q++) taken = c[q].word == j;
                    if (!taken && (w < 0 || lp[j] > lp[w])) w = j;
                }
                c[nc++] = (cand){score[b] + lp[w], b, w};
            }
        }
        qsort(c, (size_t)nc, sizeof *c, cand_cmp);
        int next = 0;
        for (int q = 0; q < nc && next < beam; q++) {
            const float *row = r->x + (size_t)c[q].from * 2 * tm;
            if (ends(c[q].word) || u + 1 == tm) { /* finished: mean log-probability per word */
                const double norm = c[q].score / (u + 1);
                if (norm > best) {
                    best = norm;
                    for (int t = 0; t < u; t++) out[t] = (int32_t)row[tm + 1 + t];
                    out[u] = c[q].word;
                    for (int t = u + 1; t < tm; t++) out[t] = 0;
                }
                finished++;
                if (ends(c[q].word)) continue;
            }
            float *nrow = nx + (size_t)next * 2 * tm;
            memcpy(nrow, row, sizeof *nrow * 2 * (size_t)tm);
            if (u + 1 < tm) nrow[tm + u + 1] = (float)c[q].word;
            from[next] = c[q].from;
            score[next++] = c[q].score;
        }
        alive = finished >= beam ? 0 : next; /* enough finished: done */
        memcpy(r->x, nx, sizeof *nx * (size_t)alive * 2 * tm);
        if (steps && alive > 0) stepper_keep(r->sp, alive, from);
    }
    free(score);
    free(lp);
    free(c);
    free(nx);
    free(from);
    free(word);
    return st;
}

ts_status ts_translate(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, int32_t *out) {
    return translate_run(ctx, m, ds, beam, batch, out, 1);
}

ts_status translate_run(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, int32_t *out,
                        int incremental) {
    if (!ctx || !m || !ds || !out) return ts_fail(ctx, TS_EINVAL, "ts_translate: NULL argument");
    if (ds->task != TS_SEQ_TRANSLATE)
        return ts_fail(ctx, TS_EINVAL, "ts_translate: %s is not a translation set", ds->name);
    if (beam < 1 || beam > 64) return ts_fail(ctx, TS_EINVAL, "ts_translate: beam %d out of 1..64", beam);
    ts_status st = train_check_text(ctx, m, ds, "translation");
    if (st) return st;
    if (batch < 1) batch = 64;
    const ts_shape in = ts_text_input_shape(ds);
    decode_run r = {ctx, m, ds, (int)in.dims[1], m->classes / (int)in.dims[1], NULL, NULL, NULL};
    const int rows = beam > 1 ? beam : batch;
    r.x = ts_alloc(ctx, sizeof *r.x * (size_t)rows * 2 * r.tm, "decoding rows");
    r.logits = ts_alloc(ctx, sizeof *r.logits * (size_t)rows * (size_t)m->classes, "decoding scores");
    if (!r.x || !r.logits) st = TS_ENOMEM;
    stepper sp;
    if (!st && incremental) {
        st = stepper_init(ctx, m, r.v, rows, &sp);
        if (!st) r.sp = &sp;
        else if (st == TS_EUNSUPPORTED) st = TS_OK; /* the rerun decodes it */
    }
    for (int64_t s = 0; s < ds->count && !st; s += beam > 1 ? 1 : batch) {
        if (beam > 1) st = beam_one(&r, s, beam, out + s * r.tm);
        else st = greedy(&r, s, (int)(ds->count - s < batch ? ds->count - s : batch), out + s * r.tm);
    }
    if (r.sp) stepper_free(r.sp);
    ts_free(r.x);
    ts_free(r.logits);
    return st;
}

ts_status ts_evaluate_bleu(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, double *bleu) {
    return ts_evaluate_bleu_each(ctx, m, ds, beam, batch, bleu, NULL);
}

ts_status ts_evaluate_bleu_each(ts_ctx *ctx, ts_model *m, const ts_text_dataset *ds, int beam, int batch, double *bleu,
                                double *by_class) {
    if (!ctx || !m || !ds || !bleu) return ts_fail(ctx, TS_EINVAL, "ts_evaluate_bleu: NULL argument");
    *bleu = 0;
    if (ds->task != TS_SEQ_TRANSLATE || ds->count < 1)
        return ts_fail(ctx, TS_EINVAL, "ts_evaluate_bleu: %s is not a translation set with samples", ds->name);
    const ts_shape in = ts_text_input_shape(ds);
    const int tm = (int)in.dims[in.ndim - 1];
    int32_t *out = ts_alloc(ctx, sizeof *out * (size_t)ds->count * tm, "translations");
    ts_token_seq *hyp = ts_alloc(ctx, sizeof *hyp * (size_t)ds->count * 2, "hypotheses");
    ts_token_seq *ref = ts_alloc(ctx, sizeof *ref * (size_t)ds->count * 2, "references");
    ts_status st = out && hyp && ref ? ts_translate(ctx, m, ds, beam, batch, out) : TS_ENOMEM;
    for (int64_t s = 0; s < ds->count && !st; s++) {
        const int32_t *h = out + s * tm;
        int n = 0;
        while (n < tm && h[n] != TS_TOKEN_EOS && h[n] != TS_TOKEN_PAD) n++;
        hyp[s] = (ts_token_seq){h, n};
        /* the reference: the target between <bos> and <eos> */
        const int len = ds->target_lengths[s];
        ref[s] = (ts_token_seq){ds->targets + s * ds->target_len + 1, len >= 2 ? len - 2 : 0};
    }
    if (!st) st = ts_corpus_bleu(ctx, hyp, ref, ds->count, 1, bleu);
    /* each language's from the same translations, its sentences gathered after the others */
    for (int c = 0; by_class && c < ds->classes && !st; c++) {
        int64_t k = 0;
        for (int64_t s = 0; ds->labels && s < ds->count; s++)
            if (ds->labels[s] == c) {
                hyp[ds->count + k] = hyp[s];
                ref[ds->count + k++] = ref[s];
            }
        by_class[c] = NAN;
        if (k) st = ts_corpus_bleu(ctx, hyp + ds->count, ref + ds->count, k, 1, &by_class[c]);
    }
    ts_free(out);
    ts_free(hyp);
    ts_free(ref);
    return st;
}
