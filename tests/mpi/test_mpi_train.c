/* mpirun -np N anx train (argv[1] is the anx binary): the trainer's data parallelism.
 *  1. sharding, masks, the short last batch and validation equal one process: on 5 pictures at
 *     --batch 4 (batches 4 and 1; at np 2 the second gives rank 1 nothing, so it exchanges zeros)
 *     with --lr 1e-30, Adam moves no parameter (p - 1e-30 == p in float for every |p| > 1e-22),
 *     so every batch is a pure forward/backward of the initial model.  On ref each sample is
 *     computed alone, so the epoch's train accuracy and val accuracy must be equal exactly and
 *     the train loss within the rounding of its sums (mean of <= 4 losses per rank, then sums of
 *     <= 5 in double: |d| <= (2 gamma_4 + 3u) * loss).  A rank reading the wrong slice, or
 *     drawing masks at the wrong positions, changes the loss by far more (~1e-3).
 *  2. --resume with another N: the np 2 checkpoint continues under one process to epoch 2.
 *  3. a rank that fails alone (an unreadable picture in rank 1's slice) ends every rank within
 *     the timeout, exit non-zero, one line from anx naming rank 1 and the file, no checkpoint.
 *  4. --batch 3 at np 2 is refused with one line, exit 2.
 * Skipped (77) without mpirun or in a build without MPI. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "anx/backend.h"
#include "anx/data.h"
#include "anx/dist.h"
#include "anx/safetensors.h"
#include "mpi_test.h"
#include "testutil.h"

static const char *anx;
static char dir[256];
static const double U = 1.0 / 16777216.0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(const char *prefix, const char *args, char *out, size_t cap)
{
    char cmd[2048], path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    snprintf(cmd, sizeof cmd, "%s '%s' %s > '%s' 2>&1", prefix, anx, args, path);
    printf("$ %s anx %s\n", prefix, args);
    fflush(stdout);
    int st = system(cmd);
    out[0] = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t n = fread(out, 1, cap - 1, f);
        out[n] = 0;
        fclose(f);
    }
    printf("%s", out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static cJSON *metrics_epoch(const char *path, int epoch)
{
    FILE *f = fopen(path, "rb");
    char line[4096];
    cJSON *found = NULL;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line), *e = cJSON_GetObjectItem(o, "epoch");
        if (cJSON_IsNumber(e) && e->valueint == epoch) {
            cJSON_Delete(found);
            found = o;
        } else {
            cJSON_Delete(o);
        }
    }
    if (f) fclose(f);
    return found;
}

static double num(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItem(o, k);
    TU_CHECKF(cJSON_IsNumber(v), "metrics: no number %s", k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *MPI2 = "timeout 600 mpirun -np 2 --mca btl self,vader";

static void check_equal_and_resume(void)
{
    char args[2048], out[65536], m1[300], m2[300], ck[300];
    snprintf(args, sizeof args, "flowers --out %s/five --per-class 1 --val 1 --seed 5", dir);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    snprintf(m1, sizeof m1, "%s/one.jsonl", dir);
    snprintf(m2, sizeof m2, "%s/two.jsonl", dir);
    snprintf(ck, sizeof ck, "%s/two.safetensors", dir);
    const char *common = "--batch 4 --seed 9 --lr 1e-30 --threads 1";
    snprintf(args, sizeof args, "train --data %s/five --backend %s %s --epochs 1 --metrics %s", dir, TU_REF, common, m1);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "train --data %s/five --backend %s %s --epochs 1 --metrics %s --checkpoint %s", dir,
             TU_REF, common, m2, ck);
    TU_CHECK(run(MPI2, args, out, sizeof out) == 0);
    TU_CHECKF(strstr(out, "2 ranks, allreduce overlapped"), "the epoch line does not report the exchange");
    cJSON *a = metrics_epoch(m1, 1), *b = metrics_epoch(m2, 1);
    TU_CHECKF(a && b, "metrics of epoch 1 missing");
    if (a && b) {
        const double l1 = num(a, "train_loss"), l2 = num(b, "train_loss"), bound = (2 * 4 * U / (1 - 4 * U) + 3 * U) * l1;
        /* the metrics print 6 decimals: their rounding (5e-7) is part of what two runs may differ by */
        TU_CHECKF(fabs(l1 - l2) <= bound + 1e-6, "train loss %.6f at np 2, %.6f alone (bound %.2g)", l2, l1, bound + 1e-6);
        TU_CHECKF(num(a, "train_acc") == num(b, "train_acc"), "train acc differs");
        TU_CHECKF(num(a, "val_acc") == num(b, "val_acc"), "val acc differs");
        TU_CHECKF(num(a, "step") == 2 && num(b, "step") == 2, "steps %g and %g, want 2", num(a, "step"), num(b, "step"));
        TU_CHECKF(num(b, "ranks") == 2 && num(a, "ranks") == 1, "ranks in the metrics");
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    /* the np 2 checkpoint, continued by one process */
    /* on the default backend: the checkpoint is the model's, not the backend's (and ref is slow) */
    snprintf(args, sizeof args, "train --data %s/five %s --epochs 2 --resume %s --metrics %s", dir, common, ck, m2);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    cJSON *c = metrics_epoch(m2, 2);
    TU_CHECKF(c && num(c, "step") == 4 && num(c, "ranks") == 1, "epoch 2 after --resume at np 1 missing or wrong");
    cJSON_Delete(c);
}

