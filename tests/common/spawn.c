/* spawn.c — see spawn.h */
#include "spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *tu_slurp(const char *path, size_t *n)
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

int tu_list_dir(const char *dir, char *names, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    size_t k = 0;
    if (cap) names[0] = '\0';
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (k < cap) k += (size_t)snprintf(names + k, cap - k, "%s ", e->d_name);
    }
    closedir(d);
    return n;
}

static void remove_level(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    char p[1024];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && depth < 4)
            remove_level(p, depth + 1);
        else
            unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

void tu_remove_tree(const char *dir) { remove_level(dir, 0); }

void tu_scratch_dir(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/tmp/anx_%s_XXXXXX", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int watch_hit(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int hit = 0;
    for (struct dirent *e; d && !hit && (e = readdir(d));) hit = strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return hit;
}

extern char **environ;

/* The child's environment: the parent's, and under an address-space limit also
 * OPENBLAS_NUM_THREADS=1.  anx links OpenBLAS (the cblas backend), whose load-time constructor
 * starts a worker thread per core; each worker mallocs a 128 MiB buffer and retries for ever when
 * that fails, and the exit handler then waits for it: under RLIMIT_AS a child that never calls a
 * BLAS hung until ctest's timeout on a loaded machine (test_avx2_oom, seen in CI).  Built in the
 * parent, because the child may only make async-signal-safe calls. */
static char **child_env(const tu_spawn_opts *o)
{
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!(o->as_bytes > 0 && strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21) == 0)) env[k++] = environ[i];
    if (o->as_bytes > 0) env[k++] = "OPENBLAS_NUM_THREADS=1";
    env[k] = NULL;
    return env;
}

/* In the child: limits, signals, redirections, exec.  Only async-signal-safe calls after fork. */
static void child(const tu_spawn_opts *o, const char *const *argv, char **env, const char *out, const char *err)
{
    struct rlimit rl;
    if (o->as_bytes > 0) {
        rl.rlim_cur = rl.rlim_max = (rlim_t)o->as_bytes;
        if (setrlimit(RLIMIT_AS, &rl)) _exit(126);
    }
    if (o->fsize_bytes > 0) {
        rl.rlim_cur = rl.rlim_max = (rlim_t)o->fsize_bytes;
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(126);
    }
    signal(SIGXFSZ, o->ignore_sigxfsz ? SIG_IGN : SIG_DFL); /* SIG_IGN survives exec */
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(126);
    execve(argv[0], (char *const *)argv, env);
    _exit(127);
}

tu_run tu_spawn(const tu_spawn_opts *o, const char *const *args)
{
    tu_run r = {-1, 0, NULL, NULL, 0};
    char io[64], out[96], err[96];
    tu_scratch_dir(io, sizeof io, "spawn");
    snprintf(out, sizeof out, "%s/stdout", io);
    snprintf(err, sizeof err, "%s/stderr", io);
    const char *argv[80];
    int n = 0;
    argv[n++] = o->bin ? o->bin : ANX_BINARY_DIR "/anx";
    for (; args[n - 1] && n < 79; n++) argv[n] = args[n - 1];
    argv[n] = NULL;

    char **env = child_env(o);
    if (!env) {
        perror("tu_spawn: environment");
        exit(1);
    }
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) child(o, argv, env, out, err);
    free(env);
    int st = 0;
    double t0 = now();
    const int watching = o->watch_dir && o->watch_prefix;
    int seen = !watching;
    for (;;) {
        pid_t w = waitpid(pid, &st, o->kill_after > 0 ? WNOHANG : 0);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            perror("waitpid");
            exit(1);
        }
        if (!seen && watch_hit(o->watch_dir, o->watch_prefix)) seen = 1, t0 = now();
        if (o->kill_after > 0 && seen && now() - t0 >= o->kill_after) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        if (o->kill_after > 0) nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    r.out = tu_slurp(out, NULL);
    r.err = tu_slurp(err, NULL);
    if (!r.out) r.out = calloc(1, 1);
    if (!r.err) r.err = calloc(1, 1);
    for (const char *p = r.err; *p; p++) r.err_lines += *p == '\n';
    unlink(out);
    unlink(err);
    rmdir(io);
    return r;
}

void tu_run_free(tu_run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
