/* anx verify: rows, the comparison, the table and the JSON report (docs/verify.md).
 *
 * Verdict rule of one row (got: the backend's float32 result, want: the golden float32, bound:
 * the per-element error bound derived where the row is made):
 *   FAILED      some |got_i - want_i| > bound_i, or got_i is NaN/Inf;
 *   MISTRUSTED  not failed, at least 100 elements, and more than 99% of want are exact zeros:
 *               a pass would mostly compare zeros with zeros (benchdnn's rule);
 *   PASSED      otherwise.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/verify_internal.h"

const char *anx_verdict_name(anx_verdict v)
{
    static const char *const names[] = {"PASSED", "FAILED", "MISTRUSTED", "SKIPPED"};
    return (unsigned)v < 4 ? names[v] : "?";
}

/* Accumulation bound for a float32 dot product of length k against the exact value:
 *     |fl(sum a_i b_i) - sum a_i b_i| <= gamma~(k) * sum |a_i b_i|,
 *     gamma~(k) = exp(lambda * sqrt(k) * u + k u^2 / (1 - u)) - 1            (u = 2^-24)
 * Higham & Mary, "A new approach to probabilistic rounding error analysis", SISC 2019, Thm 2.4:
 * with the rounding errors modelled as independent, mean-zero, it holds with probability at
 * least 1 - 2k exp(-lambda^2 (1-u)^2 / 2) per output.  lambda = 8 makes that 2.5e-14 k: over all
 * outputs of a training step (sum of k over outputs ~ 3.4e9 for Alexnet(3,5) at batch 2) a false
 * alarm has probability < 1e-4.  The deterministic worst case gamma_k = k u / (1 - k u) would be
 * 12x looser at k = 9216 and miss a 0.1%-of-max change; blocked and pairwise sums (oneDNN, avx2)
 * err less than sequential ones, so the model is conservative for them. */
#define V_LAMBDA 8.0
double v_gamma(double k)
{
    return expm1(V_LAMBDA * sqrt(k) * V_U + k * V_U * V_U / (1.0 - V_U));
}

double v_bwd_data_k(const anx_layer_desc *l)
{
    if (l->op == ANX_OP_LINEAR) return (double)l->oc;
    int s = l->stride > 0 ? l->stride : 1;
    return (double)l->oc * ((l->kh + s - 1) / s) * ((l->kw + s - 1) / s);
}

static void copy_str(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

/* The reference's kernel on plain buffers (the magnitudes M behind each output, in both modes).
 * The reference's execs cannot fail (no workspace they cannot do without) and take a NULL ctx
 * (OpenMP's default team), so a ctx that could not be made only costs the thread count. */
void v_ref_run(const anx_layer_desc *l, anx_dir dir, const anx_args *a, int threads)
{
    const anx_backend *ref = anx_backend_reference();
    void *ctx;
    anx_backend_layer_create(ref, &ctx, l, threads);
    (void)ref->exec[l->op][dir](ctx, l, a);
    if (ctx) ref->layer_destroy(ctx);
}

/* Room for n more rows.  v_row may move rep->rows, so a check that holds several rows at once
 * (a parameter's Adam triple, weight and bias) reserves them first: growing the array between
 * two of its v_row calls left the first pointer dangling (a crash in `verify --backend all` once
 * five backends' rows crossed a doubling inside an Adam triple). */
void v_reserve(anx_verify_report *rep, int n)
{
    if (rep->count + n <= rep->cap) return;
    int cap = rep->cap ? rep->cap : 256;
    while (cap < rep->count + n) cap *= 2;
    anx_verify_row *rows = realloc(rep->rows, (size_t)cap * sizeof *rows);
    if (!rows) v_oom("the report", (size_t)cap * sizeof *rows);
    rep->rows = rows, rep->cap = cap;
}

anx_verify_row *v_row(anx_verify_report *rep, const vgold *g, const char *backend, const char *mode,
                      const char *layer, const char *dir, const char *tensor)
{
    v_reserve(rep, 1);
    anx_verify_row *r = &rep->rows[rep->count++];
    memset(r, 0, sizeof *r);
    copy_str(r->golden, sizeof r->golden, g ? g->base : "-");
    copy_str(r->backend, sizeof r->backend, backend);
    copy_str(r->mode, sizeof r->mode, mode);
    copy_str(r->layer, sizeof r->layer, layer);
    copy_str(r->dir, sizeof r->dir, dir);
    copy_str(r->tensor, sizeof r->tensor, tensor);
    r->verdict = ANX_SKIPPED;
    return r;
}

void v_skip(anx_verify_row *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    r->verdict = ANX_SKIPPED;
}

void v_fail_status(anx_verify_row *r, anx_status st)
{
    r->verdict = ANX_FAILED;
    snprintf(r->reason, sizeof r->reason, "%s", st);
}

static void unravel(int64_t flat, const int64_t *shape, int ndim, int64_t *out)
{
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t s = shape[d] > 0 ? shape[d] : 1;
        out[d] = flat % s;
        flat /= s;
    }
}

