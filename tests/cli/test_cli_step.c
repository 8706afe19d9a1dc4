/* test_cli_step: what `anx step --dump` writes is the step DESIGN.md section 3 describes.
 *
 * Alexnet(1, 10), batch 1, seed 5, on the ref backend (about ten seconds a step here):
 *  A  anx step --seed 5 --dump A
 *     - every key of section 3 with its shape and dtype, and the metadata (backend, seed, step);
 *     - input, target and both masks are the documented RNG streams of seed 5 (anx/rng.h);
 *     - out.* are one forward pass: ReLU-2 = max(Conv2d-1, 0), MaxPool2d-3 = 3x3/2 max of
 *       ReLU-2, Dropout-16 = ReLU-15 * mask (all exact), loss = mean(logsumexp - z[target]);
 *     - grad_out.* / grad.* are that pass's backward, taken with the weights BEFORE the update:
 *       grad_out.Linear-20 = softmax - onehot, grad_out.Dropout-19 = W6_init^T g,
 *       grad.fc.6.weight = g a^T (a = out.Dropout-19), grad.fc.6.bias = g;
 *     - the parameters and moments are AFTER the first Adam update (t = 1): m = 0.1 g,
 *       v = 0.001 g^2, p = p_init - lr g / (|g| + eps), for all 16 parameters.
 *  B  the same step from files: --weights W (the seed-5 init written by this test with the
 *     documented init stream) --input A (input, target and masks of A): B == A bit for bit.
 *  C  resuming from a dump: --weights A --input A (params, Adam moments and "step" from A)
 *     equals D = --weights W --input A --steps 2, bit for bit, and says step 2.
 *  E  a dump that cannot be written (RLIMIT_FSIZE: write() fails with EFBIG as on a full
 *     disk): exit 2, one line naming the --dump path, no file and no temporary file left.
 *
 * Tolerances: float32 results against double references get bounds from the float32 unit
 * roundoff u = 2^-24 times the accumulation length and the magnitude sum behind each value.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anx/model.h"
#include "anx/rng.h"
#include "anx/safetensors.h"
#include "spawn.h"
#include "testutil.h"

static const double U = 1.0 / 16777216.0; /* float32 unit roundoff 2^-24 */
enum { SEED = 5, IN_DIM = 1, CLASSES = 10, BATCH = 1 };
static const float LR = 1e-3f;

static char dir[128];
static anx_model M;

static const char *path(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* The tensor as floats with its shape checked; NULL (and a failure) if it is not there. */
static float *get(const anx_st_file *f, const char *name, const int64_t *shape, int ndim)
{
    const anx_st_tensor *t = anx_st_find(f, name);
    TU_CHECKF(t != NULL, "%s: no tensor %s", f->path, name);
    if (!t) return NULL;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *buf = malloc((n ? n : 1) * sizeof(float));
    char err[512];
    int rc = anx_st_get_f32(f, name, buf, n, shape, ndim, err, sizeof err);
    TU_CHECKF(rc == 0 && t->dtype == ANX_DTYPE_F32, "%s: %s (dtype %d)", name, err, (int)t->dtype);
    if (rc) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void layer_shape(int i, int64_t *shape, int *nd)
{
    const anx_layer_desc *l = &M.layers[i];
    shape[0] = l->n, shape[1] = l->oc, shape[2] = l->oh, shape[3] = l->ow;
    *nd = i >= anx_model_find_layer(&M, "Linear-14") ? 2 : 4;
}

static float *get_layer(const anx_st_file *f, const char *prefix, const char *layer)
{
    int i = anx_model_find_layer(&M, layer), nd;
    int64_t shape[4];
    layer_shape(i, shape, &nd);
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, layer);
    return get(f, name, shape, nd);
}

/* The seed-5 init of parameter p, from the documented stream. */
static float *init_param(int p)
{
    const anx_param_info *pi = &M.params[p];
    float *w = malloc(pi->count * sizeof(float));
    anx_rng_fill_uniform(w, pi->count, anx_rng_key(SEED, pi->name, 0), 1.0 / sqrt((double)pi->fan_in));
    return w;
}

static tu_run step(const char *const *args)
{
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, args);
    TU_CHECKF(r.status == 0, "anx step exit %d: %s", r.status, r.err);
    return r;
}

/* --- A: keys, streams, forward, backward, Adam ------------------------------------------- */

