/* test_verify_drift: the drift section of anx verify (report->drift, the "-- drift" lines, the
 * JSON's "drift") is there and right.
 *
 * The gate runs ref chained on the three-step file, judging Linear-20 and the loss (--layer).
 * The expected drift is derived here without the gate's code: the same training run on the ref
 * backend through the public net API (init, input and targets from the seed, as the golden run),
 * each step's grad.fc.6.weight / grad.fc.6.bias / loss compared with the golden file's
 * step<t>.<key> (whole, or its stored sample and indices): max |got - golden|, that over max
 * |golden| (rel_max), the NMSE, and growth = rel_max(t) / rel_max(t - 1) (none when step t - 1
 * was exact).  Each must equal the
 * report's to 1e-9 relative (both are double sums over the same float32 values).  The table keeps
 * its row format: every drift line starts with "-- drift", and the rows are the same with and
 * without the section (the table's row count is the report's).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/model.h"
#include "anx/net.h"
#include "anx/rng.h"
#include "anx/safetensors.h"
#include "anx/verify.h"
#include "testutil.h"

#define GOLDEN ANX_SOURCE_DIR "/data/golden/alexnet_in3_c5_b2_steps3.safetensors"
#define THREADS 2
#define STEPS 3
#define TOL 1e-9

typedef struct expect {
    char key[64];
    int step;
    double max_abs, rel, nmse, growth;
} expect;

static expect g_exp[3 * STEPS];
static int g_nexp;

/* got (whole, plain) against the golden key of f: its expected drift appended */
static void derive(const anx_st_file *f, const char *key, int step, const float *got, size_t total)
{
    char k2[96], err[256];
    const anx_st_tensor *t = anx_st_find(f, key);
    size_t n = t ? t->count : 0;
    float *want = NULL;
    int64_t *idx = NULL;
    if (t) {
        want = malloc(n * sizeof *want);
        TU_CHECKF(anx_st_get_f32(f, key, want, n, NULL, -1, err, sizeof err) == 0, "%s: %s", key, err);
    } else {
        snprintf(k2, sizeof k2, "sample.%s", key);
        const anx_st_tensor *s = anx_st_find(f, k2);
        TU_CHECKF(s != NULL, "golden has neither %s nor %s", key, k2);
        if (!s) return;
        n = s->count;
        want = malloc(n * sizeof *want), idx = malloc(n * sizeof *idx);
        TU_CHECKF(anx_st_get_f32(f, k2, want, n, NULL, -1, err, sizeof err) == 0, "%s: %s", k2, err);
        snprintf(k2, sizeof k2, "sample_index.%s", key);
        TU_CHECKF(anx_st_get_i64(f, k2, idx, n, err, sizeof err) == 0, "%s: %s", k2, err);
    }
    expect *e = &g_exp[g_nexp++];
    snprintf(e->key, sizeof e->key, "%s", key);
    e->step = step;
    double mx = 0, se = 0, sw = 0;
    e->max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = idx ? (size_t)idx[i] : i;
        TU_CHECKF(j < total, "%s: index %zu beyond %zu", key, j, total);
        double d = fabs((double)got[j] - (double)want[i]);
        e->max_abs = d > e->max_abs ? d : e->max_abs;
        mx = fabs(want[i]) > mx ? fabs(want[i]) : mx;
        se += d * d, sw += (double)want[i] * want[i];
    }
    e->rel = e->max_abs / mx;
    e->nmse = se / sw;
    e->growth = 0;
    for (int k = 0; k < g_nexp - 1; k++) /* the same tensor one step before: "step<t-1>." + base */
        if (g_exp[k].step == step - 1 && !strcmp(strchr(g_exp[k].key, '.'), strchr(key, '.')) && g_exp[k].rel > 0)
            e->growth = e->rel / g_exp[k].rel; /* none after an exact step (rel 0) */
    free(want), free(idx);
}

static int same(double a, double b) { return isfinite(a) && isfinite(b) && fabs(a - b) <= TOL * fabs(b); }

