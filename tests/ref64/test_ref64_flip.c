/* test_ref64_flip: do ref64's bounds hold where the golden run may have gone the other way?
 * Step 2 of the three-step file has a max-pool window whose runner-up is within 2 D of the winner
 * (vref64.ambiguous): PyTorch may have routed its dy to the runner-up, and the float64 bounds of
 * everything below (the sparse per-element term E of core/verify_ref64.c, or the tensor's one
 * number where that is smaller) must cover it.
 *  1. E: run A keeps E for every ambiguous window (vref64_settle OFF: anx settles step 2's window
 *     from the golden's data, below); run B routes the dy of every ambiguous window to its
 *     runner-up (vref64_flip_windows).  Every tensor B keeps must lie within A's bound D of that
 *     tensor, element by element, and the flip must have changed some of step 2's (else this
 *     proves nothing).  Dropping the runner-up's share of E (pool_ambiguous) fails it.
 *  2. Settling: run B also settles (vref64_settle WRONG): the windows the golden's data settle
 *     are routed one way the data rule out (step 2's: to its runner-up, as the flip would) and get
 *     no E.  ref64's anchor of B must then fail at step 2's conv.3 weight gradient, the tensor the
 *     settling reads: a wrong routing without E is caught, so a settled one is the golden's.
 * It is the only test whose golden file has ambiguous windows, so it runs under the sanitizers too
 * (164 s in CI's asan stage, 34 s in release on its own). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/verify_internal.h"
#include "testutil.h"

#define FILE_THREE ANX_SOURCE_DIR "/data/golden/alexnet_in3_c5_b2_steps3.safetensors"

static int run(vref64 *r, const vgold *g, int flip)
{
    char err[512];
    vref64_flip_windows = flip;
    vref64_settle = flip ? VREF64_SETTLE_WRONG : VREF64_SETTLE_OFF;
    int rc = vref64_run(r, g, 0, err, sizeof err);
    vref64_flip_windows = 0, vref64_settle = VREF64_SETTLE_ON;
    TU_CHECKF(rc == 0, "vref64_run (flip %d): %s", flip, err);
    if (rc == 0)
        printf("vref64_run, flip %d: %.1f s, %d tensors, %d ambiguous gates/windows, %d settled (%d away from ours)\n", flip,
               r->seconds, r->count, r->ambiguous, r->settled, r->settled_moved);
    return rc;
}

/* Part 2: B's anchor rows of the tensor the settling of step 2 read must fail, the others under
 * Conv2d-4 of step 1 must pass (the planted routing is the only change there). */
static void wrong_settling_caught(const vref64 *b, vgold *g)
{
    TU_CHECKF(b->settled >= 1 && b->settled_moved == b->settled,
              "run B settled %d windows, %d of them away from ours: the planted wrong routing did not happen", b->settled,
              b->settled_moved);
    anx_verify_report rep = {0};
    char err[512];
    int rc = vref64_anchor(&rep, b, g, "Conv2d-4", err, sizeof err);
    TU_CHECKF(rc == 0, "anchor of run B: %s", err);
    int failed = 0;
    for (int i = 0; i < rep.count; i++) {
        const anx_verify_row *row = &rep.rows[i];
        if (strcmp(row->tensor, "step2.grad.conv.3.weight") == 0) {
            failed = row->verdict == ANX_FAILED;
            printf("wrongly settled: %s %s (%s)\n", row->tensor, anx_verdict_name(row->verdict), row->reason);
        }
        if (strncmp(row->tensor, "step1.", 6) == 0)
            TU_CHECKF(row->verdict == ANX_PASSED, "run B, %s: %s %s", row->tensor, anx_verdict_name(row->verdict), row->reason);
    }
    TU_CHECKF(failed, "a step-2 pool window settled the wrong way left step2.grad.conv.3.weight not FAILED");
    anx_verify_report_free(&rep);
}

/* max |a - b| over the tensor */
static double max_diff(const vref64_tensor *a, const vref64_tensor *b)
{
    double m = 0;
    for (size_t k = 0; k < a->count; k++) m = fmax(m, fabs(a->val[k] - b->val[k]));
    return m;
}

int main(void)
{
    vgold g;
    char err[512];
    memset(&g, 0, sizeof g);
    int rc = vgold_load(&g, FILE_THREE, err, sizeof err);
    TU_CHECKF(rc == 0, "load %s: %s", FILE_THREE, err);
    if (rc) return tu_finish("test_ref64_flip");
    vref64 a, b;
    if (run(&a, &g, 0) || run(&b, &g, 1)) return tu_finish("test_ref64_flip");
    TU_CHECKF(a.ambiguous > 0, "the three-step file has no ambiguous gate or window any more: this test needs one (%d)", a.ambiguous);
    TU_CHECKF(a.count == b.count, "%d tensors kept, %d with the flip", a.count, b.count);
    int changed = 0, changed_step2 = 0;
    printf("%-36s %12s %12s %10s\n", "tensor", "max |flip|", "bound D", "flip / D");
    for (int i = 0; i < a.count && i < b.count; i++) {
        const vref64_tensor *ta = &a.t[i], *tb = &b.t[i];
        TU_CHECKF(strcmp(ta->key, tb->key) == 0 && ta->count == tb->count, "tensor %d: %s vs %s", i, ta->key, tb->key);
        if (strcmp(ta->key, tb->key) || ta->count != tb->count) continue;
        double d = max_diff(ta, tb);
        changed += d > 0;
        changed_step2 += d > 0 && strncmp(ta->key, "step2.", 6) == 0;
        if (d > 0) printf("%-36s %12.3e %12.3e %10.3g\n", ta->key, d, ta->diff_max, d / ta->diff_max);
        TU_CHECKF(d <= ta->diff_max, "%s: routing the ambiguous windows' dy to the runner-up moves it by %.3g, "
                  "beyond its bound D = %.3g", ta->key, d, ta->diff_max);
    }
    TU_CHECKF(changed_step2 > 0, "the flip changed no step-2 tensor (%d changed in all): it proves nothing", changed);
    printf("%d of %d tensors changed by the flip, %d of them in step 2, all within their bounds\n", changed, a.count, changed_step2);
    wrong_settling_caught(&b, &g);
    vref64_free(&a), vref64_free(&b);
    vgold_free(&g);
    return tu_finish("test_ref64_flip");
}
