/* spawn.c — see spawn.h */
#include "spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

char *slurp_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, k = 0;
    char *b = malloc(cap + 1);
    for (size_t r; b && (r = fread(b + k, 1, cap - k, f)) > 0;) {
        k += r;
        if (k == cap) {
            char *nb = realloc(b, 2 * cap + 1);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb, cap *= 2;
        }
    }
    fclose(f);
    if (b) b[k] = '\0';
    if (n) *n = k;
    return b;
}

void scratch_make(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/tmp/anx_%s_XXXXXX", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
}

int scratch_list(const char *dir, char *names, size_t cap)
{
    DIR *d = opendir(dir);
    int n = 0;
    size_t k = 0;
    if (cap) names[0] = '\0';
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (k < cap) k += (size_t)snprintf(names + k, cap - k, "%s ", e->d_name);
    }
    if (d) closedir(d);
    return n;
}

void scratch_remove(const char *dir)
{
    DIR *d = opendir(dir);
    char p[1024];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

anx_run run_anx(const char *const *args, const char *cwd)
{
    anx_run r = {-1, NULL, NULL, 0};
    char io[64], out_path[96], err_path[96];
    scratch_make(io, sizeof io, "spawn");
    snprintf(out_path, sizeof out_path, "%s/stdout", io);
    snprintf(err_path, sizeof err_path, "%s/stderr", io);

    const char *argv[64];
    int n = 0;
    argv[n++] = ANX_BINARY_DIR "/anx";
    for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
    argv[n] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    /* posix_spawn has no chdir action before glibc 2.29's _np extension: change and restore */
    char old[1024];
    if (cwd && (!getcwd(old, sizeof old) || chdir(cwd) != 0)) {
        perror("chdir");
        exit(1);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    if (cwd && chdir(old) != 0) perror("chdir back");
    posix_spawn_file_actions_destroy(&fa);
    if (rc == 0) {
        int st = 0;
        pid_t w;
        while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
        }
        r.status = w == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    } else {
        fprintf(stderr, "posix_spawn %s failed: %s\n", argv[0], strerror(rc));
    }
    r.out = slurp_file(out_path, NULL);
    r.err = slurp_file(err_path, NULL);
    if (!r.out) r.out = calloc(1, 1);
    if (!r.err) r.err = calloc(1, 1);
    for (const char *p = r.err; *p; p++) r.err_lines += *p == '\n';
    unlink(out_path);
    unlink(err_path);
    rmdir(io);
    return r;
}

void anx_run_free(anx_run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