/* The ref backend's own three steps, as the golden run: the expected drift of every key. */
static int derive_all(const anx_st_file *f)
{
    anx_model_config cfg = {atoi(anx_st_meta(f, "in_dim")), atoi(anx_st_meta(f, "n_class")),
                            atoi(anx_st_meta(f, "batch")), atoi(anx_st_meta(f, "input_hw"))};
    uint64_t seed = strtoull(anx_st_meta(f, "seed"), NULL, 10);
    double lr = strtod(anx_st_meta(f, "lr"), NULL);
    anx_model m;
    char err[256];
    if (anx_model_init(&m, &cfg, err, sizeof err)) return fprintf(stderr, "%s\n", err), -1;
    anx_net *net = anx_net_create(anx_backend_reference(), &cfg, THREADS, err, sizeof err);
    if (!net) return fprintf(stderr, "%s\n", err), -1;
    size_t nin = (size_t)cfg.batch * cfg.in_dim * cfg.input_hw * cfg.input_hw;
    float *input = malloc(nin * sizeof *input);
    int64_t *target = malloc((size_t)cfg.batch * sizeof *target);
    anx_rng_fill_u01(input, nin, anx_rng_key(seed, "input", 0));
    anx_rng_fill_targets(target, (size_t)cfg.batch, anx_rng_key(seed, "target", 0), cfg.n_class);
    TU_CHECK(anx_net_init_params(net, seed) == 0);
    anx_net_set_dropout_seed(net, seed);
    TU_CHECK(anx_net_set_input(net, input, target) == 0);
    int pw = -1;
    for (int p = 0; p < ANX_NUM_PARAMS; p++)
        if (!strcmp(m.params[p].name, "fc.6.weight")) pw = p;
    TU_CHECKF(pw >= 0, "no parameter fc.6.weight");
    for (int t = 1; t <= STEPS && pw >= 0; t++) {
        float loss = 0;
        TU_CHECK(anx_net_forward(net, 1, &loss) == 0 && anx_net_backward(net) == 0);
        char key[96];
        for (int k = 0; k < 2; k++) {
            size_t n = m.params[pw + k].count;
            float *g = malloc(n * sizeof *g);
            anx_net_get_state(net, ANX_GRAD, pw + k, g);
            snprintf(key, sizeof key, "step%d.grad.%s", t, m.params[pw + k].name);
            derive(f, key, t, g, n);
            free(g);
        }
        snprintf(key, sizeof key, "step%d.loss", t);
        derive(f, key, t, &loss, 1);
        anx_net_adam(net, (float)lr);
    }
    anx_net_destroy(net);
    free(input), free(target);
    return 0;
}

/* The report's drift of key: every expected figure, once. */
static void check_entry(const anx_verify_report *rep, const expect *e)
{
    int found = 0;
    for (int i = 0; i < rep->ndrift; i++) {
        const anx_verify_drift *d = &rep->drift[i];
        if (strcmp(d->tensor, e->key) || strcmp(d->backend, anx_backend_reference()->name)) continue;
        found++;
        TU_CHECKF(d->step == e->step, "%s: step %d, want %d", e->key, d->step, e->step);
        TU_CHECKF(same(d->max_abs, e->max_abs), "%s: max_abs %.17g, want %.17g", e->key, d->max_abs, e->max_abs);
        TU_CHECKF(same(d->rel, e->rel), "%s: rel_max %.17g, want %.17g", e->key, d->rel, e->rel);
        TU_CHECKF(same(d->nmse, e->nmse), "%s: nmse %.17g, want %.17g", e->key, d->nmse, e->nmse);
        TU_CHECKF(same(d->growth, e->growth), "%s: growth %.17g, want %.17g", e->key, d->growth, e->growth);
        TU_CHECKF(!strcmp(d->base, strchr(e->key, '.') + 1), "%s: base %s", e->key, d->base);
        printf("  %-28s step %d rel_max %.3g growth %.3g: as derived\n", e->key, e->step, e->rel, e->growth);
    }
    TU_CHECKF(found == 1, "%s: %d drift entries, want 1", e->key, found);
}

/* The printed table: the drift section is marked, and the rows keep their format. */
static void check_print(const anx_verify_report *rep)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    anx_verify_print(rep, fp);
    fclose(fp);
    TU_CHECKF(strstr(buf, "\n-- drift of the chained runs from the golden data") != NULL, "no drift header:\n%s", buf);
    int rows = 0, drift = 0;
    for (char *line = buf; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        if (!strncmp(line, "-- drift ", 9)) drift++;
        else if (strncmp(line, "-- ", 3) && !(strncmp(line, "golden ", 7) == 0 && strstr(line, ": seed ")) &&
                 strncmp(line, "backend ", 8) && strncmp(line, "verify", 6) && strncmp(line, "    ", 4))
            rows++; /* not a separator, a golden file's line, the column line, a summary or a worst element */
        line = end ? end + 1 : NULL;
    }
    TU_CHECKF(rows == rep->count, "%d table rows printed, the report has %d", rows, rep->count);
    TU_CHECKF(drift > rep->ndrift, "%d drift lines for %d entries (and a column line)", drift, rep->ndrift);
    free(buf);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    anx_st_file f;
    char err[256];
    if (anx_st_read(&f, GOLDEN, err, sizeof err)) return fprintf(stderr, "test_verify_drift: %s\n", err), 1;
    if (derive_all(&f)) return 1;
    static const char *const layers[2] = {"Linear-20", "CrossEntropyLoss"};
    anx_verify_report rep = {0};
    for (int k = 0; k < 2; k++) {
        anx_verify_opts o = {anx_backend_reference()->name, layers[k], "chained", THREADS, NULL, NULL, 1, NULL};
        int rc = anx_verify_golden(&rep, GOLDEN, &o, err, sizeof err);
        TU_CHECKF(rc == 0, "anx_verify_golden: %s", err);
    }
    TU_CHECKF(anx_verify_failed(&rep) == 0, "%d rows FAILED", anx_verify_failed(&rep));
    for (int i = 0; i < g_nexp; i++) check_entry(&rep, &g_exp[i]);
    TU_CHECKF(g_exp[g_nexp - 1].growth > 0, "no growth derived for step %d", STEPS);
    check_print(&rep);
    anx_verify_report_free(&rep);
    anx_st_free(&f);
    return tu_finish("test_verify_drift");
}
