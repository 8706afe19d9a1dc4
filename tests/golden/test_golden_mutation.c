/* test_golden_mutation: the golden data has teeth.  A temporary copy of the golden data gets one
 * deliberate error, the gate (anx_verify_golden and anx verify's exit status, in-process so that
 * every case shares one float64 replay through anx_verify_opts.cache) must give 1 and name the
 * tensor in a row that
 * reads the golden data: ref64's anchor to it (backend "ref64") or its self-checks ("golden").
 * Backend rows no longer read golden outputs (they are judged against ref64 on the same inputs,
 * docs/verify.md; mutant backends prove them: test_golden_mutants), so the golden data is ref64's
 * anchor, and this test proves the anchor (every run must have its anchor rows).
 * The unmutated copy of the same layer must pass (so the harness itself cannot fail everything).
 *
 *   one element        out.Conv2d-4 at its largest |x|, and at a fixed inner element, moved by
 *                      0.1% of the tensor's largest |x|          -> Conv2d-4 fwd
 *   sign flip          all of grad_out.MaxPool2d-6              -> MaxPool2d-6 (its anchor row)
 *                      all of out.Linear-17                     -> Linear-17 fwd
 *   dropped bias       out.Conv2d-7 minus conv.6.bias[c]        -> Conv2d-7 fwd
 *   sampled gradient   one stored sample of grad.fc.0.weight moved by 0.1% of the largest sample
 *                                                               -> Linear-14 bwd_weights
 * The dropped bias is regenerated from the seed with core's RNG (what the golden's init was).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anx/rng.h"
#include "anx/safetensors.h"
#include "anx/verify.h"
#include "testutil.h"

#define GOLDEN ANX_SOURCE_DIR "/data/golden/alexnet_in3_c5_b2_step1.safetensors"

typedef enum { MUT_NONE, MUT_MAX_ELEM, MUT_ONE_ELEM, MUT_SIGN, MUT_DROP_BIAS } mut_kind;

static char tmpdir[256];

/* A copy of GOLDEN with key mutated; returns the path (static buffer) or NULL. */
static const char *write_mutant(const anx_st_file *f, const char *key, mut_kind kind)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/mutant.safetensors", tmpdir);
    anx_st_writer *w = anx_st_writer_new();
    int found = kind == MUT_NONE;
    for (int i = 0; i < f->count; i++) {
        const anx_st_tensor *t = &f->tensors[i];
        size_t es = t->dtype == ANX_DTYPE_F32 ? 4 : 8;
        void *copy = malloc(t->count * es + 8);
        memcpy(copy, t->data, t->count * es);
        if (kind != MUT_NONE && strcmp(t->name, key) == 0 && t->dtype == ANX_DTYPE_F32) {
            float *x = copy;
            found = 1;
            size_t imax = 0;
            for (size_t k = 0; k < t->count; k++)
                if (fabsf(x[k]) > fabsf(x[imax])) imax = k;
            float step = 1e-3f * fabsf(x[imax]);
            if (kind == MUT_MAX_ELEM) x[imax] += x[imax] > 0 ? -step : step;
            if (kind == MUT_ONE_ELEM) x[t->count / 2 + 7] += step;
            if (kind == MUT_SIGN)
                for (size_t k = 0; k < t->count; k++) x[k] = -x[k];
            if (kind == MUT_DROP_BIAS) {
                /* out.Conv2d-7 [n, 384, 13, 13] without conv.6.bias */
                const char *seed = anx_st_meta(f, "seed");
                float bias[384];
                anx_rng_fill_uniform(bias, 384, anx_rng_key(strtoull(seed, NULL, 10), "conv.6.bias", 0),
                                     1.0 / sqrt(256.0 * 9));
                for (size_t k = 0; k < t->count; k++) x[k] -= bias[(k / 169) % 384];
            }
        }
        anx_st_writer_add(w, t->name, t->dtype, t->shape, t->ndim, copy);
        free(copy);
    }
    for (int i = 0; i < f->meta_count; i++) anx_st_writer_meta(w, f->meta_keys[i], f->meta_values[i]);
    char err[256];
    int rc = anx_st_writer_commit(w, path, err, sizeof err);
    anx_st_writer_free(w);
    TU_CHECKF(found, "golden tensor %s not found", key);
    TU_CHECKF(rc == 0, "writing the mutant: %s", err);
    return rc == 0 && found ? path : NULL;
}

