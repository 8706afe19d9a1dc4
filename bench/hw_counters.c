/* Hardware counters per benchmark through perf_event_open(2): one group of events per OpenMP
 * thread, opened on that thread (so the pool the layers run on is counted, not only the main
 * thread), enabled around the timing loop and summed. */
#define _GNU_SOURCE /* syscall */
#include "hw_counters.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const struct {
    const char *name;
    unsigned type;
    unsigned long long config;
} events[] = {
#define X(name, type, config) {#name, type, config},
    ANX_HW_EVENTS(X)
#undef X
};
enum { NEV = sizeof events / sizeof events[0] };

static const char *errno_name(int e)
{
    switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    default: return "errno";
    }
}

/* One event on the calling thread, any CPU, user space only; -1 with errno on failure. */
static int open_event(int e, int group)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = events[e].type;
    a.config = events[e].config;
    a.disabled = group < 0; /* the leader starts disabled; members follow it */
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, group, 0);
}

static char g_status[192];

const char *anx_hw_counters_status(void)
{
    if (g_status[0]) return g_status;
    const char *env = getenv("ANX_BENCH_HW_COUNTERS");
    if (env && strcmp(env, "off") == 0) {
        snprintf(g_status, sizeof g_status, "skipped: ANX_BENCH_HW_COUNTERS=off");
        return g_status;
    }
    for (int e = 0; e < NEV; e++) {
        int fd = open_event(e, -1);
        if (fd < 0) {
            int err = errno;
            snprintf(g_status, sizeof g_status, "skipped: perf_event_open(%s): %s (%s)", events[e].name,
                     errno_name(err), strerror(err));
            return g_status;
        }
        close(fd);
    }
    snprintf(g_status, sizeof g_status, "cycles instructions cache_misses per iteration, summed over the threads");
    return g_status;
}

static void close_all(anx_hw_counters *hw)
{
    for (int t = 0; t < hw->nthreads; t++)
        for (int e = 0; e < NEV; e++)
            if (hw->fd[t][e] >= 0) close(hw->fd[t][e]);
    hw->nthreads = 0;
}

int anx_hw_start(anx_hw_counters *hw, int threads)
{
    hw->nthreads = 0;
    if (strncmp(anx_hw_counters_status(), "skipped", 7) == 0) return -1;
    if (threads > ANX_HW_MAX_THREADS) threads = ANX_HW_MAX_THREADS;
    for (int t = 0; t < threads; t++)
        for (int e = 0; e < NEV; e++) hw->fd[t][e] = -1;
    hw->nthreads = threads;
    int bad = 0;
#pragma omp parallel num_threads(threads) reduction(+ : bad)
    {
        int t = omp_get_thread_num();
        for (int e = 0; e < NEV; e++) {
            hw->fd[t][e] = open_event(e, e ? hw->fd[t][0] : -1);
            bad += hw->fd[t][e] < 0;
        }
        if (hw->fd[t][0] >= 0) ioctl(hw->fd[t][0], PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP);
    }
    if (bad) {
        close_all(hw);
        return -1;
    }
    return 0;
}

void anx_hw_stop(anx_hw_counters *hw, anx_gb_state *st, int64_t iterations)
{
    if (hw->nthreads == 0) return;
    double sum[NEV] = {0};
    for (int t = 0; t < hw->nthreads; t++) {
        ioctl(hw->fd[t][0], PERF_EVENT_IOC_DISABLE, PERF_IOC_FLAG_GROUP);
        for (int e = 0; e < NEV; e++) {
            unsigned long long v = 0;
            if (read(hw->fd[t][e], &v, sizeof v) == (ssize_t)sizeof v) sum[e] += (double)v;
        }
    }
    close_all(hw);
    if (iterations < 1) return;
    char name[64];
    for (int e = 0; e < NEV; e++) {
        snprintf(name, sizeof name, "%s/iter", events[e].name);
        anx_gb_counter(st, name, sum[e] / (double)iterations, ANX_GB_PLAIN);
    }
    if (sum[0] > 0) anx_gb_counter(st, "IPC", sum[1] / sum[0], ANX_GB_PLAIN);
}