void anx_verify_compare(anx_verify_row *row, const float *got, const float *want, const double *bound,
                        size_t n, const int64_t *index, const int64_t *shape, int ndim)
{
    double max_abs = 0, max_rel = 0, se = 0, sw = 0, maxw = 0, maxb = 0;
    size_t zeros = 0, wzeros = 0, bad = 0;
    /* worst: by err / bound (a failure ranks by how far past its bound it is) */
    double score[ANX_VERIFY_WORST];
    int nw = 0;
    row->ndim = ndim;
    for (int d = 0; d < ndim && d < 4; d++) row->shape[d] = shape[d];
    for (size_t i = 0; i < n; i++) {
        double gv = got[i], wv = want[i], e = fabs(gv - wv);
        int finite = isfinite(gv) && isfinite(wv);
        if (!finite) e = INFINITY;
        if (gv == 0) zeros++;
        if (wv == 0) wzeros++;
        if (e > max_abs) max_abs = e;
        if (wv != 0 && e / fabs(wv) > max_rel) max_rel = e / fabs(wv);
        if (finite) se += e * e;
        sw += wv * wv;
        if (fabs(wv) > maxw) maxw = fabs(wv);
        if (bound[i] > maxb || isnan(bound[i])) maxb = isnan(maxb) ? maxb : bound[i];
        /* a NaN bound is a verifier bug: it must not pass anything */
        int fails = !finite || !(e <= bound[i]);
        bad += fails;
        double s = bound[i] > 0 ? e / bound[i] : (e > 0 ? INFINITY : 0);
        if (!finite) s = INFINITY;
        if (e == 0 && !fails) continue;
        /* insert into the sorted worst list */
        int pos = nw < ANX_VERIFY_WORST ? nw : ANX_VERIFY_WORST;
        while (pos > 0 && score[pos - 1] < s) pos--;
        if (pos >= ANX_VERIFY_WORST) continue;
        int last = nw < ANX_VERIFY_WORST ? nw : ANX_VERIFY_WORST - 1;
        for (int k = last; k > pos; k--) score[k] = score[k - 1], row->worst[k] = row->worst[k - 1];
        if (nw < ANX_VERIFY_WORST) nw++;
        score[pos] = s;
        anx_verify_elem *el = &row->worst[pos];
        memset(el, 0, sizeof *el);
        el->index = index ? index[i] : (int64_t)i;
        unravel(el->index, shape, ndim < 4 ? ndim : 4, el->nchw);
        el->got = gv, el->want = wv, el->bound = bound[i];
    }
    row->nworst = nw;
    row->count = n;
    row->max_abs = max_abs;
    row->max_rel = max_rel;
    row->nmse = sw > 0 ? se / sw : (se > 0 ? INFINITY : 0);
    row->zeros = n ? (double)zeros / (double)n : 0;
    row->bound_rel = maxw > 0 ? maxb / maxw : (maxb > 0 ? INFINITY : 0);
    if (bad) {
        row->verdict = ANX_FAILED;
        snprintf(row->reason, sizeof row->reason, "%zu of %zu elements beyond their bound", bad, n);
    } else if (n >= 100 && (double)wzeros > 0.99 * (double)n) {
        row->verdict = ANX_MISTRUSTED;
        snprintf(row->reason, sizeof row->reason, "%.1f%% of the golden elements are exact zeros",
                 100.0 * (double)wzeros / (double)n);
    } else {
        row->verdict = ANX_PASSED;
        row->reason[0] = 0;
    }
}

