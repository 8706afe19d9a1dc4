/* One benchmark per layer x direction x backend x batch, named like
 * conv2d_fwd/conv2/avx2/batch:32 (and <backend>_bare in place of the backend for the library's own
 * call alone, where the backend has a library_exec), driven from the model's own descriptors
 * (anx_model_init), so the shapes timed here are the shapes trained.  Each times exactly one exec[op][dir] call of
 * the backend on buffers in its own layout; a (layer, dir) the backend declines is skipped
 * with its reason, never timed as something else. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/model.h"
#include "anx/rng.h"
#include "bench.h"
#include "hw_counters.h"

/* every backend's rows, and a second set for one with library_exec */
enum { MAX_BACKENDS = 8, MAX_CASES = 2 * MAX_BACKENDS * ANX_BENCH_MAX_BATCHES * 3 * (ANX_NUM_LAYERS + 1) };

typedef struct layer_case {
    const anx_backend *be;
    anx_layer_desc l; /* at this case's batch */
    anx_dir dir;
    int threads;
    int bare; /* the backend's library_exec instead of exec: the library's call alone */
} layer_case;

static layer_case g_cases[MAX_CASES];
static int g_ncases;

/* The buffers of anx_args, each in the layout of its slot. */
enum { B_SRC, B_DST, B_WEIGHTS, B_BIAS, B_DIFF_SRC, B_DIFF_DST, B_DIFF_WEIGHTS, B_DIFF_BIAS, B_MASK, B_COUNT };
static const anx_slot buf_slot[B_COUNT] = {ANX_SRC, ANX_DST, ANX_WEIGHTS, ANX_BIAS, ANX_SRC,
                                           ANX_DST, ANX_WEIGHTS, ANX_BIAS, ANX_DST};
static const char *const buf_name[B_COUNT] = {"src",      "dst",          "weights",   "bias", "diff_src",
                                              "diff_dst", "diff_weights", "diff_bias", "mask"};

/* Tensors and per-layer state of one (backend, layer, batch), shared by its directions. */
typedef struct fixture {
    int valid;
    const anx_backend *be;
    anx_layer_desc l;
    int threads;
    void *ctx;
    float *buf[B_COUNT];
    size_t floats[B_COUNT];
    int64_t *target; /* [n] loss targets */
    float loss;
    anx_args args;
    char broken[200]; /* set when setup found the backend misbehaving: reported, never timed */
} fixture;

static fixture g_fix;

static void fixture_release(void)
{
    if (!g_fix.valid) return;
    if (g_fix.ctx && g_fix.be->layer_destroy) g_fix.be->layer_destroy(g_fix.ctx);
    for (int b = 0; b < B_COUNT; b++) free(g_fix.buf[b]);
    free(g_fix.args.scratch);
    free(g_fix.target);
    memset(&g_fix, 0, sizeof g_fix);
}

static int buf_used(const anx_layer_desc *l, int b)
{
    switch (b) {
    case B_WEIGHTS:
    case B_BIAS:
    case B_DIFF_WEIGHTS:
    case B_DIFF_BIAS: return anx_desc_has_weights(l);
    case B_MASK: return l->op == ANX_OP_DROPOUT;
    default: return 1;
    }
}

/* Plain contents: inputs random in their natural range, outputs NaN so that an element a
 * kernel never writes shows up in the finite check after the run. */
static void fill_plain(const anx_layer_desc *l, int b, float *plain, size_t n)
{
    char stream[48];
    snprintf(stream, sizeof stream, "bench.%s.%s", l->name, buf_name[b]);
    uint64_t key = anx_rng_key(1, stream, (uint64_t)l->n);
    double fan_in = (double)l->ic * l->kh * l->kw;
    switch (b) {
    case B_SRC:
    case B_DIFF_DST: anx_rng_fill_uniform(plain, n, key, 1.0); break;
    case B_WEIGHTS:
    case B_BIAS: anx_rng_fill_uniform(plain, n, key, 1.0 / sqrt(fan_in)); break;
    case B_MASK: anx_rng_fill_dropout(plain, n, key, l->p); break;
    default:
        for (size_t i = 0; i < n; i++) plain[i] = NAN;
    }
}

