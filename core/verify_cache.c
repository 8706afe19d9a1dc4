/* What anx_verify_golden may reuse across calls of one process (anx_verify_opts.cache): ref64's
 * float64 replay of a golden run, and ref64's answers and magnitudes of isolated checks.  Both are
 * pure functions of what their key hashes, so a hit gives exactly what a recomputation would:
 *   the replay   of the seed, the model configuration, the steps, Adam's hyperparameters and the
 *                names of the file's tensors (which ones it keeps): vref64_run regenerates
 *                everything else from the seed and reads no stored value;
 *   an answer    of the (layer, direction), the sizes and every byte of the float32 inputs.
 * Tests that run the gate on many mutants of one golden run (test_golden_mutation,
 * test_golden_mutants) pay for each once instead of once per mutant.  Keys are 64-bit FNV-1a
 * hashes: a collision (odds ~n^2 / 2^65 for n entries) would hand the wrong answer. */
#include <stdlib.h>
#include <string.h>

#include "core/verify_internal.h"

typedef struct v_answer {
    uint64_t key;
    double *want[2];
    float *M[2];
    double c;
} v_answer;

struct anx_verify_cache {
    int has_run;
    uint64_t run_key;
    vref64 run;
    v_answer *ans;
    int nans, cap;
};

anx_verify_cache *anx_verify_cache_new(void) { return calloc(1, sizeof(anx_verify_cache)); }

void anx_verify_cache_free(anx_verify_cache *c)
{
    if (!c) return;
    if (c->has_run) vref64_free(&c->run);
    for (int i = 0; i < c->nans; i++)
        for (int k = 0; k < 2; k++) free(c->ans[i].want[k]), free(c->ans[i].M[k]);
    free(c->ans);
    free(c);
}

/* FNV-1a continued over more bytes */
static uint64_t fnv_more(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

static uint64_t run_key(const vgold *g)
{
    uint64_t h = fnv_more(FNV_BASIS, &g->seed, sizeof g->seed);
    h = fnv_more(h, &g->m.cfg, sizeof g->m.cfg);
    h = fnv_more(h, &g->steps, sizeof g->steps);
    h = fnv_more(h, &g->hp, sizeof g->hp);
    for (int i = 0; i < g->f.count; i++) h = fnv_more(h, g->f.tensors[i].name, strlen(g->f.tensors[i].name) + 1);
    return h;
}

const vref64 *v_cache_run(anx_verify_cache *c, const vgold *g)
{
    return c && c->has_run && c->run_key == run_key(g) ? &c->run : NULL;
}

const vref64 *v_cache_keep_run(anx_verify_cache *c, const vgold *g, vref64 *r)
{
    if (c->has_run) vref64_free(&c->run);
    c->run = *r, c->run_key = run_key(g), c->has_run = 1;
    memset(r, 0, sizeof *r);
    return &c->run;
}

uint64_t v_answer_key(const anx_layer_desc *l, anx_dir dir, const v_in *in)
{
    size_t n[4] = {anx_desc_plain_count(l, ANX_SRC), anx_desc_plain_count(l, ANX_DST),
                   anx_desc_has_weights(l) ? anx_desc_plain_count(l, ANX_WEIGHTS) : 0,
                   anx_desc_has_weights(l) ? anx_desc_plain_count(l, ANX_BIAS) : 0};
    uint64_t h = fnv_more(FNV_BASIS, l->name, strlen(l->name) + 1);
    h = fnv_more(h, &dir, sizeof dir);
    h = fnv_more(h, n, sizeof n);
    const float *x[6] = {in->src, in->dst, in->weights, in->bias, in->diff_dst, in->mask};
    const size_t nx[6] = {n[0], n[1], n[2], n[3], n[1], n[1]};
    for (int k = 0; k < 6; k++) {
        h = fnv_more(h, &(char){x[k] != NULL}, 1);
        if (x[k]) h = fnv_more(h, x[k], nx[k] * sizeof *x[k]);
    }
    if (in->target) h = fnv_more(h, in->target, (size_t)l->n * sizeof *in->target);
    return h;
}

int v_cache_answer(const anx_verify_cache *c, uint64_t key, double **want, float **M, double *cm)
{
    for (int i = 0; c && i < c->nans; i++)
        if (c->ans[i].key == key) {
            const v_answer *a = &c->ans[i];
            want[0] = a->want[0], want[1] = a->want[1], M[0] = a->M[0], M[1] = a->M[1], *cm = a->c;
            return 1;
        }
    return 0;
}

int v_cache_keep_answer(anx_verify_cache *c, uint64_t key, double *const *want, float *const *M, double cm)
{
    if (c->nans == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        v_answer *a = realloc(c->ans, (size_t)cap * sizeof *a);
        if (!a) return -1; /* the caller keeps and frees them: only the reuse is lost */
        c->ans = a, c->cap = cap;
    }
    v_answer *a = &c->ans[c->nans++];
    a->key = key, a->c = cm;
    for (int k = 0; k < 2; k++) a->want[k] = want[k], a->M[k] = M[k];
    return 0;
}
