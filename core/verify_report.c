/* anx verify's report: the table with one summary line per backend, the JSON file, and the
 * exit status with the CI gate's --require and --strict (docs/verify.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/verify_internal.h"

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

/* Verdict counts of the rows of backend (NULL: every row). */
static void count_verdicts(const anx_verify_report *rep, const char *backend, int counts[4])
{
    for (int v = 0; v < 4; v++) counts[v] = 0;
    for (int i = 0; i < rep->count; i++)
        if (!backend || !strcmp(rep->rows[i].backend, backend)) counts[rep->rows[i].verdict]++;
}

/* The backends of rep in the order their first row appears; returns how many (at most cap). */
static int backends_of(const anx_verify_report *rep, const char **names, int cap)
{
    int n = 0;
    for (int i = 0; i < rep->count; i++) {
        int seen = 0;
        for (int k = 0; k < n && !seen; k++) seen = !strcmp(names[k], rep->rows[i].backend);
        if (!seen && n < cap) names[n++] = rep->rows[i].backend;
    }
    return n;
}

#define V_MAX_BACKENDS 64 /* rows name at most this many backends (the registry has 5) */

/* One line per backend ("verify avx2: 670 PASSED, 0 FAILED, 0 MISTRUSTED, 2 SKIPPED"), the total. */
static void print_summary(const anx_verify_report *rep, FILE *out)
{
    const char *names[V_MAX_BACKENDS];
    int nb = backends_of(rep, names, V_MAX_BACKENDS), counts[4];
    for (int b = 0; b < nb; b++) {
        count_verdicts(rep, names[b], counts);
        fprintf(out, "verify %s: %d PASSED, %d FAILED, %d MISTRUSTED, %d SKIPPED\n", names[b], counts[ANX_PASSED],
                counts[ANX_FAILED], counts[ANX_MISTRUSTED], counts[ANX_SKIPPED]);
    }
    count_verdicts(rep, NULL, counts);
    fprintf(out, "verify: %d PASSED, %d FAILED, %d MISTRUSTED, %d SKIPPED\n", counts[ANX_PASSED],
            counts[ANX_FAILED], counts[ANX_MISTRUSTED], counts[ANX_SKIPPED]);
}

/* The largest drift rel of (golden, backend, step) over its tensors, with how many; -1 for none. */
static double step_max(const anx_verify_report *rep, const anx_verify_drift *of, int step, int *n)
{
    double mx = -1;
    *n = 0;
    for (int i = 0; i < rep->ndrift; i++) {
        const anx_verify_drift *d = &rep->drift[i];
        if (d->step != step || strcmp(d->backend, of->backend) || strcmp(d->golden, of->golden)) continue;
        mx = fmax(mx, d->rel), (*n)++;
    }
    return mx;
}

/* The drift section: every line starts with "-- drift" (not a row: the table's rows keep their
 * format), one per tensor, then one per (golden, backend, step) with its largest rel. */
