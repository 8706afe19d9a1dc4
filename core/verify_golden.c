/* anx verify: loading a golden file (data/golden/README.md), regenerating what the seed
 * determines and rebuilding exactly what the generator left out, each proven against the
 * stored digests before any backend is judged by it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/rng.h"
#include "core/verify_internal.h"

float *v_alloc(size_t n)
{
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) v_oom("a verification buffer", bytes);
    memset(p, 0, bytes);
    return p;
}

void v_abs(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = fabsf(src[i]);
}

uint64_t v_fnv1a64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

int v_slot_shape(const anx_layer_desc *l, anx_slot s, int64_t *shape)
{
    switch (s) {
    case ANX_SRC: shape[0] = l->n, shape[1] = l->ic, shape[2] = l->ih, shape[3] = l->iw; return 4;
    case ANX_DST:
        shape[0] = l->n, shape[1] = l->oc, shape[2] = l->oh, shape[3] = l->ow;
        return (l->op == ANX_OP_LINEAR || l->op == ANX_OP_LOSS || l->oh * l->ow == 1) && l->op != ANX_OP_CONV2D ? 2 : 4;
    case ANX_WEIGHTS:
        shape[0] = l->oc, shape[1] = l->ic, shape[2] = l->kh, shape[3] = l->kw;
        if (l->op == ANX_OP_LINEAR) {
            shape[1] = (int64_t)l->ic * l->kh * l->kw;
            return 2;
        }
        return 4;
    case ANX_BIAS: shape[0] = l->oc; return 1;
    default: return 0;
    }
}

static const char *meta(const vgold *g, const char *key, char *err, size_t errlen)
{
    const char *v = anx_st_meta(&g->f, key);
    if (!v) snprintf(err, errlen, "%s: not anx golden data (no metadata \"%s\")", g->path, key);
    return v;
}

void v_mask(const vgold *g, const char *name, int64_t t, float *dst, size_t n)
{
    anx_rng_fill_dropout(dst, n, anx_rng_key(g->seed, name, (uint64_t)t), 0.5f);
}

void vwant_free(vwant *w)
{
    free(w->val);
    free(w->idx);
    memset(w, 0, sizeof *w);
}

int vgold_want(const vgold *g, const char *key, vwant *w)
{
    memset(w, 0, sizeof *w);
    snprintf(w->key, sizeof w->key, "%s", key);
    char k2[128], err[256];
    const anx_st_tensor *t = anx_st_find(&g->f, key);
    if (t) {
        w->n = w->total = t->count;
        w->ndim = t->ndim < 4 ? t->ndim : 4;
        for (int d = 0; d < w->ndim; d++) w->shape[d] = t->shape[d];
        w->val = malloc((t->count ? t->count : 1) * sizeof *w->val);
        if (!w->val || anx_st_get_f32(&g->f, key, w->val, t->count, NULL, -1, err, sizeof err)) {
            vwant_free(w);
            return -1;
        }
        return 0;
    }
    snprintf(k2, sizeof k2, "sample.%s", key);
    const anx_st_tensor *s = anx_st_find(&g->f, k2);
    snprintf(k2, sizeof k2, "sample_index.%s", key);
    const anx_st_tensor *si = anx_st_find(&g->f, k2);
    snprintf(k2, sizeof k2, "digest.%s", key);
    const anx_st_tensor *dg = anx_st_find(&g->f, k2);
    if (!s || !si || !dg || s->count != si->count) return -1;
    double d[VDIGEST_N];
    if (vgold_digest(g, key, d)) return -1;
    w->n = s->count;
    w->total = (size_t)d[0];
    w->val = malloc(w->n * sizeof *w->val);
    w->idx = malloc(w->n * sizeof *w->idx);
    snprintf(k2, sizeof k2, "sample.%s", key);
    if (!w->val || !w->idx || anx_st_get_f32(&g->f, k2, w->val, w->n, NULL, -1, err, sizeof err)) {
        vwant_free(w);
        return -1;
    }
    snprintf(k2, sizeof k2, "sample_index.%s", key);
    if (anx_st_get_i64(&g->f, k2, w->idx, w->n, err, sizeof err)) {
        vwant_free(w);
        return -1;
    }
    for (size_t i = 0; i < w->n; i++)
        if (w->idx[i] < 0 || (size_t)w->idx[i] >= w->total) {
            vwant_free(w);
            return -1;
        }
    w->ndim = 1, w->shape[0] = (int64_t)w->total;
    return 0;
}

int vgold_digest(const vgold *g, const char *key, double d[VDIGEST_N])
{
    char dk[128];
    snprintf(dk, sizeof dk, "digest.%s", key);
    const anx_st_tensor *dg = anx_st_find(&g->f, dk);
    /* F64 [VDIGEST_N], read raw (a little-endian host, as everywhere in core/safetensors.c) */
    if (!dg || dg->dtype != ANX_DTYPE_F64 || dg->count != VDIGEST_N) return -1;
    memcpy(d, dg->data, VDIGEST_N * sizeof *d);
    return 0;
}