static void check_keys(const anx_st_file *f)
{
    int n = 0;
    const char *fixed[] = {"input", "target", "mask.Dropout-16", "mask.Dropout-19", "loss"};
    for (int i = 0; i < 5; i++) n += anx_st_find(f, fixed[i]) != NULL;
    char name[96];
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const char *pre[2] = {"out", "grad_out"};
        for (int g = 0; g < 2; g++) {
            snprintf(name, sizeof name, "%s.%s", pre[g], M.layers[i].name);
            int64_t shape[4];
            int nd;
            layer_shape(i, shape, &nd);
            const anx_st_tensor *t = anx_st_find(f, name);
            int ok = t && t->dtype == ANX_DTYPE_F32 && t->ndim == nd;
            for (int d = 0; ok && d < nd; d++) ok = t->shape[d] == shape[d];
            TU_CHECKF(ok, "dump: %s missing or wrong shape", name);
            n += t != NULL;
        }
    }
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const char *pre[4] = {"grad.", "", "adam.exp_avg.", "adam.exp_avg_sq."};
        for (int s = 0; s < 4; s++) {
            snprintf(name, sizeof name, "%s%s", pre[s], M.params[p].name);
            const anx_st_tensor *t = anx_st_find(f, name);
            int ok = t && t->dtype == ANX_DTYPE_F32 && t->ndim == M.params[p].ndim;
            for (int d = 0; ok && d < t->ndim; d++) ok = t->shape[d] == M.params[p].shape[d];
            TU_CHECKF(ok, "dump: %s missing or wrong shape", name);
            n += t != NULL;
        }
    }
    TU_CHECKF(n == 5 + 40 + 64 && f->count == n, "dump holds %d tensors, %d of them expected (want 109)", f->count, n);
    const anx_st_tensor *t = anx_st_find(f, "target");
    TU_CHECK(t && t->dtype == ANX_DTYPE_I64 && t->ndim == 1 && t->shape[0] == BATCH);
    t = anx_st_find(f, "loss");
    TU_CHECK(t && t->dtype == ANX_DTYPE_F32 && t->count == 1 && t->ndim <= 1);
    const char *be = anx_st_meta(f, "backend"), *seed = anx_st_meta(f, "seed"), *st = anx_st_meta(f, "step");
    TU_CHECKF(be && !strcmp(be, TU_REF) && seed && !strcmp(seed, "5") && st && !strcmp(st, "1"),
              "metadata backend=%s seed=%s step=%s", be ? be : "-", seed ? seed : "-", st ? st : "-");
}

static void check_streams(const anx_st_file *f)
{
    const anx_layer_desc *l0 = &M.layers[0];
    const int64_t ishape[4] = {BATCH, IN_DIM, l0->ih, l0->iw}, mshape[2] = {BATCH, 4096};
    size_t n = (size_t)BATCH * IN_DIM * l0->ih * l0->iw;
    float *want = malloc(n * sizeof(float)), *got = get(f, "input", ishape, 4);
    anx_rng_fill_u01(want, n, anx_rng_key(SEED, "input", 0));
    if (got) tu_expect_bitwise(got, want, n, "input = stream 'input' of seed 5");
    free(got);
    int64_t tw[BATCH], tg[BATCH];
    char err[512];
    anx_rng_fill_targets(tw, BATCH, anx_rng_key(SEED, "target", 0), CLASSES);
    TU_CHECKF(anx_st_get_i64(f, "target", tg, BATCH, err, sizeof err) == 0 && tg[0] == tw[0], "target %s", err);
    const char *drop[2] = {"Dropout-16", "Dropout-19"};
    for (int k = 0; k < 2; k++) {
        char name[32];
        snprintf(name, sizeof name, "mask.%s", drop[k]);
        anx_rng_fill_dropout(want, BATCH * 4096, anx_rng_key(SEED, drop[k], 1), 0.5f);
        got = get(f, name, mshape, 2);
        if (got) tu_expect_bitwise(got, want, BATCH * 4096, name);
        free(got);
    }
    free(want);
}

