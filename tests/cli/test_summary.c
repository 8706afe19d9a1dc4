/* test_summary: `anx summary` prints torchsummary's table byte for byte.
 *
 * Alexnet(3, 1000) at 227, batch 1: the rows, totals and sizes are those the tutorial printed
 * with torchsummary (0.59 / 11.05 / 237.95 / 249.59 MB); the padding is that of torchsummary's
 * "{:>20}  {:>25} {:>15}" row format and its 64-character rules.
 *
 * Alexnet(1, 10) at 228, batch 4, derived by hand:
 *   Conv2d-1: floor((228 - 11) / 4) + 1 = 55, so every later shape is that of 227;
 *   params: conv.0 96*1*11*11 + 96 = 11,712; fc.6 4096*10 + 10 = 40,970; the rest as for
 *   (3, 1000): total 62,378,344 - 34,944 + 11,712 - 4,097,000 + 40,970 = 58,299,082.
 *   Input MB = 1*228*228 * 4 (batch) * 4 B / 2^20 = 831,744 / 1,048,576 = 0.7932 -> 0.79
 *   outputs per image: 1,448,200 for (3,1000) (sum of the 20 rows) - 1000 + 10 = 1,447,210;
 *   x4 (batch) = 5,788,840; Fwd/bwd MB = 2 * 5,788,840 * 4 / 2^20 = 44.1653 -> 44.17
 *   Params MB: torchsummary computes it on an int64 torch tensor times 4., i.e. in float32:
 *   58,299,082 is a tie between the float32 neighbours 58,299,080 and 58,299,084 (spacing 4
 *   above 2^25) and rounds to even, 58,299,080; * 4 / 2^20 = 222.3933 -> 222.39
 *   Total = 222.3933 + 44.1653 + 0.7932 = 267.3519 -> 267.35
 */
#include <stdio.h>
#include <string.h>

#include "spawn.h"
#include "testutil.h"

#define RULE "----------------------------------------------------------------\n"
#define DRULE "================================================================\n"
#define HEAD "        Layer (type)               Output Shape         Param #\n"

static const char *const want_3_1000 =
    RULE HEAD DRULE
    "            Conv2d-1            [1, 96, 55, 55]          34,944\n"
    "              ReLU-2            [1, 96, 55, 55]               0\n"
    "         MaxPool2d-3            [1, 96, 27, 27]               0\n"
    "            Conv2d-4           [1, 256, 27, 27]         614,656\n"
    "              ReLU-5           [1, 256, 27, 27]               0\n"
    "         MaxPool2d-6           [1, 256, 13, 13]               0\n"
    "            Conv2d-7           [1, 384, 13, 13]         885,120\n"
    "              ReLU-8           [1, 384, 13, 13]               0\n"
    "            Conv2d-9           [1, 384, 13, 13]       1,327,488\n"
    "             ReLU-10           [1, 384, 13, 13]               0\n"
    "           Conv2d-11           [1, 256, 13, 13]         884,992\n"
    "             ReLU-12           [1, 256, 13, 13]               0\n"
    "        MaxPool2d-13             [1, 256, 6, 6]               0\n"
    "           Linear-14                  [1, 4096]      37,752,832\n"
    "             ReLU-15                  [1, 4096]               0\n"
    "          Dropout-16                  [1, 4096]               0\n"
    "           Linear-17                  [1, 4096]      16,781,312\n"
    "             ReLU-18                  [1, 4096]               0\n"
    "          Dropout-19                  [1, 4096]               0\n"
    "           Linear-20                  [1, 1000]       4,097,000\n"
    DRULE
    "Total params: 62,378,344\n"
    "Trainable params: 62,378,344\n"
    "Non-trainable params: 0\n"
    RULE
    "Input size (MB): 0.59\n"
    "Forward/backward pass size (MB): 11.05\n"
    "Params size (MB): 237.95\n"
    "Estimated Total Size (MB): 249.59\n"
    RULE
    "\n";

