/* test_source_rules: two rules of the sources that no compiler checks.
 *
 * 1. Shared code never spells a backend's name; it asks the registry (anx_backends(),
 *    anx_backend_reference(), the entry's peak_isa / train_rank / is_reference).
 * 2. The library never exits: no call of exit, _Exit, quick_exit or abort in core/, ref/, fast/
 *    (errors are returned with the culprit named; only app/ turns them into exit codes).
 *
 * Rule 1.
 * The names come from this build's registry (every compiled backend, stubs included), not from a
 * list written here.  Scanned: the C sources (.c .h .cc .inc) of core/, app/, bench/ and the
 * shared tests (the list in main), comments removed.  A finding is
 *   - a string literal holding a name as a whole word (word characters: letters, digits, '_'), or
 *   - the identifier anx_backend_<symbol> of a backend's table.
 * Not findings: the argument of __builtin_cpu_supports() or __attribute__((target())) (CPU feature
 * names, which a backend's name may equal), and a literal on a line marked with the comment
 * "ISA name" (bench/bench_peak.c names the ISAs whose FMA peak it measures).
 *
 * Before the scans, self-tests write files with planted names and exits and demand exactly the
 * findings they hold, so the test cannot pass by finding nothing.  `--plant FILE` and
 * `--plant-exits FILE` scan FILE alone under one rule (exit 1 on a finding), to try a mutant.  tests/registry has no CMakeLists.txt: the
 * area's test_*.c run with the label quick.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "anx/backend.h"
#include "testutil.h"

#define MAX_NAMES 64

static const char *g_names[MAX_NAMES];
static char g_syms[MAX_NAMES][64];
static int g_nnames;
static int g_files_scanned;
static int g_rule; /* 1: backend names, 2: exits */

static int is_word(int c) { return isalnum(c) || c == '_'; }

/* 1 when word occurs in s[0..n) with no word character on either side. */
static int has_word(const char *s, size_t n, const char *word)
{
    size_t w = strlen(word);
    for (size_t i = 0; i + w <= n; i++)
        if (memcmp(s + i, word, w) == 0 && (i == 0 || !is_word((unsigned char)s[i - 1])) &&
            (i + w == n || !is_word((unsigned char)s[i + w])))
            return 1;
    return 0;
}

/* The source without comments (each replaced by a space, newlines kept so line numbers hold). */
static char *strip_comments(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '/' && i + 1 < n && s[i + 1] == '/') {
            while (i < n && s[i] != '\n') i++;
        } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
            out[k++] = ' ';
            for (i += 2; i < n && !(s[i] == '*' && i + 1 < n && s[i + 1] == '/'); i++)
                if (s[i] == '\n') out[k++] = '\n';
            i += 2;
        } else if (s[i] == '"' || s[i] == '\'') {
            char q = s[i];
            out[k++] = s[i++];
            while (i < n && s[i] != q) {
                if (s[i] == '\\' && i + 1 < n) out[k++] = s[i++];
                out[k++] = s[i++];
            }
            if (i < n) out[k++] = s[i++];
        } else {
            out[k++] = s[i++];
        }
    }
    out[k] = 0;
    return out;
}

/* 1 when the code before position at (same line) ends in "__builtin_cpu_supports(" or "target(". */
static int cpu_feature_arg(const char *line, size_t at)
{
    size_t e = at;
    while (e > 0 && isspace((unsigned char)line[e - 1])) e--;
    if (e == 0 || line[e - 1] != '(') return 0;
    e--;
    while (e > 0 && isspace((unsigned char)line[e - 1])) e--;
    static const char *const fns[] = {"__builtin_cpu_supports", "target"};
    for (int f = 0; f < 2; f++) {
        size_t w = strlen(fns[f]);
        if (e >= w && memcmp(line + e - w, fns[f], w) == 0 && (e == w || !is_word((unsigned char)line[e - w - 1])))
            return 1;
    }
    return 0;
}

