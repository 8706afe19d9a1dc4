/* test_golden_rules: the RNG against the values the Python generator stored, and the rules of
 * anx_verify_compare (statistics, verdicts, worst elements with NCHW indices) on hand-made data
 * whose answers are worked out in the comments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/rng.h"
#include "anx/safetensors.h"
#include "anx/verify.h"
#include "testutil.h"

#define GOLDEN ANX_SOURCE_DIR "/data/golden/alexnet_in3_c5_b2_step1.safetensors"

static void test_rng_matches_generator(void)
{
    anx_st_file f;
    char err[256];
    int rc = anx_st_read(&f, GOLDEN, err, sizeof err);
    TU_CHECKF(rc == 0, "read %s: %s", GOLDEN, err);
    if (rc) return;
    const char *rcheck = anx_st_meta(&f, "rng_check"), *seed = anx_st_meta(&f, "seed");
    TU_CHECK(rcheck && seed);
    if (rcheck && seed) {
        /* the generator's numpy reimplementation wrote key and bits of stream "input" */
        uint64_t k = anx_rng_key(strtoull(seed, NULL, 10), "input", 0);
        char want[64];
        snprintf(want, sizeof want, "\"key\":\"%016llx\"", (unsigned long long)k);
        TU_CHECKF(strstr(rcheck, want) != NULL, "key %s not in %s", want, rcheck);
        for (uint64_t i = 0; i < 4; i++) {
            snprintf(want, sizeof want, "\"%016llx\"", (unsigned long long)anx_rng_bits(k, i));
            TU_CHECKF(strstr(rcheck, want) != NULL, "bits[%llu] %s not in %s", (unsigned long long)i, want, rcheck);
        }
    }
    anx_st_free(&f);
}

static anx_verify_row compare(const float *got, const float *want, const double *bound, size_t n,
                              const int64_t *shape, int ndim)
{
    anx_verify_row r;
    memset(&r, 0, sizeof r);
    anx_verify_compare(&r, got, want, bound, n, NULL, shape, ndim);
    return r;
}

static void test_compare_rules(void)
{
    /* got [1, 2], want [1, 1], bound 2: err [0, 1]; nmse = 1 / 2; max_rel = 1 / 1; within the
       bound, but a bound of 2x the tensor's max |x| (over 1%) proves nothing: MISTRUSTED */
    {
        const float got[] = {1, 2}, want[] = {1, 1};
        const double b[] = {2, 2};
        const int64_t sh[] = {2};
        anx_verify_row r = compare(got, want, b, 2, sh, 1);
        TU_CHECK(r.verdict == ANX_MISTRUSTED);
        TU_CHECKF(strstr(r.reason, "proves nothing") != NULL, "reason '%s'", r.reason);
        TU_CHECK(r.max_abs == 1 && r.max_rel == 1 && r.nmse == 0.5 && r.zeros == 0);
        TU_CHECK(r.bound_rel == 2); /* max bound 2 / max |want| 1 */
    }
    /* bound 1% of max |x| exactly: still PASSED; just over: MISTRUSTED */
    {
        const float got[] = {100, 50}, want[] = {100, 50};
        const double b[] = {1, 1}, b2[] = {1.0000001, 0};
        const int64_t sh[] = {2};
        TU_CHECK(compare(got, want, b, 2, sh, 1).verdict == ANX_PASSED);
        TU_CHECK(compare(got, want, b2, 2, sh, 1).verdict == ANX_MISTRUSTED);
    }
    /* one element of a [2,3,4,5] tensor beyond its bound: flat 1*60 + 2*20 + 3*5 + 4 = 119 */
    {
        static float got[120], want[120];
        static double b[120];
        for (int i = 0; i < 120; i++) got[i] = want[i] = (float)(i + 1), b[i] = 1e-3;
        got[7] += 5e-4f;    /* within its bound */
        got[119] += 0.5f;   /* beyond */
        const int64_t sh[] = {2, 3, 4, 5};
        anx_verify_row r = compare(got, want, b, 120, sh, 4);
        TU_CHECK(r.verdict == ANX_FAILED);
        TU_CHECK(r.nworst == 2);
        TU_CHECK(r.worst[0].index == 119);
        TU_CHECK(r.worst[0].nchw[0] == 1 && r.worst[0].nchw[1] == 2 && r.worst[0].nchw[2] == 3 &&
                 r.worst[0].nchw[3] == 4);
        TU_CHECK(r.worst[1].index == 7);
        TU_CHECKF(strstr(r.reason, "1 of 120") != NULL, "reason '%s'", r.reason);
    }
    /* NaN in the result fails even with an infinite bound; a NaN bound fails too */
    {
        const float got[] = {NAN, 1}, want[] = {1, 1};
        const double b[] = {INFINITY, INFINITY};
        const int64_t sh[] = {2};
        TU_CHECK(compare(got, want, b, 2, sh, 1).verdict == ANX_FAILED);
        const float got2[] = {1, 1};
        const double b2[] = {NAN, 1};
        TU_CHECK(compare(got2, want, b2, 2, sh, 1).verdict == ANX_FAILED);
    }
    /* 995 of 1000 golden zeros, all matched: MISTRUSTED (> 99%); 990 zeros: PASSED */
    {
        static float got[1000], want[1000];
        static double b[1000];
        for (int i = 995; i < 1000; i++) got[i] = want[i] = 1;
        const int64_t sh[] = {1000};
        anx_verify_row r = compare(got, want, b, 1000, sh, 1);
        TU_CHECK(r.verdict == ANX_MISTRUSTED);
        TU_CHECK(fabs(r.zeros - 0.995) < 1e-12);
        for (int i = 990; i < 995; i++) got[i] = want[i] = 1;
        TU_CHECK(compare(got, want, b, 1000, sh, 1).verdict == ANX_PASSED);
    }
}

