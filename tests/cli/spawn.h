/* spawn.h — run the built `anx` binary from a test and capture what it printed.
 *
 * run_anx() spawns ANX_BINARY_DIR "/anx" with posix_spawn (no shell, so no quoting issues),
 * stdout and stderr redirected to files in a scratch directory, and returns the exit status
 * (-1 when it did not exit normally, e.g. killed by a sanitizer signal).
 */
#ifndef ANX_TEST_SPAWN_H
#define ANX_TEST_SPAWN_H

#include <stddef.h>

typedef struct anx_run {
    int status;   /* exit status, or -1 */
    char *out;    /* everything on stdout, NUL-terminated */
    char *err;    /* everything on stderr */
    int err_lines;
} anx_run;

/* args: NULL-terminated, without the program name.  Working directory: cwd (NULL = inherit). */
anx_run run_anx(const char *const *args, const char *cwd);
void anx_run_free(anx_run *r);

/* A fresh scratch directory under /tmp (path into buf), and its removal with every file in it. */
void scratch_make(char *buf, size_t cap, const char *tag);
void scratch_remove(const char *dir);
/* Names of the files in dir, space-separated, and how many. */
int scratch_list(const char *dir, char *names, size_t cap);

/* A whole file into memory (NUL-terminated), or NULL. */
char *slurp_file(const char *path, size_t *n);

#endif
