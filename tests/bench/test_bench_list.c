/* anx-bench --benchmark_list_tests lists every row of issue 6 for every compiled backend, once:
 * layer x direction x backend x batch (conv1..conv5, fc6..fc8, every ReLU, MaxPool and Dropout,
 * the loss), the whole step per backend and batch, Adam per backend, and the two probes; and
 * for a backend with library_exec[op][dir], the same row as <backend>_bare (the library's call
 * alone).  The
 * expected names come from the table below, not from the model code they check.
 * Google Benchmark 1.7.1 appends "/real_time" to the name of every benchmark timed on the wall
 * clock (all of them here), so conv2d_fwd/conv2/avx2/batch:32 is listed with that suffix.
 * Also: bad flags are refused with exit 2 and one line on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "bench_run.h"
#include "testutil.h"

/* op name, tag, number of directions (3: fwd, bwd_data, bwd_weights; 2: fwd, bwd_data) */
static const struct {
    const char *op, *tag;
    int ndir;
} kRows[] = {
    {"conv2d", "conv1", 3},  {"relu", "relu1", 2},    {"maxpool", "pool1", 2}, {"conv2d", "conv2", 3},
    {"relu", "relu2", 2},    {"maxpool", "pool2", 2}, {"conv2d", "conv3", 3},  {"relu", "relu3", 2},
    {"conv2d", "conv4", 3},  {"relu", "relu4", 2},    {"conv2d", "conv5", 3},  {"relu", "relu5", 2},
    {"maxpool", "pool3", 2}, {"linear", "fc6", 3},    {"relu", "relu6", 2},    {"dropout", "drop6", 2},
    {"linear", "fc7", 3},    {"relu", "relu7", 2},    {"dropout", "drop7", 2}, {"linear", "fc8", 3},
    {"loss", "loss", 2},
};
static const char *const kDirs[] = {"fwd", "bwd_data", "bwd_weights"};

/* The op whose anx_op_name is name (the table above names them as the benchmarks do). */
static anx_op op_of(const char *name)
{
    for (int o = 0; o < ANX_OP_COUNT; o++)
        if (strcmp(anx_op_name((anx_op)o), name) == 0) return (anx_op)o;
    TU_CHECKF(0, "no op is named %s", name);
    return (anx_op)0;
}

