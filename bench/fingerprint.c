/* The fingerprint of a benchmark run: CPU, ISA flags, caches, memory, kernel, compiler and
 * flags, the shared libraries loaded (with their versions), anx's git commit, and a
 * machine_key that says which runs may be compared.  Everything is read once at start-up
 * (a few files in /proc and /sys, one git call): milliseconds, next to the ~1 s peak probes. */
#define _GNU_SOURCE /* dl_iterate_phdr, RTLD_DEFAULT, realpath */
#include "fingerprint.h"

#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hw_counters.h"

#ifndef ANX_SOURCE_DIR
#define ANX_SOURCE_DIR "."
#endif
#ifndef ANX_BENCH_CFLAGS
#define ANX_BENCH_CFLAGS "?"
#endif
#ifndef ANX_GBENCH_VERSION
#define ANX_GBENCH_VERSION "?"
#endif

/* The /proc/cpuinfo flags that decide which kernels run (X-macro: one list for the lookup and
 * the key). */
#define ANX_FP_FLAGS(X)                                                                          \
    X(avx) X(avx2) X(fma) X(f16c) X(avx512f) X(avx512bw) X(avx512vl) X(avx512dq) X(avx512cd)      \
    X(avx512_vnni) X(avx512_bf16) X(avx512_fp16) X(avx_vnni) X(amx_tile) X(amx_bf16) X(amx_int8)

/* value of "key<tabs>: value" in line, or NULL */
static const char *cpuinfo_value(const char *line, const char *key)
{
    size_t n = strlen(key);
    if (strncmp(line, key, n) != 0 || (line[n] != ' ' && line[n] != '\t' && line[n] != ':')) return NULL;
    const char *c = strchr(line + n, ':');
    if (!c) return NULL;
    c++;
    while (*c == ' ') c++;
    return c;
}

/* src (which may be dst itself) into dst, cut to cap, without trailing newline and spaces */
static void copy_trim(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memmove(dst, src, n);
    dst[n] = '\0';
    while (n && (dst[n - 1] == '\n' || dst[n - 1] == ' ')) dst[--n] = '\0';
}

/* a whole word of a space-separated list */
static int has_word(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0')) return 1;
    return 0;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ '|') * 1099511628211ull; /* field separator: "ab","c" != "a","bc" */
}

void anx_fingerprint_read(anx_fingerprint *fp, int threads)
{
    char family[16] = "?", model[16] = "?", stepping[16] = "?";
    static char line[8192]; /* the flags line is long */
    snprintf(fp->vendor, sizeof fp->vendor, "?");
    snprintf(fp->model, sizeof fp->model, "?");
    fp->isa[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    int flags_seen = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *v;
        if (line[0] == '\n') break; /* the first processor's block is enough */
        if ((v = cpuinfo_value(line, "vendor_id"))) copy_trim(fp->vendor, sizeof fp->vendor, v);
        else if ((v = cpuinfo_value(line, "model name"))) copy_trim(fp->model, sizeof fp->model, v);
        else if ((v = cpuinfo_value(line, "cpu family"))) copy_trim(family, sizeof family, v);
        else if ((v = cpuinfo_value(line, "model"))) copy_trim(model, sizeof model, v);
        else if ((v = cpuinfo_value(line, "stepping"))) copy_trim(stepping, sizeof stepping, v);
        else if ((v = cpuinfo_value(line, "flags"))) {
            size_t len = 0;
            flags_seen = 1;
#define X(name)                                                                                   \
    if (has_word(v, #name) && len < sizeof fp->isa)                                               \
        len += (size_t)snprintf(fp->isa + len, sizeof fp->isa - len, "%s" #name, len ? " " : "");
            ANX_FP_FLAGS(X)
#undef X
        }
    }
    if (f) fclose(f);
    if (!flags_seen) snprintf(fp->isa, sizeof fp->isa, "?");
    else if (!fp->isa[0]) snprintf(fp->isa, sizeof fp->isa, "none");
    snprintf(fp->fms, sizeof fp->fms, "family %s model %s stepping %s", family, model, stepping);
    fp->threads = threads;
    char th[16];
    snprintf(th, sizeof th, "%d", threads);
    uint64_t h = 14695981039346656037ull;
    h = fnv1a(h, fp->vendor), h = fnv1a(h, fp->model), h = fnv1a(h, fp->fms);
    h = fnv1a(h, fp->isa), h = fnv1a(h, th);
    snprintf(fp->machine_key, sizeof fp->machine_key, "%016llx", (unsigned long long)h);
}

/* "L1d 48K L1i 32K L2 2048K L3 307200K" from /sys (cpu0's view) */
static void caches(char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < 8 && len < cap; i++) {
        char path[96], level[8] = "", type[24] = "", size[24] = "";
        const char *field[] = {"level", "type", "size"};
        char *dst[] = {level, type, size};
        size_t dcap[] = {sizeof level, sizeof type, sizeof size};
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", i, field[k]);
            FILE *f = fopen(path, "r");
            if (f && fgets(dst[k], (int)dcap[k], f)) copy_trim(dst[k], dcap[k], dst[k]);
            if (f) fclose(f);
        }
        if (!level[0]) break;
        const char *t = strcmp(type, "Data") == 0 ? "d" : strcmp(type, "Instruction") == 0 ? "i" : "";
        len += (size_t)snprintf(buf + len, cap - len, "%sL%s%s %s", len ? " " : "", level, t, size);
    }
    if (!buf[0]) snprintf(buf, cap, "?");
}

/* Every shared object the process has loaded, by the file its soname resolves to (which
 * carries the version: libdnnl.so.2.6, libbenchmark.so.1.7.1). */
typedef struct lib_list {
    char *buf;
    size_t cap, len;
} lib_list;

static int add_lib(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    lib_list *l = arg;
    if (!info->dlpi_name || info->dlpi_name[0] != '/' || l->len >= l->cap) return 0;
    char real[4096];
    const char *path = realpath(info->dlpi_name, real) ? real : info->dlpi_name;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "ld-linux", 8) == 0 || strncmp(base, "linux-vdso", 10) == 0) return 0;
    l->len += (size_t)snprintf(l->buf + l->len, l->cap - l->len, "%s%s", l->len ? " " : "", base);
    return 0;
}