static void check_forward(const anx_st_file *f)
{
    float *c1 = get_layer(f, "out", "Conv2d-1"), *r2 = get_layer(f, "out", "ReLU-2"),
          *p3 = get_layer(f, "out", "MaxPool2d-3"), *r15 = get_layer(f, "out", "ReLU-15"),
          *d16 = get_layer(f, "out", "Dropout-16"), *z = get_layer(f, "out", "Linear-20");
    const int64_t mshape[2] = {BATCH, 4096};
    float *mask = get(f, "mask.Dropout-16", mshape, 2), loss = NAN;
    TU_CHECK(anx_st_get_f32(f, "loss", &loss, 1, NULL, -1, (char[512]){0}, 512) == 0);
    if (!c1 || !r2 || !p3 || !r15 || !d16 || !z || !mask) goto out;
    const anx_layer_desc *l1 = &M.layers[0], *l3 = &M.layers[2];
    size_t n1 = anx_desc_plain_count(l1, ANX_DST), bad = 0;
    for (size_t i = 0; i < n1; i++) bad += r2[i] != (c1[i] > 0.0f ? c1[i] : 0.0f);
    TU_CHECKF(bad == 0, "out.ReLU-2 != max(out.Conv2d-1, 0) at %zu elements", bad);
    bad = 0;
    for (int c = 0; c < l3->oc; c++)
        for (int y = 0; y < l3->oh; y++)
            for (int x = 0; x < l3->ow; x++) {
                float m = -INFINITY;
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++) {
                        float v = r2[((size_t)c * l3->ih + 2 * y + dy) * l3->iw + 2 * x + dx];
                        m = v > m ? v : m;
                    }
                bad += p3[((size_t)c * l3->oh + y) * l3->ow + x] != m;
            }
    TU_CHECKF(bad == 0, "out.MaxPool2d-3 != 3x3/2 max of out.ReLU-2 at %zu elements", bad);
    bad = 0;
    for (size_t i = 0; i < 4096; i++) bad += d16[i] != r15[i] * mask[i];
    TU_CHECKF(bad == 0, "out.Dropout-16 != out.ReLU-15 * mask at %zu elements", bad);
    /* loss = logsumexp(z) - z[t]: 10 exp terms, float32 result */
    int64_t t[1];
    anx_rng_fill_targets(t, 1, anx_rng_key(SEED, "target", 0), CLASSES);
    double mx = -INFINITY, s = 0, sum_abs = 0;
    for (int k = 0; k < CLASSES; k++) mx = z[k] > mx ? z[k] : mx, sum_abs += fabs(z[k]);
    for (int k = 0; k < CLASSES; k++) s += exp(z[k] - mx);
    double want = mx + log(s) - z[t[0]];
    double bound = (2 * CLASSES + 8) * U * (fabs(mx) + log(s) + fabs(z[t[0]]) + 1.0);
    TU_CHECKF(fabs(loss - want) <= bound, "loss %.9g, want %.9g (bound %.3g)", (double)loss, want, bound);
out:
    free(c1), free(r2), free(p3), free(r15), free(d16), free(z), free(mask);
}

static void check_backward(const anx_st_file *f)
{
    float *z = get_layer(f, "out", "Linear-20"), *g20 = get_layer(f, "grad_out", "Linear-20"),
          *a19 = get_layer(f, "out", "Dropout-19"), *g19 = get_layer(f, "grad_out", "Dropout-19");
    int pw = anx_model_find_param(&M, "fc.6.weight");
    float *gw = get(f, "grad.fc.6.weight", M.params[pw].shape, 2), *gb = get(f, "grad.fc.6.bias", M.params[pw + 1].shape, 1);
    float *w6 = init_param(pw);
    if (!z || !g20 || !a19 || !g19 || !gw || !gb) goto out;
    int64_t t[1];
    anx_rng_fill_targets(t, 1, anx_rng_key(SEED, "target", 0), CLASSES);
    double mx = -INFINITY, s = 0;
    for (int k = 0; k < CLASSES; k++) mx = z[k] > mx ? z[k] : mx;
    for (int k = 0; k < CLASSES; k++) s += exp(z[k] - mx);
    double worst = 0;
    for (int k = 0; k < CLASSES; k++) {
        double want = exp(z[k] - mx) / s - (k == t[0]) /* / batch 1 */;
        worst = fmax(worst, fabs(g20[k] - want));
    }
    TU_CHECKF(worst <= (2 * CLASSES + 8) * U, "grad_out.Linear-20 vs softmax - onehot: max error %.3g", worst);
    /* dL/d a19 = W6^T g20 with the weights before the update (the init of seed 5) */
    size_t bad = 0;
    for (int j = 0; j < 4096; j++) {
        double want = 0, mag = 0;
        for (int k = 0; k < CLASSES; k++) {
            want += (double)w6[(size_t)k * 4096 + j] * g20[k];
            mag += fabs((double)w6[(size_t)k * 4096 + j] * g20[k]);
        }
        bad += fabs(g19[j] - want) > (CLASSES + 2) * U * mag + 1e-30;
    }
    TU_CHECKF(bad == 0, "grad_out.Dropout-19 != W6_init^T grad_out.Linear-20 at %zu of 4096 elements", bad);
    bad = 0;
    for (int k = 0; k < CLASSES; k++) {
        for (int j = 0; j < 4096; j++) {
            double want = (double)g20[k] * a19[j];
            bad += fabs(gw[(size_t)k * 4096 + j] - want) > 2 * U * fabs(want);
        }
        bad += gb[k] != g20[k]; /* batch 1: the bias gradient is g itself */
    }
    TU_CHECKF(bad == 0, "grad.fc.6.* != grad_out.Linear-20 x out.Dropout-19 at %zu elements", bad);
out:
    free(z), free(g20), free(a19), free(g19), free(gw), free(gb), free(w6);
}