/* Occurrences of the whole line `name` in the listing. */
static int count_line(const char *listing, const char *name)
{
    int n = 0;
    size_t len = strlen(name);
    for (const char *p = listing; (p = strstr(p, name)); p += len)
        if ((p == listing || p[-1] == '\n') && (p[len] == '\n' || p[len] == '\0')) n++;
    return n;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int expect_once(const char *listing, const char *name)
{
    int n = count_line(listing, name);
    TU_CHECKF(n == 1, "'%s' listed %d times, want once", name, n);
    return 1;
}

static void check_listing(void)
{
    const int fast[] = {2, 32}, ref[] = {2};
    int status;
    char *out = tb_run(TB_BENCH " --batches=2,32 --ref_batches=2 --threads=1 --benchmark_list_tests", &status);
    TU_CHECKF(out && status == 0, "anx-bench --benchmark_list_tests: status %d", status);
    if (!out) return;
    int expected = 0;
    char name[128];
    for (const anx_backend *const *pb = anx_backends(); *pb; pb++) {
        const char *be = (*pb)->name;
        int is_ref = (*pb)->is_reference;
        const int *batches = is_ref ? ref : fast;
        int nb = is_ref ? 1 : 2;
        for (int b = 0; b < nb; b++) {
            for (size_t r = 0; r < sizeof kRows / sizeof kRows[0]; r++)
                for (int d = 0; d < kRows[r].ndir; d++) {
                    snprintf(name, sizeof name, "%s_%s/%s/%s/batch:%d/real_time", kRows[r].op, kDirs[d], kRows[r].tag,
                             be, batches[b]);
                    expected += expect_once(out, name);
                    if (!(*pb)->library_exec[op_of(kRows[r].op)][d]) continue;
                    snprintf(name, sizeof name, "%s_%s/%s/%s_bare/batch:%d/real_time", kRows[r].op, kDirs[d],
                             kRows[r].tag, be, batches[b]);
                    expected += expect_once(out, name);
                }
            snprintf(name, sizeof name, "step/%s/batch:%d/real_time", be, batches[b]);
            expected += expect_once(out, name);
        }
        snprintf(name, sizeof name, "adam/%s/real_time", be);
        expected += expect_once(out, name);
    }
    expected += expect_once(out, "fma_peak/avx2/threads:1/real_time");   /* ISA name */
    expected += expect_once(out, "fma_peak/avx512/threads:1/real_time"); /* ISA name */
    expected += expect_once(out, "triad/threads:1/real_time");
    int lines = count_lines(out);
    TU_CHECKF(lines == expected, "listing has %d lines, want exactly the %d expected names", lines, expected);
    printf("listing: %d benchmarks for", lines);
    for (const anx_backend *const *pb = anx_backends(); *pb; pb++) printf(" %s", (*pb)->name);
    printf("\n");
    free(out);

    /* --backends narrows the registration to the reference; the env sets batches when no flag does */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ANX_BENCH_BATCHES=4 " TB_BENCH " --backends=%s --ref_batches=3 --benchmark_list_tests",
             TU_REF);
    out = tb_run(cmd, &status);
    TU_CHECKF(out && status == 0, "--backends=%s listing: status %d", TU_REF, status);
    if (out) {
        snprintf(name, sizeof name, "conv2d_bwd_weights/conv5/%s/batch:3/real_time", TU_REF);
        TU_CHECK(count_line(out, name) == 1);
        snprintf(name, sizeof name, "step/%s/batch:3/real_time", TU_REF);
        TU_CHECK(count_line(out, name) == 1);
        for (const anx_backend *const *pb = anx_backends(); *pb; pb++) {
            if ((*pb)->is_reference) continue;
            char batch_tag[64], adam_tag[64];
            snprintf(batch_tag, sizeof batch_tag, "/%s/batch:", (*pb)->name);
            snprintf(adam_tag, sizeof adam_tag, "adam/%s/", (*pb)->name);
            TU_CHECKF(!strstr(out, batch_tag) && !strstr(out, adam_tag), "--backends=%s still lists %s", TU_REF,
                      (*pb)->name);
        }
        TU_CHECKF(!strstr(out, "batch:2/"), "--backends=%s still lists the default batch", TU_REF);
    }
    free(out);
    /* without flags, ANX_BENCH_BATCHES sets the batches of every other backend */
    out = tb_run("ANX_BENCH_BATCHES=4 " TB_BENCH " --benchmark_list_tests", &status);
    for (const anx_backend *const *pb = anx_backends(); out && *pb; pb++) {
        if ((*pb)->is_reference) continue;
        snprintf(name, sizeof name, "linear_fwd/fc6/%s/batch:4/real_time", (*pb)->name);
        TU_CHECKF(count_line(out, name) == 1, "ANX_BENCH_BATCHES=4: no %s", name);
    }
    free(out);
}

/* Bad input: exit 2, one line on stderr naming the culprit. */
static void check_refusal(const char *env, const char *args, const char *culprit)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s " TB_BENCH " %s --benchmark_list_tests 2>&1 >/dev/null", env, args);
    int status;
    char *err = tb_run(cmd, &status);
    TU_CHECKF(status == 2, "'%s': exit status %d, want 2", args, status);
    TU_CHECKF(err && count_lines(err) == 1 && strstr(err, culprit), "'%s': stderr '%s' should be one line naming %s",
              args, err ? err : "(none)", culprit);
    free(err);
}

int main(void)
{
    check_listing();
    check_refusal("", "--batches=0", "--batches");
    check_refusal("", "--batches=2,x", "--batches");
    check_refusal("", "--ref_batches=", "--ref_batches");
    check_refusal("", "--threads=zero", "--threads");
    check_refusal("", "--backends=cuda", "--backends");
    check_refusal("", "--no_such_flag", "--no_such_flag");
    check_refusal("ANX_BENCH_THREADS=abc", "", "ANX_BENCH_THREADS");
    check_refusal("ANX_BENCH_BATCHES=0", "", "ANX_BENCH_BATCHES");
    check_refusal("ANX_BENCH_BACKENDS=cuda", "", "ANX_BENCH_BACKENDS");
    return tu_finish("test_bench_list");
}
