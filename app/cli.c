#include "cli.h"

#include "anx/dist.h"
#include "anx/net.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The line is built whole and written with one fputs: stderr is unbuffered, so each piece would
 * be a write of its own, and under mpirun another rank's output landed between "anx train: " and
 * the rest (test_mpi_train saw it). */
int cli_error(const char *cmd, const char *fmt, ...)
{
    char line[4096];
    size_t n = (size_t)snprintf(line, sizeof line, "anx %s: ", cmd);
    if (anx_dist_size() > 1 && n < sizeof line)
        n += (size_t)snprintf(line + n, sizeof line - n, "rank %d of %d: ", anx_dist_rank(), anx_dist_size());
    if (n < sizeof line) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
    }
    n = strlen(line);
    if (n == sizeof line - 1) n--; /* truncated: keep room for the newline */
    line[n] = '\n', line[n + 1] = '\0';
    fputs(line, stderr);
    return ANX_EXIT_USAGE;
}

int cli_backend(const char *cmd, const char *name, const anx_backend **out)
{
    const anx_backend *be = anx_backend_find(name);
    char list[256];
    if (!be)
        return cli_error(cmd, "--backend %s: unknown backend (this build has %s)", name,
                         anx_backend_names(list, sizeof list, ", ", ", "));
    const char *why = be->unavailable ? be->unavailable() : NULL;
    if (why) return cli_error(cmd, "--backend %s: unavailable on this machine: %s", name, why);
    *out = be;
    return 0;
}

const char *cli_backend_help(char *buf, size_t cap, const char *before, const char *after)
{
    char list[256];
    snprintf(buf, cap, "%s%s%s", before, anx_backend_names(list, sizeof list, ", ", " or "), after);
    return buf;
}

double cli_ram_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double avail = -1, swap = 0, kib;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) avail = kib * 1024;
        if (sscanf(line, "SwapFree: %lf kB", &kib) == 1) swap = kib * 1024;
    }
    if (f) fclose(f);
    if (avail >= 0) return avail + swap;
    long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 0;
}

double cli_net_bytes(const anx_model *m, double *param_bytes)
{
    double params = 0.0, acts = (double)m->cfg.batch * m->cfg.in_dim * m->cfg.input_hw * m->cfg.input_hw * 2.0;
    for (int p = 0; p < ANX_NUM_PARAMS; p++) params += (double)m->params[p].count * ANX_STATE_COUNT;
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        double n = (double)anx_desc_plain_count(&m->layers[i], ANX_DST);
        acts += m->layers[i].op == ANX_OP_DROPOUT ? 4.0 * n : 2.0 * n; /* + mask and ones */
    }
    if (param_bytes) *param_bytes = 4.0 * params;
    return 4.0 * (params + acts);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void print_usage(const char *usage, const cli_flag *flags, int nflags)
{
    printf("usage: %s\n\n", usage);
    for (int i = 0; i < nflags; i++) {
        const char *arg = flags[i].kind == CLI_BOOL     ? ""
                          : flags[i].kind == CLI_STRING ? " VALUE"
                          : flags[i].kind == CLI_FLOAT  ? " X"
                                                        : " N";
        char left[64];
        snprintf(left, sizeof left, "%s%s", flags[i].name, arg);
        printf("  %-22s %s\n", left, flags[i].help ? flags[i].help : "");
    }
    printf("  %-22s %s\n", "--help", "show this help");
}

static int set_value(const char *cmd, const cli_flag *f, const char *v)
{
    char *end = NULL;
    errno = 0;
    switch (f->kind) {
    case CLI_INT:
    case CLI_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end)
            return cli_error(cmd, "%s expects an integer, got '%s'", f->name, v);
        if (f->min <= f->max && (x < f->min || x > f->max))
            return cli_error(cmd, "%s must be in %ld..%ld, got %lld", f->name, f->min, f->max, x);
        if (f->kind == CLI_INT)
            *(int *)f->out = (int)x;
        else
            *(int64_t *)f->out = (int64_t)x;
        return 0;
    }
    case CLI_FLOAT: {
        float x = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return cli_error(cmd, "%s expects a finite number, got '%s'", f->name, v);
        *(float *)f->out = x;
        return 0;
    }
    case CLI_STRING:
        if (!*v) return cli_error(cmd, "%s expects a non-empty value", f->name);
        *(const char **)f->out = v;
        return 0;
    default:
        return cli_error(cmd, "%s takes no value", f->name);
    }
}

int cli_parse(const char *cmd, const char *usage, int argc, char **argv, const cli_flag *flags,
              int nflags, const char **positional, int max_positional, int *npositional)
{
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(usage, flags, nflags);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (npos >= max_positional) return cli_error(cmd, "unexpected argument '%s'", a);
            positional[npos++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const cli_flag *f = NULL;
        for (int k = 0; k < nflags; k++)
            if (strlen(flags[k].name) == len && strncmp(flags[k].name, a, len) == 0) f = &flags[k];
        if (!f) return cli_error(cmd, "unknown flag '%.*s' (see anx %s --help)", (int)len, a, cmd);
        if (f->kind == CLI_BOOL) {
            if (eq) return cli_error(cmd, "%s takes no value", f->name);
            *(int *)f->out = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return cli_error(cmd, "%s needs a value", f->name);
        if (set_value(cmd, f, v)) return ANX_EXIT_USAGE;
    }
    if (npositional) *npositional = npos;
    return 0;
}