static const char *const want_1_10_228_b4 =
    RULE HEAD DRULE
    "            Conv2d-1            [4, 96, 55, 55]          11,712\n"
    "              ReLU-2            [4, 96, 55, 55]               0\n"
    "         MaxPool2d-3            [4, 96, 27, 27]               0\n"
    "            Conv2d-4           [4, 256, 27, 27]         614,656\n"
    "              ReLU-5           [4, 256, 27, 27]               0\n"
    "         MaxPool2d-6           [4, 256, 13, 13]               0\n"
    "            Conv2d-7           [4, 384, 13, 13]         885,120\n"
    "              ReLU-8           [4, 384, 13, 13]               0\n"
    "            Conv2d-9           [4, 384, 13, 13]       1,327,488\n"
    "             ReLU-10           [4, 384, 13, 13]               0\n"
    "           Conv2d-11           [4, 256, 13, 13]         884,992\n"
    "             ReLU-12           [4, 256, 13, 13]               0\n"
    "        MaxPool2d-13             [4, 256, 6, 6]               0\n"
    "           Linear-14                  [4, 4096]      37,752,832\n"
    "             ReLU-15                  [4, 4096]               0\n"
    "          Dropout-16                  [4, 4096]               0\n"
    "           Linear-17                  [4, 4096]      16,781,312\n"
    "             ReLU-18                  [4, 4096]               0\n"
    "          Dropout-19                  [4, 4096]               0\n"
    "           Linear-20                    [4, 10]          40,970\n"
    DRULE
    "Total params: 58,299,082\n"
    "Trainable params: 58,299,082\n"
    "Non-trainable params: 0\n"
    RULE
    "Input size (MB): 0.79\n"
    "Forward/backward pass size (MB): 44.17\n"
    "Params size (MB): 222.39\n"
    "Estimated Total Size (MB): 267.35\n"
    RULE
    "\n";

/* The first line where got and want differ, for the failure message. */
static void show_diff(const char *got, const char *want)
{
    int line = 1;
    const char *g = got, *w = want, *gl = got, *wl = want;
    while (*g && *g == *w) {
        if (*g == '\n') line++, gl = g + 1, wl = w + 1;
        g++, w++;
    }
    g = gl, w = wl; /* whole lines */
    const char *ge = strchr(g, '\n'), *we = strchr(w, '\n');
    fprintf(stderr, "  first difference on line %d:\n  got:  '%.*s'\n  want: '%.*s'\n", line,
            ge ? (int)(ge - g) : (int)strlen(g), g, we ? (int)(we - w) : (int)strlen(w), w);
}

static void expect_table(const char *const *args, const char *want, const char *what)
{
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, args);
    TU_CHECKF(r.status == 0, "%s: exit %d, stderr: %s", what, r.status, r.err);
    TU_CHECKF(r.err[0] == '\0', "%s: stderr not empty: %s", what, r.err);
    int same = strcmp(r.out, want) == 0;
    TU_CHECKF(same, "%s: table differs from torchsummary's", what);
    if (!same) show_diff(r.out, want);
    tu_run_free(&r);
}

static void expect_refused(const char *const *args, const char *must1, const char *must2, const char *what)
{
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, args);
    TU_CHECKF(r.status == 2, "%s: exit %d, want 2", what, r.status);
    TU_CHECKF(r.err_lines == 1 && strstr(r.err, must1) && strstr(r.err, must2),
              "%s: stderr must be one line naming '%s' and '%s', got: %s", what, must1, must2, r.err);
    TU_CHECKF(r.out[0] == '\0', "%s: printed a table anyway", what);
    tu_run_free(&r);
}

int main(void)
{
    expect_table((const char *[]){"summary", NULL}, want_3_1000, "default Alexnet(3,1000)");
    expect_table((const char *[]){"summary", "--in-dim", "3", "--classes", "1000", "--input", "227", "--batch",
                                  "1", NULL},
                 want_3_1000, "explicit Alexnet(3,1000)");
    expect_table((const char *[]){"summary", "--in-dim", "1", "--classes", "10", "--input", "228", "--batch",
                                  "4", NULL},
                 want_1_10_228_b4, "Alexnet(1,10) at 228, batch 4");
    /* an input whose conv stack does not end at 256x6x6: the model's one-line error */
    expect_refused((const char *[]){"summary", "--input", "100", NULL}, "Linear-14", "100", "input 100");
    expect_refused((const char *[]){"summary", "--input", "30", NULL}, "MaxPool2d", "30", "input 30");
    expect_refused((const char *[]){"summary", "--classes", "ten", NULL}, "--classes", "ten", "bad number");
    expect_refused((const char *[]){"summary", "--batch", "0", NULL}, "--batch", "0", "batch 0");
    expect_refused((const char *[]){"summary", "--bogus", NULL}, "--bogus", "unknown", "unknown flag");
    return tu_finish("test_summary");
}