/* oneDNN's own version call, when the process has oneDNN loaded (the onednn backend is built
 * in): found by name so that anx-bench does not depend on oneDNN's headers.  The struct is
 * the head of dnnl_version_t (dnnl_types.h). */
typedef struct dnnl_version_head {
    int major, minor, patch;
    const char *hash;
} dnnl_version_head;

static void onednn_version(char *buf, size_t cap)
{
    const dnnl_version_head *(*fn)(void);
    *(void **)&fn = dlsym(RTLD_DEFAULT, "dnnl_version");
    const dnnl_version_head *v = fn ? fn() : NULL;
    if (v) snprintf(buf, cap, "%d.%d.%d (%s)", v->major, v->minor, v->patch, v->hash ? v->hash : "?");
    else snprintf(buf, cap, "not loaded");
}

/* The first line git prints for cmd in the source tree, or "" when git cannot say. */
static void git_line(char *buf, size_t cap, const char *args)
{
    char cmd[1024];
    buf[0] = '\0';
    snprintf(cmd, sizeof cmd, "git -C '%s' %s 2>/dev/null", ANX_SOURCE_DIR, args);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    if (!fgets(buf, (int)cap, p)) buf[0] = '\0';
    copy_trim(buf, cap, buf);
    while (fgetc(p) != EOF) {
    }
    pclose(p);
}

static const char *compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "?";
#endif
}

/* "ref:reference avx2:avx2 onednn:best": what each registry entry is for, so the report picks
 * its speedup baselines (the reference, the libraries that dispatch by CPU) without names. */
static void backend_roles(char *buf, size_t cap)
{
    static const char *isa[] = {
        [ANX_PEAK_BEST] = "best",
        [ANX_PEAK_AVX2] = "avx2",     /* ISA name */
        [ANX_PEAK_AVX512] = "avx512", /* ISA name */
    };
    size_t len = 0;
    buf[0] = '\0';
    for (const anx_backend *const *b = anx_backends(); *b && len < cap; b++) {
        unsigned p = (unsigned)(*b)->peak_isa;
        const char *role = (*b)->is_reference ? "reference" : p < sizeof isa / sizeof isa[0] ? isa[p] : "?";
        len += (size_t)snprintf(buf + len, cap - len, "%s%s:%s", len ? " " : "", (*b)->name, role);
    }
}

/* "name:<library()>" per backend that names its library, ';'-separated (a library's own
 * version call where it has no shared object to find in anx_libraries: LIBXSMM is static). */
static void backend_libraries(char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (const anx_backend *const *b = anx_backends(); *b && len < cap; b++) {
        const char *why = (*b)->unavailable ? (*b)->unavailable() : NULL;
        if (!(*b)->library || why) continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s%s:%s", len ? "; " : "", (*b)->name, (*b)->library());
    }
}

void anx_bench_add_fingerprint(int threads)
{
    anx_fingerprint fp;
    anx_fingerprint_read(&fp, threads);
    static char buf[8192];
    anx_gb_add_context("anx_machine_key", fp.machine_key);
    anx_gb_add_context("anx_cpu_vendor", fp.vendor);
    anx_gb_add_context("anx_cpu_model", fp.model);
    anx_gb_add_context("anx_cpu_fms", fp.fms);
    anx_gb_add_context("anx_isa_flags", fp.isa);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(buf, sizeof buf, "%ld", online);
    anx_gb_add_context("anx_cpus_online", buf);
    caches(buf, sizeof buf);
    anx_gb_add_context("anx_caches", buf);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    snprintf(buf, sizeof buf, "%.1f", pages > 0 && page > 0 ? (double)pages * (double)page / (1 << 30) : 0.0);
    anx_gb_add_context("anx_memory_gib", buf);
    struct utsname u;
    if (uname(&u) == 0) snprintf(buf, sizeof buf, "%s %s %s", u.sysname, u.release, u.machine);
    else snprintf(buf, sizeof buf, "?");
    anx_gb_add_context("anx_kernel", buf);
    anx_gb_add_context("anx_compiler", compiler());
    anx_gb_add_context("anx_cflags", ANX_BENCH_CFLAGS);
    lib_list libs = {buf, sizeof buf, 0};
    buf[0] = '\0';
    dl_iterate_phdr(add_lib, &libs);
    anx_gb_add_context("anx_libraries", buf);
    onednn_version(buf, sizeof buf);
    anx_gb_add_context("anx_onednn_version", buf);
    anx_gb_add_context("anx_benchmark_version", ANX_GBENCH_VERSION);
    git_line(buf, 64, "rev-parse HEAD");
    anx_gb_add_context("anx_git_commit", buf[0] ? buf : "unknown");
    if (buf[0]) {
        git_line(buf, 256, "status --porcelain --untracked-files=no");
        anx_gb_add_context("anx_git_dirty", buf[0] ? "yes" : "no");
    } else {
        anx_gb_add_context("anx_git_dirty", "unknown");
    }
    anx_gb_add_context("anx_hw_counters", anx_hw_counters_status());
    backend_roles(buf, sizeof buf);
    anx_gb_add_context("anx_backend_roles", buf);
    backend_libraries(buf, sizeof buf);
    anx_gb_add_context("anx_backend_libraries", buf);
}