static void check_failure(void)
{
    char args[2048], out[65536], ck[300], train[300], err[256];
    snprintf(args, sizeof args, "flowers --out %s/bad --per-class 2 --val 1 --seed 6", dir);
    TU_CHECK(run("", args, out, sizeof out) == 0);
    /* rank 1's first picture: position 2 of epoch 0's order (batch 4 split 2 + 2) */
    anx_dataset d;
    snprintf(train, sizeof train, "%s/bad/train", dir);
    if (anx_dataset_open(&d, train, err, sizeof err)) {
        TU_CHECKF(0, "%s", err);
        return;
    }
    int order[64];
    anx_loader_order(order, d.n, 1, 3, 0);
    char victim[1024];
    snprintf(victim, sizeof victim, "%s", d.paths[order[2]]);
    anx_dataset_free(&d);
    FILE *f = fopen(victim, "wb");
    if (f) fputs("\x89PNG truncated", f), fclose(f);
    snprintf(ck, sizeof ck, "%s/bad.safetensors", dir);
    snprintf(args, sizeof args, "train --data %s/bad --batch 4 --seed 3 --threads 1 --epochs 2 --checkpoint %s", dir, ck);
    double t0 = now();
    int rc = run("timeout 120 mpirun -np 2 --mca btl self,vader", args, out, sizeof out);
    double secs = now() - t0;
    TU_CHECKF(rc != 0 && rc != 124, "mpirun exited %d (124: not ended by the failing rank within 120 s)", rc);
    printf("all ranks ended %.1f s after the start\n", secs);
    int lines = 0;
    for (const char *p = out; (p = strstr(p, "anx train:")); p++) lines++;
    TU_CHECKF(lines == 1, "%d lines from anx train, want the failing rank's one", lines);
    TU_CHECKF(strstr(out, "anx train: rank 1 of 2:") && strstr(out, victim), "the line names neither rank 1 nor %s",
              victim);
    struct stat st;
    TU_CHECKF(stat(ck, &st) != 0, "a checkpoint %s was written", ck);
    /* nothing of a temporary checkpoint either */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'bad.safetensors'", dir);
    TU_CHECKF(system(cmd) != 0, "a partial checkpoint was left in %s", dir);
    /* an indivisible global batch */
    snprintf(args, sizeof args, "train --data %s/bad --batch 3 --epochs 1", dir);
    rc = run(MPI2, args, out, sizeof out);
    TU_CHECKF(rc == 2 && strstr(out, "--batch 3 does not divide by the 2 ranks"), "--batch 3 at np 2: exit %d", rc);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_mpi_train path/to/anx\n");
        return 2;
    }
    anx = argv[1];
    const int skip = mpi_test_prepare("test_mpi_train", dir, sizeof dir);
    if (skip) return skip;
    const char *only = getenv("ANX_TEST_MPI_ONLY"); /* equal | failure */
    if (tu_sanitized())
        printf("equality and resume: skipped under the sanitizers (ref trains ~8x slower; the release build runs it)\n");
    else if (!only || !strcmp(only, "equal"))
        check_equal_and_resume();
    if (!only || !strcmp(only, "failure")) check_failure();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (tu_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_mpi_train");
}