/* First Adam step from zero moments: m = 0.1 g, v = 0.001 g^2, p = p0 - lr g / (|g| + eps).
 * Each float32 op rounds once: m and v within 2u relative; the update lr*g/(|g|+eps) is
 * within 8u of lr relative, and p rounds once more (u |p|). */
static void check_adam(const anx_st_file *f)
{
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &M.params[p];
        char name[96];
        float *g, *m, *v, *w, *w0 = init_param(p);
        snprintf(name, sizeof name, "grad.%s", pi->name);
        g = get(f, name, pi->shape, pi->ndim);
        snprintf(name, sizeof name, "adam.exp_avg.%s", pi->name);
        m = get(f, name, pi->shape, pi->ndim);
        snprintf(name, sizeof name, "adam.exp_avg_sq.%s", pi->name);
        v = get(f, name, pi->shape, pi->ndim);
        w = get(f, pi->name, pi->shape, pi->ndim);
        size_t bad_m = 0, bad_v = 0, bad_w = 0, moved = 0, nonzero = 0;
        const double tiny = 1e-44; /* float32 subnormal spacing: g^2 of a tiny g underflows */
        for (size_t i = 0; g && m && v && w && i < pi->count; i++) {
            double gi = g[i];
            bad_m += fabs(m[i] - 0.1 * gi) > 4 * U * fabs(0.1 * gi) + tiny;
            bad_v += fabs(v[i] - 0.001 * gi * gi) > 4 * U * 0.001 * gi * gi + tiny;
            double want = w0[i] - (double)LR * gi / (fabs(gi) + 1e-8);
            bad_w += fabs(w[i] - want) > 2 * U * fabs(want) + 16 * U * LR;
            moved += w[i] != w0[i];
            nonzero += gi != 0.0;
        }
        TU_CHECKF(g && m && v && w && bad_m == 0 && bad_v == 0 && bad_w == 0,
                  "%s: Adam step 1 wrong at exp_avg %zu, exp_avg_sq %zu, param %zu elements", pi->name, bad_m,
                  bad_v, bad_w);
        /* a zero gradient leaves its parameter alone, any other moves it by about lr */
        TU_CHECKF(nonzero > 0 && moved == nonzero, "%s: %zu parameters changed, %zu gradients non-zero", pi->name,
                  moved, nonzero);
        free(g), free(m), free(v), free(w), free(w0);
    }
}

/* --- B, C, D: from files --------------------------------------------------------------------- */

static void write_init_weights(const char *file)
{
    anx_st_writer *w = anx_st_writer_new();
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        float *v = init_param(p);
        anx_st_writer_add(w, M.params[p].name, ANX_DTYPE_F32, M.params[p].shape, M.params[p].ndim, v);
        free(v);
    }
    char err[512];
    TU_CHECKF(anx_st_writer_commit(w, file, err, sizeof err) == 0, "%s", err);
    anx_st_writer_free(w);
}

