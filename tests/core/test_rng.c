/* The RNG of anx/rng.h: known values, and the same bits for any thread count. */
#include <omp.h>
#include <string.h>

#include "anx/rng.h"
#include "testutil.h"

static void test_known_values(void)
{
    /* splitmix64's first output from state 0 is the published 0xE220A8397B1DCDAF */
    TU_CHECK(anx_rng_mix(0) == 0xE220A8397B1DCDAFull);
    /* Expected keys and bits computed independently with Python integers from the formulas
       written in anx/rng.h (not with this code). */
    struct { uint64_t seed; const char *name; uint64_t sub, i, key, bits; double u; } cases[] = {
        {1, "input", 0, 0, 0xb1d6ea3d85590464ull, 0xc693bc766e85eac3ull, 0.7756917476654053},
        {1, "input", 0, 12345, 0xb1d6ea3d85590464ull, 0x1afd0c0f29d91eadull, 0.1054236888885498},
        {42, "conv.0.weight", 0, 7, 0x7ace712fa833ac69ull, 0x10449930e87a0998ull, 0.06354671716690063},
        {7, "Dropout-16", 3, 4095, 0xb4cf6605aa19521full, 0x4488aa00589bf250ull, 0.2677103281021118},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t k = anx_rng_key(cases[c].seed, cases[c].name, cases[c].sub);
        TU_CHECKF(k == cases[c].key, "key(%s) = %016llx", cases[c].name, (unsigned long long)k);
        TU_CHECKF(anx_rng_bits(k, cases[c].i) == cases[c].bits, "bits(%s, %llu)", cases[c].name,
                  (unsigned long long)cases[c].i);
        TU_CHECKF(anx_rng_u01(k, cases[c].i) == cases[c].u, "u(%s)", cases[c].name);
    }
}

static void test_thread_independence(void)
{
    enum { N = 1 << 20 };
    float *a = tu_alloc(N, "uniform 1 thread"), *b = tu_alloc(N, "uniform 2 threads");
    uint64_t key = anx_rng_key(5, "conv.3.weight", 0);
    omp_set_num_threads(1);
    anx_rng_fill_uniform(a, N, key, 0.01);
    omp_set_num_threads(2);
    anx_rng_fill_uniform(b, N, key, 0.01);
    tu_expect_bitwise(b, a, N, "uniform fill, 1 vs 2 threads");
    float lo = a[0], hi = a[0];
    for (size_t i = 0; i < N; i++) lo = a[i] < lo ? a[i] : lo, hi = a[i] > hi ? a[i] : hi;
    TU_CHECKF(lo >= -0.01f && hi <= 0.01f && lo < -0.0099f && hi > 0.0099f,
              "U(-0.01, 0.01) spans [%g, %g]", lo, hi);
    tu_free(a);
    tu_free(b);
}

static void test_dropout_and_targets(void)
{
    enum { N = 100000 };
    float *m = tu_alloc(N, "mask");
    anx_rng_fill_dropout(m, N, anx_rng_key(1, "Dropout-16", 1), 0.5f);
    size_t kept = 0, other = 0;
    for (size_t i = 0; i < N; i++) {
        kept += m[i] == 2.0f;
        other += m[i] != 0.0f && m[i] != 2.0f;
    }
    TU_CHECKF(other == 0, "%zu mask elements are neither 0 nor 1/(1-p) = 2", other);
    /* binomial(1e5, 0.5): sd 158; 6 sd */
    TU_CHECKF(kept > 50000 - 950 && kept < 50000 + 950, "kept %zu of %d", kept, N);
    int64_t t[1000];
    anx_rng_fill_targets(t, 1000, anx_rng_key(1, "target", 0), 5);
    int seen[5] = {0};
    int out_of_range = 0;
    for (int i = 0; i < 1000; i++) {
        if (t[i] >= 0 && t[i] < 5)
            seen[t[i]] = 1;
        else
            out_of_range++;
    }
    TU_CHECKF(out_of_range == 0, "%d targets outside 0..4", out_of_range);
    TU_CHECK(seen[0] && seen[1] && seen[2] && seen[3] && seen[4]);
    tu_free(m);
}

int main(void)
{
    test_known_values();
    test_thread_independence();
    test_dropout_and_targets();
    return tu_finish("test_rng");
}