static int fixture_alloc(fixture *f)
{
    const anx_backend *be = f->be;
    const anx_layer_desc *l = &f->l;
    for (int b = 0; b < B_COUNT; b++) {
        if (!buf_used(l, b)) continue;
        anx_slot s = buf_slot[b];
        size_t plain_n = anx_desc_plain_count(l, s);
        size_t n = be->tensor_floats ? be->tensor_floats(l, s) : plain_n;
        float *plain = anx_bench_alloc_floats(plain_n);
        f->buf[b] = anx_bench_alloc_floats(n);
        f->floats[b] = n;
        if (!plain || !f->buf[b]) {
            free(plain);
            snprintf(f->broken, sizeof f->broken, "failed: out of memory for %s of %s (%zu floats)",
                     buf_name[b], l->name, n);
            return -1;
        }
        fill_plain(l, b, plain, plain_n);
        memset(f->buf[b], 0, n * sizeof(float)); /* layout padding is 0 */
        if (be->tensor_import)
            be->tensor_import(l, s, f->buf[b], plain);
        else
            memcpy(f->buf[b], plain, plain_n * sizeof(float));
        free(plain);
    }
    if (l->op == ANX_OP_LOSS) {
        f->target = malloc((size_t)l->n * sizeof *f->target);
        if (!f->target) {
            snprintf(f->broken, sizeof f->broken, "failed: out of memory for targets");
            return -1;
        }
        anx_rng_fill_targets(f->target, (size_t)l->n, anx_rng_key(1, "bench.target", 0), l->ic);
    }
    return 0;
}

/* Builds the fixture of case c, or keeps the one already built for the same layer. */
static fixture *fixture_get(const layer_case *c)
{
    anx_bench_cache_claim(fixture_release);
    fixture *f = &g_fix;
    if (f->valid && f->be == c->be && f->threads == c->threads && f->l.index == c->l.index &&
        f->l.n == c->l.n)
        return f;
    fixture_release();
    f->valid = 1;
    f->be = c->be, f->l = c->l, f->threads = c->threads;
    if (fixture_alloc(f)) return f;
    anx_status made = anx_backend_layer_create(c->be, &f->ctx, &f->l, c->threads);
    if (made) {
        snprintf(f->broken, sizeof f->broken, "failed: %s %.23s: %s", c->be->name, f->l.name, made);
        return f;
    }
    f->loss = NAN;
    f->args = (anx_args){
        .src = f->buf[B_SRC], .dst = f->buf[B_DST], .weights = f->buf[B_WEIGHTS], .bias = f->buf[B_BIAS],
        .diff_src = f->buf[B_DIFF_SRC], .diff_dst = f->buf[B_DIFF_DST],
        .diff_weights = f->buf[B_DIFF_WEIGHTS], .diff_bias = f->buf[B_DIFF_BIAS],
        .mask = f->buf[B_MASK], .target = f->target, .loss = &f->loss,
    };
    made = anx_backend_scratch_alloc(c->be, f->ctx, &f->l, &f->args); /* as the net's, made before timing */
    if (made) {
        snprintf(f->broken, sizeof f->broken, "failed: %s %.23s: %s", c->be->name, f->l.name, made);
        return f;
    }
    /* One forward pass, so bwd sees a real dst (max-pool argmax, ReLU sign) and any workspace
     * the backend keeps in ctx, as in training. */
    if (!anx_backend_declines(c->be, &f->l, ANX_FWD)) {
        anx_status ran = c->be->exec[f->l.op][ANX_FWD](f->ctx, &f->l, &f->args);
        int ok = f->l.op == ANX_OP_LOSS ? isfinite(f->loss) : anx_bench_all_finite(f->buf[B_DST], f->floats[B_DST]);
        if (ran)
            snprintf(f->broken, sizeof f->broken, "failed: %s fwd of %.23s: %s", c->be->name, f->l.name, ran);
        else if (!ok)
            snprintf(f->broken, sizeof f->broken, "failed: %s fwd of %.23s left non-finite values in %s",
                     c->be->name, f->l.name, f->l.op == ANX_OP_LOSS ? "loss" : "dst");
    }
    return f;
}

