/* bench_run.h — running anx-bench from a test: the command's stdout and exit status. */
#ifndef ANX_TEST_BENCH_RUN_H
#define ANX_TEST_BENCH_RUN_H

/* The anx-bench executable of this build tree. */
#define TB_BENCH ANX_BINARY_DIR "/anx-bench"

/* Runs cmd with /bin/sh; returns its stdout (malloc'd, NUL-terminated; NULL when it could not
 * be started) and sets *status to its exit status (-1 when it did not exit normally). */
char *tb_run(const char *cmd, int *status);

/* The whole file at path (malloc'd, NUL-terminated), or NULL. */
char *tb_read_file(const char *path);

#endif
