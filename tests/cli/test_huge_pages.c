/* test_huge_pages: `anx` executes itself once with GLIBC_TUNABLES=glibc.malloc.hugetlb=1
 * (app/main.c says why), and that really takes the page faults away without changing a result.
 *
 * One `anx step` on the fastest backend this CPU runs (the exec comes before any backend code),
 * Alexnet(3, 5) at batch 1, 1 thread, two steps (about 1 GB of fresh tensors),
 * run four ways from a clean environment, counting the child's minor page faults (getrusage of
 * the children: a count, not a time):
 *   default                          -> the exec happens: faults below a quarter of the next
 *   ANX_NO_HUGE_PAGES=1              -> no exec, 4 KiB pages
 *   GLIBC_TUNABLES=glibc.malloc.hugetlb=0  -> the user's setting is kept: 4 KiB pages again
 *   GLIBC_TUNABLES=glibc.malloc.check=0   -> another tunable of the user's: the exec appends
 * and both steps' losses are the same in all four.  Where the kernel has
 * transparent huge pages off ([never]), and in a sanitizer build (its allocator is not glibc's),
 * the fault counts cannot differ: skipped (77), saying so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anx/backend.h"
#include "spawn.h"
#include "testutil.h"

typedef struct {
    long minflt;
    int status;
    char *out;
} step_run;

static char dir[128];
static const anx_backend *fastest;

/* Runs `anx step ...` with exactly the environment env (NULL-terminated "K=V" list). */
static step_run run_step(const char *tag, char *const env[])
{
    step_run r = {.status = -1};
    char outpath[300];
    snprintf(outpath, sizeof outpath, "%s/%s.out", dir, tag);
    char *const argv[] = {"anx", "step", "--backend", (char *)fastest->name, "--classes", "5", "--batch", "1",
                          "--threads", "1", "--steps", "2", NULL};
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(outpath, "w", stdout)) _exit(126);
        execve(ANX_BINARY_DIR "/anx", argv, env);
        _exit(127);
    }
    /* RUSAGE_CHILDREN sums the waited-for children: the difference is this one's */
    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return r;
    getrusage(RUSAGE_CHILDREN, &after);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.minflt = after.ru_minflt - before.ru_minflt;
    size_t n = 0;
    r.out = tu_slurp(outpath, &n);
    printf("%-28s exit %d, %ld minor page faults\n", tag, r.status, r.minflt);
    return r;
}

static int thp_never(void)
{
    size_t n = 0;
    char *s = tu_slurp("/sys/kernel/mm/transparent_hugepage/enabled", &n);
    int never = !s || strstr(s, "[never]") != NULL;
    free(s);
    return never;
}

/* The losses of the "step N loss X time ..." lines, joined ("" when none). */
static void loss_of(const char *out, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    for (const char *p = out; p && (p = strstr(p, "\nstep ")) != NULL; p++) {
        const char *l = strstr(p, " loss ");
        if (!l || k + 1 >= cap) break;
        k += (size_t)snprintf(buf + k, cap - k, "%.*s ", (int)strcspn(l + 6, " \n"), l + 6);
        if (k >= cap) break;
    }
}

int main(void)
{
    if (tu_sanitized()) {
        printf("skipped: a sanitizer build's allocator is not glibc's malloc, so glibc.malloc.hugetlb does "
               "nothing there (the release build runs this test)\n");
        return 77;
    }
    if (thp_never()) {
        printf("skipped: transparent huge pages are off in this kernel "
               "(/sys/kernel/mm/transparent_hugepage/enabled is [never] or unreadable)\n");
        return 77;
    }
    tu_scratch_dir(dir, sizeof dir, "huge_pages");
    fastest = anx_backend_fastest();
    printf("backend: %s\n", fastest->name);
    char *const clean[] = {"PATH=/usr/bin:/bin", "OMP_WAIT_POLICY=passive", NULL};
    char *const off[] = {"PATH=/usr/bin:/bin", "OMP_WAIT_POLICY=passive", "ANX_NO_HUGE_PAGES=1", NULL};
    char *const user0[] = {"PATH=/usr/bin:/bin", "OMP_WAIT_POLICY=passive", "GLIBC_TUNABLES=glibc.malloc.hugetlb=0", NULL};
    char *const other[] = {"PATH=/usr/bin:/bin", "OMP_WAIT_POLICY=passive", "GLIBC_TUNABLES=glibc.malloc.check=0", NULL};
    step_run r[4] = {run_step("default", clean), run_step("ANX_NO_HUGE_PAGES=1", off),
                     run_step("glibc.malloc.hugetlb=0", user0), run_step("glibc.malloc.check=0", other)};
    for (int i = 0; i < 4; i++) TU_CHECKF(r[i].status == 0 && r[i].out, "run %d: exit %d", i, r[i].status);
    if (!tu_failed) {
        TU_CHECKF(4 * r[0].minflt < r[1].minflt, "default: %ld faults, not below a quarter of the %ld with "
                  "ANX_NO_HUGE_PAGES=1: the exec with glibc.malloc.hugetlb=1 did not happen or did nothing",
                  r[0].minflt, r[1].minflt);
        TU_CHECKF(4 * r[0].minflt < r[2].minflt, "glibc.malloc.hugetlb=0: %ld faults, not above 4x the default's "
                  "%ld: anx overrode the user's GLIBC_TUNABLES", r[2].minflt, r[0].minflt);
        TU_CHECKF(4 * r[3].minflt < r[1].minflt, "glibc.malloc.check=0: %ld faults, not below a quarter of %ld: "
                  "a user's other tunable stopped the exec", r[3].minflt, r[1].minflt);
        char l0[64], li[64];
        loss_of(r[0].out, l0, sizeof l0);
        TU_CHECKF(*l0, "default: no 'loss' in its output: %s", r[0].out);
        for (int i = 1; i < 4; i++) {
            loss_of(r[i].out, li, sizeof li);
            TU_CHECKF(strcmp(l0, li) == 0, "run %d: loss %s, the default run's %s", i, li, l0);
        }
    }
    for (int i = 0; i < 4; i++) free(r[i].out);
    tu_remove_tree(dir);
    return tu_finish("test_huge_pages");
}
