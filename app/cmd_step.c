/* anx step: N training steps of Alexnet on one backend, the last one dumped (DESIGN.md 3, 4).
 *
 *   weights  --weights W.safetensors: state_dict keys (conv.0.weight ..), F32 or F64; in_dim and
 *            n_class come from conv.0.weight [96, in_dim, 11, 11] and fc.6.weight [n_class, 4096].
 *            Optional Adam state: adam.exp_avg.<p>, adam.exp_avg_sq.<p> and adam.step (I64 or
 *            float scalar; a dump's "step" metadata stands in when the tensor is absent).
 *            Without it: PyTorch-default init from --seed.
 *   batch    --input X.safetensors: input [B, C, H, H], target [B] I64, optional
 *            mask.Dropout-16 / mask.Dropout-19 [B, 4096] (both or neither), the same every step.
 *            Without it: input, targets and masks drawn from --seed (anx/rng.h streams).
 *   dump     --dump OUT.safetensors: the last step, every key of DESIGN.md section 3: out.* and
 *            grad_out.* and grad.* from that step's forward/backward (before its update), the
 *            parameters and Adam moments after it.
 * Every file problem is one line on stderr naming the file and tensor, exit status 2, and no
 * dump is written (the writer commits by rename only after everything succeeded).
 *
 * Under mpirun (docs/mpi.md) the batch is split as anx train splits an epoch's last batch (anx_shard:
 * the first B % N ranks take one more sample), rank r runs its slice (its dropout masks drawn at
 * those global positions), the gradients are allreduced weighted by local/B (anx/dist.h), the
 * ranks compare a checksum of their state after every step, and rank 0 dumps the global step:
 * activations and masks gathered in rank order, grad_out.* scaled to the global batch's mean loss
 * (x local/B), the loss the global mean; the dump reads as one process's.
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anx/backend.h"
#include "anx/data.h"
#include "anx/dist.h"
#include "anx/model.h"
#include "anx/net.h"
#include "anx/rng.h"
#include "anx/safetensors.h"
#include "cli.h"

#define CMD "step"
enum { ERR_LEN = 512, MASK_FEATURES = 4096 };

typedef struct step_opts {
    const char *backend, *weights, *input, *dump;
    int in_dim, classes, batch; /* -1: not given */
    int64_t seed;
    int steps, threads;
    float lr;
} step_opts;

/* The batch as plain arrays: input [n, c, hw, hw], target [n], masks [n, 4096] or NULL; n is the
 * global batch (under mpirun this rank runs local of them). */
typedef struct step_batch {
    int n;
    float *input;
    int64_t *target;
    float *mask16, *mask19;
} step_batch;

static void batch_free(step_batch *b)
{
    free(b->input);
    free(b->target);
    free(b->mask16);
    free(b->mask19);
}

/* ------------------------------------------------------------------------------------------ */
/* the configuration: from the files first, then the flags, then the defaults */

static int check_flag_agrees(const char *flag, int given, int found, const char *file, const char *tensor)
{
    if (given >= 0 && given != found)
        return cli_error(CMD, "%s %d disagrees with %s, whose %s implies %d", flag, given, file, tensor, found);
    return 0;
}

/* in_dim and n_class from the weights file. */
static int config_from_weights(const anx_st_file *w, const step_opts *o, anx_model_config *cfg)
{
    const anx_st_tensor *c0 = anx_st_find(w, "conv.0.weight"), *f6 = anx_st_find(w, "fc.6.weight");
    if (!c0) return cli_error(CMD, "%s: not found (tensor conv.0.weight)", w->path);
    if (!f6) return cli_error(CMD, "%s: not found (tensor fc.6.weight)", w->path);
    if (c0->ndim != 4 || c0->shape[1] < 1 || c0->shape[1] > 4096)
        return cli_error(CMD, "%s: expected shape [96, in_dim, 11, 11] (tensor conv.0.weight)", w->path);
    if (f6->ndim != 2 || f6->shape[0] < 1 || f6->shape[0] > (1 << 20))
        return cli_error(CMD, "%s: expected shape [n_class, 4096] (tensor fc.6.weight)", w->path);
    cfg->in_dim = (int)c0->shape[1];
    cfg->n_class = (int)f6->shape[0];
    if (check_flag_agrees("--in-dim", o->in_dim, cfg->in_dim, w->path, "conv.0.weight") ||
        check_flag_agrees("--classes", o->classes, cfg->n_class, w->path, "fc.6.weight"))
        return ANX_EXIT_USAGE;
    return 0;
}

