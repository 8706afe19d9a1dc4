/* anx verify's driver: one golden file, every backend chosen, the isolated and chained modes
 * (docs/verify.md).  It sits on top: the golden-file module (verify_golden.c), the comparison
 * module (verify_compare.c: rows, bounds, verdicts) and the two modes (verify_isolated.c,
 * verify_chained.c) never call back into it.  The table, the JSON file and the exit status are
 * verify_report.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/verify_internal.h"

const char *anx_verdict_name(anx_verdict v)
{
    static const char *const names[] = {"PASSED", "FAILED", "MISTRUSTED", "SKIPPED"};
    return (unsigned)v < 4 ? names[v] : "?";
}

int anx_verify_failed(const anx_verify_report *rep)
{
    int n = 0;
    for (int i = 0; i < rep->count; i++) n += rep->rows[i].verdict == ANX_FAILED;
    return n;
}

void anx_verify_report_free(anx_verify_report *rep)
{
    free(rep->rows);
    free(rep->drift);
    free(rep->goldens);
    memset(rep, 0, sizeof *rep);
}

static const anx_backend *const *backend_list(const anx_verify_opts *o)
{
    return o->backends ? o->backends : anx_backends();
}

/* --backend and --mode: 0, or 2 with err naming the culprit. */
static int check_opts(const anx_verify_opts *o, char *err, size_t errlen)
{
    const char *sel = o->backend ? o->backend : "all";
    const char *mode = o->mode ? o->mode : "all";
    int known = !strcmp(sel, "all");
    for (const anx_backend *const *b = backend_list(o); *b && !known; b++) known = !strcmp((*b)->name, sel);
    if (!known) {
        char names[256];
        snprintf(err, errlen, "--backend %s: not one of all, %s", sel, anx_backend_names(names, sizeof names, ", ", ", "));
        return 2;
    }
    if (strcmp(mode, "all") && strcmp(mode, "isolated") && strcmp(mode, "chained")) {
        snprintf(err, errlen, "--mode %s: not one of all, isolated, chained", mode);
        return 2;
    }
    return 0;
}

/* rep->goldens gets g's facts.  0, or 2 with err. */
static int add_golden_info(anx_verify_report *rep, const vgold *g, const char *path, char *err, size_t errlen)
{
    anx_verify_golden_info *gi = realloc(rep->goldens, (size_t)(rep->ngoldens + 1) * sizeof *gi);
    if (!gi) {
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    rep->goldens = gi;
    gi = &rep->goldens[rep->ngoldens++];
    memset(gi, 0, sizeof *gi);
    v_copy_str(gi->path, sizeof gi->path, path);
    gi->seed = g->seed, gi->in_dim = g->m.cfg.in_dim, gi->n_class = g->m.cfg.n_class;
    gi->batch = g->m.cfg.batch, gi->input_hw = g->m.cfg.input_hw, gi->steps = g->steps;
    return 0;
}

/* float32 copy of ref64's whole tensor key into *dst when the golden file lacks it whole. */
static void fill_from_ref64(float **dst, const char **from, const vref64 *r, const char *key, size_t n)
{
    size_t count = 0;
    const double *x = *dst ? NULL : vref64_find(r, key, &count);
    if (!x || count != n) return;
    *dst = v_alloc(n);
    for (size_t i = 0; i < n; i++) (*dst)[i] = (float)x[i];
    *from = "ref64";
}

/* The float64 replay of the golden run (vref64_run; the cache's when it holds this run), anchored
 * to the golden data (its rows: of --layer's tensors only when given), and the whole inputs it
 * gives the isolated rows whose golden input is stored as a sample only.  Returns the replay
 * (own: run's), or NULL with skip_ref64. */
static const vref64 *run_ref64(anx_verify_report *rep, vgold *g, const anx_verify_opts *o, vref64 *own)
{
    if (o->skip_ref64) return NULL;
    char why[160];
    const vref64 *r = v_cache_run(o->cache, g);
    if (!r) {
        if (o->log) fprintf(o->log, "verify ref64 %s\n", g->base);
        if (vref64_run(own, g, o->threads, why, sizeof why)) v_oom_again(); /* to anx_verify_golden's guard */
        if (o->log && own->ambiguous)
            fprintf(o->log, "verify ref64 %s: %d ambiguous gates/windows, %d windows settled by the golden's data (%d routed "
                    "to another tap than ours)\n", g->base, own->ambiguous, own->settled, own->settled_moved);
        r = o->cache ? v_cache_keep_run(o->cache, g, own) : own;
    }
    if (vref64_anchor(rep, r, g, o->layer, why, sizeof why)) v_oom_again();
    char key[96];
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        size_t n = anx_desc_plain_count(&g->m.layers[i], ANX_DST);
        snprintf(key, sizeof key, "out.%s", g->m.layers[i].name);
        fill_from_ref64(&g->out[i], &g->out_from[i], r, key, n);
        snprintf(key, sizeof key, "grad_out.%s", g->m.layers[i].name);
        fill_from_ref64(&g->gout[i], &g->gout_from[i], r, key, n);
    }
    return r;
}