static void print_drift(const anx_verify_report *rep, FILE *out)
{
    if (!rep->ndrift) return;
    fprintf(out, "-- drift of the chained runs from the golden data (PyTorch float64; information, not a verdict)\n");
    fprintf(out, "-- drift %-8s %-4s %-36s %9s %10s %10s %10s %8s\n", "backend", "step", "tensor", "compared", "max_abs",
            "rel_max", "nmse", "growth");
    for (int i = 0; i < rep->ndrift; i++) {
        const anx_verify_drift *d = &rep->drift[i];
        char cnt[24], gr[16];
        snprintf(cnt, sizeof cnt, "%zu%s", d->count, d->sampled ? "s" : "");
        if (d->growth > 0) snprintf(gr, sizeof gr, "%.3gx", d->growth);
        else snprintf(gr, sizeof gr, "-");
        fprintf(out, "-- drift %-8s %-4d %-36s %9s %10.3g %10.3g %10.3g %8s\n", d->backend, d->step, d->tensor, cnt,
                d->max_abs, d->rel, d->nmse, gr);
    }
    for (int i = 0; i < rep->ndrift; i++) { /* once per (golden, backend, step), at its first tensor */
        const anx_verify_drift *d = &rep->drift[i];
        int first = 1;
        for (int j = 0; j < i && first; j++)
            first = !(rep->drift[j].step == d->step && !strcmp(rep->drift[j].backend, d->backend) &&
                      !strcmp(rep->drift[j].golden, d->golden));
        if (!first) continue;
        int n, np;
        double mx = step_max(rep, d, d->step, &n), prev = step_max(rep, d, d->step - 1, &np);
        fprintf(out, "-- drift %s %s step %d: largest rel_max %.3g over %d tensors", d->backend, d->golden, d->step, mx, n);
        if (prev > 0) fprintf(out, " (%.3gx step %d's %.3g)", mx / prev, d->step - 1, prev);
        fprintf(out, "\n");
    }
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
    print_drift(rep, out);
    print_summary(rep, out);
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

int anx_verify_write_json(const anx_verify_report *rep, const char *path, int exit_status, char *err,
                          size_t errlen)
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
    cJSON *per = cJSON_AddObjectToObject(root, "backends");
    const char *names[V_MAX_BACKENDS];
    int nb = backends_of(rep, names, V_MAX_BACKENDS);
    for (int b = 0; b < nb; b++) {
        int c[4];
        count_verdicts(rep, names[b], c);
        cJSON *o = cJSON_AddObjectToObject(per, names[b]);
        for (int v = 0; v < 4; v++) cJSON_AddNumberToObject(o, anx_verdict_name((anx_verdict)v), c[v]);
    }
    cJSON *drift = cJSON_AddArrayToObject(root, "drift"); /* information, not a verdict */
    for (int i = 0; i < rep->ndrift; i++) {
        const anx_verify_drift *d = &rep->drift[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "golden", d->golden);
        cJSON_AddStringToObject(o, "backend", d->backend);
        cJSON_AddNumberToObject(o, "step", d->step);
        cJSON_AddStringToObject(o, "tensor", d->tensor);
        cJSON_AddStringToObject(o, "base", d->base);
        cJSON_AddNumberToObject(o, "count", (double)d->count);
        cJSON_AddBoolToObject(o, "sampled", d->sampled);
        cJSON_AddItemToObject(o, "max_abs", num(d->max_abs));
        cJSON_AddItemToObject(o, "rel_max", num(d->rel));
        cJSON_AddItemToObject(o, "nmse", num(d->nmse));
        cJSON_AddItemToObject(o, "growth", d->growth > 0 ? num(d->growth) : cJSON_CreateNull());
        cJSON_AddItemToArray(drift, o);
    }
    cJSON_AddNumberToObject(root, "exit_status", exit_status);
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

/* ---- the exit status and the CI gate --------------------------------------------------------- */

int anx_verify_gate_check(const anx_verify_gate *gate, const anx_verify_opts *o, char *err, size_t errlen)
{
    const anx_backend *const *list = o->backends ? o->backends : anx_backends();
    const char *sel = o->backend ? o->backend : "all";
    for (const char *p = gate->require; p && *p;) {
        const char *end = strchr(p, ',');
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(end ? (size_t)(end - p) : strlen(p)), p);
        int known = 0;
        for (const anx_backend *const *b = list; *b && !known; b++) known = !strcmp((*b)->name, name);
        if (!known) {
            char names[256];
            snprintf(err, errlen, "--require %s: not a backend of this build (%s)", name[0] ? name : "''",
                     anx_backend_names(names, sizeof names, ", ", ", "));
            return 2;
        }
        if (strcmp(sel, "all") && strcmp(sel, name)) {
            snprintf(err, errlen, "--require %s: --backend %s does not run it", name, sel);
            return 2;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* The first row of a required backend that is SKIPPED as a whole or in a whole mode (layer "-":
 * not built, CPU lacks its ISA, library missing, no net), or NULL. */
static const anx_verify_row *whole_skip(const anx_verify_report *rep, const char *backend)
{
    for (int i = 0; i < rep->count; i++) {
        const anx_verify_row *r = &rep->rows[i];
        if (!strcmp(r->backend, backend) && r->verdict == ANX_SKIPPED && !strcmp(r->layer, "-")) return r;
    }
    return NULL;
}

int anx_verify_exit_status(const anx_verify_report *rep, const anx_verify_gate *gate, FILE *out)
{
    int fail = anx_verify_failed(rep) > 0;
    const char *names[V_MAX_BACKENDS];
    int nb = backends_of(rep, names, V_MAX_BACKENDS);
    for (const char *p = gate ? gate->require : NULL; p && *p;) {
        const char *end = strchr(p, ',');
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(end ? (size_t)(end - p) : strlen(p)), p);
        p = end ? end + 1 : NULL;
        int counts[4], ran = 0;
        for (int b = 0; b < nb; b++) ran |= !strcmp(names[b], name);
        count_verdicts(rep, name, counts);
        const anx_verify_row *w = whole_skip(rep, name);
        if (!ran || w) {
            fail = 1;
            if (out) fprintf(out, "verify: required backend %s SKIPPED: %s\n", name, w ? w->reason : "no rows");
        } else if (gate->strict && counts[ANX_SKIPPED]) {
            fail = 1;
            if (out) fprintf(out, "verify: --strict: required backend %s has %d SKIPPED rows\n", name, counts[ANX_SKIPPED]);
        }
    }
    for (int i = 0; gate && gate->strict && i < rep->count; i++)
        if (rep->rows[i].verdict == ANX_MISTRUSTED) {
            fail = 1;
            if (out) fprintf(out, "verify: --strict: %s %s %s %s MISTRUSTED: %s\n", rep->rows[i].backend, rep->rows[i].mode,
                             rep->rows[i].layer, rep->rows[i].tensor, rep->rows[i].reason);
        }
    return fail;
}