/* batch, input size (and in_dim when no weights gave it) from the input file. */
static int config_from_input(const anx_st_file *x, const step_opts *o, int in_dim_known, anx_model_config *cfg)
{
    const anx_st_tensor *t = anx_st_find(x, "input");
    if (!t) return cli_error(CMD, "%s: not found (tensor input)", x->path);
    if (t->ndim != 4 || t->shape[2] != t->shape[3] || t->shape[0] < 1 || t->shape[1] < 1 || t->shape[2] < 1 ||
        t->shape[0] > (1 << 20) || t->shape[1] > 4096 || t->shape[2] > (1 << 16))
        return cli_error(CMD, "%s: expected shape [B, C, H, W] with H == W (tensor input)", x->path);
    if (in_dim_known && t->shape[1] != cfg->in_dim)
        return cli_error(CMD, "%s: %" PRId64 " channels but the weights have in_dim %d (tensor input)", x->path,
                         t->shape[1], cfg->in_dim);
    if (check_flag_agrees("--in-dim", o->in_dim, (int)t->shape[1], x->path, "input") ||
        check_flag_agrees("--batch", o->batch, (int)t->shape[0], x->path, "input"))
        return ANX_EXIT_USAGE;
    cfg->in_dim = (int)t->shape[1];
    cfg->batch = (int)t->shape[0];
    cfg->input_hw = (int)t->shape[2];
    return 0;
}

/* Keys a weights file may hold that anx does not know are refused when they look like ours
 * (a typo in conv.0.weigth must not silently fall back to something else). */
static int check_weight_keys(const anx_st_file *w, const anx_model *m)
{
    char name[96];
    for (int i = 0; i < w->count; i++) {
        const char *k = w->tensors[i].name;
        if (strncmp(k, "conv.", 5) && strncmp(k, "fc.", 3) && strncmp(k, "adam.", 5)) continue;
        int known = strcmp(k, "adam.step") == 0;
        for (int p = 0; p < ANX_NUM_PARAMS && !known; p++) {
            const char *pn = m->params[p].name;
            known = strcmp(k, pn) == 0;
            snprintf(name, sizeof name, "adam.exp_avg.%s", pn);
            known = known || strcmp(k, name) == 0;
            snprintf(name, sizeof name, "adam.exp_avg_sq.%s", pn);
            known = known || strcmp(k, name) == 0;
        }
        if (!known)
            return cli_error(CMD, "%s: not a parameter of Alexnet(%d, %d) nor its Adam state (tensor %s)", w->path,
                             m->cfg.in_dim, m->cfg.n_class, k);
    }
    return 0;
}

static const char *const state_prefix[ANX_STATE_COUNT] = {"", NULL, "adam.exp_avg.", "adam.exp_avg_sq."};

static int has_adam_state(const anx_st_file *w)
{
    for (int i = 0; i < w->count; i++)
        if (strncmp(w->tensors[i].name, "adam.", 5) == 0) return 1;
    return 0;
}

static const char *shape_text(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* Every tensor the weights file must hold, checked from the header alone, so a bad file is
 * refused before the network (a gigabyte for Alexnet(3, 1000)) is allocated. */
static int check_weight_shapes(const anx_st_file *w, const anx_model *m)
{
    int adam = has_adam_state(w);
    char name[96], want[96], got[96];
    for (int s = 0; s < ANX_STATE_COUNT; s++) {
        if (!state_prefix[s] || (s != ANX_PARAM && !adam)) continue;
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            const anx_param_info *pi = &m->params[p];
            snprintf(name, sizeof name, "%s%s", state_prefix[s], pi->name);
            const anx_st_tensor *t = anx_st_find(w, name);
            if (!t)
                return cli_error(CMD, "%s: not found%s (tensor %s)", w->path,
                                 s == ANX_PARAM ? "" : ", the Adam state must be complete", name);
            if (t->dtype == ANX_DTYPE_I64)
                return cli_error(CMD, "%s: dtype I64 where F32 or F64 is expected (tensor %s)", w->path, name);
            int same = t->ndim == pi->ndim;
            for (int d = 0; same && d < pi->ndim; d++) same = t->shape[d] == pi->shape[d];
            if (!same)
                return cli_error(CMD, "%s: shape %s, expected %s for Alexnet(%d, %d) (tensor %s)", w->path,
                                 shape_text(got, sizeof got, t->shape, t->ndim),
                                 shape_text(want, sizeof want, pi->shape, pi->ndim), m->cfg.in_dim,
                                 m->cfg.n_class, name);
        }
    }
    return 0;
}

/* A NaN or Inf in the weights (or an F64 too large for float32) would only surface as a NaN
 * loss after a step; it is bad input, refused from the file before the network is built and
 * named by file, tensor and element.  Only the tensors check_weight_shapes found are read. */
