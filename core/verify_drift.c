/* Drift of a backend's chained run from the golden data (anx_verify_drift): information, never a
 * verdict.  Every chained row has a golden key; where the golden file stores that tensor (whole
 * or as its sample) the backend's tensor is compared with it element by element.  The rows judge
 * each layer against ref64 on the backend's own inputs, so they say whether each layer is right;
 * drift says how far the float32 history has carried the whole run from PyTorch's float64 one,
 * and its growth from step to step says whether that distance is stable or compounding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/verify_internal.h"

/* The key without its "step<t>." prefix. */
static const char *base_of(const char *key)
{
    int n = 0;
    if (!strncmp(key, "step", 4) && sscanf(key + 4, "%*d.%n", &n) == 0 && n > 0) return key + 4 + n;
    return key;
}

static anx_verify_drift *drift_add(anx_verify_report *rep)
{
    if (rep->ndrift == rep->drift_cap) {
        int cap = rep->drift_cap ? 2 * rep->drift_cap : 256;
        anx_verify_drift *d = realloc(rep->drift, (size_t)cap * sizeof *d);
        if (!d) v_oom("the drift list", (size_t)cap * sizeof *d);
        rep->drift = d, rep->drift_cap = cap;
    }
    anx_verify_drift *d = &rep->drift[rep->ndrift++];
    memset(d, 0, sizeof *d);
    return d;
}

/* rel of the same backend's base tensor at step t - 1, or -1 */
static double rel_before(const anx_verify_report *rep, const anx_verify_drift *d)
{
    for (int i = rep->ndrift - 2; i >= 0; i--) {
        const anx_verify_drift *e = &rep->drift[i];
        if (e->step == d->step - 1 && !strcmp(e->base, d->base) && !strcmp(e->backend, d->backend) &&
            !strcmp(e->golden, d->golden))
            return e->rel;
    }
    return -1;
}

void v_drift(anx_verify_report *rep, const vgold *g, const char *backend, int step, const char *key, const float *got)
{
    vwant w;
    if (vgold_want(g, key, &w)) return; /* not in the golden file (e.g. step1.adam.* of the three-step file) */
    anx_verify_drift *d = drift_add(rep);
    v_copy_str(d->golden, sizeof d->golden, g->base);
    v_copy_str(d->backend, sizeof d->backend, backend);
    v_copy_str(d->tensor, sizeof d->tensor, key);
    v_copy_str(d->base, sizeof d->base, base_of(key));
    d->step = step, d->count = w.n, d->sampled = w.idx != NULL;
    double num = 0, den = 0, mx = 0;
    for (size_t i = 0; i < w.n; i++) {
        double want = w.val[i], e = (double)got[w.idx ? (size_t)w.idx[i] : i] - want;
        d->max_abs = fmax(d->max_abs, fabs(e)); /* NaN-safe below: a NaN got makes rel NaN */
        if (e != e) d->max_abs = NAN;
        num += e * e, den += want * want, mx = fmax(mx, fabs(want));
    }
    d->rel = mx > 0 ? d->max_abs / mx : 0;
    d->nmse = den > 0 ? num / den : num;
    double prev = rel_before(rep, d);
    d->growth = prev > 0 ? d->rel / prev : 0; /* none after an exact step: no ratio to give */
    vwant_free(&w);
}