/* Bytes of the plain tensors one call must read and write at least once. */
static double layer_bytes(const anx_layer_desc *l, anx_dir dir)
{
    double src = (double)anx_desc_plain_count(l, ANX_SRC), dst = (double)anx_desc_plain_count(l, ANX_DST);
    double w = (double)anx_desc_plain_count(l, ANX_WEIGHTS), b = (double)anx_desc_plain_count(l, ANX_BIAS);
    double floats;
    if (l->op == ANX_OP_LOSS) /* logits in; fwd: loss out; bwd: dlogits out */
        return sizeof(float) * (dir == ANX_FWD ? src : 2 * src) + sizeof(int64_t) * (double)l->n;
    switch (dir) {
    case ANX_FWD: floats = src + w + b + dst + (l->op == ANX_OP_DROPOUT ? dst : 0); break;
    case ANX_BWD_DATA: /* diff_dst in, diff_src out, plus what routes it: weights, src, mask */
        floats = dst + src + (anx_desc_has_weights(l) ? w : l->op == ANX_OP_DROPOUT ? dst : src);
        break;
    default: floats = src + dst + w + b; break;
    }
    return sizeof(float) * floats;
}

/* The finite check after the run: the output of the direction, padding included. */
static const char *output_not_finite(const fixture *f, anx_dir dir)
{
    if (dir == ANX_FWD)
        return f->l.op == ANX_OP_LOSS ? (isfinite(f->loss) ? NULL : "loss")
                                      : (anx_bench_all_finite(f->buf[B_DST], f->floats[B_DST]) ? NULL : "dst");
    if (dir == ANX_BWD_DATA)
        return anx_bench_all_finite(f->buf[B_DIFF_SRC], f->floats[B_DIFF_SRC]) ? NULL : "diff_src";
    if (!anx_bench_all_finite(f->buf[B_DIFF_WEIGHTS], f->floats[B_DIFF_WEIGHTS])) return "diff_weights";
    return anx_bench_all_finite(f->buf[B_DIFF_BIAS], f->floats[B_DIFF_BIAS]) ? NULL : "diff_bias";
}

static void bm_layer(anx_gb_state *st, void *arg)
{
    const layer_case *c = arg;
    char msg[256];
    const char *why = anx_backend_declines(c->be, &c->l, c->dir);
    if (why) {
        snprintf(msg, sizeof msg, "skipped: %s", why);
        anx_gb_skip(st, msg);
        return;
    }
    fixture *f = fixture_get(c);
    if (f->broken[0]) {
        anx_gb_skip(st, f->broken);
        return;
    }
    anx_exec_fn exec = c->bare ? c->be->library_exec[c->l.op][c->dir] : c->be->exec[c->l.op][c->dir];
    /* One whole call first, untimed, for every row: the fixture may be new (the cache holds one
     * layer, and --benchmark_enable_random_interleaving rebuilds it for nearly every repetition),
     * and a layer's first call pays the first touch of its ctx and buffers (libxsmm conv4
     * bwd_weights at batch 32: 126 ms, then 90).  Only bare rows had it, which made a repetition
     * of one iteration cold for exec and warm for its bare twin.  A bare row needs it anyway:
     * library_exec runs after one exec (anx's bias and layout copies done). */
    {
        anx_status ran = c->be->exec[c->l.op][c->dir](f->ctx, &f->l, &f->args);
        if (ran) {
            snprintf(msg, sizeof msg, "failed: %s %s of %.23s: %s", c->be->name, anx_dir_name(c->dir), f->l.name, ran);
            anx_gb_skip(st, msg);
            return;
        }
    }
    int isa = anx_bench_isa_of(c->be);
    const char *impl = c->be->impl_name ? c->be->impl_name(f->ctx, &f->l, c->dir) : NULL;
    snprintf(msg, sizeof msg, "%s%s peak:%s threads:%d", c->bare ? "the library's call alone of " : "",
             impl ? impl : c->be->name, isa >= 0 ? anx_isa_name((anx_isa)isa) : "none", c->threads);
    anx_gb_label(st, msg);

    anx_hw_counters hw; /* cycles, instructions, cache misses where the machine lets us count */
    anx_hw_start(&hw, c->threads);
    while (anx_gb_keep_running(st)) {
        anx_status ran = exec(f->ctx, &f->l, &f->args);
        if (ran) { /* ends the loop after this iteration */
            snprintf(msg, sizeof msg, "failed: %s %s of %.23s: %s", c->be->name, anx_dir_name(c->dir), f->l.name, ran);
            anx_gb_skip(st, msg);
        }
        anx_gb_clobber_memory();
    }
    anx_hw_stop(&hw, st, anx_gb_iterations_done(st));
    if (anx_gb_skipped(st)) return;

    const char *bad = output_not_finite(f, c->dir);
    if (bad) {
        snprintf(msg, sizeof msg, "failed: %s %s of %.23s left non-finite values in %s", c->be->name,
                 anx_dir_name(c->dir), f->l.name, bad);
        anx_gb_skip(st, msg);
        return;
    }
    double flops = anx_desc_flops(&f->l, c->dir), bytes = layer_bytes(&f->l, c->dir);
    anx_gb_counter(st, "FLOP/s", flops, ANX_GB_RATE_PER_ITER);
    anx_gb_counter(st, "bytes/s", bytes, ANX_GB_RATE_PER_ITER);
    /* work / ceiling as a rate: (flops * iters / peak) / seconds * 100 = percent of peak */
    const anx_machine *m = anx_machine_get();
    if (m && isa >= 0 && m->fma_flops[isa] > 0) {
        anx_gb_counter(st, "peak%", 100.0 * flops / m->fma_flops[isa], ANX_GB_RATE_PER_ITER);
        /* DESIGN's FLOPs count the padding's products, which avx2 and oneDNN skip: this is the
         * share of the peak the kernel really spends on FMAs */
        if (f->l.op == ANX_OP_CONV2D)
            anx_gb_counter(st, "peak%_unpadded", 100.0 * anx_desc_flops_unpadded(&f->l, c->dir) / m->fma_flops[isa],
                           ANX_GB_RATE_PER_ITER);
    }
    if (m && m->triad_bytes > 0) anx_gb_counter(st, "bw%", 100.0 * bytes / m->triad_bytes, ANX_GB_RATE_PER_ITER);
}

