/* spawn.h — run a built program (`anx` by default) from a test and capture what it printed.
 *
 * It forks, so the child can get resource limits first: RLIMIT_AS (an allocation that fails,
 * without risking the OOM killer on a shared machine), RLIMIT_FSIZE (a write that stops midway:
 * killed by SIGXFSZ, or failing with EFBIG when SIGXFSZ is ignored, which is what a full disk
 * looks like to write()), and a SIGKILL after a delay (a process killed at an arbitrary
 * moment).  stdout and stderr go to files in a scratch directory and come back as strings.
 * Plain runs pass &(tu_spawn_opts){0}.
 */
#ifndef ANX_TEST_SPAWN_H
#define ANX_TEST_SPAWN_H

#include <stddef.h>

typedef struct tu_spawn_opts {
    const char *bin;         /* NULL: ANX_BINARY_DIR "/anx" */
    long long as_bytes;      /* RLIMIT_AS, 0: unchanged */
    long long fsize_bytes;   /* RLIMIT_FSIZE, 0: unchanged */
    int ignore_sigxfsz;      /* 1: a write past fsize_bytes fails with EFBIG instead of killing */
    double kill_after;       /* > 0: SIGKILL after this many seconds if still running */
    const char *watch_dir;   /* with watch_prefix: SIGKILL kill_after seconds after a file whose */
    const char *watch_prefix; /* name starts with watch_prefix appears in watch_dir (a write began) */
} tu_spawn_opts;

typedef struct tu_run {
    int status;    /* exit status, or -1 when it did not exit normally */
    int signal;    /* the signal that ended it, or 0 */
    char *out;     /* stdout, NUL-terminated */
    char *err;     /* stderr */
    int err_lines;
} tu_run;

/* args: NULL-terminated, without the program name. */
tu_run tu_spawn(const tu_spawn_opts *o, const char *const *args);
void tu_run_free(tu_run *r);

/* The whole file (NUL-terminated) or NULL; its size in *n. */
char *tu_slurp(const char *path, size_t *n);
/* Files in dir other than . and .. (names space-separated in names), or -1 when unreadable. */
int tu_list_dir(const char *dir, char *names, size_t cap);
/* A fresh directory /tmp/anx_<tag>_XXXXXX (path into buf); exits the test when it cannot. */
void tu_scratch_dir(char *buf, size_t cap, const char *tag);
/* rm -r of a scratch tree (two levels deep at most, as the tests make them). */
void tu_remove_tree(const char *dir);

#endif
