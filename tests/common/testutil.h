/* testutil.h — what every anx test uses: loud checks, guarded NaN-filled buffers, fills.
 *
 * A test calls TU_CHECK / TU_CHECKF for every assertion and ends with
 *   return tu_finish("test_name");
 * which prints "test_name: N passed, M failed" and returns non-zero on any failure.
 */
#ifndef ANX_TESTUTIL_H
#define ANX_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int tu_passed, tu_failed;

#define TU_CHECK(cond) TU_CHECKF((cond), "%s", #cond)
#define TU_CHECKF(cond, ...)                                              \
    do {                                                                  \
        if (cond) {                                                       \
            tu_passed++;                                                  \
        } else {                                                          \
            tu_failed++;                                                  \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
    } while (0)

int tu_finish(const char *test_name);

/* A float buffer of n elements, prefilled with NaN, with guard zones of canary bytes on both
 * sides.  tu_guard_ok() says whether anything wrote outside it; tu_free() checks and frees
 * (a broken guard is a test failure naming what). */
float *tu_alloc(size_t n, const char *what);
int tu_guard_ok(const float *p);
void tu_free(float *p);
size_t tu_count(const float *p);

/* Fills: integer-valued in [lo, hi] (exact sums, benchdnn's trick; density in (0,1] is the
 * chance an element is non-zero), or uniform in [lo, hi).  Seeded: the same seed, the same bits. */
void tu_fill_int(float *p, size_t n, uint64_t seed, int lo, int hi, double density);
void tu_fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi);

/* Comparisons that print the first worst elements on failure and count as one check each. */
int tu_expect_bitwise(const float *got, const float *want, size_t n, const char *what);
/* |got - want| <= atol + rtol * |want| elementwise; NaN in either is a failure */
int tu_expect_close(const float *got, const float *want, size_t n, double atol, double rtol,
                    const char *what);
/* Same with per-element bound[i] (error analysis per output). */
int tu_expect_within(const float *got, const double *want, const double *bound, size_t n,
                     const char *what);

/* 1 when this test (and so the programs it runs, built with the same flags) uses ASan, whose
 * shadow memory reservation does not fit under RLIMIT_AS, and whose instrumented
 * loops run the ref kernels 5-10x slower (tests then say what they leave to the release build). */
int tu_sanitized(void);

/* Calls into the library whose failure (a status, anx_net_error) is a test failure naming it.
 * The net's: the loss, NaN when the call failed.  tu_layer_create: the ctx, NULL when the
 * backend keeps none or failed.  tu_exec: 0, or -1 when the exec returned a status. */
#include "anx/net.h"
float tu_net_train_step(anx_net *net, float lr);
float tu_net_forward(anx_net *net, int train);
void tu_net_backward(anx_net *net);
void *tu_layer_create(const anx_backend *be, const anx_layer_desc *l, int threads);
int tu_exec(const anx_backend *be, void *ctx, const anx_layer_desc *l, anx_dir dir, const anx_args *a);
/* The reference backend's name, for command lines of tests that need the plain loops, not speed. */
#define TU_REF (anx_backend_reference()->name)

#endif