/* Rule 2: a call of a function that ends the process, outside string literals. */
static int scan_line_exits(const char *path, int lineno, const char *line, const char *raw)
{
    static const char *const fns[] = {"exit", "_Exit", "quick_exit", "abort"};
    int found = 0, in_str = 0;
    for (size_t i = 0; line[i]; i++) {
        if (line[i] == '"' && (i == 0 || line[i - 1] != '\\')) in_str = !in_str;
        if (in_str || (i > 0 && is_word((unsigned char)line[i - 1]))) continue;
        for (int f = 0; f < 4; f++) {
            size_t w = strlen(fns[f]), k = i + w;
            if (strncmp(line + i, fns[f], w) || is_word((unsigned char)line[k])) continue;
            while (line[k] == ' ') k++;
            if (line[k] != '(') continue;
            fprintf(stderr, "%s:%d: %s() in the library: %s\n", path, lineno, fns[f], raw);
            found++;
        }
    }
    return found;
}

/* Findings of one line of code (comments stripped); raw is the same line before stripping. */
static int scan_line(const char *path, int lineno, const char *line, const char *raw)
{
    if (g_rule == 2) return scan_line_exits(path, lineno, line, raw);
    int found = 0;
    const size_t n = strlen(line);
    const int isa_line = strstr(raw, "ISA name") != NULL;
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\'') { /* a character literal: skip it whole */
            for (i++; i < n && line[i] != '\''; i++)
                if (line[i] == '\\') i++;
            continue;
        }
        if (line[i] != '"') continue;
        size_t j = i + 1;
        while (j < n && line[j] != '"') j += line[j] == '\\' ? 2 : 1;
        if (j > n) j = n;
        if (!isa_line && !cpu_feature_arg(line, i))
            for (int b = 0; b < g_nnames; b++)
                if (has_word(line + i + 1, j - i - 1, g_names[b])) {
                    fprintf(stderr, "%s:%d: backend name \"%s\" in a string: %s\n", path, lineno, g_names[b], raw);
                    found++;
                }
        i = j;
    }
    for (int b = 0; b < g_nnames; b++) {
        char id[96];
        snprintf(id, sizeof id, "anx_backend_%s", g_syms[b]);
        if (has_word(line, n, id)) {
            fprintf(stderr, "%s:%d: backend table %s named: %s\n", path, lineno, id, raw);
            found++;
        }
    }
    return found;
}

static int scan_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *src = malloc((size_t)len + 1);
    size_t got = fread(src, 1, (size_t)len, f);
    fclose(f);
    src[got] = 0;
    char *code = strip_comments(src, got);
    int found = 0, lineno = 1;
    char *c = code, *r = src;
    while (*c || *r) {
        char *ce = strchr(c, '\n'), *re = strchr(r, '\n');
        if (ce) *ce = 0;
        if (re) *re = 0;
        found += scan_line(path, lineno++, c, r);
        if (!ce || !re) break;
        c = ce + 1, r = re + 1;
    }
    free(code);
    free(src);
    g_files_scanned++;
    return found;
}

static int is_source(const char *name)
{
    static const char *const ext[] = {".c", ".h", ".cc", ".inc"};
    size_t n = strlen(name);
    for (int i = 0; i < 4; i++) {
        size_t e = strlen(ext[i]);
        if (n > e && strcmp(name + n - e, ext[i]) == 0) return 1;
    }
    return 0;
}

static int scan_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open directory\n", dir);
        return 1;
    }
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st)) continue;
        if (S_ISDIR(st.st_mode)) found += scan_dir(path);
        else if (is_source(e->d_name)) found += scan_file(path);
    }
    closedir(d);
    return found;
}

static void load_names(void)
{
    for (const anx_backend *const *b = anx_backends(); *b && g_nnames < MAX_NAMES; b++) {
        g_names[g_nnames] = (*b)->name;
        snprintf(g_syms[g_nnames], sizeof g_syms[g_nnames], "%s", (*b)->name);
        for (char *p = g_syms[g_nnames]; *p; p++)
            if (*p == '-') *p = '_'; /* the C symbol of a name with '-' (cmake/AnxBackend.cmake) */
        g_nnames++;
    }
}

/* The scan must find what is planted: a name in a string, a table's identifier; and must not
 * flag a CPU feature name, a marked ISA line, a comment or a longer word.  Rule 2 likewise. */