void v_compare_want(anx_verify_row *r, const float *got, const vwant *w, const float *bound)
{
    size_t n = w->n;
    float *g = malloc((n ? n : 1) * sizeof *g);
    double *b = malloc((n ? n : 1) * sizeof *b);
    if (!g || !b) v_oom(w->key, (n ? n : 1) * (sizeof *g + sizeof *b));
    for (size_t i = 0; i < n; i++) {
        size_t j = w->idx ? (size_t)w->idx[i] : i;
        g[i] = got[j];
        b[i] = bound ? bound[j] : 0.0;
    }
    anx_verify_compare(r, g, w->val, b, n, w->idx, w->shape, w->ndim);
    free(g);
    free(b);
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
    free(rep->goldens);
    memset(rep, 0, sizeof *rep);
}

/* Where v_oom jumps to: set by anx_verify_golden for the time it runs (per thread). */
static _Thread_local jmp_buf *g_oom_env;
static _Thread_local char g_oom_what[160];

_Noreturn void v_oom(const char *what, size_t bytes)
{
    snprintf(g_oom_what, sizeof g_oom_what, "out of memory for %s (%.1f MiB)", what, (double)bytes / 1048576.0);
    longjmp(*g_oom_env, 1);
}

static int want_backend(const char *sel, const char *name)
{
    return strcmp(sel, "all") == 0 || strcmp(sel, name) == 0;
}

static int verify_golden(anx_verify_report *rep, const char *path, const anx_verify_opts *o, char *err,
                         size_t errlen);

int anx_verify_golden(anx_verify_report *rep, const char *path, const anx_verify_opts *o, char *err,
                      size_t errlen)
{
    jmp_buf env, *outer = g_oom_env;
    g_oom_env = &env;
    if (setjmp(env)) {
        g_oom_env = outer;
        snprintf(err, errlen, "%s: %s", path, g_oom_what);
        return 2;
    }
    int rc = verify_golden(rep, path, o, err, errlen);
    g_oom_env = outer;
    return rc;
}

static int verify_golden(anx_verify_report *rep, const char *path, const anx_verify_opts *o, char *err,
                         size_t errlen)
{
    const char *sel = o->backend ? o->backend : "all";
    const char *mode = o->mode ? o->mode : "all";
    if (strcmp(sel, "all") && !anx_backend_find(sel)) {
        char names[256];
        snprintf(err, errlen, "--backend %s: not one of all, %s", sel, anx_backend_names(names, sizeof names, ", ", ", "));
        return 2;
    }
    if (strcmp(mode, "all") && strcmp(mode, "isolated") && strcmp(mode, "chained")) {
        snprintf(err, errlen, "--mode %s: not one of all, isolated, chained", mode);
        return 2;
    }
    vgold *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    int rc = vgold_load(g, path, err, errlen);
    if (rc) {
        free(g);
        return rc;
    }
    if (o->layer && strcmp(o->layer, "CrossEntropyLoss") && strcmp(o->layer, "Adam") &&
        anx_model_find_layer(&g->m, o->layer) < 0) {
        snprintf(err, errlen, "--layer %s: no such layer (Conv2d-1 .. Linear-20, CrossEntropyLoss, Adam)",
                 o->layer);
        vgold_free(g);
        free(g);
        return 2;
    }
    anx_verify_golden_info *gi = realloc(rep->goldens, (size_t)(rep->ngoldens + 1) * sizeof *gi);
    if (!gi) {
        snprintf(err, errlen, "%s: out of memory", path);
        vgold_free(g);
        free(g);
        return 2;
    }
    rep->goldens = gi;
    gi = &rep->goldens[rep->ngoldens++];
    memset(gi, 0, sizeof *gi);
    copy_str(gi->path, sizeof gi->path, path);
    gi->seed = g->seed, gi->in_dim = g->m.cfg.in_dim, gi->n_class = g->m.cfg.n_class;
    gi->batch = g->m.cfg.batch, gi->input_hw = g->m.cfg.input_hw, gi->steps = g->steps;

    vgold_self_checks(rep, g);
    for (const anx_backend *const *b = anx_backends(); *b; b++) {
        const anx_backend *be = *b;
        if (!want_backend(sel, be->name)) continue;
        const char *why = be->unavailable ? be->unavailable() : NULL; /* a stub says "not built: ..." */
        if (why) {
            v_skip(v_row(rep, g, be->name, "-", "-", "-", "-"), "%s", why);
            continue;
        }
        if (strcmp(mode, "chained")) v_isolated(rep, g, be, o);
        if (strcmp(mode, "isolated")) v_chained(rep, g, be, o);
    }
    vgold_free(g);
    free(g);
    return 0;
}