/* s += x with Neumaier's compensation c (the running sum of the rounding errors). */
static void neumaier(double *s, double *c, double x)
{
    double t = *s + x;
    *c += fabs(*s) >= fabs(x) ? (*s - t) + x : (x - t) + *s;
    *s = t;
}

void vdigest_of(double d[VDIGEST_N], double *sumabs, const double *x, const float *x32, size_t n)
{
    const uint64_t key = anx_rng_key(0, "digest.sign", 0);
    double s[VDIGEST_N] = {0}, c[VDIGEST_N] = {0}, mx = 0, sa = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x ? x[i] : (double)x32[i];
        uint64_t bits = anx_rng_bits(key, i);
        neumaier(&s[VDIGEST_SUM], &c[VDIGEST_SUM], v);
        neumaier(&s[VDIGEST_SUMSQ], &c[VDIGEST_SUMSQ], v * v);
        for (int j = 0; j < VDIGEST_PROJ; j++)
            neumaier(&s[VDIGEST_PROJ0 + j], &c[VDIGEST_PROJ0 + j], (bits >> (63 - j)) & 1 ? -v : v);
        if (fabs(v) > mx || v != v) mx = fabs(v);
        sa += fabs(v);
    }
    for (int k = 0; k < VDIGEST_N; k++) d[k] = s[k] + c[k];
    d[VDIGEST_COUNT] = (double)n;
    d[VDIGEST_MAXABS] = mx;
    if (sumabs) *sumabs = sa;
}

/* Rounding of one digest sum S of n terms whose absolute values add to A, ours and the
 * generator's together: ours (Neumaier) 2u|S| + 4 n u^2 A; the generator's is numpy's long double
 * sum (u_ld = 2^-64) rounded once to double: u|S| + (n / 8192 + 40) u_ld A (numpy sums pairwise
 * inside buffers of 8192 elements, at most 16 + 3 + 13 additions per element there, and
 * sequentially across the buffers; 40 covers the in-buffer part with room). */
static double digest_rounding(double S, double A, double n)
{
    const double u = 0x1p-53, u_ld = 0x1p-64;
    return 3 * u * fabs(S) + (4 * n * u * u + (n / 8192 + 40) * u_ld) * A;
}

void vdigest_tol(double tol[VDIGEST_N], const double d[VDIGEST_N], double sumabs, double esum, double emax,
                 double esq)
{
    const double u = 0x1p-53, n = d[VDIGEST_COUNT];
    tol[VDIGEST_COUNT] = 0;
    tol[VDIGEST_SUM] = esum + digest_rounding(d[VDIGEST_SUM], sumabs, n);
    /* each side rounds x*x to double first: u x^2 per term and side */
    tol[VDIGEST_SUMSQ] = esq + 2 * u * d[VDIGEST_SUMSQ] + digest_rounding(d[VDIGEST_SUMSQ], d[VDIGEST_SUMSQ], n);
    tol[VDIGEST_MAXABS] = emax;
    for (int j = 0; j < VDIGEST_PROJ; j++)
        tol[VDIGEST_PROJ0 + j] = esum + digest_rounding(d[VDIGEST_PROJ0 + j], sumabs, n);
}

int vdigest_check(const double got[VDIGEST_N], const double want[VDIGEST_N], const double tol[VDIGEST_N],
                  char *why, size_t whylen)
{
    static const char *const names[VDIGEST_N] = {"count", "sum", "sumsq", "max|x|", "proj0", "proj1", "proj2", "proj3"};
    for (int k = 0; k < VDIGEST_N; k++) {
        double err = fabs(got[k] - want[k]);
        if (!(err <= tol[k])) {
            snprintf(why, whylen, "digest %s: %.17g vs golden %.17g (|diff| %.3g > tolerance %.3g)", names[k], got[k],
                     want[k], err, tol[k]);
            return -1;
        }
    }
    return 0;
}