static void plant_exits_self_test(void)
{
    char path[] = "/tmp/anx_plant_XXXXXX";
    int fd = mkstemp(path);
    TU_CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "void f(void) { if (x) exit(2); }\n");          /* finding 1 */
    fprintf(f, "void g(void) { abort (); }\n");                /* finding 2 */
    fprintf(f, "/* we never exit(2) here */ int a;\n");        /* not: a comment */
    fprintf(f, "const char *s = \"exit(2)\"; int my_exit(int);\n"); /* not: a string, a longer name */
    fclose(f);
    g_rule = 2;
    int found = scan_file(path);
    unlink(path);
    TU_CHECKF(found == 2, "planted exits: %d findings, want 2 (exit(), abort ())", found);
}

static void plant_self_test(void)
{
    char path[] = "/tmp/anx_plant_XXXXXX";
    int fd = mkstemp(path);
    TU_CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    const char *name = g_names[g_nnames - 1], *sym = g_syms[g_nnames - 1];
    fprintf(f, "static const char *s = \"x, %s or y\";\n", name);              /* finding 1 */
    fprintf(f, "extern const int anx_backend_%s;\n", sym);                     /* finding 2 */
    fprintf(f, "int a = __builtin_cpu_supports(\"%s\");\n", name);             /* not */
    fprintf(f, "static const char *t = \"%s\"; /* ISA name */\n", name);      /* not */
    fprintf(f, "/* the %s backend \"%s\" */ int c;\n", name, name);            /* not: a comment */
    fprintf(f, "static const char *u = \"%sx x%s\";\n", name, name);           /* not: longer words */
    fclose(f);
    g_rule = 1;
    int found = scan_file(path);
    unlink(path);
    TU_CHECKF(found == 2, "planted file: %d findings, want 2 (a name in a string, a table identifier)", found);
}

int main(int argc, char **argv)
{
    load_names();
    TU_CHECKF(g_nnames >= 1, "the registry is empty");
    if (argc == 3 && (strcmp(argv[1], "--plant") == 0 || strcmp(argv[1], "--plant-exits") == 0)) {
        g_rule = strcmp(argv[1], "--plant") == 0 ? 1 : 2; /* scan one given file under one rule */
        return scan_file(argv[2]) ? 1 : 0;
    }
    printf("test_source_rules: backend names from the registry:");
    for (int b = 0; b < g_nnames; b++) printf(" %s", g_names[b]);
    printf("\n");
    plant_self_test();
    plant_exits_self_test();

    /* every shared test area; per-backend areas (tests/<name>/) may name theirs */
    static const char *const shared[] = {"core",      "app",        "bench",       "tests/common", "tests/core",
                                         "tests/data", "tests/io",   "tests/net",   "tests/soak",   "tests/fuzz",
                                         "tests/cli", "tests/hardening", "tests/golden", "tests/bench"};
    const int nshared = (int)(sizeof shared / sizeof shared[0]);
    int found = 0;
    g_rule = 1, g_files_scanned = 0;
    for (int i = 0; i < nshared; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", ANX_SOURCE_DIR, shared[i]);
        found += scan_dir(dir);
    }
    TU_CHECKF(g_files_scanned >= 40, "only %d source files scanned in the shared code", g_files_scanned);
    TU_CHECKF(found == 0, "%d backend name(s) in shared code (above): ask anx_backends() / the entry instead",
              found);
    printf("test_source_rules: rule 1: %d files of core/, app/, bench/ and the shared tests scanned\n", g_files_scanned);

    static const char *const library[] = {"core", "ref", "fast"};
    found = 0;
    g_rule = 2, g_files_scanned = 0;
    for (int i = 0; i < 3; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", ANX_SOURCE_DIR, library[i]);
        found += scan_dir(dir);
    }
    TU_CHECKF(g_files_scanned >= 30, "only %d source files scanned under core/, ref/, fast/", g_files_scanned);
    TU_CHECKF(found == 0, "%d call(s) that end the process in the library (above): return the error instead", found);
    printf("test_source_rules: rule 2: %d files of core/, ref/, fast/ scanned\n", g_files_scanned);
    return tu_finish("test_source_rules");
}