/* ---- the table ---------------------------------------------------------------------------- */

static void print_repro(FILE *out, const anx_verify_report *rep, const anx_verify_row *r)
{
    const char *path = r->golden;
    for (int i = 0; i < rep->ngoldens; i++) {
        const char *p = rep->goldens[i].path, *slash = strrchr(p, '/');
        if (strcmp(slash ? slash + 1 : p, r->golden) == 0) path = p;
    }
    fprintf(out, "    reproduce: anx verify --backend %s --golden %s",
            strcmp(r->backend, "golden") ? r->backend : anx_backend_reference()->name,
            path);
    if (strcmp(r->layer, "-")) fprintf(out, " --layer %s", r->layer);
    if (!strcmp(r->mode, "isolated") || !strcmp(r->mode, "chained")) fprintf(out, " --mode %s", r->mode);
    fprintf(out, "\n");
}

void anx_verify_print(const anx_verify_report *rep, FILE *out)
{
    for (int i = 0; i < rep->ngoldens; i++) {
        const anx_verify_golden_info *g = &rep->goldens[i];
        fprintf(out, "golden %s: seed %llu, Alexnet(%d, %d), batch %d, input %dx%d, %d step(s)\n", g->path,
                (unsigned long long)g->seed, g->in_dim, g->n_class, g->batch, g->input_hw, g->input_hw,
                g->steps);
    }
    fprintf(out, "%-8s %-8s %-16s %-11s %-30s %10s %10s %10s %6s %9s %-10s %s\n", "backend", "mode", "layer",
            "direction", "tensor", "max_abs", "max_rel", "nmse", "zeros", "bound_rel", "verdict", "impl / reason");
    const char *cur = "";
    for (int i = 0; i < rep->count; i++) {
        const anx_verify_row *r = &rep->rows[i];
        if (strcmp(cur, r->golden)) {
            fprintf(out, "-- %s\n", r->golden);
            cur = r->golden;
        }
        if (r->verdict == ANX_SKIPPED) {
            fprintf(out, "%-8s %-8s %-16s %-11s %-30s %10s %10s %10s %6s %9s %-10s %s\n", r->backend, r->mode,
                    r->layer, r->dir, r->tensor, "-", "-", "-", "-", "-", "SKIPPED", r->reason);
            continue;
        }
        fprintf(out, "%-8s %-8s %-16s %-11s %-30s %10.3g %10.3g %10.3g %6.3f %9.2g %-10s %s%s%s\n", r->backend,
                r->mode, r->layer, r->dir, r->tensor, r->max_abs, r->max_rel, r->nmse, r->zeros, r->bound_rel,
                anx_verdict_name(r->verdict), r->impl, r->impl[0] && r->reason[0] ? "; " : "", r->reason);
        if (r->verdict != ANX_FAILED) continue;
        for (int k = 0; k < r->nworst; k++) {
            const anx_verify_elem *e = &r->worst[k];
            fprintf(out, "    [");
            for (int d = 0; d < r->ndim && d < 4; d++) fprintf(out, "%s%lld", d ? "," : "", (long long)e->nchw[d]);
            fprintf(out, "] (flat %lld) got %.9g want %.9g |err| %.3g bound %.3g\n", (long long)e->index, e->got,
                    e->want, fabs(e->got - e->want), e->bound);
        }
        print_repro(out, rep, r);
    }
    int counts[4] = {0};
    for (int i = 0; i < rep->count; i++) counts[rep->rows[i].verdict]++;
    fprintf(out, "verify: %d PASSED, %d FAILED, %d MISTRUSTED, %d SKIPPED\n", counts[ANX_PASSED],
            counts[ANX_FAILED], counts[ANX_MISTRUSTED], counts[ANX_SKIPPED]);
}

/* ---- JSON --------------------------------------------------------------------------------- */