static void test_bad_input(void)
{
    anx_verify_report rep = {0};
    anx_verify_opts o = {TU_REF, NULL, "all", 1, NULL, NULL, 1, NULL};
    char err[512] = "";
    TU_CHECK(anx_verify_golden(&rep, "/nonexistent/golden.safetensors", &o, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, "/nonexistent/golden.safetensors") != NULL, "err '%s'", err);
    o.backend = "cuda";
    TU_CHECK(anx_verify_golden(&rep, GOLDEN, &o, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, "cuda") != NULL, "err '%s'", err);
    o.backend = TU_REF, o.layer = "Conv2d-99";
    TU_CHECK(anx_verify_golden(&rep, GOLDEN, &o, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, "Conv2d-99") != NULL, "err '%s'", err);
    TU_CHECK(rep.count == 0);
    anx_verify_report_free(&rep);
}

static const char *cannot_run(void) { return "test backend: cannot run here"; }

/* A row of backend be with verdict v (layer "-": the backend as a whole). */
static void add_row(anx_verify_report *rep, const char *be, const char *layer, anx_verdict v)
{
    anx_verify_row *r = &rep->rows[rep->count++];
    memset(r, 0, sizeof *r);
    snprintf(r->backend, sizeof r->backend, "%s", be);
    snprintf(r->layer, sizeof r->layer, "%s", layer);
    snprintf(r->reason, sizeof r->reason, "%s", v == ANX_SKIPPED && !strcmp(layer, "-") ? cannot_run() : "why");
    r->verdict = v;
}

/* --require and --strict (anx_verify_gate): a backend SKIPPED as a whole, MISTRUSTED rows,
 * SKIPPED rows of a required backend, and the names they accept. */
static void test_gate(void)
{
    /* a backend that cannot run, handed in through opts.backends: one SKIPPED row, named */
    anx_backend fake = {0};
    fake.name = "fake", fake.unavailable = cannot_run;
    const anx_backend *list[2] = {&fake, NULL};
    anx_verify_opts o = {"fake", "ReLU-2", "isolated", 1, NULL, list, 1, NULL};
    anx_verify_report rep = {0};
    char err[512] = "";
    TU_CHECKF(anx_verify_golden(&rep, GOLDEN, &o, err, sizeof err) == 0, "%s", err);
    anx_verify_gate none = {NULL, 0}, req = {"fake", 0}, strict = {NULL, 1};
    TU_CHECK(anx_verify_exit_status(&rep, &none, NULL) == 0); /* today's rule: SKIPPED does not fail */
    TU_CHECK(anx_verify_exit_status(&rep, &req, NULL) == 1);
    char line[512] = "";
    FILE *f = tmpfile();
    if (f) {
        anx_verify_exit_status(&rep, &req, f);
        rewind(f);
        size_t n = fread(line, 1, sizeof line - 1, f);
        line[n] = 0;
        fclose(f);
    }
    TU_CHECKF(strstr(line, "required backend fake SKIPPED: test backend: cannot run here") != NULL, "'%s'", line);
    TU_CHECK(anx_verify_gate_check(&req, &o, err, sizeof err) == 0);
    anx_verify_gate bad = {"fake,cuda", 0};
    TU_CHECK(anx_verify_gate_check(&bad, &o, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, "--require cuda") != NULL, "err '%s'", err);
    o.backend = TU_REF; /* --backend ref does not run fake */
    TU_CHECK(anx_verify_gate_check(&req, &o, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, "--require fake") != NULL, "err '%s'", err);
    anx_verify_report_free(&rep);

    /* hand-made rows: strict fails on MISTRUSTED anywhere, on SKIPPED rows of a required backend */
    anx_verify_row rows[4];
    anx_verify_report r2 = {rows, 0, 4, NULL, 0, NULL, 0, 0};
    add_row(&r2, "a", "Conv2d-1", ANX_PASSED);
    add_row(&r2, "a", "Conv2d-4", ANX_SKIPPED);
    add_row(&r2, "b", "Conv2d-1", ANX_PASSED);
    TU_CHECK(anx_verify_exit_status(&r2, &strict, NULL) == 0);
    anx_verify_gate req_a = {"a", 0}, req_a_strict = {"a", 1}, req_b_strict = {"b", 1};
    TU_CHECK(anx_verify_exit_status(&r2, &req_a, NULL) == 0);        /* one layer declined: informational */
    TU_CHECK(anx_verify_exit_status(&r2, &req_a_strict, NULL) == 1); /* ... but not under --strict */
    TU_CHECK(anx_verify_exit_status(&r2, &req_b_strict, NULL) == 0);
    add_row(&r2, "b", "Conv2d-4", ANX_MISTRUSTED);
    TU_CHECK(anx_verify_exit_status(&r2, &none, NULL) == 0);
    TU_CHECK(anx_verify_exit_status(&r2, &strict, NULL) == 1);
}

int main(void)
{
    test_rng_matches_generator();
    test_compare_rules();
    test_bad_input();
    test_gate();
    return tu_finish("test_golden_rules");
}