/* The shape of golden key's tensor from the model (used for sampled tensors' NCHW indices). */
static void set_shape(vwant *w, const anx_layer_desc *l, anx_slot s)
{
    w->ndim = v_slot_shape(l, s, w->shape);
}

static float *load_whole(vgold *g, const char *key, size_t count)
{
    const anx_st_tensor *t = anx_st_find(&g->f, key);
    if (!t || t->count != count) return NULL;
    float *p = v_alloc(count);
    char err[256];
    if (anx_st_get_f32(&g->f, key, p, count, NULL, -1, err, sizeof err)) {
        free(p);
        return NULL;
    }
    return p;
}

static int load(vgold *g, const char *path, char *err, size_t errlen)
{
    snprintf(g->path, sizeof g->path, "%s", path);
    const char *slash = strrchr(path, '/');
    snprintf(g->base, sizeof g->base, "%s", slash ? slash + 1 : path);
    int rc = anx_st_read(&g->f, path, err, errlen);
    if (rc) return 2;
    const char *fmt = meta(g, "format", err, errlen);
    if (!fmt || strcmp(fmt, VGOLD_FORMAT)) {
        if (fmt)
            snprintf(err, errlen, "%s: not anx golden data of format \"%s\" (format \"%s\": regenerate it with "
                     "data/golden/gen_golden.py)", path, VGOLD_FORMAT, fmt);
        anx_st_free(&g->f);
        return 2;
    }
    const char *keys[] = {"seed", "in_dim", "n_class", "batch", "input_hw", "steps", "lr", "beta1", "beta2", "eps"};
    const char *vals[10];
    for (int i = 0; i < 10; i++)
        if (!(vals[i] = meta(g, keys[i], err, errlen))) {
            anx_st_free(&g->f);
            return 2;
        }
    anx_model_config cfg = {atoi(vals[1]), atoi(vals[2]), atoi(vals[3]), atoi(vals[4])};
    g->seed = strtoull(vals[0], NULL, 10);
    g->steps = atoi(vals[5]);
    g->hp.lr = strtod(vals[6], NULL), g->hp.beta1 = strtod(vals[7], NULL);
    g->hp.beta2 = strtod(vals[8], NULL), g->hp.eps = strtod(vals[9], NULL);
    char merr[256];
    if (g->steps < 1 || anx_model_init(&g->m, &cfg, merr, sizeof merr)) {
        snprintf(err, errlen, "%s: bad golden configuration: %s", path, g->steps < 1 ? "steps < 1" : merr);
        anx_st_free(&g->f);
        return 2;
    }
    const anx_model *m = &g->m;
    /* regenerated from the seed: init, input, targets (checked in vgold_self_checks) */
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &m->params[p];
        g->init[p] = v_alloc(pi->count);
        anx_rng_fill_uniform(g->init[p], pi->count, anx_rng_key(g->seed, pi->name, 0),
                             1.0 / sqrt((double)pi->fan_in));
    }
    size_t nin = anx_desc_plain_count(&m->layers[0], ANX_SRC);
    g->input = v_alloc(nin);
    anx_rng_fill_u01(g->input, nin, anx_rng_key(g->seed, "input", 0));
    g->target = calloc((size_t)cfg.batch, sizeof *g->target);
    if (!g->target) {
        snprintf(err, errlen, "%s: out of memory", path);
        vgold_free(g);
        return 2;
    }
    anx_rng_fill_targets(g->target, (size_t)cfg.batch, anx_rng_key(g->seed, "target", 0), cfg.n_class);
    /* whole activations: stored, or rebuilt exactly (checked against digests in self checks) */
    char key[96];
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        size_t n = anx_desc_plain_count(l, ANX_DST);
        snprintf(key, sizeof key, "out.%s", l->name);
        g->out[i] = load_whole(g, key, n);
        if (g->out[i]) g->out_from[i] = "stored";
        if (!g->out[i] && l->op == ANX_OP_RELU && g->out[i - 1]) {
            /* rounding to float32 commutes with relu: f32(relu(x64)) = relu(f32(x64)) */
            g->out[i] = v_alloc(n);
            for (size_t k = 0; k < n; k++) g->out[i][k] = g->out[i - 1][k] > 0 ? g->out[i - 1][k] : 0.0f;
            g->out_from[i] = "relu(out of the layer before)";
        }
    }
    for (int i = ANX_NUM_LAYERS - 1; i >= 0; i--) {
        const anx_layer_desc *l = &m->layers[i];
        size_t n = anx_desc_plain_count(l, ANX_DST);
        snprintf(key, sizeof key, "grad_out.%s", l->name);
        g->gout[i] = load_whole(g, key, n);
        if (g->gout[i]) g->gout_from[i] = "stored";
        if (!g->gout[i] && i + 1 < ANX_NUM_LAYERS && m->layers[i + 1].op == ANX_OP_RELU && g->gout[i + 1] &&
            g->out[i + 1]) {
            /* relu' gates exactly: f32(dy64 * [y64 > 0]) = f32(dy64) * [f32(y64) > 0] */
            g->gout[i] = v_alloc(n);
            for (size_t k = 0; k < n; k++) g->gout[i][k] = g->out[i + 1][k] > 0 ? g->gout[i + 1][k] : 0.0f;
            g->gout_from[i] = "grad_out of the ReLU after, gated";
        }
    }
    return 0;
}