static cJSON *num(double v)
{
    /* JSON has no Inf/NaN: those become null (the verdict says FAILED anyway) */
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static cJSON *row_json(const anx_verify_row *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "golden", r->golden);
    cJSON_AddStringToObject(o, "backend", r->backend);
    cJSON_AddStringToObject(o, "mode", r->mode);
    cJSON_AddStringToObject(o, "layer", r->layer);
    cJSON_AddStringToObject(o, "direction", r->dir);
    cJSON_AddStringToObject(o, "tensor", r->tensor);
    cJSON_AddStringToObject(o, "impl", r->impl);
    cJSON_AddStringToObject(o, "verdict", anx_verdict_name(r->verdict));
    cJSON_AddStringToObject(o, "reason", r->reason);
    if (r->verdict != ANX_SKIPPED) {
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < r->ndim && d < 4; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)r->shape[d]));
        cJSON_AddNumberToObject(o, "count", (double)r->count);
        cJSON_AddItemToObject(o, "max_abs", num(r->max_abs));
        cJSON_AddItemToObject(o, "max_rel", num(r->max_rel));
        cJSON_AddItemToObject(o, "nmse", num(r->nmse));
        cJSON_AddItemToObject(o, "zeros", num(r->zeros));
        cJSON_AddItemToObject(o, "bound_rel", num(r->bound_rel));
        cJSON *worst = cJSON_AddArrayToObject(o, "worst");
        for (int k = 0; k < r->nworst; k++) {
            const anx_verify_elem *e = &r->worst[k];
            cJSON *w = cJSON_CreateObject();
            cJSON *idx = cJSON_AddArrayToObject(w, "index");
            for (int d = 0; d < r->ndim && d < 4; d++) cJSON_AddItemToArray(idx, cJSON_CreateNumber((double)e->nchw[d]));
            cJSON_AddNumberToObject(w, "flat", (double)e->index);
            cJSON_AddItemToObject(w, "got", num(e->got));
            cJSON_AddItemToObject(w, "want", num(e->want));
            cJSON_AddItemToObject(w, "bound", num(e->bound));
            cJSON_AddItemToArray(worst, w);
        }
    }
    return o;
}

int anx_verify_write_json(const anx_verify_report *rep, const char *path, char *err, size_t errlen)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "anx-verify-1");
    cJSON *gs = cJSON_AddArrayToObject(root, "goldens");
    for (int i = 0; i < rep->ngoldens; i++) {
        const anx_verify_golden_info *g = &rep->goldens[i];
        cJSON *o = cJSON_CreateObject();
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)g->seed);
        cJSON_AddStringToObject(o, "path", g->path);
        cJSON_AddStringToObject(o, "seed", seed);
        cJSON_AddNumberToObject(o, "in_dim", g->in_dim);
        cJSON_AddNumberToObject(o, "n_class", g->n_class);
        cJSON_AddNumberToObject(o, "batch", g->batch);
        cJSON_AddNumberToObject(o, "input_hw", g->input_hw);
        cJSON_AddNumberToObject(o, "steps", g->steps);
        cJSON_AddItemToArray(gs, o);
    }
    int counts[4] = {0};
    cJSON *rows = cJSON_AddArrayToObject(root, "rows");
    for (int i = 0; i < rep->count; i++) {
        counts[rep->rows[i].verdict]++;
        cJSON_AddItemToArray(rows, row_json(&rep->rows[i]));
    }
    cJSON *sum = cJSON_AddObjectToObject(root, "summary");
    for (int v = 0; v < 4; v++) cJSON_AddNumberToObject(sum, anx_verdict_name((anx_verdict)v), counts[v]);
    cJSON_AddNumberToObject(root, "exit_status", counts[ANX_FAILED] ? 1 : 0);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) {
        snprintf(err, errlen, "%s: out of memory formatting the report", path);
        return 2;
    }
    /* write path.tmp then rename: never a half-written report */
    size_t plen = strlen(path) + 8;
    char *tmp = malloc(plen);
    if (!tmp) {
        free(text);
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    snprintf(tmp, plen, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = 0;
    if (ok && rename(tmp, path)) ok = 0;
    if (!ok) {
        snprintf(err, errlen, "%s: cannot write the JSON report", path);
        remove(tmp);
    }
    free(tmp);
    free(text);
    return ok ? 0 : 2;
}