static int check_weight_values(const anx_st_file *w, const anx_model *m)
{
    int adam = has_adam_state(w);
    char name[96];
    for (int s = 0; s < ANX_STATE_COUNT; s++) {
        if (!state_prefix[s] || (s != ANX_PARAM && !adam)) continue;
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            snprintf(name, sizeof name, "%s%s", state_prefix[s], m->params[p].name);
            const anx_st_tensor *t = anx_st_find(w, name);
            const unsigned char *d = t->data; /* little-endian, maybe unaligned: memcpy */
            for (size_t i = 0; i < t->count; i++) {
                double g; /* F64 beyond FLT_MAX would become Inf (and the cast be undefined) */
                if (t->dtype == ANX_DTYPE_F32) {
                    float f;
                    memcpy(&f, d + 4 * i, 4);
                    g = f;
                } else {
                    memcpy(&g, d + 8 * i, 8);
                }
                if (!(fabs(g) <= FLT_MAX))
                    return cli_error(CMD, "%s: element %zu is %g, not finite as float32 (tensor %s)", w->path, i, g,
                                     name);
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* loading into the network */

static size_t max_param_count(const anx_model *m)
{
    size_t max = 0;
    for (int p = 0; p < ANX_NUM_PARAMS; p++)
        if (m->params[p].count > max) max = m->params[p].count;
    return max;
}

/* Adam's t from adam.step (I64, or a float as PyTorch 1.13 keeps it) or the "step" metadata. */
static int read_adam_step(const anx_st_file *w, int64_t *t)
{
    char err[ERR_LEN];
    const anx_st_tensor *s = anx_st_find(w, "adam.step");
    if (!s) {
        const char *meta = anx_st_meta(w, "step");
        char *end = NULL;
        long long v = meta ? strtoll(meta, &end, 10) : -1;
        if (!meta || *end || v < 0)
            return cli_error(CMD, "%s: Adam moments given without the step count (tensor adam.step)", w->path);
        *t = v;
        return 0;
    }
    if (s->dtype == ANX_DTYPE_I64) {
        if (anx_st_get_i64(w, "adam.step", t, 1, err, sizeof err)) return cli_error(CMD, "%s", err);
    } else {
        float f;
        if (anx_st_get_f32(w, "adam.step", &f, 1, NULL, -1, err, sizeof err)) return cli_error(CMD, "%s", err);
        if (!(f >= 0.0f && f <= 16777216.0f && f == floorf(f)))
            return cli_error(CMD, "%s: step count %g is not a whole number of steps (tensor adam.step)", w->path,
                             (double)f);
        *t = (int64_t)f;
    }
    if (*t < 0) return cli_error(CMD, "%s: negative step count %" PRId64 " (tensor adam.step)", w->path, *t);
    return 0;
}

static int load_weights(anx_net *net, const anx_st_file *w)
{
    const anx_model *m = anx_net_model(net);
    char err[ERR_LEN], name[96];
    float *plain = malloc(max_param_count(m) * sizeof(float));
    if (!plain) return cli_error(CMD, "%s: out of memory", w->path);
    int has_adam = has_adam_state(w);
    int rc = 0;
    for (int s = 0; s < ANX_STATE_COUNT && !rc; s++) {
        if (!state_prefix[s] || (s != ANX_PARAM && !has_adam)) continue;
        for (int p = 0; p < ANX_NUM_PARAMS && !rc; p++) {
            const anx_param_info *pi = &m->params[p];
            snprintf(name, sizeof name, "%s%s", state_prefix[s], pi->name);
            if (anx_st_get_f32(w, name, plain, pi->count, pi->shape, pi->ndim, err, sizeof err))
                rc = cli_error(CMD, "%s", err);
            else
                anx_net_set_state(net, (anx_state)s, p, plain);
        }
    }
    free(plain);
    if (rc || !has_adam) return rc;
    int64_t t = 0;
    if ((rc = read_adam_step(w, &t))) return rc;
    anx_net_set_step_count(net, t);
    return 0;
}

static int load_mask(const anx_st_file *x, const char *name, int n, float **out)
{
    char err[ERR_LEN];
    const int64_t shape[2] = {n, MASK_FEATURES};
    size_t count = (size_t)n * MASK_FEATURES;
    *out = malloc(count * sizeof(float));
    if (!*out) return cli_error(CMD, "%s: out of memory (tensor %s)", x->path, name);
    if (anx_st_get_f32(x, name, *out, count, shape, 2, err, sizeof err)) return cli_error(CMD, "%s", err);
    /* Dropout(0.5): every element is 0 or 1/(1-p) = 2, as the backends assume */
    for (size_t i = 0; i < count; i++)
        if ((*out)[i] != 0.0f && (*out)[i] != 2.0f)
            return cli_error(CMD, "%s: element %zu is %g, a Dropout(0.5) mask holds only 0 and 2 (tensor %s)",
                             x->path, i, (double)(*out)[i], name);
    return 0;
}

static int load_batch(const anx_st_file *x, const anx_model_config *cfg, step_batch *b)
{
    char err[ERR_LEN];
    const int64_t ishape[4] = {cfg->batch, cfg->in_dim, cfg->input_hw, cfg->input_hw};
    size_t count = (size_t)cfg->batch * cfg->in_dim * cfg->input_hw * cfg->input_hw;
    b->input = malloc(count * sizeof(float));
    b->target = malloc((size_t)cfg->batch * sizeof(int64_t));
    if (!b->input || !b->target) return cli_error(CMD, "%s: out of memory", x->path);
    if (anx_st_get_f32(x, "input", b->input, count, ishape, 4, err, sizeof err) ||
        anx_st_get_i64(x, "target", b->target, (size_t)cfg->batch, err, sizeof err))
        return cli_error(CMD, "%s", err);
    const anx_st_tensor *t = anx_st_find(x, "target");
    if (t->ndim != 1) return cli_error(CMD, "%s: expected shape [%d] (tensor target)", x->path, cfg->batch);
    for (int i = 0; i < cfg->batch; i++)
        if (b->target[i] < 0 || b->target[i] >= cfg->n_class)
            return cli_error(CMD, "%s: target[%d] = %" PRId64 " is not a class of 0..%d (tensor target)", x->path, i,
                             b->target[i], cfg->n_class - 1);
    int has16 = anx_st_find(x, "mask.Dropout-16") != NULL, has19 = anx_st_find(x, "mask.Dropout-19") != NULL;
    if (has16 != has19)
        return cli_error(CMD, "%s: give both dropout masks or neither (tensor %s)", x->path,
                         has16 ? "mask.Dropout-19" : "mask.Dropout-16");
    if (has16 && (load_mask(x, "mask.Dropout-16", cfg->batch, &b->mask16) ||
                  load_mask(x, "mask.Dropout-19", cfg->batch, &b->mask19)))
        return ANX_EXIT_USAGE;
    for (size_t i = 0; i < count; i++)
        if (!isfinite(b->input[i]))
            return cli_error(CMD, "%s: element %zu is not finite (tensor input)", x->path, i);
    return 0;
}

/* input u, target floor(u * n_class) from the seed (anx/rng.h streams "input", "target") */
static int seed_batch(const anx_model_config *cfg, uint64_t seed, step_batch *b)
{
    size_t count = (size_t)cfg->batch * cfg->in_dim * cfg->input_hw * cfg->input_hw;
    b->input = malloc(count * sizeof(float));
    b->target = malloc((size_t)cfg->batch * sizeof(int64_t));
    if (!b->input || !b->target) return cli_error(CMD, "out of memory for the batch");
    anx_rng_fill_u01(b->input, count, anx_rng_key(seed, "input", 0));
    anx_rng_fill_targets(b->target, (size_t)cfg->batch, anx_rng_key(seed, "target", 0), cfg->n_class);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the dump */

/* Writer errors are remembered by the writer and reported by commit. */
static void add_f32(anx_st_writer *w, const char *name, const int64_t *shape, int ndim, const float *data)
{
    if (w) anx_st_writer_add(w, name, ANX_DTYPE_F32, shape, ndim, data); /* NULL: a rank but 0 */
}

/* This rank's n floats, times scale, gathered in rank order into rank 0's [total] *out (malloc'd
 * there; NULL elsewhere or when out of memory).  The ranks' n may differ (an uneven split). */
static float *gather(float *mine, size_t n, size_t total, float scale)
{
    char err[ERR_LEN];
    if (scale != 1.0f)
        for (size_t i = 0; i < n; i++) mine[i] *= scale;
    float *all = anx_dist_rank() == 0 ? malloc(total * sizeof(float)) : NULL;
    if (anx_dist_gather_f32(all, mine, n, err, sizeof err)) {
        fprintf(stderr, "anx step: %s\n", err);
        free(all);
        return NULL;
    }
    return all;
}

/* out.<layer> and grad_out.<layer>: NCHW up to MaxPool2d-13, [n, features] after the flatten */
static int layer_shape(const anx_layer_desc *l, int flat, int64_t *shape)
{
    shape[0] = l->n, shape[1] = l->oc, shape[2] = l->oh, shape[3] = l->ow;
    return flat ? 2 : 4;
}

/* scale: grad_out of a rank's slice is d(its mean loss), x local/B makes it d(the global mean) */
static void add_activations(anx_st_writer *w, const anx_net *net, int global_batch, int grad, float scale)
{
    const anx_model *m = anx_net_model(net);
    const int flat_from = anx_model_find_layer(m, "Linear-14");
    char name[64];
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        int64_t shape[4];
        int nd = layer_shape(l, i >= flat_from, shape);
        shape[0] = global_batch;
        size_t n = anx_desc_plain_count(l, ANX_DST);
        float *buf = malloc(n * sizeof(float)), *all = NULL;
        if (buf) anx_net_get_activation(net, i, grad, buf);
        if (buf && anx_dist_size() > 1) {
            all = gather(buf, n, n / (size_t)l->n * (size_t)global_batch, grad ? scale : 1.0f);
            free(buf);
            buf = all;
        }
        if (!buf) {
            if (w) anx_st_writer_add(w, l->name, ANX_DTYPE_F32, NULL, -1, NULL); /* records the failure */
            continue;
        }
        snprintf(name, sizeof name, "%s.%s", grad ? "grad_out" : "out", l->name);
        add_f32(w, name, shape, nd, buf);
        free(buf);
    }
}

static void add_states(anx_st_writer *w, const anx_net *net, anx_state s, const char *prefix)
{
    const anx_model *m = anx_net_model(net);
    float *buf = malloc(max_param_count(m) * sizeof(float));
    char name[96];
    for (int p = 0; p < ANX_NUM_PARAMS; p++) {
        const anx_param_info *pi = &m->params[p];
        snprintf(name, sizeof name, "%s%s", prefix, pi->name);
        if (!buf) {
            anx_st_writer_add(w, name, ANX_DTYPE_F32, NULL, -1, NULL);
            return;
        }
        anx_net_get_state(net, s, p, buf);
        add_f32(w, name, pi->shape, pi->ndim, buf);
    }
    free(buf);
}

static void add_meta_i64(anx_st_writer *w, const char *key, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%" PRId64, v);
    anx_st_writer_meta(w, key, s);
}

static int write_dump(const char *path, const anx_net *net, const step_batch *b, float loss, const step_opts *o)
{
    const anx_model *m = anx_net_model(net);
    anx_model_config global = m->cfg, *c = &global; /* the dump is the global batch's */
    const int ranks = anx_dist_size(), local = m->cfg.batch;
    global.batch = b->n;
    const size_t all_masks = (size_t)b->n * MASK_FEATURES;
    if (anx_dist_rank() != 0) { /* take part in the gathers; rank 0 writes */
        float *mask = malloc((size_t)local * MASK_FEATURES * sizeof(float));
        const char *const drop[2] = {"Dropout-16", "Dropout-19"};
        for (int k = 0; k < 2 && mask; k++) {
            anx_net_get_mask(net, anx_model_find_layer(m, drop[k]), mask);
            free(gather(mask, (size_t)local * MASK_FEATURES, all_masks, 1.0f));
        }
        free(mask);
        add_activations(NULL, net, b->n, 0, 1.0f);
        add_activations(NULL, net, b->n, 1, (float)local / global.batch);
        return 0;
    }
    anx_st_writer *w = anx_st_writer_new();
    if (!w) return cli_error(CMD, "--dump %s: out of memory", path);
    anx_st_writer_meta(w, "backend", anx_net_backend(net)->name);
    add_meta_i64(w, "seed", o->seed);
    add_meta_i64(w, "step", anx_net_step_count(net));
    add_meta_i64(w, "in_dim", c->in_dim);
    add_meta_i64(w, "n_class", c->n_class);
    add_meta_i64(w, "batch", c->batch);
    add_meta_i64(w, "input_hw", c->input_hw);
    char lr[32]; /* the shortest decimal that reads back as the same float: "0.001" */
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(lr, sizeof lr, "%.*g", prec, (double)o->lr);
        if (strtof(lr, NULL) == o->lr) break;
    }
    anx_st_writer_meta(w, "lr", lr);
    anx_st_writer_meta(w, "weights", o->weights ? o->weights : "seed");
    anx_st_writer_meta(w, "input", o->input ? o->input : "seed");

    const int64_t ishape[4] = {c->batch, c->in_dim, c->input_hw, c->input_hw}, tshape[1] = {c->batch},
                  mshape[2] = {c->batch, MASK_FEATURES};
    add_f32(w, "input", ishape, 4, b->input);
    anx_st_writer_add(w, "target", ANX_DTYPE_I64, tshape, 1, b->target);
    float *mask = malloc((size_t)local * MASK_FEATURES * sizeof(float));
    const char *const drop[2] = {"Dropout-16", "Dropout-19"};
    for (int k = 0; k < 2; k++) {
        char name[32];
        snprintf(name, sizeof name, "mask.%s", drop[k]);
        if (mask) anx_net_get_mask(net, anx_model_find_layer(m, drop[k]), mask);
        float *all = !mask ? NULL : ranks > 1 ? gather(mask, (size_t)local * MASK_FEATURES, all_masks, 1.0f) : mask;
        anx_st_writer_add(w, name, ANX_DTYPE_F32, all ? mshape : NULL, all ? 2 : -1, all);
        if (all != mask) free(all);
    }
    free(mask);
    add_activations(w, net, b->n, 0, 1.0f);
    add_activations(w, net, b->n, 1, (float)local / global.batch);
    add_f32(w, "loss", NULL, 0, &loss);
    add_states(w, net, ANX_GRAD, "grad.");
    add_states(w, net, ANX_PARAM, "");
    add_states(w, net, ANX_EXP_AVG, "adam.exp_avg.");
    add_states(w, net, ANX_EXP_AVG_SQ, "adam.exp_avg_sq.");

    char err[ERR_LEN];
    int rc = anx_st_writer_commit(w, path, err, sizeof err);
    anx_st_writer_free(w);
    if (rc) return cli_error(CMD, "--dump %s", err);
    return 0;
}

/* Refuse a dump path that cannot be written before spending minutes on the steps. */
static int check_dump_path(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return cli_error(CMD, "--dump %s: out of memory", path);
    const char *dir = dirname(copy);
    int ok = access(dir, W_OK | X_OK) == 0;
    int saved = errno;
    if (!ok) cli_error(CMD, "--dump %s: directory %s is not writable: %s", path, dir, strerror(saved));
    free(copy);
    return ok ? 0 : ANX_EXIT_USAGE;
}

/* ------------------------------------------------------------------------------------------ */

/* "workspace: onednn holds 16.66 MiB beside the tensors: Conv2d-1 0.13 MiB, ...": what the
 * backend's layer contexts cost in memory, per layer that holds any (after the steps: a buffer
 * made on first use counts). */
static void print_workspace(const anx_net *net)
{
    const anx_model *m = anx_net_model(net);
    const char *be = anx_net_backend(net)->name;
    if (anx_net_workspace_bytes(net, 0) < 0) {
        printf("workspace: not reported by %s\n", be);
        return;
    }
    long long total = 0;
    for (int i = 0; i <= ANX_NUM_LAYERS; i++) total += anx_net_workspace_bytes(net, i);
    printf("workspace: %s holds %.2f MiB beside the tensors", be, (double)total / (1024.0 * 1024.0));
    const char *sep = ":";
    for (int i = 0; i <= ANX_NUM_LAYERS; i++) {
        const long long b = anx_net_workspace_bytes(net, i);
        if (b <= 0) continue;
        printf("%s %s %.2f MiB", sep, i < ANX_NUM_LAYERS ? m->layers[i].name : m->loss.name, (double)b / (1024.0 * 1024.0));
        sep = ",";
    }
    printf("\n");
}

/* "scratch: cblas shares one buffer of 13996800 bytes (13.35 MiB) among the net's layers, sized by
 * Conv2d-4's need": the calls' scratch, allocated once per net at its largest layer's need
 * (anx_args.scratch); nothing for a backend without scratch. */
static void print_scratch(const anx_net *net)
{
    int layer;
    const long long b = anx_net_scratch_bytes(net, &layer);
    if (b < 0) return;
    const anx_model *m = anx_net_model(net);
    const char *name = layer < 0 ? NULL : layer < ANX_NUM_LAYERS ? m->layers[layer].name : m->loss.name;
    printf("scratch: %s shares one buffer of %lld bytes (%.2f MiB) among the net's layers", anx_net_backend(net)->name,
           b, (double)b / (1024.0 * 1024.0));
    if (name) printf(", sized by %s's need", name);
    printf("\n");
}

/* "library: libxsmm runs LIBXSMM 1.17, JIT target hsw": what the backend's library() says it
 * runs here (a JIT target chosen at run time, e.g. by LIBXSMM_TARGET, is seen nowhere else in
 * the step's output); nothing for a backend without one. */
static void print_library(const anx_backend *be)
{
    const char *lib = be->library ? be->library() : NULL;
    if (lib && lib[0]) printf("library: %s runs %s\n", be->name, lib);
}

/* One training step on a global batch of n; under mpirun each rank's gradients, weighted by its
 * share local/n, are allreduced during the backward pass and *loss is the global batch's mean.
 * 0, or 2 after the one-line error. */
static int train_step(anx_net *net, int n, float lr, float *loss)
{
    char err[ERR_LEN];
    const int local = anx_net_model(net)->cfg.batch;
    anx_dist_stats st;
    if (anx_dist_size() == 1) return anx_net_train_step(net, lr, loss) ? cli_error(CMD, "%s", anx_net_error(net)) : 0;
    if (anx_net_forward(net, 1, loss)) return cli_error(CMD, "%s", anx_net_error(net));
    anx_dist_grads_begin(net, (double)local / n, 1, n % anx_dist_size() != 0); /* uneven: nets of 2 batches */
    if (anx_net_backward(net)) return cli_error(CMD, "%s", anx_net_error(net));
    if (anx_dist_grads_end(net, &st, err, sizeof err)) return cli_error(CMD, "%s", err);
    anx_net_adam(net, lr);
    double sum = (double)*loss * local; /* this rank's sum of per-sample losses */
    if (anx_dist_sum_f64(&sum, 1, err, sizeof err)) return cli_error(CMD, "%s", err);
    *loss = (float)(sum / n);
    return 0;
}

/* Under mpirun every rank must hold the same parameters and moments bit for bit after a step (the
 * allreduce gave each the same sum).  0, 2 after the one-line error, or 1 when they differ. */
static int check_ranks_agree(const anx_net *net)
{
    char err[ERR_LEN];
    int same = 0;
    if (anx_dist_size() == 1) return 0;
    if (anx_dist_same_u64(anx_dist_state_checksum(net), &same, err, sizeof err)) return cli_error(CMD, "%s", err);
    if (same) return 0;
    if (anx_dist_rank() == 0)
        fprintf(stderr, "anx step: the ranks' parameters differ after step %" PRId64 " (checksums of the state disagree)\n",
                anx_net_step_count(net));
    return ANX_EXIT_FAIL;
}

static int run_steps(anx_net *net, const step_opts *o, const step_batch *b)
{
    const anx_model_config *c = &anx_net_model(net)->cfg;
    double total = 0.0;
    float loss = 0.0f;
    int bad = 0, rc;
    print_library(anx_net_backend(net));
    for (int i = 0; i < o->steps; i++) {
        double t0 = cli_now();
        if ((rc = train_step(net, b->n, o->lr, &loss))) return rc;
        double dt = cli_now() - t0;
        if ((rc = check_ranks_agree(net))) return rc;
        total += dt;
        printf("step %" PRId64 " loss %.6f time %.3f s\n", anx_net_step_count(net), (double)loss, dt);
        fflush(stdout);
        if (!isfinite(loss)) {
            int l;
            if (anx_net_first_nonfinite(net, &l)) return cli_error(CMD, "%s", anx_net_error(net));
            const anx_model *m = anx_net_model(net);
            fprintf(stderr, "anx step: loss is %g at step %" PRId64 ", first non-finite output: %s\n", (double)loss,
                    anx_net_step_count(net), l < 0 ? "none" : l < ANX_NUM_LAYERS ? m->layers[l].name : "the loss");
            bad = 1;
            break;
        }
    }
    const int batch = b->n;
    if (anx_dist_size() > 1) /* what test_mpi_step reads: the ranks' states were compared after every step */
        printf("ranks: all %d hold the same parameters and Adam state after step %" PRId64 " (checksum %016" PRIx64 ")\n",
               anx_dist_size(), anx_net_step_count(net), anx_dist_state_checksum(net));
    printf("done: %d step%s on %s, Alexnet(%d, %d) batch %d input %d, %.3f s/step, %.2f images/s, loss %.6f\n",
           o->steps, o->steps == 1 ? "" : "s", anx_net_backend(net)->name, c->in_dim, c->n_class, batch,
           c->input_hw, total / o->steps, total > 0 ? o->steps * batch / total : 0.0, (double)loss);
    print_workspace(net);
    print_scratch(net);
    if (o->dump) {
        int rc = write_dump(o->dump, net, b, loss, o);
        if (rc) return rc;
        printf("dump %s\n", o->dump);
    }
    return bad ? ANX_EXIT_FAIL : ANX_EXIT_OK;
}

/* Linux overcommits memory: a network larger than RAM may be allocated fine and the process
 * OOM-killed while the buffers are first written.  So a size that cannot fit is refused here,
 * naming what made it large: the classes / in_dim (parameters) or the batch. */
static int check_memory(const anx_model *m, const step_opts *o)
{
    const double ram = cli_ram_available();
    if (ram <= 0) return 0; /* unknown: let the allocation decide */
    double params, need = cli_net_bytes(m, &params);
    if (need <= ram) return 0;
    const anx_model_config *c = &m->cfg;
    char culprit[256];
    if (params > ram / 2)
        snprintf(culprit, sizeof culprit, "%s", o->weights ? o->weights : o->classes > 0 ? "--classes" : "--in-dim");
    else if (o->input)
        snprintf(culprit, sizeof culprit, "%s", o->input);
    else
        snprintf(culprit, sizeof culprit, "--batch %d", c->batch);
    return cli_error(CMD, "%s: Alexnet(%d, %d) at batch %d input %d needs about %.1f GiB, more than the %.1f GiB of RAM available here",
                     culprit, c->in_dim, c->n_class, c->batch, c->input_hw, need / 1073741824.0, ram / 1073741824.0);
}

/* The configuration and the batch from the files and flags; every file is fully checked
 * against the model here, before the network is built. */
static int load_files(const step_opts *o, anx_st_file *wf, anx_st_file *xf, anx_model_config *cfg,
                      step_batch *batch)
{
    char err[ERR_LEN];
    int rc;
    *cfg = (anx_model_config){o->in_dim > 0 ? o->in_dim : 3, o->classes > 0 ? o->classes : 1000,
                              o->batch > 0 ? o->batch : 2, 227};
    if (o->weights) {
        if (anx_st_read(wf, o->weights, err, sizeof err)) return cli_error(CMD, "%s", err);
        if ((rc = config_from_weights(wf, o, cfg))) return rc;
    }
    if (o->input) {
        if (anx_st_read(xf, o->input, err, sizeof err)) return cli_error(CMD, "%s", err);
        if ((rc = config_from_input(xf, o, o->weights != NULL, cfg))) return rc;
    }
    anx_model model;
    if (anx_model_init(&model, cfg, err, sizeof err))
        return cli_error(CMD, "%s%s%s", o->input ? o->input : "", o->input ? ": " : "", err);
    if ((rc = check_memory(&model, o))) return rc;
    if (o->weights) {
        int64_t t;
        if ((rc = check_weight_keys(wf, &model)) || (rc = check_weight_shapes(wf, &model)) ||
            (rc = check_weight_values(wf, &model)) ||
            (has_adam_state(wf) && (rc = read_adam_step(wf, &t))))
            return rc;
    }
    return o->input ? load_batch(xf, cfg, batch) : seed_batch(cfg, (uint64_t)o->seed, batch);
}

static int run(int argc, char **argv)
{
    step_opts o = {.backend = anx_backend_reference()->name, .in_dim = -1, .classes = -1, .batch = -1, .seed = 1, .steps = 1,
                   .threads = 0, .lr = 1e-3f};
    char help[320], backend_help[400];
    snprintf(help, sizeof help, " (default %s)", o.backend);
    cli_backend_help(backend_help, sizeof backend_help, "", help);
    const cli_flag flags[] = {
        {"--backend", CLI_STRING, &o.backend, 0, -1, backend_help},
        {"--weights", CLI_STRING, &o.weights, 0, -1, "W.safetensors: state_dict keys (+ adam.*); default: init from --seed"},
        {"--input", CLI_STRING, &o.input, 0, -1, "X.safetensors: input, target (+ mask.*); default: from --seed"},
        {"--in-dim", CLI_INT, &o.in_dim, 1, 4096, "input channels without --weights (default 3)"},
        {"--classes", CLI_INT, &o.classes, 1, 1 << 20, "classes without --weights (default 1000)"},
        {"--batch", CLI_INT, &o.batch, 1, 1 << 20, "batch without --input (default 2)"},
        {"--seed", CLI_I64, &o.seed, 0, 0x7fffffffffffffffL, "seed of init, input and dropout (default 1)"},
        {"--steps", CLI_INT, &o.steps, 1, 1000000000, "training steps (default 1)"},
        {"--lr", CLI_FLOAT, &o.lr, 0, -1, "Adam learning rate (default 1e-3)"},
        {"--threads", CLI_INT, &o.threads, 0, 4096, "threads (default 0: OpenMP's default)"},
        {"--dump", CLI_STRING, &o.dump, 0, -1, "OUT.safetensors: every tensor of the last step"},
    };
    int rc = cli_parse(CMD,
                       "anx step --backend B [--weights W.safetensors] [--input X.safetensors] [--in-dim N "
                       "--classes K --batch B --seed S] [--steps N] [--lr LR] [--threads T] [--dump OUT.safetensors]",
                       argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), NULL, 0, NULL);
    if (rc) return rc == 1 ? ANX_EXIT_OK : rc;
    if (!(o.lr >= 0.0f)) return cli_error(CMD, "--lr must be >= 0, got %g", (double)o.lr);

    const anx_backend *be = NULL;
    if ((rc = cli_backend(CMD, o.backend, &be))) return rc;
    if (o.dump && (rc = check_dump_path(o.dump))) return rc;

    anx_st_file wf = {0}, xf = {0};
    step_batch batch = {0};
    anx_net *net = NULL;
    char err[ERR_LEN];
    anx_model_config cfg;
    if (anx_dist_init(err, sizeof err)) return cli_error(CMD, "%s", err);
    const int ranks = anx_dist_size(), rank = anx_dist_rank();
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) return cli_error(CMD, "cannot silence stdout");
    if ((rc = load_files(&o, &wf, &xf, &cfg, &batch))) goto out;
    if (cfg.batch < ranks) {
        rc = cli_error(CMD, "batch %d is smaller than the %d ranks (each rank needs a sample)", cfg.batch, ranks);
        goto out;
    }
    batch.n = cfg.batch;
    int first_i;
    anx_shard(batch.n, rank, ranks, &first_i, &cfg.batch); /* this rank's samples first.. of the global batch */
    const size_t first = (size_t)first_i, per = (size_t)cfg.in_dim * cfg.input_hw * cfg.input_hw;

    if (!(net = anx_net_create(be, &cfg, o.threads, err, sizeof err))) {
        rc = cli_error(CMD, "--backend %s: %s", be->name, err);
        goto out;
    }
    if (anx_net_init_params(net, (uint64_t)o.seed)) { /* also zeroes gradients and Adam moments */
        rc = cli_error(CMD, "%s", anx_net_error(net));
        goto out;
    }
    if (o.weights && (rc = load_weights(net, &wf))) goto out;
    anx_st_free(&wf); /* the weights are in the network now */
    if (anx_net_set_input(net, batch.input + first * per, batch.target + first)) {
        rc = cli_error(CMD, "a target is outside 0..%d", cfg.n_class - 1);
        goto out;
    }
    anx_net_set_dropout_seed(net, (uint64_t)o.seed);
    anx_net_set_dropout_offset(net, (int64_t)first);
    if (batch.mask16 && anx_net_set_masks(net, batch.mask16 + first * MASK_FEATURES, batch.mask19 + first * MASK_FEATURES)) {
        rc = cli_error(CMD, "%s", anx_net_error(net));
        goto out;
    }
    if (!o.weights || !o.input || !batch.mask16) printf("seed %" PRId64 "\n", o.seed);
    rc = run_steps(net, &o, &batch);
out:
    anx_net_destroy(net);
    batch_free(&batch);
    anx_st_free(&wf);
    anx_st_free(&xf);
    if (ranks > 1 && rc != ANX_EXIT_OK && rc != ANX_EXIT_FAIL) anx_dist_abort(rc); /* the others may wait */
    anx_dist_finalize();
    return rc;
}

const anx_command anx_command_step = {"step", "N training steps on one backend; --dump writes the last one", run};