/* <op>_<dir>/<tag>/<backend>/batch:<n>, and <backend>_bare for its library_exec */
static void register_layer(const anx_backend *be, const anx_layer_desc *l, anx_dir dir, int threads, int bare)
{
    if (g_ncases == MAX_CASES) return;
    layer_case *c = &g_cases[g_ncases++];
    *c = (layer_case){be, *l, dir, threads, bare};
    char name[128];
    snprintf(name, sizeof name, "%s_%s/%s/%s%s/batch:%d", anx_op_name(l->op), anx_dir_name(dir), l->tag,
             be->name, bare ? "_bare" : "", l->n);
    anx_gb_bench *b = anx_gb_register(name, bm_layer, c);
    anx_gb_use_real_time(b);
    anx_gb_time_unit(b, ANX_GB_MS);
}

void anx_bench_register_layers(const anx_bench_config *cfg)
{
    for (const anx_backend *const *pb = anx_backends(); *pb; pb++) {
        const anx_backend *be = *pb;
        if (!anx_bench_backend_selected(cfg, be)) continue;
        int is_ref = be->is_reference;
        const int *batches = is_ref ? cfg->ref_batches : cfg->batches;
        int nb = is_ref ? cfg->nref_batches : cfg->nbatches;
        for (int bi = 0; bi < nb; bi++) {
            anx_model m;
            char err[200];
            anx_model_config mc = anx_bench_model_config(batches[bi]);
            if (anx_model_init(&m, &mc, err, sizeof err)) {
                fprintf(stderr, "anx-bench: %s\n", err);
                continue;
            }
            for (int i = 0; i <= ANX_NUM_LAYERS; i++) {
                const anx_layer_desc *l = i < ANX_NUM_LAYERS ? &m.layers[i] : &m.loss;
                int ndir = anx_desc_has_weights(l) ? ANX_DIR_COUNT : ANX_BWD_WEIGHTS;
                for (int d = 0; d < ndir; d++) {
                    register_layer(be, l, (anx_dir)d, cfg->threads, 0);
                    if (be->library_exec[l->op][d]) register_layer(be, l, (anx_dir)d, cfg->threads, 1);
                }
            }
        }
    }
}