typedef struct load_call {
    vgold *g;
    const char *path;
    char *err;
    size_t errlen;
    int rc;
} load_call;

static void load_body(void *arg)
{
    load_call *c = arg;
    c->rc = load(c->g, c->path, c->err, c->errlen);
}

int vgold_load(vgold *g, const char *path, char *err, size_t errlen)
{
    load_call c = {g, path, err, errlen, 0};
    char why[160];
    if (v_guarded(load_body, &c, why, sizeof why)) { /* the buffers made so far are left to the process */
        snprintf(err, errlen, "%s: %s", path, why);
        return 2;
    }
    return c.rc;
}

void vgold_free(vgold *g)
{
    for (int p = 0; p < ANX_NUM_PARAMS; p++) free(g->init[p]);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) free(g->out[i]), free(g->gout[i]);
    free(g->input);
    free(g->target);
    anx_st_free(&g->f);
    memset(g, 0, sizeof *g);
}

/* A regenerated or reconstructed whole float32 tensor x = f32(y) against its stored sample (bit
 * for bit) and the float64 digest of y.  Each element differs from y by the rounding to float32,
 * at most a|x_i| with a = u32 / (1 - u32) (u32 = 2^-24; exact for the regenerated input), so:
 *   sum, projections   sum_i a|x_i|                       max |x|   a max|x|
 *   sum of squares     sum_i a(2 + a) x_i^2   (|x^2 - y^2| = |x - y| |x + y|)
 * plus the rounding of both digests (vdigest_tol).  Nothing else may differ. */
static void check_digest(anx_verify_report *rep, vgold *g, const char *key, const float *x, size_t n,
                         const char *how, const anx_layer_desc *l, anx_slot slot)
{
    anx_verify_row *r = v_row(rep, g, "golden", "golden", "-", "-", key);
    vwant w;
    if (vgold_want(g, key, &w)) {
        v_skip(r, "no digest/sample in the golden file");
        return;
    }
    if (w.idx) set_shape(&w, l, slot);
    v_compare_want(r, x, &w, NULL); /* the sample: bit for bit */
    snprintf(r->impl, sizeof r->impl, "%s", how);
    double want[VDIGEST_N], got[VDIGEST_N], tol[VDIGEST_N], sumabs;
    if (vgold_digest(g, key, want)) {
        r->verdict = ANX_FAILED;
        snprintf(r->reason, sizeof r->reason, "no float64 digest in the golden file");
    } else {
        const double a = V_U / (1 - V_U);
        vdigest_of(got, &sumabs, NULL, x, n);
        vdigest_tol(tol, got, sumabs, a * sumabs, a * got[VDIGEST_MAXABS], a * (2 + a) * got[VDIGEST_SUMSQ]);
        if (vdigest_check(got, want, tol, r->reason, sizeof r->reason)) r->verdict = ANX_FAILED;
    }
    vwant_free(&w);
}

