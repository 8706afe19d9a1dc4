/* anx-bench: Google Benchmark over every compiled backend — each layer and direction, the whole
 * training step, Adam alone, and the machine's FMA peak and triad bandwidth they are measured
 * against.  Every Google Benchmark flag works (--benchmark_filter, --benchmark_repetitions,
 * --benchmark_out, ...); anx's own flags come first and are taken out before it sees argv. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anx/dist.h"
#include "bench.h"
#include "fingerprint.h"

static const char kUsage[] =
    "usage: anx-bench [--batches=LIST] [--ref_batches=LIST] [--threads=N] [--backends=LIST]\n"
    "                 [Google Benchmark flags: --benchmark_filter=RE --benchmark_repetitions=N\n"
    "                  --benchmark_min_time=SECONDS --benchmark_out=FILE --benchmark_list_tests ...]\n"
    "  --batches=LIST      batches of every backend but the reference, comma separated (default 2,32;\n"
    "                      env ANX_BENCH_BATCHES)\n"
    "  --ref_batches=LIST  batches of the reference backend (default 2; env ANX_BENCH_REF_BATCHES)\n"
    "  --threads=N         threads of every backend and probe (default: all cores; env ANX_BENCH_THREADS)\n"
    "  --backends=LIST     backends to register (default: all compiled; env ANX_BENCH_BACKENDS)\n"
    "Under mpirun -np N (docs/mpi.md) every rank runs the same benchmarks and rank 0 reports: the\n"
    "allreduce/* rows and dist_step/* at --batches images per rank need it (--benchmark_filter='allreduce|dist_step').\n";

/* "2,32" -> {2, 32}.  Returns 0, or 2 after one line on stderr naming the flag. */
static int parse_batches(const char *flag, const char *s, int *out, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > 4096 || (*end && *end != ',')) {
            fprintf(stderr, "anx-bench: %s: '%s' is not a comma list of batch sizes 1..4096\n", flag, s);
            return 2;
        }
        if (*n == ANX_BENCH_MAX_BATCHES) {
            fprintf(stderr, "anx-bench: %s: at most %d batch sizes\n", flag, ANX_BENCH_MAX_BATCHES);
            return 2;
        }
        out[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) {
        fprintf(stderr, "anx-bench: %s: empty batch list\n", flag);
        return 2;
    }
    return 0;
}

static int parse_threads(const char *flag, const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 1 || v > 1024) {
        fprintf(stderr, "anx-bench: %s: '%s' is not a thread count 1..1024\n", flag, s);
        return 2;
    }
    *out = (int)v;
    return 0;
}

static int check_backends(const char *flag, const char *list)
{
    anx_bench_config probe = {.backends = list};
    int any = 0;
    for (const anx_backend *const *b = anx_backends(); *b; b++) any |= anx_bench_backend_selected(&probe, *b);
    if (!any) fprintf(stderr, "anx-bench: %s: '%s' names no compiled backend\n", flag, list);
    return any ? 0 : 2;
}

/* The value of --name=VALUE in arg, or NULL when arg is not that flag. */
static const char *flag_value(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

/* A setting and where it came from (the flag or the environment variable), for error lines. */
typedef struct setting {
    const char *value, *from;
} setting;

static void from_env(setting *s, const char *var)
{
    const char *e = getenv(var);
    if (e && *e) s->value = e, s->from = var;
}

/* Reads the env, then anx's flags (which win), removing the flags from argv. */
static int configure(anx_bench_config *cfg, int *argc, char **argv)
{
    setting batches = {"2,32", "--batches"}, ref_batches = {"2", "--ref_batches"};
    setting threads = {NULL, "--threads"}, backends = {NULL, "--backends"};
    from_env(&batches, "ANX_BENCH_BATCHES");
    from_env(&ref_batches, "ANX_BENCH_REF_BATCHES");
    from_env(&threads, "ANX_BENCH_THREADS");
    from_env(&backends, "ANX_BENCH_BACKENDS");
    setting *flags[] = {&batches, &ref_batches, &threads, &backends};
    const char *names[] = {"--batches", "--ref_batches", "--threads", "--backends"};
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *v = NULL;
        for (int f = 0; f < 4 && !v; f++)
            if ((v = flag_value(argv[i], names[f]))) *flags[f] = (setting){v, names[f]};
        if (v) continue;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) fputs(kUsage, stdout);
        argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = ncpu > 0 ? (int)ncpu : 1;
    cfg->backends = backends.value;
    if (parse_batches(batches.from, batches.value, cfg->batches, &cfg->nbatches)) return 2;
    if (parse_batches(ref_batches.from, ref_batches.value, cfg->ref_batches, &cfg->nref_batches)) return 2;
    if (threads.value && parse_threads(threads.from, threads.value, &cfg->threads)) return 2;
    if (backends.value && check_backends(backends.from, backends.value)) return 2;
    return 0;
}