/* Every tensor of a equal to b's, bit for bit (metadata aside). */
static void expect_same(const anx_st_file *a, const anx_st_file *b, const char *what)
{
    TU_CHECKF(a->count == b->count, "%s: %d vs %d tensors", what, a->count, b->count);
    size_t differ = 0;
    const char *first = NULL;
    for (int i = 0; i < a->count; i++) {
        const anx_st_tensor *x = &a->tensors[i], *y = anx_st_find(b, x->name);
        size_t bytes = x->count * (x->dtype == ANX_DTYPE_F32 ? 4 : 8);
        if (!y || y->dtype != x->dtype || y->count != x->count || memcmp(x->data, y->data, bytes)) {
            differ++;
            if (!first) first = x->name;
        }
    }
    TU_CHECKF(differ == 0, "%s: %zu tensors differ, the first %s", what, differ, first ? first : "");
}

static int read_dump(anx_st_file *f, const char *file)
{
    char err[512];
    int rc = anx_st_read(f, file, err, sizeof err);
    TU_CHECKF(rc == 0, "%s", err);
    return rc;
}

int main(void)
{
    anx_model_config cfg = {IN_DIM, CLASSES, BATCH, 227};
    char err[256];
    if (anx_model_init(&M, &cfg, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    tu_scratch_dir(dir, sizeof dir, "cli_step");
    const char *A = path("A.safetensors"), *B = path("B.safetensors"), *C = path("C.safetensors"),
               *D = path("D.safetensors"), *E = path("E.safetensors"), *W = path("W.safetensors");

    tu_run r = step((const char *[]){"step", "--backend", TU_REF, "--in-dim", "1", "--classes", "10", "--batch", "1",
                                      "--seed", "5", "--dump", A, NULL});
    TU_CHECKF(strstr(r.out, "seed 5\n") && strstr(r.out, "step 1 loss ") && strstr(r.out, "dump "),
              "stdout: %s", r.out);
    tu_run_free(&r);
    anx_st_file fa;
    if (read_dump(&fa, A) == 0) {
        check_keys(&fa);
        check_streams(&fa);
        check_forward(&fa);
        check_backward(&fa);
        check_adam(&fa);
    }

    /* B: the same step from a weights file and the dump's own batch */
    write_init_weights(W);
    r = step((const char *[]){"step", "--weights", W, "--input", A, "--dump", B, NULL});
    tu_run_free(&r);
    anx_st_file fb;
    if (read_dump(&fb, B) == 0) {
        expect_same(&fa, &fb, "B (weights file + A's batch) vs A");
        anx_st_free(&fb);
    }
    anx_st_free(&fa);
    unlink(B);

    /* C and D: resuming from the dump equals two uninterrupted steps */
    r = step((const char *[]){"step", "--weights", W, "--input", A, "--steps", "2", "--dump", D, NULL});
    TU_CHECKF(strstr(r.out, "step 1 loss ") && strstr(r.out, "step 2 loss "), "stdout: %s", r.out);
    tu_run_free(&r);
    r = step((const char *[]){"step", "--weights", A, "--input", A, "--dump", C, NULL});
    TU_CHECKF(strstr(r.out, "step 2 loss ") && !strstr(r.out, "step 1 "), "resumed run should say step 2: %s", r.out);
    tu_run_free(&r);
    anx_st_file fc, fd;
    if (read_dump(&fc, C) == 0) {
        if (read_dump(&fd, D) == 0) {
            expect_same(&fc, &fd, "C (resumed from A) vs D (two steps)");
            const char *st = anx_st_meta(&fc, "step");
            TU_CHECK(st && strcmp(st, "2") == 0);
            anx_st_free(&fd);
        }
        anx_st_free(&fc);
    }
    unlink(C), unlink(D);

    /* E: the dump cannot be written: a 1 MiB file size limit with SIGXFSZ ignored in the child */
    r = tu_spawn(&(tu_spawn_opts){.fsize_bytes = 1 << 20, .ignore_sigxfsz = 1},
                 (const char *[]){"step", "--weights", W, "--input", A, "--dump", E, NULL});
    TU_CHECKF(r.status == 2 && r.err_lines == 1 && strstr(r.err, E) && strstr(r.err, "File too large"),
              "failed dump: status %d, stderr: %s", r.status, r.err);
    tu_run_free(&r);
    char names[512];
    int nfiles = tu_list_dir(dir, names, sizeof names);
    TU_CHECKF(nfiles == 2, "after the failed dump the directory holds: %s(want A and W only)", names);

    tu_remove_tree(dir);
    return tu_finish("test_cli_step");
}