void vgold_self_checks(anx_verify_report *rep, vgold *g)
{
    const anx_model *m = &g->m;
    char key[96];
    /* 1. the RNG: key and raw bits of stream "input" against the generator's */
    {
        anx_verify_row *r = v_row(rep, g, "golden", "golden", "-", "-", "rng_check");
        const char *rc = anx_st_meta(&g->f, "rng_check");
        uint64_t k = anx_rng_key(g->seed, "input", 0);
        char want[256];
        snprintf(want, sizeof want, "{\"bits\":[\"%016llx\",\"%016llx\",\"%016llx\",\"%016llx\"],\"key\":\"%016llx\",\"name\":\"input\",\"sub\":0}",
                 (unsigned long long)anx_rng_bits(k, 0), (unsigned long long)anx_rng_bits(k, 1),
                 (unsigned long long)anx_rng_bits(k, 2), (unsigned long long)anx_rng_bits(k, 3),
                 (unsigned long long)k);
        r->count = 5;
        r->verdict = rc && strcmp(rc, want) == 0 ? ANX_PASSED : ANX_FAILED;
        if (r->verdict == ANX_FAILED)
            snprintf(r->reason, sizeof r->reason, "core's RNG gives %.120s", want);
    }
    /* 2. init: FNV-1a-64 of each parameter's float32 bytes (little-endian host) */
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &m->params[p];
        snprintf(key, sizeof key, "init.%s", pi->name);
        anx_verify_row *r = v_row(rep, g, "golden", "golden", m->layers[pi->layer].name, "-", key);
        char mk[96], got[24];
        snprintf(mk, sizeof mk, "init_fnv1a64.%s", pi->name);
        const char *want = anx_st_meta(&g->f, mk);
        snprintf(got, sizeof got, "%016llx", (unsigned long long)v_fnv1a64(g->init[p], pi->count * sizeof(float)));
        r->count = pi->count;
        r->ndim = pi->ndim;
        for (int d = 0; d < pi->ndim; d++) r->shape[d] = pi->shape[d];
        r->verdict = want && strcmp(want, got) == 0 ? ANX_PASSED : ANX_FAILED;
        if (r->verdict == ANX_FAILED)
            snprintf(r->reason, sizeof r->reason, "fnv1a64 of core's init %s, golden %s", got, want ? want : "(none)");
    }
    /* 3. input, targets and masks regenerated from the seed */
    check_digest(rep, g, "input", g->input, anx_desc_plain_count(&m->layers[0], ANX_SRC), "regenerated from the seed",
                 &m->layers[0], ANX_SRC);
    {
        anx_verify_row *r = v_row(rep, g, "golden", "golden", "-", "-", "target");
        int64_t *t = calloc((size_t)m->cfg.batch, sizeof *t);
        char err[256];
        r->count = (size_t)m->cfg.batch;
        r->verdict = ANX_FAILED;
        snprintf(r->reason, sizeof r->reason, "stored targets differ from the seed's");
        if (t && anx_st_get_i64(&g->f, "target", t, (size_t)m->cfg.batch, err, sizeof err) == 0 &&
            memcmp(t, g->target, (size_t)m->cfg.batch * sizeof *t) == 0) {
            r->verdict = ANX_PASSED;
            r->reason[0] = 0;
        }
        free(t);
    }
    for (int t = 1; t <= g->steps; t++) {
        for (int i = 0; i < ANX_NUM_LAYERS; i++) {
            const anx_layer_desc *l = &m->layers[i];
            if (l->op != ANX_OP_DROPOUT) continue;
            size_t n = anx_desc_plain_count(l, ANX_DST);
            if (g->steps == 1)
                snprintf(key, sizeof key, "mask.%s", l->name);
            else
                snprintf(key, sizeof key, "step%d.mask.%s", t, l->name);
            anx_verify_row *r = v_row(rep, g, "golden", "golden", l->name, "-", key);
            vwant w;
            if (vgold_want(g, key, &w)) {
                v_skip(r, "not in the golden file");
                continue;
            }
            float *mk = v_alloc(n);
            v_mask(g, l->name, t, mk, n);
            set_shape(&w, l, ANX_DST);
            v_compare_want(r, mk, &w, NULL);
            snprintf(r->impl, sizeof r->impl, "regenerated from the seed");
            free(mk);
            vwant_free(&w);
        }
    }
    /* 4. rebuilt activations against their digests */
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        size_t n = anx_desc_plain_count(l, ANX_DST);
        if (g->out[i] && strcmp(g->out_from[i], "stored")) {
            snprintf(key, sizeof key, "out.%s", l->name);
            check_digest(rep, g, key, g->out[i], n, g->out_from[i], l, ANX_DST);
        }
        if (g->gout[i] && strcmp(g->gout_from[i], "stored")) {
            snprintf(key, sizeof key, "grad_out.%s", l->name);
            check_digest(rep, g, key, g->gout[i], n, g->gout_from[i], l, ANX_DST);
        }
    }
}