/* The cache every run shares: ref64's float64 replay of the golden run depends on its seed and
 * configuration only (core/verify_cache.c), never on the stored values mutated here, so it is run
 * once for all the cases instead of once per case (~9 replays: 198 s of the release stage). */
static anx_verify_cache *g_cache;

/* Runs the gate (anx_verify_golden, what `anx verify --backend ref --mode isolated --layer L`
 * runs) on the mutant; returns anx verify's exit status and leaves its printed table in out. */
static int run_verify(const char *golden, const char *layer, char *out, size_t cap)
{
    anx_verify_opts o = {TU_REF, layer, "isolated", 2, NULL, NULL, 0, g_cache};
    anx_verify_report rep = {0};
    char err[600];
    out[0] = 0;
    FILE *fp = fmemopen(out, cap, "w");
    if (!fp) return -1;
    int rc = anx_verify_golden(&rep, golden, &o, err, sizeof err);
    if (rc) fprintf(fp, "anx verify: %s\n", err);
    else anx_verify_print(&rep, fp), rc = anx_verify_exit_status(&rep, NULL, fp);
    fclose(fp);
    out[cap - 1] = 0;
    anx_verify_report_free(&rep);
    return rc;
}

/* Is there a table line of the anchor or the self-checks naming tensor with verdict FAILED? */
static int names_failure(const char *out, const char *layer, const char *tensor)
{
    char pat[128];
    (void)layer;
    snprintf(pat, sizeof pat, " %s ", tensor);
    for (const char *line = out; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < 511 ? len : 511), line);
        if ((strstr(buf, "ref64 ") == buf || strstr(buf, "golden ") == buf) && strstr(buf, pat) && strstr(buf, " FAILED "))
            return 1;
        line = end ? end + 1 : NULL;
    }
    return 0;
}

static void expect(const anx_st_file *f, const char *key, mut_kind kind, const char *layer, const char *tensor)
{
    static char out[1 << 20];
    const char *path = write_mutant(f, key, kind);
    if (!path) return;
    int rc = run_verify(path, layer, out, sizeof out);
    if (kind == MUT_NONE) {
        TU_CHECKF(rc == 0, "unmutated golden, layer %s: exit %d, want 0\n%s", layer, rc, out);
        /* every run has ref64's anchor rows of the layer (a cached replay included) */
        TU_CHECKF(strstr(out, "\nref64 ") != NULL, "unmutated golden, layer %s: no ref64 anchor row\n%s", layer, out);
        return;
    }
    TU_CHECKF(rc == 1, "mutant %s (kind %d): anx verify exit %d, want 1\n%s", key, (int)kind, rc, out);
    TU_CHECKF(names_failure(out, layer, tensor), "mutant %s: no FAILED line naming %s %s\n%s", key, layer, tensor, out);
    TU_CHECKF(strstr(out, "reproduce: anx verify --backend ") != NULL, "no reproduce command\n%s", out);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/anx_golden_mutation.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "test_golden_mutation: mkdtemp failed\n");
        return 1;
    }
    anx_st_file f;
    char err[256];
    g_cache = anx_verify_cache_new();
    int rc = g_cache ? anx_st_read(&f, GOLDEN, err, sizeof err) : (snprintf(err, sizeof err, "out of memory"), 2);
    TU_CHECKF(rc == 0, "%s", err);
    if (rc == 0) {
        expect(&f, "", MUT_NONE, "Conv2d-4", "");
        expect(&f, "", MUT_NONE, "Linear-14", "");
        expect(&f, "out.Conv2d-4", MUT_MAX_ELEM, "Conv2d-4", "out.Conv2d-4");
        expect(&f, "out.Conv2d-4", MUT_ONE_ELEM, "Conv2d-4", "out.Conv2d-4");
        expect(&f, "grad_out.MaxPool2d-6", MUT_SIGN, "MaxPool2d-6", "grad_out.MaxPool2d-6");
        expect(&f, "out.Linear-17", MUT_SIGN, "Linear-17", "out.Linear-17");
        expect(&f, "out.Conv2d-7", MUT_DROP_BIAS, "Conv2d-7", "out.Conv2d-7");
        expect(&f, "sample.grad.fc.0.weight", MUT_MAX_ELEM, "Linear-14", "grad.fc.0.weight");
        anx_st_free(&f);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "test_golden_mutation: could not remove %s\n", tmpdir);
    anx_verify_cache_free(g_cache);
    return tu_finish("test_golden_mutation");
}
