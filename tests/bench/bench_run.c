/* Runs anx-bench for the bench tests (popen: the tests see exactly what a user sees). */
#include "bench_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char *read_all(FILE *f)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb, cap *= 2;
        }
    }
    if (buf) buf[len] = '\0';
    return buf;
}

char *tb_run(const char *cmd, int *status)
{
    *status = -1;
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    char *out = read_all(p);
    int st = pclose(p);
    if (st != -1 && WIFEXITED(st)) *status = WEXITSTATUS(st);
    return out;
}

char *tb_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *out = read_all(f);
    fclose(f);
    return out;
}