/* The self-checks of the golden data, ref64's anchor, then every chosen backend in the chosen modes. */
static void run_backends(anx_verify_report *rep, vgold *g, const anx_verify_opts *o)
{
    const char *sel = o->backend ? o->backend : "all";
    const char *mode = o->mode ? o->mode : "all";
    vgold_self_checks(rep, g);
    vref64 own;
    memset(&own, 0, sizeof own);
    const vref64 *r64 = run_ref64(rep, g, o, &own);
    for (const anx_backend *const *b = backend_list(o); *b; b++) {
        const anx_backend *be = *b;
        if (strcmp(sel, "all") && strcmp(sel, be->name)) continue;
        const char *why = be->unavailable ? be->unavailable() : NULL; /* a stub says "not built: ..." */
        if (why) {
            v_skip(v_row(rep, g, be->name, "-", "-", "-", "-"), "%s", why);
            continue;
        }
        if (strcmp(mode, "chained")) v_isolated(rep, g, r64, be, o);
        if (strcmp(mode, "isolated")) v_chained(rep, g, be, o);
    }
    vref64_free(&own); /* empty when the cache took it */
}

static int verify_golden(anx_verify_report *rep, const char *path, const anx_verify_opts *o, vgold *g, char *err,
                         size_t errlen)
{
    int rc = check_opts(o, err, errlen);
    if (rc || (rc = vgold_load(g, path, err, errlen))) return rc;
    if (o->layer && strcmp(o->layer, "CrossEntropyLoss") && strcmp(o->layer, "Adam") &&
        anx_model_find_layer(&g->m, o->layer) < 0) {
        snprintf(err, errlen, "--layer %s: no such layer (Conv2d-1 .. Linear-20, CrossEntropyLoss, Adam)", o->layer);
        rc = 2;
    }
    if (!rc) rc = add_golden_info(rep, g, path, err, errlen);
    if (!rc) run_backends(rep, g, o);
    vgold_free(g);
    return rc;
}

typedef struct golden_call {
    anx_verify_report *rep;
    const char *path;
    const anx_verify_opts *o;
    vgold *g;
    char *err;
    size_t errlen;
    int rc;
} golden_call;

static void golden_body(void *arg)
{
    golden_call *c = arg;
    c->rc = verify_golden(c->rep, c->path, c->o, c->g, c->err, c->errlen);
}

int anx_verify_golden(anx_verify_report *rep, const char *path, const anx_verify_opts *o, char *err,
                      size_t errlen)
{
    vgold *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    golden_call c = {rep, path, o, g, err, errlen, 0};
    char why[160];
    if (v_guarded(golden_body, &c, why, sizeof why)) { /* the buffers of the check in flight are left to the process */
        snprintf(err, errlen, "%s: %s", path, why);
        return 2;
    }
    free(g);
    return c.rc;
}