static void list_to(char *dst, size_t cap, const int *v, int n)
{
    size_t len = 0;
    dst[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) len += (size_t)snprintf(dst + len, cap - len, i ? ",%d" : "%d", v[i]);
}

/* The run's configuration and the measured ceilings, in the context of every report. */
static void add_context(const anx_bench_config *cfg, const anx_machine *m)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%d", cfg->threads);
    anx_gb_add_context("anx_threads", buf);
    list_to(buf, sizeof buf, cfg->batches, cfg->nbatches);
    anx_gb_add_context("anx_batches", buf);
    list_to(buf, sizeof buf, cfg->ref_batches, cfg->nref_batches);
    anx_gb_add_context("anx_ref_batches", buf);
    size_t len = 0;
    buf[0] = '\0';
    for (const anx_backend *const *b = anx_backends(); *b && len < sizeof buf; b++) {
        if (!anx_bench_backend_selected(cfg, *b)) continue;
        const char *why = (*b)->unavailable ? (*b)->unavailable() : NULL;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s%s%s", len ? " " : "", (*b)->name,
                                why ? "(unavailable: " : "", why ? why : "");
        if (why && len < sizeof buf) len += (size_t)snprintf(buf + len, sizeof buf - len, ")");
    }
    anx_gb_add_context("anx_backends", buf);
    for (int i = 0; i < ANX_ISA_COUNT; i++) {
        char key[64];
        snprintf(key, sizeof key, "anx_fma_peak_%s_gflops", anx_isa_name((anx_isa)i));
        if (m->has[i])
            snprintf(buf, sizeof buf, "%.1f (%d threads), %.1f (1 thread)", m->fma_flops[i] * 1e-9, m->threads,
                     m->fma_flops_1t[i] * 1e-9);
        else
            snprintf(buf, sizeof buf, "none (CPU lacks %s)", anx_isa_name((anx_isa)i));
        anx_gb_add_context(key, buf);
    }
    snprintf(buf, sizeof buf, "%.2f (%d threads)", m->triad_bytes * 1e-9, m->threads);
    anx_gb_add_context("anx_triad_gbytes_per_s", buf);
    anx_bench_add_fingerprint(cfg->threads); /* machine, build, libraries, commit: fingerprint.c */
}

int main(int argc, char **argv)
{
    anx_bench_config cfg;
    if (configure(&cfg, &argc, argv)) return 2;
    char err[256];
    if (anx_dist_init(err, sizeof err)) { /* under mpirun: the allreduce and dist_step rows (bench_dist.c) */
        fprintf(stderr, "anx-bench: %s\n", err);
        return 2;
    }
    if (anx_dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return 2; /* rank 0 reports */
    if (anx_gb_initialize(&argc, argv, "anx-bench")) return 2;
    anx_bench_register_peak(&cfg);
    anx_bench_register_layers(&cfg);
    anx_bench_register_step(&cfg);
    anx_bench_register_dist(&cfg);
    if (!anx_gb_listing_only()) add_context(&cfg, anx_machine_measure(cfg.threads));
    anx_gb_run_specified();
    anx_bench_cache_release_all();
    anx_gb_shutdown();
    anx_dist_finalize();
    return 0;
}
